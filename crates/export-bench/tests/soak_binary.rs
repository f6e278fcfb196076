//! The `soak` binary, as `scripts/soak --debug` takes it from the test build: this
//! integration test makes `cargo test` and `cargo nextest run` build it (with the
//! suite's features, into the target directory's `debug/`), and checks that it refuses
//! to start without a server rather than report a soak that never ran.

use std::process::Command;

#[test]
fn the_soak_driver_is_built_and_fails_without_a_server() {
    let token = std::env::temp_dir().join(format!("soak-test-token-{}.json", std::process::id()));
    std::fs::write(&token, r#"{"accessToken": "x.y.z", "dpopKey": "not a key"}"#).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_soak"))
        .args([
            "--base-url",
            "http://127.0.0.1:9",
            "--server-pid",
            "1",
            "--minutes",
            "0.1",
        ])
        .arg("--token-file")
        .arg(&token)
        .output()
        .unwrap();
    std::fs::remove_file(&token).unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).starts_with("soak: "),
        "{output:?}"
    );
}
