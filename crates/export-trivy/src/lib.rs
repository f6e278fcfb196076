#![doc = include_str!("../README.md")]

pub mod bolt;
mod mapping;
mod tarball;
mod warnings;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use export_core::record::{DocumentFormat, EvidenceRecord};
use export_core::target::Kind;
use export_core::{Sha256Digest, SourceName};
use serde::{Deserialize, Serialize};

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
    #[error("writing trivy.db: {0}")]
    Bolt(#[from] bolt::BoltError),
}

/// Builds a Trivy DB (schema 2) from advisory records, in any order: the result depends only
/// on the set of records and the options.
///
/// Records are mapped as they are added, and only the serialized values the database needs
/// are kept (one flat entry per value, so 100,000 advisories take about 150 MiB), which lets
/// a caller stream a snapshot through [`add`](Self::add). [`finish`](Self::finish) sorts the
/// entries and streams them through the BoltDB writer into the tarball.
#[derive(Debug)]
pub struct TrivyDbBuilder {
    options: TrivyDbOptions,
    /// One entry per (bucket, package key, vulnerability id, record).
    advisories: Vec<AdvisoryEntry>,
    /// One entry per (vulnerability id, record).
    details: Vec<DetailEntry>,
    /// Bucket (`<ecosystem>::<data source>`) → the Export Center source it belongs to.
    data_sources: BTreeMap<Arc<str>, SourceName>,
    seen: HashSet<(SourceName, Sha256Digest)>,
    tally: warnings::Tally,
    records: u64,
    advisory_records: u64,
}

/// One record's value for one (bucket, package, id), already serialized: most keys have one
/// record, whose bytes go into the file as they are. Several records for one key are merged
/// in [`finish`](TrivyDbBuilder::finish), in (record id, digest) order.
#[derive(Debug)]
struct AdvisoryEntry {
    bucket: Arc<str>,
    package: Box<str>,
    id: Box<str>,
    record_id: Box<str>,
    digest: Sha256Digest,
    json: Box<[u8]>,
}

impl AdvisoryEntry {
    fn sort_key(&self) -> (&str, &str, &str, &str, &Sha256Digest) {
        (
            &self.bucket,
            &self.package,
            &self.id,
            &self.record_id,
            &self.digest,
        )
    }

    /// The value this entry is (part of): bucket, package, vulnerability id.
    fn value_key(&self) -> (&str, &str, &str) {
        (&self.bucket, &self.package, &self.id)
    }
}

/// The sorted entries, fed to the BoltDB writer (twice: to lay the file out, then to write).
struct Content<'a> {
    advisories: &'a [AdvisoryEntry],
    details: &'a [DetailEntry],
    data_sources: &'a BTreeMap<Arc<str>, SourceName>,
}

impl Content<'_> {
    /// Root buckets in key order: the `<ecosystem>::<data source>` buckets (package →
    /// id → advisory), `data-source` and `vulnerability` (always present, even empty:
    /// Trivy reads it without checking that it exists).
    fn feed(&self, writer: &mut dyn bolt::WriterApi) -> Result<(), bolt::BoltError> {
        let mut roots: Vec<&str> = self.data_sources.keys().map(|bucket| &**bucket).collect();
        roots.extend([DATA_SOURCE_BUCKET, VULNERABILITY_BUCKET]);
        roots.sort_unstable();
        let mut buckets = self.advisories.chunk_by(|a, b| a.bucket == b.bucket);
        for root in roots {
            writer.begin_bucket(root.as_bytes())?;
            match root {
                DATA_SOURCE_BUCKET => {
                    for (bucket, source) in self.data_sources {
                        writer.put(bucket.as_bytes(), &to_json(&DataSourceValue::of(source)))?;
                    }
                }
                VULNERABILITY_BUCKET => {
                    for group in self.details.chunk_by(|a, b| a.id == b.id) {
                        writer.put(group[0].id.as_bytes(), &VulnerabilityValue::merge(group))?;
                    }
                }
                _ => {
                    let entries = buckets.next().expect("every data source has entries");
                    assert_eq!(&*entries[0].bucket, root, "buckets and roots are sorted alike");
                    for package in entries.chunk_by(|a, b| a.package == b.package) {
                        writer.begin_bucket(package[0].package.as_bytes())?;
                        for group in package.chunk_by(|a, b| a.id == b.id) {
                            writer.put(group[0].id.as_bytes(), &AdvisoryValue::merge(group))?;
                        }
                        writer.end_bucket()?;
                    }
                }
            }
            writer.end_bucket()?;
        }
        Ok(())
    }
}

