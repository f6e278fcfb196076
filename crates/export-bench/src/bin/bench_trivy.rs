//! `bench-trivy`: the Trivy database build of SPEC §14 (issue 14), `scripts/bench --trivy`.
//!
//! Generates `--advisories` OSV advisories across the eight ecosystems Trivy scans (Go,
//! PyPI, npm, Maven, crates.io, RubyGems, NuGet, Packagist; about 2 KiB each, two
//! advisories per package, CVE aliases and CVSS vectors like real ones), one at a time,
//! and feeds them to the same `TrivyDbBuilder` a run uses, then writes
//! `trivy-db.tar.gz` to `--out`. Only the builder is timed (generating a record is not);
//! the peak RSS is the whole process's (`VmHWM`). With `--project DIR` it also writes a
//! `package-lock.json` of `--project-deps` npm dependencies drawn from the generated
//! packages (every other one at a vulnerable version) for Trivy to scan.
//!
//! Prints one JSON object: advisories, records, vulnerabilities, package advisories,
//! database and tarball bytes, build seconds, MB/s of database written, peak RSS.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use export_core::record::{DocumentFormat, EvidenceRecord};
use export_core::target::Kind;
use export_core::{canonicalize, Sha256Digest, SourceName};
use export_trivy::{TrivyDbBuilder, TrivyDbOptions};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
struct Args {
    /// How many advisories to generate.
    #[arg(long, default_value_t = 100_000)]
    advisories: usize,
    /// Where to write `trivy-db.tar.gz`.
    #[arg(long)]
    out: PathBuf,
    /// A directory to write a `package-lock.json` into, for Trivy to scan.
    #[arg(long)]
    project: Option<PathBuf>,
    /// How many npm dependencies the project has.
    #[arg(long, default_value_t = 1000)]
    project_deps: usize,
}

/// The ecosystems, in the order advisories are spread over them, with a package name.
const ECOSYSTEMS: [&str; 8] = [
    "Go",
    "PyPI",
    "npm",
    "Maven",
    "crates.io",
    "RubyGems",
    "NuGet",
    "Packagist",
];
const NPM: usize = 2;

fn package_name(ecosystem: usize, package: usize) -> String {
    match ECOSYSTEMS[ecosystem] {
        "Go" => format!("example.com/bench/module{package}"),
        "PyPI" => format!("bench-dist-{package}"),
        "npm" => format!("bench-pkg-{package}"),
        "Maven" => format!("org.bench:artifact-{package}"),
        "crates.io" => format!("bench_crate_{package}"),
        "RubyGems" => format!("bench-gem-{package}"),
        "NuGet" => format!("Bench.Package{package}"),
        _ => format!("bench/package-{package}"),
    }
}

/// Advisory `index`: ecosystem `index % 8`, package `index / 16` of that ecosystem (so
/// two advisories per package), vulnerable from `1.<2k>.0` to before `1.<2k+1>.0`.
fn advisory(index: usize) -> Value {
    let ecosystem = index % ECOSYSTEMS.len();
    let package = index / (2 * ECOSYSTEMS.len());
    let minor = 2 * (index / ECOSYSTEMS.len() % 2);
    let version = |v: &str| match ECOSYSTEMS[ecosystem] {
        "Go" => format!("v{v}"),
        _ => v.to_owned(),
    };
    let range_type = if ECOSYSTEMS[ecosystem] == "Go" {
        "SEMVER"
    } else {
        "ECOSYSTEM"
    };
    let words = "The bench advisory describes a flaw in request parsing that lets a remote attacker \
                 exhaust memory or read data it should not, fixed by bounding the input. ";
    json!({
        "schema_version": "1.6.0",
        "id": format!("BENCH-{index:07}"),
        "modified": "2026-11-01T00:00:00Z",
        "published": "2026-10-01T00:00:00Z",
        "aliases": [format!("CVE-2099-{:07}", index), format!("GHSA-bench-{index:07}")],
        "summary": format!("Generated advisory {index} for {}", package_name(ecosystem, package)),
        "details": words.repeat(8),
        "severity": [{ "type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H" }],
        "affected": [{
            "package": { "ecosystem": ECOSYSTEMS[ecosystem], "name": package_name(ecosystem, package) },
            "ranges": [{ "type": range_type, "events": [
                { "introduced": "0" },
                { "fixed": version(&format!("1.{}.0", minor + 1)) },
            ] }],
        }],
        "references": [
            { "type": "ADVISORY", "url": format!("https://bench.example/advisories/BENCH-{index:07}") },
            { "type": "FIX", "url": format!("https://bench.example/fix/{index}") },
            { "type": "WEB", "url": format!("https://bench.example/report/{index}") },
        ],
    })
}

