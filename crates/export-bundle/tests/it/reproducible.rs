//! Equal inputs give byte-identical bundles, whatever the readers' pacing.

use std::io::{self, Read};

use export_bundle::{write_bundle, BundleWriter};
use export_core::BundleFormat;

use crate::{bundle_of, sample_files, FORMATS, MTIME};

#[test]
fn two_writes_of_the_same_files_are_byte_identical() {
    let files = sample_files();
    for format in FORMATS {
        let first = bundle_of(format, &files, false);
        let second = bundle_of(format, &files, false);
        assert!(first == second, "{format:?} bundles differ");
        assert!(
            first.len() < 400_000,
            "{format:?} is compressed: {} bytes",
            first.len()
        );
    }
}

#[test]
fn output_does_not_depend_on_how_readers_split_their_data() {
    let files = sample_files();
    for format in FORMATS {
        assert!(
            bundle_of(format, &files, false) == bundle_of(format, &files, true),
            "{format:?} bundles differ"
        );
    }
}

#[test]
fn gzip_header_has_no_name_and_no_time() {
    let bundle = bundle_of(BundleFormat::TarGz, &sample_files(), false);
    assert_eq!(
        &bundle[..4],
        &[0x1f, 0x8b, 8, 0],
        "magic, deflate, no flags (so no FNAME)"
    );
    assert_eq!(&bundle[4..8], &[0, 0, 0, 0], "mtime 0");
    assert_eq!(bundle[9], 255, "OS unknown");
}

#[test]
fn zstd_frame_is_the_standard_one() {
    let bundle = bundle_of(BundleFormat::TarZst, &sample_files(), false);
    assert_eq!(&bundle[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
}

#[test]
fn an_empty_bundle_is_valid_and_reproducible() {
    for format in FORMATS {
        let first = write_bundle(format, 0, Vec::new(), Vec::new()).unwrap();
        assert_eq!(first, write_bundle(format, 0, Vec::new(), Vec::new()).unwrap());
    }
}

/// A reader of `len` bytes that never holds them all, to show entries are streamed.
struct Pattern {
    remaining: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        for (idx, byte) in buf[..n].iter_mut().enumerate() {
            *byte = (self.remaining.wrapping_sub(idx as u64) % 251) as u8;
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Counts bytes and keeps none of them.
#[derive(Default)]
struct Counter(u64);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn large_entries_stream_into_a_writer_that_keeps_nothing() {
    const SIZE: u64 = 48 << 20;
    for format in FORMATS {
        let mut writer = BundleWriter::new(format, MTIME, Counter::default()).unwrap();
        writer
            .append("big.bin", SIZE, Pattern { remaining: SIZE })
            .unwrap();
        let out = writer.finish().unwrap();
        assert!(out.0 > 0 && out.0 < SIZE, "{format:?} wrote {} bytes", out.0);
    }
}
