//! Hostile and tampered bundles, black-box through the `export-center verify` binary: links,
//! devices, escaping paths, files and `checksums.txt` lines the signed manifest does not name,
//! and decompression bombs (SPEC §17).

use std::io::{Cursor, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use export_core::{checksums_txt, BundleFormat, Sha256Digest};

use super::{Fixture, RunSpec, FORMATS};

/// One entry of a hand-made archive.
enum Item {
    File(String, Vec<u8>),
    Symlink(String, String),
    HardLink(String, String),
    Fifo(String),
}

impl Item {
    fn path(&self) -> &str {
        match self {
            Self::File(path, _) | Self::Symlink(path, _) | Self::HardLink(path, _) | Self::Fifo(path) => path,
        }
    }
}

/// The run's own bundle entries (data files, manifest, envelope, checksums), as files.
fn run_items(fixture: &Fixture) -> Vec<Item> {
    [
        "advisory.json",
        "checksums.txt",
        "manifest.dsse.json",
        "manifest.json",
        "vex-osv.ndjson",
    ]
    .into_iter()
    .map(|name| Item::File(name.to_owned(), std::fs::read(fixture.path(name)).unwrap()))
    .collect()
}

/// Writes `items` as an archive of `format`, names and link targets taken byte for byte
/// (no checks: the point is to write what a producer never would).
fn archive(format: BundleFormat, items: &[Item]) -> Vec<u8> {
    match format {
        BundleFormat::TarZst => {
            let encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            tar_of(items, encoder).finish().unwrap()
        }
        BundleFormat::TarGz => {
            let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            tar_of(items, encoder).finish().unwrap()
        }
        BundleFormat::Zip => {
            let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
            let options = zip::write::SimpleFileOptions::default();
            for item in items {
                match item {
                    Item::File(path, bytes) => {
                        writer.start_file(path.as_str(), options).unwrap();
                        writer.write_all(bytes).unwrap();
                    }
                    Item::Symlink(path, target) => writer
                        .add_symlink(path.as_str(), target.as_str(), options)
                        .unwrap(),
                    Item::HardLink(..) | Item::Fifo(..) => panic!("not written to zip by these tests"),
                }
            }
            writer.finish().unwrap().into_inner()
        }
    }
}

fn tar_of<W: Write>(items: &[Item], out: W) -> W {
    let mut builder = tar::Builder::new(out);
    for item in items {
        let mut header = tar::Header::new_ustar();
        let name = item.path().as_bytes();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_mode(0o644);
        let data: &[u8] = match item {
            Item::File(_, bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                bytes
            }
            Item::Symlink(_, target) | Item::HardLink(_, target) => {
                header.set_entry_type(if matches!(item, Item::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                &[]
            }
            Item::Fifo(_) => {
                header.set_entry_type(tar::EntryType::Fifo);
                &[]
            }
        };
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Runs `export-center verify <target> --key <key>`: the exit code and the output.
fn run_verify(target: &Path, key: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_export-center"))
        .arg("verify")
        .arg(target)
        .arg("--key")
        .arg(key)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap(), text)
}

/// Writes `bytes` as `bundle.<ext>` in a directory of its own and verifies that file.
fn verify_bundle(fixture: &Fixture, format: BundleFormat, bytes: &[u8]) -> (i32, String) {
    let dir = fixture.root.join(format!("case-{}", super::rand_suffix()));
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join(format.file_name());
    std::fs::write(&file, bytes).unwrap();
    run_verify(&file, &fixture.key.public_path)
}

#[track_caller]
fn assert_outcome((code, text): (i32, String), expected: i32, needle: &str) {
    assert_eq!(code, expected, "{text}");
    assert!(text.contains(needle), "output lacks {needle:?}:\n{text}");
}

#[test]
fn the_untouched_hand_made_bundles_verify() {
    // The archive writer of these tests, with nothing hostile in it, gives bundles that verify.
    let fixture = Fixture::new(RunSpec::default());
    for format in FORMATS {
        let bytes = archive(format, &run_items(&fixture));
        assert_outcome(verify_bundle(&fixture, format, &bytes), 0, "verified");
    }
}

#[test]
fn links_devices_and_escaping_paths_in_any_bundle_exit_2_before_anything_is_read() {
    let fixture = Fixture::new(RunSpec::default());
    for format in FORMATS {
        let mut cases = vec![
            (
                Item::Symlink("advisory.json".into(), "/etc/passwd".into()),
                "refusing entry `advisory.json`: it is a symbolic link",
            ),
            (
                Item::File("../evil.json".into(), b"{}".to_vec()),
                "refusing entry `../evil.json`",
            ),
            (
                Item::File("/abs/evil.json".into(), b"{}".to_vec()),
                "refusing entry `/abs/evil.json`: absolute path",
            ),
        ];
        // The zip writer keeps only permission bits, so FIFOs and hard links are tar's.
        if format != BundleFormat::Zip {
            cases.push((
                Item::Fifo("advisory.json".into()),
                "refusing entry `advisory.json`: it is a FIFO",
            ));
            cases.push((
                Item::HardLink("advisory.json".into(), "/etc/passwd".into()),
                "refusing entry `advisory.json`: it is a hard link",
            ));
        }
        for (hostile, needle) in cases {
            // The hostile entry comes first, the genuine files after it (or instead of it).
            let mut items: Vec<Item> = run_items(&fixture)
                .into_iter()
                .filter(|item| item.path() != hostile.path())
                .collect();
            items.insert(0, hostile);
            let bytes = archive(format, &items);
            assert_outcome(verify_bundle(&fixture, format, &bytes), 2, needle);
        }
    }
}

#[test]
fn a_duplicate_entry_exits_2() {
    let fixture = Fixture::new(RunSpec::default());
    for format in [BundleFormat::TarZst, BundleFormat::TarGz] {
        let mut items = run_items(&fixture);
        items.push(Item::File("advisory.json".into(), b"{\"evil\":true}".to_vec()));
        let bytes = archive(format, &items);
        assert_outcome(
            verify_bundle(&fixture, format, &bytes),
            2,
            "refusing entry `advisory.json`: it appears twice",
        );
    }
}

/// `checksums.txt` over the run's files plus `extra`.
fn checksums_with(fixture: &Fixture, extra: &[(&str, Sha256Digest)]) -> Vec<u8> {
    let mut entries: Vec<(String, Sha256Digest)> = [
        "advisory.json",
        "manifest.dsse.json",
        "manifest.json",
        "vex-osv.ndjson",
    ]
    .into_iter()
    .map(|name| {
        (
            name.to_owned(),
            Sha256Digest::of(&std::fs::read(fixture.path(name)).unwrap()),
        )
    })
    .collect();
    entries.extend(extra.iter().map(|(name, digest)| ((*name).to_owned(), *digest)));
    checksums_txt(entries.iter().map(|(name, digest)| (name.as_str(), *digest)))
}

#[test]
fn an_extra_file_listed_in_the_checksums_exits_2_in_a_bundle_and_in_a_directory() {
    let fixture = Fixture::new(RunSpec::default());
    let extra = b"{\"planted\":true}".to_vec();
    let checksums = checksums_with(&fixture, &[("planted.json", Sha256Digest::of(&extra))]);
    for format in FORMATS {
        let mut items: Vec<Item> = run_items(&fixture)
            .into_iter()
            .filter(|item| item.path() != "checksums.txt")
            .collect();
        items.push(Item::File("checksums.txt".into(), checksums.clone()));
        items.push(Item::File("planted.json".into(), extra.clone()));
        items.sort_by(|a, b| a.path().cmp(b.path()));
        let bytes = archive(format, &items);
        let (code, text) = verify_bundle(&fixture, format, &bytes);
        assert_outcome(
            (code, text.clone()),
            2,
            &format!(
                "planted.json (in {}) is not named by the signed manifest",
                format.file_name()
            ),
        );
        assert!(
            text.contains("lists planted.json, which the signed manifest does not name"),
            "{text}"
        );
    }

    std::fs::write(fixture.path("planted.json"), &extra).unwrap();
    std::fs::write(fixture.path("checksums.txt"), &checksums).unwrap();
    assert_outcome(
        run_verify(&fixture.run, &fixture.key.public_path),
        2,
        "planted.json is not named by the signed manifest",
    );
}

#[test]
fn a_checksums_line_listed_twice_exits_2() {
    // An extra line naming a file that is there and matches.
    let fixture = Fixture::new(RunSpec::default());
    let manifest = Sha256Digest::of(&std::fs::read(fixture.path("manifest.json")).unwrap());
    let mut doubled = checksums_with(&fixture, &[]);
    doubled.extend(checksums_txt([("manifest.json", manifest)]));
    std::fs::write(fixture.path("checksums.txt"), &doubled).unwrap();
    assert_outcome(
        run_verify(&fixture.run, &fixture.key.public_path),
        2,
        "manifest.json is listed twice in checksums.txt",
    );
}

#[test]
fn a_checksums_line_that_disagrees_with_the_manifest_exits_2_even_when_its_file_is_sealed() {
    // The data file itself cannot be compared: it is sealed in an encrypted bundle and no
    // identity is given.
    let probe = Fixture::new(RunSpec::default());
    let (_, recipient) = probe.age_identity();
    let sealed = Fixture::new(RunSpec {
        encrypt_to: Some(recipient),
        ..RunSpec::default()
    });
    let text = std::fs::read_to_string(sealed.path("checksums.txt")).unwrap();
    let forged = Sha256Digest::of(b"forged");
    let text: String = text
        .lines()
        .map(|line| match line.strip_suffix("  advisory.json") {
            Some(_) => format!("{}  advisory.json\n", forged.hex()),
            None => format!("{line}\n"),
        })
        .collect();
    std::fs::write(sealed.path("checksums.txt"), text).unwrap();
    assert_outcome(
        run_verify(&sealed.run, &sealed.key.public_path),
        2,
        &format!("checksums.txt lists advisory.json with sha256 {}", forged.hex()),
    );
}

/// A tar stream whose first entry, `advisory.json`, declares and holds `size` zero bytes,
/// compressed as `format`: a few hundred kilobytes that expand to `size`.
fn bomb(format: BundleFormat, size: u64) -> Vec<u8> {
    fn stream_zeros(out: &mut impl Write, size: u64) {
        let zeros = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let chunk = left.min(zeros.len() as u64) as usize;
            out.write_all(&zeros[..chunk]).unwrap();
            left -= chunk as u64;
        }
    }
    let mut header = tar::Header::new_ustar();
    header.set_path("advisory.json").unwrap();
    header.set_mode(0o644);
    header.set_size(size);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    match format {
        BundleFormat::TarZst => {
            let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            encoder.write_all(header.as_bytes()).unwrap();
            stream_zeros(&mut encoder, size);
            encoder.finish().unwrap()
        }
        BundleFormat::TarGz => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(header.as_bytes()).unwrap();
            stream_zeros(&mut encoder, size);
            encoder.finish().unwrap()
        }
        BundleFormat::Zip => {
            let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
            let options = zip::write::SimpleFileOptions::default().compression_level(Some(9));
            writer.start_file("advisory.json", options).unwrap();
            stream_zeros(&mut writer, size);
            writer.finish().unwrap().into_inner()
        }
    }
}

#[test]
fn decompression_bombs_are_refused_at_once() {
    let fixture = Fixture::new(RunSpec::default());
    // zstd packs 2 GiB of zeros into about 64 KiB; deflate does about 1000:1, so its bombs
    // are smaller to keep the test fast, and still far past the 200:1 ratio.
    for (format, size) in [
        (BundleFormat::TarZst, 2u64 << 30),
        (BundleFormat::TarGz, 256 << 20),
        (BundleFormat::Zip, 256 << 20),
    ] {
        let bytes = bomb(format, size);
        assert!(bytes.len() < 1 << 20, "{format:?} bomb is {} bytes", bytes.len());
        let started = Instant::now();
        let outcome = verify_bundle(&fixture, format, &bytes);
        let took = started.elapsed();
        assert_outcome(outcome, 1, "refused as a possible decompression bomb");
        assert!(took < Duration::from_secs(5), "{format:?} took {took:?}");
    }
}

#[test]
fn zeros_after_the_end_of_a_signed_tar_are_refused_within_the_bound() {
    // A genuine signed bundle followed, inside the same compressed stream, by 2 GiB of zeros:
    // nothing declares them, so the bound on what the stream expands to must stop the read.
    let fixture = Fixture::new(RunSpec::default());
    let mut plain = tar_of(&run_items(&fixture), Vec::new());
    plain.extend_from_slice(&[0u8; 1024]);
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    encoder.write_all(&plain).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..2048 {
        encoder.write_all(&zeros).unwrap();
    }
    let bytes = encoder.finish().unwrap();
    let started = Instant::now();
    let outcome = verify_bundle(&fixture, BundleFormat::TarZst, &bytes);
    assert_outcome(outcome, 1, "refused as a possible decompression bomb");
    assert!(started.elapsed() < Duration::from_secs(5));
}