fn record(source: &SourceName, index: usize) -> anyhow::Result<EvidenceRecord> {
    let document = canonicalize(&serde_json::to_vec(&advisory(index))?)?;
    Ok(EvidenceRecord {
        kind: Kind::Advisory,
        source: source.clone(),
        format: DocumentFormat::Osv,
        id: format!("BENCH-{index:07}"),
        modified: None,
        digest: Sha256Digest::of(&document),
        document,
    })
}

/// A `package-lock.json` (v3) of `deps` generated npm packages: the even ones at a
/// version both of their advisories cover, the odd ones at a fixed version.
fn package_lock(deps: usize) -> Value {
    let mut packages = serde_json::Map::new();
    let mut root = serde_json::Map::new();
    for package in 0..deps {
        let name = package_name(NPM, package);
        let version = if package % 2 == 0 { "1.0.5" } else { "1.3.0" };
        root.insert(name.clone(), json!(version));
        packages.insert(
            format!("node_modules/{name}"),
            json!({ "version": version, "resolved": format!("https://registry.npmjs.org/{name}/-/{name}-{version}.tgz") }),
        );
    }
    packages.insert(
        String::new(),
        json!({ "name": "bench-project", "version": "1.0.0", "dependencies": root }),
    );
    json!({ "name": "bench-project", "version": "1.0.0", "lockfileVersion": 3, "requires": true, "packages": packages })
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let source = SourceName::parse("bench-osv").expect("a valid source name");
    let snapshot: DateTime<Utc> = "2026-11-02T00:00:00Z".parse().expect("a valid time");
    let mut builder = TrivyDbBuilder::new(TrivyDbOptions::new(snapshot));
    let mut building = Duration::ZERO;
    for index in 0..args.advisories {
        let record = record(&source, index)?;
        let started = Instant::now();
        builder.add(&record);
        building += started.elapsed();
    }
    let started = Instant::now();
    let file =
        std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let (out, summary) = builder.finish_into(BufWriter::new(file))?;
    let file = out.into_inner().context("flushing the tarball")?;
    file.sync_all()?;
    building += started.elapsed();
    let tarball_bytes = file.metadata()?.len();

    if let Some(dir) = &args.project {
        std::fs::create_dir_all(dir)?;
        let mut lock = std::fs::File::create(dir.join("package-lock.json"))?;
        serde_json::to_writer_pretty(&mut lock, &package_lock(args.project_deps))?;
        lock.flush()?;
    }
    let seconds = building.as_secs_f64();
    let report = json!({
        "advisories": args.advisories,
        "records": summary.records,
        "vulnerabilities": summary.vulnerabilities,
        "packageAdvisories": summary.package_advisories,
        "warnings": summary.warnings.len(),
        "dbBytes": summary.db_bytes,
        "tarballBytes": tarball_bytes,
        "buildSeconds": seconds,
        "dbMegabytesPerSecond": summary.db_bytes as f64 / 1e6 / seconds,
        "peakRssBytes": peak_rss_bytes(),
    });
    println!("{report}");
    Ok(())
}
