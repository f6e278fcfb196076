#![doc = include_str!("../README.md")]

pub mod bolt;
mod mapping;
mod tarball;
mod warnings;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use chrono::{DateTime, Utc};
use export_core::record::{DocumentFormat, EvidenceRecord};
use export_core::target::Kind;
use export_core::{Sha256Digest, SourceName};
use serde::Serialize;

use crate::mapping::{Cvss, Detail, Mapped};
pub use crate::warnings::{TrivyWarning, WarningCode};

/// The output's path in a run (SPEC §14).
pub const TRIVY_DB_PATH: &str = "trivy-db.tar.gz";
/// The output's media type, which is also the layer media type Trivy pulls.
pub const TRIVY_DB_MEDIA_TYPE: &str = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip";
/// `trivy.next_update_hours` when the profile does not set it.
pub const DEFAULT_NEXT_UPDATE_HOURS: u32 = 24;

/// What a database depends on besides its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrivyDbOptions {
    /// The snapshot time (the ingestion time of the newest item in the snapshot): the
    /// `UpdatedAt` and `DownloadedAt` of `metadata.json`, the tar entries' mtime, and the
    /// time against which `withdrawn` advisories are left out.
    pub snapshot_time: DateTime<Utc>,
    /// `NextUpdate` = snapshot time + this many hours.
    pub next_update_hours: u32,
}

impl TrivyDbOptions {
    pub fn new(snapshot_time: DateTime<Utc>) -> Self {
        Self {
            snapshot_time,
            next_update_hours: DEFAULT_NEXT_UPDATE_HOURS,
        }
    }
}

/// The tarball and what went into it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrivyDb {
    /// `trivy-db.tar.gz`: `trivy.db` and `metadata.json`.
    pub tarball: Vec<u8>,
    pub summary: TrivyDbSummary,
}

/// What a build counted; `warnings` go into the run's `warnings[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrivyDbSummary {
    /// Records handed to [`TrivyDbBuilder::add`], duplicates (same source and digest) once.
    pub records: u64,
    /// Records that gave at least one package entry.
    pub advisories: u64,
    /// Entries of the `vulnerability` bucket.
    pub vulnerabilities: u64,
    /// Package advisories (`<ecosystem>::<source>` → package → vulnerability id) written.
    pub package_advisories: u64,
    /// The size of `trivy.db` in bytes.
    pub db_bytes: u64,
    pub warnings: Vec<TrivyWarning>,
}

/// Why a database could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TrivyError {
    #[error("writing {TRIVY_DB_PATH}: {0}")]
    Write(#[from] std::io::Error),
}

/// Builds a Trivy DB (schema 2) from advisory records, in any order: the result depends only
/// on the set of records and the options.
///
/// Records are mapped as they are added, and only what the database needs is kept, so a
/// caller can stream a snapshot through [`add`](Self::add). [`finish`](Self::finish) sorts
/// everything and writes the BoltDB file and the tarball.
#[derive(Debug)]
pub struct TrivyDbBuilder {
    options: TrivyDbOptions,
    /// Bucket (`<ecosystem>::<data source>`) → package key → vulnerability id → candidates.
    advisories: BTreeMap<String, BTreeMap<String, BTreeMap<String, Vec<AdvisoryCandidate>>>>,
    /// Bucket → the Export Center source it belongs to.
    data_sources: BTreeMap<String, SourceName>,
    details: BTreeMap<String, Vec<DetailCandidate>>,
    seen: HashSet<(SourceName, Sha256Digest)>,
    tally: warnings::Tally,
    records: u64,
    advisory_records: u64,
}

/// One record's constraints for one (bucket, package, id); several records may give one.
#[derive(Debug)]
struct AdvisoryCandidate {
    order: (String, Sha256Digest),
    vulnerable: Vec<String>,
    patched: Vec<String>,
    vendor_ids: Vec<String>,
}

#[derive(Debug)]
struct DetailCandidate {
    order: (SourceName, String, Sha256Digest),
    detail: Detail,
}

impl TrivyDbBuilder {
    pub fn new(options: TrivyDbOptions) -> Self {
        Self {
            options,
            advisories: BTreeMap::new(),
            data_sources: BTreeMap::new(),
            details: BTreeMap::new(),
            seen: HashSet::new(),
            tally: warnings::Tally::default(),
            records: 0,
            advisory_records: 0,
        }
    }

