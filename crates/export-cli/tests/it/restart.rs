//! A server restart while `exportctl runs create --follow` reads the event stream: the
//! client reconnects with `Last-Event-ID` and shows every event exactly once.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{read_in_background, wait_with_timeout, Server, ServerOptions};

/// Enough advisories that the run is still going when the server is killed.
const GENERATED_ADVISORIES: usize = 5000;

fn generate_advisories(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for idx in 0..count {
        let id = format!("GO-9000-{idx:05}");
        let document = serde_json::json!({
            "schema_version": "1.3.1",
            "id": id,
            "modified": "2024-01-01T00:00:00Z",
            "summary": format!("Generated advisory {idx} for the restart test"),
            "affected": [{
                "package": { "name": format!("example.com/module{idx}"), "ecosystem": "Go" },
                "ranges": [{ "type": "SEMVER", "events": [{ "introduced": "0" }, { "fixed": "1.0.1" }] }],
            }],
        });
        std::fs::write(dir.join(format!("{id}.json")), document.to_string()).unwrap();
    }
}

#[test]
fn a_followed_run_survives_a_server_restart_with_every_event_once() {
    let evidence = tempfile::tempdir().unwrap();
    generate_advisories(evidence.path(), GENERATED_ADVISORIES);
    let mut server = Server::start_with(ServerOptions {
        evidence: vec![("osv-generated".to_owned(), evidence.path().to_owned())],
        ..ServerOptions::default()
    });

    let mut command = server.exportctl();
    command
        .args(["runs", "create", "--profile", "default", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut client = command.spawn().expect("starting exportctl");
    let stderr = read_in_background(client.stderr.take().expect("piped stderr"));
    let (lines_tx, lines) = mpsc::channel();
    let stdout = BufReader::new(client.stdout.take().expect("piped stdout"));
    let reader = std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    // The accepted run, then the first event: the client is reading the stream.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => seen.push(line),
            Err(err) => panic!("no event from exportctl ({err}): {seen:?}\n{}", server.log()),
        }
    }
    let client_was_following = client.try_wait().expect("polling exportctl").is_none();
    server.kill();
    // Down long enough for the client to find the port closed at least once.
    std::thread::sleep(Duration::from_millis(300));
    server.restart();

    let status = wait_with_timeout(&mut client, Duration::from_secs(120));
    reader.join().expect("reading stdout");
    seen.extend(lines.try_iter());
    let stderr = stderr.join().expect("reading stderr");
    let transcript = format!("{}\n--- stderr\n{stderr}", seen.join("\n"));
    assert_eq!(status.code(), Some(0), "{transcript}");

    let accepted: serde_json::Value = serde_json::from_str(&seen[0]).expect("the accepted run");
    assert!(accepted["runId"].is_string(), "{transcript}");
    let events: Vec<serde_json::Value> = seen[1..]
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    let ids: Vec<u64> = events
        .iter()
        .map(|event| {
            event["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("event without id: {event}"))
        })
        .collect();
    let expected: Vec<u64> = (1..=ids.len() as u64).collect();
    assert_eq!(ids, expected, "every event once, none lost: {transcript}");
    assert_eq!(events[0]["event"], "started", "{transcript}");
    assert_eq!(events.last().unwrap()["event"], "completed", "{transcript}");
    if client_was_following {
        assert!(stderr.contains("reconnecting in"), "{transcript}");
    }
}
