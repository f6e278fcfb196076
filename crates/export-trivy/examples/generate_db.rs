//! Builds a database from N generated OSV advisories across the eight ecosystems and says
//! how long it took: `cargo run --release -p export-trivy --example generate_db -- 100000 [out.tar.gz]`
//! (a starting point for `scripts/bench --trivy`; run it under `/usr/bin/time -v` for the peak RSS).

use std::time::Instant;

use export_core::record::{DocumentFormat, EvidenceRecord};
use export_core::target::Kind;
use export_core::{canonicalize, Sha256Digest, SourceName};
use export_trivy::{TrivyDbBuilder, TrivyDbOptions};
use serde_json::json;

const ECOSYSTEMS: [(&str, &str); 8] = [
    ("Go", "example.com/mod"),
    ("PyPI", "py.pkg"),
    ("npm", "@scope/pkg"),
    ("Maven", "com.example:artifact"),
    ("crates.io", "crate"),
    ("RubyGems", "gem"),
    ("NuGet", "Example.Package"),
    ("Packagist", "vendor/package"),
];

fn advisory(index: usize) -> EvidenceRecord {
    let (ecosystem, stem) = ECOSYSTEMS[index % ECOSYSTEMS.len()];
    // About four advisories per package, as in real feeds.
    let name = format!("{stem}-{:06}", index / 4);
    let id = format!("EC-GEN-{index:07}");
    let document = json!({
        "schema_version": "1.6.0",
        "id": id,
        "aliases": [format!("CVE-2099-{index:07}"), format!("GHSA-gen{index:07}")],
        "modified": "2026-11-01T00:00:00Z",
        "published": "2026-10-01T00:00:00Z",
        "summary": format!("Generated advisory {index} for {name}"),
        "details": "A generated description that is about as long as a short real one. ".repeat(4),
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{
            "package": {"ecosystem": ecosystem, "name": name},
            "ranges": [{"type": "ECOSYSTEM", "events": [
                {"introduced": format!("1.{}.0", index % 10)}, {"fixed": format!("1.{}.3", index % 10)},
                {"introduced": "2.0.0"}, {"fixed": format!("2.0.{}", index % 7 + 1)}
            ]}]
        }],
        "references": [{"type": "ADVISORY", "url": format!("https://export-center.example/advisories/{id}")}],
        "database_specific": {"severity": "HIGH", "cwe_ids": ["CWE-79"]}
    });
    let document = canonicalize(&serde_json::to_vec(&document).unwrap()).unwrap();
    EvidenceRecord {
        kind: Kind::Advisory,
        source: SourceName::parse(["osv-a", "osv-b"][index % 2]).unwrap(),
        format: DocumentFormat::Osv,
        id,
        modified: None,
        digest: Sha256Digest::of(&document),
        document,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(100_000, |n| n.parse().expect("N is a number"));
    let out = args.next();
    let snapshot_time = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
        .unwrap()
        .to_utc();

    // Generating and canonicalizing the records alone, to tell it apart from the builder's time.
    let started = Instant::now();
    for index in 0..count {
        std::hint::black_box(advisory(index));
    }
    let generating = started.elapsed();

    let started = Instant::now();
    let mut builder = TrivyDbBuilder::new(TrivyDbOptions::new(snapshot_time));
    for index in 0..count {
        builder.add(&advisory(index));
    }
    let added = started.elapsed();
    let rss_after_add = memory("VmRSS");
    let db = builder.finish().unwrap();
    let total = started.elapsed();
    let summary = &db.summary;
    println!(
        "{count} advisories: {} vulnerabilities, {} package advisories; trivy.db {:.1} MiB, tarball {:.1} MiB; \
         add {:.2} s (of which about {:.2} s generating the records), finish {:.2} s, total {:.2} s; \
         {:.1} MB/s of trivy.db (generation excluded)",
        summary.vulnerabilities,
        summary.package_advisories,
        summary.db_bytes as f64 / 1048576.0,
        db.tarball.len() as f64 / 1048576.0,
        added.as_secs_f64(),
        generating.as_secs_f64(),
        (total - added).as_secs_f64(),
        total.as_secs_f64(),
        summary.db_bytes as f64 / 1e6 / (total - generating).as_secs_f64(),
    );
    println!(
        "RSS after add {:.0} MiB; peak RSS {:.0} MiB (Linux /proc/self/status)",
        rss_after_add,
        memory("VmHWM")
    );
    if let Some(out) = out {
        std::fs::write(out, &db.tarball).unwrap();
    }
}

/// A memory figure of this process from /proc/self/status, in MiB (0 where there is none).
fn memory(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches(" kB").parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}