    /// Maps one record into the database; what cannot be mapped is counted in the warnings.
    /// A record added twice (same source and digest) counts once.
    pub fn add(&mut self, record: &EvidenceRecord) {
        if !self.seen.insert((record.source.clone(), record.digest)) {
            return;
        }
        self.records += 1;
        let outcome = match (record.kind, record.format) {
            (Kind::Advisory, DocumentFormat::Osv) => {
                mapping::osv::map(&record.id, &record.document, self.options.snapshot_time)
            }
            (Kind::Advisory, DocumentFormat::Csaf) => mapping::csaf::map(&record.id, &record.document),
            (kind, format) => {
                let mut outcome = mapping::Outcome::default();
                outcome.note(WarningCode::NotAnAdvisory, format!("{kind} in {format}"));
                outcome
            }
        };
        let mut outcome = outcome;
        if outcome.mapped.is_empty() && outcome.notes.is_empty() {
            outcome.note(
                WarningCode::NoAffectedPackages,
                format!("{} advisory", record.format),
            );
        }
        self.tally.add(&outcome.notes);
        if !outcome.mapped.is_empty() {
            self.advisory_records += 1;
        }
        for mapped in outcome.mapped {
            self.insert(record, mapped);
        }
    }

    fn insert(&mut self, record: &EvidenceRecord, mapped: Mapped) {
        for package in &mapped.packages {
            let bucket = format!(
                "{}::{}",
                package.ecosystem.bucket_prefix(),
                data_source_name(&record.source)
            );
            self.data_sources
                .entry(bucket.clone())
                .or_insert_with(|| record.source.clone());
            let packages = self.advisories.entry(bucket).or_default();
            for key in package.ecosystem.package_keys(&package.name) {
                let ids = packages.entry(key).or_default();
                for id in &mapped.ids {
                    ids.entry(id.clone()).or_default().push(AdvisoryCandidate {
                        order: (record.id.clone(), record.digest),
                        vulnerable: package.vulnerable.clone(),
                        patched: package.patched.clone(),
                        vendor_ids: mapped.vendor_ids.clone(),
                    });
                }
            }
        }
        for id in &mapped.ids {
            self.details.entry(id.clone()).or_default().push(DetailCandidate {
                order: (record.source.clone(), record.id.clone(), record.digest),
                detail: mapped.detail.clone(),
            });
        }
    }

    /// Writes `trivy-db.tar.gz` into `out` and returns the summary.
    pub fn finish_into<W: Write>(self, out: W) -> Result<(W, TrivyDbSummary), TrivyError> {
        let mut summary = TrivyDbSummary {
            records: self.records,
            advisories: self.advisory_records,
            vulnerabilities: self.details.len() as u64,
            warnings: self.tally.warnings(),
            ..TrivyDbSummary::default()
        };
        let mut root = bolt::Bucket::default();
        let data_source = root.bucket_mut("data-source");
        for (bucket, source) in &self.data_sources {
            data_source.put(bucket.as_str(), to_json(&DataSourceValue::of(source)));
        }
        for (bucket, packages) in self.advisories {
            let bucket = root.bucket_mut(bucket);
            for (package, ids) in packages {
                let package = bucket.bucket_mut(package);
                for (id, candidates) in ids {
                    package.put(id, to_json(&AdvisoryValue::merge(candidates)));
                    summary.package_advisories += 1;
                }
            }
        }
        // Always present, even empty: Trivy reads it without checking that it exists.
        let vulnerability = root.bucket_mut("vulnerability");
        for (id, candidates) in self.details {
            vulnerability.put(id, to_json(&VulnerabilityValue::merge(candidates)));
        }
        let db = bolt::write(root);
        summary.db_bytes = db.len() as u64;
        let metadata = tarball::metadata_json(self.options.snapshot_time, self.options.next_update_hours);
        let mtime = u64::try_from(self.options.snapshot_time.timestamp()).unwrap_or(0);
        let out = tarball::write_tarball(out, mtime, &db, &metadata)?;
        Ok((out, summary))
    }

    /// Builds the tarball in memory.
    pub fn finish(self) -> Result<TrivyDb, TrivyError> {
        let (tarball, summary) = self.finish_into(Vec::new())?;
        Ok(TrivyDb { tarball, summary })
    }
}

/// The data source name of an Export Center source: the part after `::` in its buckets.
pub fn data_source_name(source: &SourceName) -> String {
    format!("Export Center {source}")
}

