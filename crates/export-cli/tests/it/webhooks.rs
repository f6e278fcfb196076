//! `exportctl webhooks` against a real server: create, list, show, deliveries,
//! rotate-secret and delete, as tables and as JSON.

use crate::support::{run, Server, TENANT};

/// `exportctl` with a token that also has `export:admin`.
fn admin(server: &Server, args: &[&str]) -> crate::support::Run {
    scoped(server, "export:read export:write export:admin", args)
}

/// `exportctl` with a token of `scopes` (space-separated).
fn scoped(server: &Server, scopes: &str, args: &[&str]) -> crate::support::Run {
    let token = server
        .data_dir()
        .join(format!("token-{}.json", scopes.replace([' ', ':'], "-")));
    if !token.exists() {
        let output = server
            .command("token")
            .args(["--tenant", TENANT, "--scopes", scopes])
            .output()
            .expect("running export-center token");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(&token, &output.stdout).expect("writing the token file");
    }
    let mut command = server.exportctl();
    command.env("EXPORTCTL_TOKEN_FILE", &token).args(args);
    run(command)
}

#[test]
fn webhooks_are_created_listed_rotated_and_deleted() {
    let server = Server::start();
    let url = "https://hooks.example.com/export-center";
    let args = [
        "webhooks",
        "create",
        "--url",
        url,
        "--event",
        "run.succeeded",
        "--event",
        "run.failed",
    ];
    let refused = scoped(&server, "export:read export:write", &args);
    assert_ne!(refused.code, 0, "needs export:admin: {refused}");
    assert!(refused.stderr.contains("export:admin"), "{refused}");

    let mut with_json = args.to_vec();
    with_json.push("--json");
    let created = admin(&server, &with_json);
    created.success();
    let created = created.json();
    let id = created["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("export-webhook::tenant-default::"), "{created}");
    assert_eq!(
        created["events"],
        serde_json::json!(["run.succeeded", "run.failed"])
    );
    let secret = created["secret"].as_str().expect("the secret, once").to_owned();

    let listed = server.run(&["webhooks", "list"]);
    listed.success();
    let header: Vec<&str> = listed
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["ID", "URL", "EVENTS", "CREATED"]);
    assert!(
        listed.stdout.contains(&id) && listed.stdout.contains(url),
        "{listed}"
    );
    assert!(!listed.stdout.contains(&secret), "{listed}");

    let shown = server.run(&["webhooks", "show", &id, "--json"]);
    shown.success();
    assert_eq!(shown.json()["url"], url);
    assert!(shown.json().get("secret").is_none(), "{shown}");

    let deliveries = server.run(&["webhooks", "deliveries", &id, "--json"]);
    deliveries.success();
    assert_eq!(deliveries.json()["items"], serde_json::json!([]));

    let rotated = admin(&server, &["webhooks", "rotate-secret", &id]);
    rotated.success();
    assert!(rotated.stdout.contains("secret: whsec_"), "{rotated}");
    assert!(!rotated.stdout.contains(&secret), "{rotated}");

    let deleted = admin(&server, &["webhooks", "delete", &id]);
    deleted.success();
    assert!(deleted.stdout.contains(&format!("deleted {id}")), "{deleted}");
    let gone = server.run(&["webhooks", "show", &id]);
    assert_ne!(gone.code, 0, "{gone}");
    assert!(gone.stderr.contains("not found"), "{gone}");
}
