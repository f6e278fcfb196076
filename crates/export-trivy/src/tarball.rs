//! `metadata.json` and the `trivy-db.tar.gz` layer: fixed tar headers and a fixed gzip
//! header, so the same database gives the same bytes.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use export_bundle::tar_header;
use flate2::{Compression, GzBuilder};

/// zlib's default level, fixed here so that a change of flate2's default cannot change bytes.
const DEFLATE_LEVEL: u32 = 6;

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

/// Writes gzip(tar) holding `trivy.db` (`db_size` bytes, which `write_db` streams into
/// the archive) then `metadata.json`: ustar headers with mode 0644, uid/gid 0, empty user
/// and group names and `mtime`; a gzip header with mtime 0, no file name and the "unknown"
/// OS byte.
pub(crate) fn write_tarball<W: Write, E: From<io::Error>>(
    out: W,
    mtime: u64,
    db_size: u64,
    write_db: impl FnOnce(&mut dyn Write) -> Result<(), E>,
    metadata: &[u8],
) -> Result<W, E> {
    let encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(out, Compression::new(DEFLATE_LEVEL));
    let mut builder = tar::Builder::new(encoder);
    // The database goes straight into the archive after its header; its size, whole pages,
    // is a multiple of tar's 512-byte blocks, so no padding follows it.
    assert_eq!(db_size % 512, 0, "trivy.db is whole pages");
    builder
        .get_mut()
        .write_all(tar_header("trivy.db", db_size, mtime)?.as_bytes())?;
    let mut counted = CountingWriter {
        inner: builder.get_mut(),
        bytes: 0,
    };
    write_db(&mut counted)?;
    if counted.bytes != db_size {
        let message = format!("trivy.db is {} bytes, not the {db_size} announced", counted.bytes);
        return Err(io::Error::other(message).into());
    }
    builder.append(
        &tar_header("metadata.json", metadata.len() as u64, mtime)?,
        metadata,
    )?;
    Ok(builder.into_inner()?.finish()?)
}

/// Counts what goes through, so that a size mismatch is an error, not a corrupt archive.
struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
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
        let db = vec![7u8; 1024];
        let write_db = |out: &mut dyn Write| out.write_all(&db);
        let tarball = write_tarball(Vec::new(), 1_700_000_000, 1024, write_db, b"{}\n").unwrap();
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
                ("trivy.db".to_owned(), db.clone()),
                ("metadata.json".to_owned(), b"{}\n".to_vec())
            ]
        );
    }

    #[test]
    fn a_database_of_another_size_than_announced_is_an_error() {
        let write_db = |out: &mut dyn Write| out.write_all(&[0; 512]);
        let err = write_tarball::<_, io::Error>(Vec::new(), 0, 1024, write_db, b"{}").unwrap_err();
        assert_eq!(err.to_string(), "trivy.db is 512 bytes, not the 1024 announced");
    }
}
