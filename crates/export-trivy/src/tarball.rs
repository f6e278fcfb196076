//! `metadata.json` and the `trivy-db.tar.gz` layer: fixed tar headers and a fixed gzip
//! header, so the same database gives the same bytes.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use flate2::{Compression, GzBuilder};

/// zlib's default level, fixed here so that a change of flate2's default cannot change bytes.
const DEFLATE_LEVEL: u32 = 6;
/// Trivy opens `trivy.db` read-write, so the files are writable by their owner.
const ENTRY_MODE: u32 = 0o644;

/// trivy-db's `metadata.json` (`pkg/metadata/metadata.go`), in its Go field order, written
/// as Go's `json.Encoder` does (one line and a newline).
pub(crate) fn metadata_json(snapshot_time: DateTime<Utc>, next_update_hours: u32) -> Vec<u8> {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let next_update = snapshot_time + TimeDelta::hours(i64::from(next_update_hours));
    format!(
        "{{\"Version\":2,\"NextUpdate\":\"{}\",\"UpdatedAt\":\"{}\",\"DownloadedAt\":\"{}\"}}\n",
        time(next_update),
        time(snapshot_time),
        time(snapshot_time)
    )
    .into_bytes()
}

/// Writes gzip(tar) holding `trivy.db` then `metadata.json`: ustar headers with mode 0644,
/// uid/gid 0, empty user and group names and `mtime`; a gzip header with mtime 0, no file
/// name and the "unknown" OS byte.
pub(crate) fn write_tarball<W: Write>(out: W, mtime: u64, db: &[u8], metadata: &[u8]) -> io::Result<W> {
    let encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(out, Compression::new(DEFLATE_LEVEL));
    let mut builder = tar::Builder::new(encoder);
    for (path, data) in [("trivy.db", db), ("metadata.json", metadata)] {
        let mut header = tar::Header::new_ustar();
        header.set_path(path)?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(ENTRY_MODE);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data)?;
    }
    builder.into_inner()?.finish()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn metadata_has_schema_2_the_snapshot_time_and_the_next_update() {
        let snapshot = DateTime::parse_from_rfc3339("2026-12-03T06:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            String::from_utf8(metadata_json(snapshot, 24)).unwrap(),
            "{\"Version\":2,\"NextUpdate\":\"2026-12-04T06:00:00Z\",\"UpdatedAt\":\"2026-12-03T06:00:00Z\",\
             \"DownloadedAt\":\"2026-12-03T06:00:00Z\"}\n"
        );
    }

    #[test]
    fn the_tarball_holds_exactly_the_two_files_with_fixed_headers() {
        let tarball = write_tarball(Vec::new(), 1_700_000_000, b"db bytes", b"{}\n").unwrap();
        // gzip header: magic, deflate, no flags (no file name), mtime 0, OS 255.
        assert_eq!(tarball[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&tarball[..]));
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            seen.push((entry.path().unwrap().display().to_string(), data));
            assert_eq!(header.mode().unwrap(), 0o644);
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
            assert_eq!(header.mtime().unwrap(), 1_700_000_000);
            assert_eq!(header.username().unwrap(), Some(""));
        }
        assert_eq!(
            seen,
            [
                ("trivy.db".to_owned(), b"db bytes".to_vec()),
                ("metadata.json".to_owned(), b"{}\n".to_vec())
            ]
        );
    }
}
