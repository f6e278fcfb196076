//! Integration tests of export-bundle: reproducibility, extraction with the stock tools, and
//! the entry rules.

mod entries;
mod reproducible;
mod stock_tools;

use std::io::Read;

use export_bundle::write_bundle;
use export_core::BundleFormat;

const FORMATS: [BundleFormat; 3] = [BundleFormat::TarZst, BundleFormat::TarGz, BundleFormat::Zip];

/// 2025-12-06T10:00:07Z, an odd second on purpose (DOS time keeps even seconds only).
const MTIME: u64 = 1_765_015_207;

/// Bundle-like files, sorted by path: small JSON, an empty file, and a data file large enough
/// to span many compression blocks.
fn sample_files() -> Vec<(String, Vec<u8>)> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut ndjson = Vec::new();
    for idx in 0..20_000 {
        // xorshift: varied but reproducible content that does not compress to nothing.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ndjson.extend_from_slice(format!("{{\"id\":\"GO-{idx}\",\"digest\":\"{state:016x}\"}}\n").as_bytes());
    }
    vec![
        ("advisory.ndjson".into(), ndjson),
        ("checksums.txt".into(), b"0000  advisory.ndjson\n".to_vec()),
        ("empty.json".into(), Vec::new()),
        (
            "manifest.dsse.json".into(),
            br#"{"payload":"e30=","payloadType":"t","signatures":[]}"#.to_vec(),
        ),
        (
            "manifest.json".into(),
            br#"{"schema":"export-center/manifest/v1"}"#.to_vec(),
        ),
        ("nested/vex-redhat-csaf.json".into(), br#"{"items":[]}"#.to_vec()),
    ]
}

/// A reader that hands out its bytes in pseudo-random small pieces, as a network stream might.
struct Trickle {
    data: std::io::Cursor<Vec<u8>>,
    seed: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.seed = self.seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = 1 + (self.seed >> 16) % 3000;
        let len = buf.len().min(n);
        self.data.read(&mut buf[..len])
    }
}

fn bundle_of(format: BundleFormat, files: &[(String, Vec<u8>)], trickle: bool) -> Vec<u8> {
    let entries = files
        .iter()
        .map(|(path, bytes)| {
            let reader: Box<dyn Read + Send> = if trickle {
                Box::new(Trickle {
                    data: std::io::Cursor::new(bytes.clone()),
                    seed: bytes.len(),
                })
            } else {
                Box::new(std::io::Cursor::new(bytes.clone()))
            };
            (path.clone(), reader, bytes.len() as u64)
        })
        .collect();
    write_bundle(format, MTIME, entries, Vec::new()).unwrap()
}
