//! `BundleWriter`: appends entries in path order to a tar.zst, tar.gz or zip stream, with
//! every header field that could vary between runs fixed.

use std::io::{self, Read, Write};

use chrono::{DateTime, Datelike, Timelike};
use export_core::BundleFormat;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

use zstd::stream::zio;

use crate::compressor::{Compressor, CONTEXTS};
use crate::BundleError;

/// The Unix mode of every entry: a regular file, `rw-r--r--`.
pub const ENTRY_MODE: u32 = 0o644;

/// The deflate level of `tar.gz` and `zip` bundles (zlib's default).
const DEFLATE_LEVEL: u32 = 6;
/// Entries at least this large get ZIP64 sizes. It is below 4 GiB, with room for deflate's
/// worst-case growth, and depends on the declared size only, so the choice is reproducible.
const ZIP64_THRESHOLD: u64 = 0xF000_0000;

/// An entry written to a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEntry {
    pub path: String,
    pub size: u64,
}

/// Writes a whole bundle: `entries` are `(path, reader, size)` sorted by path, each reader
/// giving exactly `size` bytes. Returns `out` once the archive (and its compression) is complete.
pub fn write_bundle<W: Write>(
    format: BundleFormat,
    mtime: u64,
    entries: Vec<(String, Box<dyn Read + Send>, u64)>,
    out: W,
) -> Result<W, BundleError> {
    let mut writer = BundleWriter::new(format, mtime, out)?;
    for (path, reader, size) in entries {
        writer.append(&path, size, reader)?;
    }
    writer.finish()
}

/// An incremental bundle writer. Entries must be appended in strictly increasing path order
/// (byte-wise, as `str` orders them), and [`BundleWriter::finish`] must be called to complete
/// the archive; after an error the output is unusable and should be discarded.
pub struct BundleWriter<W: Write> {
    archive: Archive<W>,
    mtime: u64,
    entries: Vec<BundleEntry>,
}

enum Archive<W: Write> {
    TarZst(tar::Builder<zio::Writer<W, Compressor>>),
    TarGz(tar::Builder<GzEncoder<W>>),
    Zip {
        writer: ZipWriter<StreamWriter<W>>,
        options: SimpleFileOptions,
    },
}

impl<W: Write> BundleWriter<W> {
    /// Starts a bundle in `format` whose entries all carry `mtime` (Unix seconds: the
    /// snapshot time, or 0).
    pub fn new(format: BundleFormat, mtime: u64, out: W) -> Result<Self, BundleError> {
        let archive = match format {
            BundleFormat::TarZst => {
                let compressor = CONTEXTS.take()?;
                Archive::TarZst(tar::Builder::new(zio::Writer::new(out, compressor)))
            }
            BundleFormat::TarGz => {
                // No file name, mtime 0 and the "unknown" OS byte: nothing of this machine or run.
                let encoder = GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(out, Compression::new(DEFLATE_LEVEL));
                Archive::TarGz(tar::Builder::new(encoder))
            }
            BundleFormat::Zip => {
                let options = SimpleFileOptions::default()
                    .compression_method(CompressionMethod::Deflated)
                    .compression_level(Some(i64::from(DEFLATE_LEVEL)))
                    .unix_permissions(ENTRY_MODE)
                    .last_modified_time(dos_time(mtime));
                Archive::Zip {
                    writer: ZipWriter::new_stream(out),
                    options,
                }
            }
        };
        Ok(Self {
            archive,
            mtime,
            entries: Vec::new(),
        })
    }

    /// Appends the file `path` with the `size` bytes that `reader` gives, streaming them.
    pub fn append(&mut self, path: &str, size: u64, reader: impl Read) -> Result<(), BundleError> {
        check_path(path)?;
        if let Some(previous) = self.entries.last() {
            if path == previous.path {
                return Err(BundleError::Duplicate { path: path.into() });
            }
            if path < previous.path.as_str() {
                return Err(BundleError::Unsorted {
                    previous: previous.path.clone(),
                    path: path.into(),
                });
            }
        }

        let mut data = FullReads(reader.take(size));
        let copied = match &mut self.archive {
            Archive::TarZst(builder) => append_tar(builder, path, size, self.mtime, &mut data)?,
            Archive::TarGz(builder) => append_tar(builder, path, size, self.mtime, &mut data)?,
            Archive::Zip { writer, options } => {
                writer.start_file(path, options.large_file(size >= ZIP64_THRESHOLD))?;
                io::copy(&mut data, writer)?
            }
        };
        let mut rest = data.0.into_inner();
        if copied != size || rest.read(&mut [0u8; 1])? != 0 {
            return Err(BundleError::SizeMismatch {
                path: path.into(),
                size,
            });
        }

        self.entries.push(BundleEntry {
            path: path.into(),
            size,
        });
        Ok(())
    }

