//! Crash recovery with a real process: a server killed mid-run loses its lease, the
//! restarted server takes the run over, and the outputs are byte-identical to those of
//! an undisturbed run — plain data files, and a Trivy database.

use std::process::Stdio;

use reqwest::Method;
use serde_json::json;

use crate::helpers::shared_data;
use crate::processes::{call, client, command, download, start, wait_for};

#[tokio::test]
async fn a_run_interrupted_by_kill_9_completes_after_restart_with_identical_bytes() {
    let request = json!({ "profileId": "export-profile::tenant-default::default" });
    kill_mid_run_then_compare_with_an_undisturbed_run(request, None).await;
}

#[tokio::test]
async fn a_trivy_db_run_interrupted_by_kill_9_gives_the_same_database_after_restart() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[tenants.tenant-default.profiles.scanners]\ntargets = [\"advisory\"]\nformats = [\"trivy-db\"]\n",
    )
    .unwrap();
    let request = json!({ "profileId": "export-profile::tenant-default::scanners", "formats": ["trivy-db"] });
    let outputs = kill_mid_run_then_compare_with_an_undisturbed_run(request, Some(config.path())).await;
    assert!(outputs.contains(&"trivy-db.tar.gz".to_owned()), "{outputs:?}");
}

/// Kills the server (SIGKILL) while `request`'s run is going, restarts it, and checks that
/// the run completes with outputs byte-identical to an undisturbed run of the same
/// request; returns the outputs' names.
async fn kill_mid_run_then_compare_with_an_undisturbed_run(
    request: serde_json::Value,
    config: Option<&std::path::Path>,
) -> Vec<String> {
    let config_args: Vec<&str> = match config {
        Some(path) => vec!["--config", path.to_str().unwrap()],
        None => Vec::new(),
    };
    let data = tempfile::tempdir().unwrap();
    // Enough evidence that the run is still going when it is killed.
    for source in ["osv-a", "osv-b", "osv-c"] {
        let status = command(data.path())
            .args(["ingest", "--tenant", "tenant-default", "--source", source])
            .arg(shared_data().join("osv-go"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let api = client(command(data.path()));

    let server = start(command(data.path()), &config_args).await;
    let (address, origin) = (server.address, server.base());
    let base = format!("{origin}/export-center");
    let accepted = call(&api, Method::POST, &format!("{base}/runs"), Some(request.clone())).await;
    let status_url = format!("{origin}{}", accepted["links"]["status"].as_str().unwrap());
    let running = wait_for(&api, &status_url, |s| {
        s["status"] == "succeeded" || s["progress"]["itemsCompleted"].as_u64().unwrap_or(0) > 0
    })
    .await;
    assert_eq!(
        running["status"], "running",
        "the run finished before it could be killed: {running}"
    );
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL: no shutdown, no cleanup.
    server.child.wait().unwrap();
    drop(server);

    // On the same address: the run's links and output URLs name it.
    let mut restart = command(data.path());
    restart.env("EXPORT_CENTER_SERVER__LISTEN", address.to_string());
    let _server = start(restart, &config_args).await;
    let recovered = wait_for(&api, &status_url, |s| {
        s["status"] != "running" && s["status"] != "queued"
    })
    .await;
    assert_eq!(recovered["status"], "succeeded", "{recovered}");
    assert_eq!(recovered["progress"]["itemsCompleted"], 3 * 4291);

    // An undisturbed run of the same request on the same snapshot.
    let again = call(&api, Method::POST, &format!("{base}/runs"), Some(request)).await;
    let again_url = format!("{origin}{}", again["links"]["status"].as_str().unwrap());
    let undisturbed = wait_for(&api, &again_url, |s| s["status"] == "succeeded").await;
    let (a, b) = (download(&recovered).await, download(&undisturbed).await);
    assert_eq!(
        a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        b.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs after recovery");
    }
    a.into_iter().map(|(name, _)| name).collect()
}
