//! The stock tools (GNU tar with zstd, gzip, Info-ZIP unzip) read our bundles back: the files
//! equal the inputs, and the listed metadata is the fixed one.

use std::path::Path;
use std::process::Command;

use export_core::BundleFormat;

use crate::{bundle_of, sample_files};

/// Runs `program args…` in `dir` with `TZ=UTC` and returns its stdout; fails the test with a
/// hint when the tool is not installed.
fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|err| {
            panic!("running `{program}` ({err}): install the stock tools with `apt-get install -y tar zstd gzip unzip`")
        });
    assert!(
        output.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Fails with a hint when `program` cannot run.
fn require(program: &str, version_flag: &str) {
    let found = Command::new(program)
        .arg(version_flag)
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found,
        "`{program}` is missing: install it with `apt-get install -y {program}`"
    );
}

fn write_bundle_file(dir: &Path, format: BundleFormat) -> String {
    let name = format.file_name();
    std::fs::write(dir.join(name), bundle_of(format, &sample_files(), false)).unwrap();
    name.to_owned()
}

fn assert_extracted_files_equal_inputs(dir: &Path) {
    for (path, bytes) in sample_files() {
        let extracted = std::fs::read(dir.join("out").join(&path)).unwrap();
        assert!(extracted == bytes, "{path} differs after extraction");
    }
}

/// Checks a `tar -tv --full-time` listing: one regular file per input, in order, with mode
/// 0644, owner 0/0 and the fixed mtime, and nothing else (no directory entries).
fn assert_tar_listing(listing: &str) {
    let files = sample_files();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), files.len(), "{listing}");
    for (line, (path, bytes)) in lines.iter().zip(&files) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields,
            [
                "-rw-r--r--",
                "0/0",
                &bytes.len().to_string(),
                "2025-12-06",
                "10:00:07",
                path.as_str()
            ],
            "{line}"
        );
    }
}

#[test]
fn tar_zst_bundles_extract_with_tar_and_zstd() {
    require("tar", "--version");
    require("zstd", "--version");
    let dir = tempfile::tempdir().unwrap();
    let name = write_bundle_file(dir.path(), BundleFormat::TarZst);
    std::fs::create_dir(dir.path().join("out")).unwrap();
    run(dir.path(), "tar", &["--zstd", "-xf", &name, "-C", "out"]);
    assert_extracted_files_equal_inputs(dir.path());
    assert_tar_listing(&run(dir.path(), "tar", &["--zstd", "-tvf", &name, "--full-time"]));
    run(dir.path(), "zstd", &["-t", "-q", &name]);
}

#[test]
fn tar_gz_bundles_extract_with_tar_and_gzip() {
    require("tar", "--version");
    require("gzip", "--version");
    let dir = tempfile::tempdir().unwrap();
    let name = write_bundle_file(dir.path(), BundleFormat::TarGz);
    std::fs::create_dir(dir.path().join("out")).unwrap();
    run(dir.path(), "tar", &["-xzf", &name, "-C", "out"]);
    assert_extracted_files_equal_inputs(dir.path());
    assert_tar_listing(&run(dir.path(), "tar", &["-tzvf", &name, "--full-time"]));
    run(dir.path(), "gzip", &["-t", &name]);
}

#[test]
fn zip_bundles_extract_with_unzip() {
    require("unzip", "-v");
    require("zipinfo", "-h");
    let dir = tempfile::tempdir().unwrap();
    let name = write_bundle_file(dir.path(), BundleFormat::Zip);
    run(dir.path(), "unzip", &["-q", &name, "-d", "out"]);
    assert_extracted_files_equal_inputs(dir.path());

    // zipinfo -T: `-rw-r--r--  2.0 unx  1234 bl defN 20251206.100006 path`. DOS time is local
    // time, hence TZ=UTC, and it keeps even seconds only, hence 06 for the odd 07.
    let listing = run(dir.path(), "zipinfo", &["-T", &name]);
    let files = sample_files();
    let lines: Vec<&str> = listing.lines().filter(|line| line.starts_with('-')).collect();
    assert_eq!(lines.len(), files.len(), "no directory entries:\n{listing}");
    for (line, (path, bytes)) in lines.iter().zip(&files) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields[..4],
            ["-rw-r--r--", "2.0", "unx", &bytes.len().to_string()],
            "{line}"
        );
        assert_eq!(fields[5..], ["defN", "20251206.100006", path.as_str()], "{line}");
    }

    let verbose = run(dir.path(), "zipinfo", &["-v", &name]);
    let extra_fields: Vec<Vec<&str>> = verbose
        .lines()
        .filter(|line| line.trim_start().starts_with("length of extra field:"))
        .map(|line| line.split_whitespace().skip(4).collect())
        .collect();
    assert_eq!(
        extra_fields,
        vec![vec!["0", "bytes"]; files.len()],
        "no extra fields:\n{verbose}"
    );
}
