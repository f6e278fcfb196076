//! The server's allocator: jemalloc for the whole process (ARCHITECTURE.md,
//! "Dependencies"), so operators tune it with `MALLOC_CONF` (docs/OPERATIONS.md).

use std::process::Command;

/// jemalloc reads `MALLOC_CONF` only when it is the process's `malloc` (unprefixed): as
/// the Rust allocator alone it would read `_RJEM_MALLOC_CONF` and leave SQLite's and
/// zstd's memory to glibc. It reports a setting it does not know on stderr.
#[test]
fn the_whole_process_allocates_from_jemalloc() {
    let output = Command::new(env!("CARGO_BIN_EXE_export-center"))
        .arg("--version")
        .env("MALLOC_CONF", "no_such_option:1")
        .output()
        .expect("running export-center --version");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("<jemalloc>: Invalid conf pair: no_such_option:1"),
        "MALLOC_CONF was not read by jemalloc, so it is not the process's malloc: {stderr:?}"
    );
}