    /// The entries appended so far, in order.
    pub fn entries(&self) -> &[BundleEntry] {
        &self.entries
    }

    /// Ends the archive (tar's end-of-archive blocks, zip's central directory), ends the
    /// compression stream, and returns the output.
    pub fn finish(self) -> Result<W, BundleError> {
        let out = match self.archive {
            Archive::TarZst(builder) => {
                let mut compressed = builder.into_inner()?;
                compressed.finish()?;
                // The compressor's context goes back for the next bundle.
                compressed.into_inner().0
            }
            Archive::TarGz(builder) => builder.into_inner()?.finish()?,
            Archive::Zip { writer, .. } => writer.finish()?.into_inner(),
        };
        Ok(out)
    }
}

/// The reproducible ustar header of a regular file: mode `ENTRY_MODE`, owner 0:0 without
/// names, the given mtime. `set_path` splits long paths into ustar's prefix and name; a path
/// that does not fit is an error rather than a GNU long-name entry, to stay plain POSIX.
pub fn tar_header(path: &str, size: u64, mtime: u64) -> std::io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(ENTRY_MODE);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(size);
    // The user and group names stay empty (all NUL), as `new_ustar` leaves them.
    header.set_cksum();
    Ok(header)
}

/// Writes one ustar header and the entry's bytes; returns how many bytes the reader gave.
fn append_tar<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    mtime: u64,
    data: &mut FullReads<io::Take<impl Read>>,
) -> Result<u64, BundleError> {
    let header = tar_header(path, size, mtime).map_err(|err| BundleError::InvalidPath {
        path: path.into(),
        reason: err.to_string(),
    })?;
    builder.append(&header, &mut *data)?;
    Ok(size - data.0.limit())
}

/// Reads that fill the caller's buffer unless the end is reached, so the compressor sees the
/// same sequence of writes however the underlying reader splits its data.
struct FullReads<R>(R);

impl<R: Read> Read for FullReads<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.0.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(filled)
    }
}

/// Refuses paths that stock tools would extract outside the target directory, or as
/// something other than a plain file.
fn check_path(path: &str) -> Result<(), BundleError> {
    let invalid = |reason: &str| {
        Err(BundleError::InvalidPath {
            path: path.into(),
            reason: reason.into(),
        })
    };
    if path.is_empty() {
        return invalid("empty");
    }
    if path.starts_with('/') {
        return invalid("absolute");
    }
    if path.contains(['\\', '\0']) {
        return invalid("contains a backslash or NUL");
    }
    if path.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return invalid("has an empty, `.` or `..` component");
    }
    Ok(())
}

/// `mtime` as an MS-DOS date and time in UTC, clamped to the range DOS can hold (1980-01-01
/// to 2107-12-31); DOS keeps even seconds only.
fn dos_time(mtime: u64) -> zip::DateTime {
    const LATEST: (u16, u8, u8, u8, u8, u8) = (2107, 12, 31, 23, 59, 58);
    let (year, month, day, hour, minute, second) = i64::try_from(mtime)
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .and_then(|at| {
            let year = u16::try_from(at.year()).ok()?;
            Some((
                year,
                at.month() as u8,
                at.day() as u8,
                at.hour() as u8,
                at.minute() as u8,
                at.second() as u8,
            ))
        })
        .unwrap_or(LATEST);
    if year < 1980 {
        return zip::DateTime::default();
    }
    if year > 2107 {
        let (year, month, day, hour, minute, second) = LATEST;
        return zip::DateTime::from_date_and_time(year, month, day, hour, minute, second)
            .expect("the latest DOS time is valid");
    }
    zip::DateTime::from_date_and_time(year, month, day, hour, minute, second)
        .expect("a UTC time between 1980 and 2107 is a valid DOS time")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_time_is_utc_and_clamped() {
        let at = dos_time(1_765_015_207); // 2025-12-06T10:00:07Z
        assert_eq!(
            (
                at.year(),
                at.month(),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            ),
            (2025, 12, 6, 10, 0, 6)
        );
        assert_eq!(dos_time(0), zip::DateTime::default());
        let latest = dos_time(u64::MAX);
        assert_eq!((latest.year(), latest.second()), (2107, 58));
    }

    #[test]
    fn paths_that_escape_or_are_not_files_are_refused() {
        for path in ["", "/etc/passwd", "a/../b", "./a", "a//b", "a/", "a\\b"] {
            assert!(check_path(path).is_err(), "{path:?}");
        }
        for path in ["manifest.json", "data/advisory.ndjson", "..a"] {
            assert!(check_path(path).is_ok(), "{path:?}");
        }
    }
}