/// One record's `vulnerability` value for one id, serialized as for [`AdvisoryEntry`].
#[derive(Debug)]
struct DetailEntry {
    id: Box<str>,
    source: SourceName,
    record_id: Box<str>,
    digest: Sha256Digest,
    json: Box<[u8]>,
}

impl DetailEntry {
    fn sort_key(&self) -> (&str, &SourceName, &str, &Sha256Digest) {
        (&self.id, &self.source, &self.record_id, &self.digest)
    }
}

/// The longest vulnerability id written as a key; longer ones are counted, not written.
const MAX_ID_LEN: usize = 1024;

impl TrivyDbBuilder {
    pub fn new(options: TrivyDbOptions) -> Self {
        Self {
            options,
            advisories: Vec::new(),
            details: Vec::new(),
            data_sources: BTreeMap::new(),
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
        let mut outcome = match (record.kind, record.format) {
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
        for mapped in &mut outcome.mapped {
            let n_ids = mapped.ids.len();
            mapped.ids.retain(|id| !id.is_empty() && id.len() <= MAX_ID_LEN);
            if mapped.ids.len() < n_ids {
                let reason = format!("{}: a vulnerability id is empty or too long", record.id);
                outcome.notes.insert((WarningCode::UnparseableAdvisory, reason));
            }
        }
        outcome.mapped.retain(|mapped| !mapped.ids.is_empty());
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
            let name = format!(
                "{}::{}",
                package.ecosystem.bucket_prefix(),
                data_source_name(&record.source)
            );
            let bucket = match self.data_sources.get_key_value(name.as_str()) {
                Some((bucket, _)) => bucket.clone(),
                None => {
                    let bucket: Arc<str> = name.into();
                    self.data_sources.insert(bucket.clone(), record.source.clone());
                    bucket
                }
            };
            let json = to_json(&AdvisoryValue {
                patched: package.patched.clone(),
                vendor_ids: mapped.vendor_ids.clone(),
                vulnerable: package.vulnerable.clone(),
            });
            for package_key in package.ecosystem.package_keys(&package.name) {
                for id in &mapped.ids {
                    self.advisories.push(AdvisoryEntry {
                        bucket: bucket.clone(),
                        package: package_key.as_str().into(),
                        id: id.as_str().into(),
                        record_id: record.id.as_str().into(),
                        digest: record.digest,
                        json: json.clone(),
                    });
                }
            }
        }
        let json = to_json(&VulnerabilityValue::of(&record.source, mapped.detail));
        for id in &mapped.ids {
            self.details.push(DetailEntry {
                id: id.as_str().into(),
                source: record.source.clone(),
                record_id: record.id.as_str().into(),
                digest: record.digest,
                json: json.clone(),
            });
        }
    }

    /// Writes `trivy-db.tar.gz` into `out` and returns it with the summary.
    ///
    /// The database is laid out once and then streamed into the archive, so it is never
    /// held in memory as a whole.
    pub fn finish_into<W: Write>(self, out: W) -> Result<(W, TrivyDbSummary), TrivyError> {
        let Self {
            options,
            mut advisories,
            mut details,
            data_sources,
            tally,
            records,
            advisory_records,
            ..
        } = self;
        // Stable sorts: entries that tie come from one record, in the record's own order.
        advisories.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        details.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        let content = Content {
            advisories: &advisories,
            details: &details,
            data_sources: &data_sources,
        };
        let layout = bolt::layout(|writer| content.feed(writer))?;
        let summary = TrivyDbSummary {
            records,
            advisories: advisory_records,
            vulnerabilities: details.chunk_by(|a, b| a.id == b.id).count() as u64,
            package_advisories: advisories.chunk_by(|a, b| a.value_key() == b.value_key()).count() as u64,
            db_bytes: layout.file_size(),
            warnings: tally.warnings(),
        };
        let metadata = tarball::metadata_json(options.snapshot_time, options.next_update_hours);
        let mtime = u64::try_from(options.snapshot_time.timestamp()).unwrap_or(0);
        let write_db = |out: &mut dyn Write| -> Result<(), TrivyError> {
            bolt::write_with(out, layout, |writer| content.feed(writer))?;
            Ok(())
        };
        let out = tarball::write_tarball(out, mtime, layout.file_size(), write_db, &metadata)?;
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

const DATA_SOURCE_BUCKET: &str = "data-source";
const VULNERABILITY_BUCKET: &str = "vulnerability";

/// A value's JSON, in an allocation of exactly its size.
fn to_json(value: &impl Serialize) -> Box<[u8]> {
    serde_json::to_vec(value)
        .expect("plain structs of strings and numbers serialize")
        .into_boxed_slice()
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
#[derive(Serialize, Deserialize)]
struct AdvisoryValue {
    #[serde(rename = "PatchedVersions", default, skip_serializing_if = "Vec::is_empty")]
    patched: Vec<String>,
    #[serde(rename = "VendorIDs", default, skip_serializing_if = "Vec::is_empty")]
    vendor_ids: Vec<String>,
    #[serde(rename = "VulnerableVersions")]
    vulnerable: Vec<String>,
}

impl AdvisoryValue {
    /// Several records for one (bucket, package, id): their constraints ORed, in record order.
    fn merge(candidates: &[AdvisoryEntry]) -> Cow<'_, [u8]> {
        if let [single] = candidates {
            return Cow::Borrowed(&single.json);
        }
        let mut value = Self {
            patched: Vec::new(),
            vendor_ids: Vec::new(),
            vulnerable: Vec::new(),
        };
        for candidate in candidates {
            let candidate: Self = from_json(&candidate.json);
            value.vulnerable.extend(candidate.vulnerable);
            value.patched.extend(candidate.patched);
            value.vendor_ids.extend(candidate.vendor_ids);
        }
        mapping::dedup_in_order(&mut value.vulnerable);
        mapping::dedup_in_order(&mut value.patched);
        value.vendor_ids.sort();
        value.vendor_ids.dedup();
        Cow::Owned(to_json(&value).into_vec())
    }
}

/// trivy-db's `types.Vulnerability`, keys in sorted order.
#[derive(Serialize, Deserialize)]
struct VulnerabilityValue {
    #[serde(rename = "CVSS", default, skip_serializing_if = "BTreeMap::is_empty")]
    cvss: BTreeMap<String, Cvss>,
    #[serde(rename = "CweIDs", default, skip_serializing_if = "Vec::is_empty")]
    cwe_ids: Vec<String>,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(rename = "LastModifiedDate", skip_serializing_if = "Option::is_none")]
    last_modified_date: Option<String>,
    #[serde(rename = "PublishedDate", skip_serializing_if = "Option::is_none")]
    published_date: Option<String>,
    #[serde(rename = "References", default, skip_serializing_if = "Vec::is_empty")]
    references: Vec<String>,
    #[serde(rename = "Severity", skip_serializing_if = "Option::is_none")]
    severity: Option<String>,
    #[serde(rename = "Title", skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(
        rename = "VendorSeverity",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    vendor_severity: BTreeMap<String, u8>,
}

impl VulnerabilityValue {
    /// One record's details, with its severity and CVSS under its source's data source id.
    fn of(source: &SourceName, detail: Detail) -> Self {
        let source_id = data_source_id(source);
        Self {
            cvss: if detail.cvss.is_empty() {
                BTreeMap::new()
            } else {
                BTreeMap::from([(source_id.clone(), detail.cvss)])
            },
            cwe_ids: detail.cwe_ids,
            description: detail.description,
            last_modified_date: detail.modified,
            published_date: detail.published,
            references: detail.references,
            severity: detail.severity.map(|severity| severity.as_str().to_owned()),
            title: detail.title,
            vendor_severity: detail
                .severity
                .map(|severity| BTreeMap::from([(source_id, severity as u8)]))
                .unwrap_or_default(),
        }
    }

    /// One id given by several records: the text fields come from the first record in
    /// (source, id, digest) order, each source's severity and CVSS from its first record
    /// that has them, and the CWE ids from all.
    fn merge(candidates: &[DetailEntry]) -> Cow<'_, [u8]> {
        if let [single] = candidates {
            return Cow::Borrowed(&single.json);
        }
        let mut values = candidates
            .iter()
            .map(|candidate| from_json::<Self>(&candidate.json));
        let mut merged = values.next().expect("an id has at least one record");
        for value in values {
            for (source_id, cvss) in value.cvss {
                merged.cvss.entry(source_id).or_insert(cvss);
            }
            for (source_id, severity) in value.vendor_severity {
                merged.vendor_severity.entry(source_id).or_insert(severity);
            }
            merged.cwe_ids.extend(value.cwe_ids);
        }
        merged.cwe_ids.sort();
        merged.cwe_ids.dedup();
        Cow::Owned(to_json(&merged).into_vec())
    }
}

fn from_json<'a, T: Deserialize<'a>>(json: &'a [u8]) -> T {
    serde_json::from_slice(json).expect("the builder reads back only values it serialized")
}

#[cfg(test)]
mod tests;