/// The data source id of an Export Center source: `DataSource.ID`, and the key of its
/// `VendorSeverity` and `CVSS` entries, so that Trivy reports its severity as ours.
pub fn data_source_id(source: &SourceName) -> String {
    format!("export-center:{source}")
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain structs of strings and numbers serialize")
}

/// trivy-db's `types.DataSource`.
#[derive(Serialize)]
struct DataSourceValue {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
}

impl DataSourceValue {
    fn of(source: &SourceName) -> Self {
        Self {
            id: data_source_id(source),
            name: data_source_name(source),
        }
    }
}

/// trivy-db's `types.Advisory`, as its OSV importer writes it, keys in sorted order.
#[derive(Serialize)]
struct AdvisoryValue {
    #[serde(rename = "PatchedVersions", skip_serializing_if = "Vec::is_empty")]
    patched: Vec<String>,
    #[serde(rename = "VendorIDs", skip_serializing_if = "Vec::is_empty")]
    vendor_ids: Vec<String>,
    #[serde(rename = "VulnerableVersions")]
    vulnerable: Vec<String>,
}

impl AdvisoryValue {
    /// Several records for one (bucket, package, id): their constraints ORed, in record order.
    fn merge(mut candidates: Vec<AdvisoryCandidate>) -> Self {
        candidates.sort_by(|a, b| a.order.cmp(&b.order));
        let mut value = Self {
            patched: Vec::new(),
            vendor_ids: Vec::new(),
            vulnerable: Vec::new(),
        };
        for candidate in candidates {
            value.vulnerable.extend(candidate.vulnerable);
            value.patched.extend(candidate.patched);
            value.vendor_ids.extend(candidate.vendor_ids);
        }
        mapping::dedup_in_order(&mut value.vulnerable);
        mapping::dedup_in_order(&mut value.patched);
        value.vendor_ids.sort();
        value.vendor_ids.dedup();
        value
    }
}

/// trivy-db's `types.Vulnerability`, keys in sorted order.
#[derive(Serialize)]
struct VulnerabilityValue {
    #[serde(rename = "CVSS", skip_serializing_if = "BTreeMap::is_empty")]
    cvss: BTreeMap<String, Cvss>,
    #[serde(rename = "CweIDs", skip_serializing_if = "Vec::is_empty")]
    cwe_ids: Vec<String>,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(rename = "LastModifiedDate", skip_serializing_if = "Option::is_none")]
    last_modified_date: Option<String>,
    #[serde(rename = "PublishedDate", skip_serializing_if = "Option::is_none")]
    published_date: Option<String>,
    #[serde(rename = "References", skip_serializing_if = "Vec::is_empty")]
    references: Vec<String>,
    #[serde(rename = "Severity", skip_serializing_if = "Option::is_none")]
    severity: Option<&'static str>,
    #[serde(rename = "Title", skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(rename = "VendorSeverity", skip_serializing_if = "BTreeMap::is_empty")]
    vendor_severity: BTreeMap<String, u8>,
}

impl VulnerabilityValue {
    /// One id given by several records: the text fields come from the first record in
    /// (source, id, digest) order, each source's severity and CVSS from its first record
    /// that has them, and the CWE ids from all.
    fn merge(mut candidates: Vec<DetailCandidate>) -> Self {
        candidates.sort_by(|a, b| a.order.cmp(&b.order));
        let mut cvss = BTreeMap::new();
        let mut vendor_severity = BTreeMap::new();
        let mut cwe_ids = Vec::new();
        for candidate in &candidates {
            let source_id = data_source_id(&candidate.order.0);
            if let Some(severity) = candidate.detail.severity {
                vendor_severity.entry(source_id.clone()).or_insert(severity as u8);
            }
            if !candidate.detail.cvss.is_empty() {
                cvss.entry(source_id)
                    .or_insert_with(|| candidate.detail.cvss.clone());
            }
            cwe_ids.extend(candidate.detail.cwe_ids.iter().cloned());
        }
        cwe_ids.sort();
        cwe_ids.dedup();
        let first = candidates
            .into_iter()
            .next()
            .expect("an id has at least one record")
            .detail;
        Self {
            cvss,
            cwe_ids,
            description: first.description,
            last_modified_date: first.modified,
            published_date: first.published,
            references: first.references,
            severity: first.severity.map(mapping::Severity::as_str),
            title: first.title,
            vendor_severity,
        }
    }
}

#[cfg(test)]
mod tests;
