//! How a batch of documents is ingested, worked out before anything is written: which
//! items are unchanged, which are new, and which stored or earlier versions they
//! supersede. Pure logic, shared by every SQL backend: they look up the stored current
//! versions, plan, take the batch's sequence numbers and write what the plan says.

use std::collections::HashMap;

use export_core::Sha256Digest;

use crate::{IngestOutcome, NewEvidence};

/// Where the current version of a (source, id) is while a batch is planned: stored
/// under a sequence, or the batch's k-th new version.
#[derive(Debug, Clone, Copy)]
pub enum Version {
    Stored(i64),
    New(usize),
}

/// The current version of a (source, id) and its digest, to tell a re-ingested
/// document from a changed one.
#[derive(Debug, Clone, Copy)]
pub struct Current {
    pub version: Version,
    pub digest: Sha256Digest,
}

/// What the batch does with one item.
#[derive(Debug, Clone, Copy)]
enum Step {
    Unchanged(Version),
    Inserted(usize),
    Replaced(usize),
}

/// A row to insert.
pub struct NewVersion<'a> {
    pub item: &'a NewEvidence,
    /// The new version of the same batch that replaces this one.
    pub superseded_by: Option<usize>,
}

/// What a batch does, item by item in order, with its new versions numbered 0, 1, 2…
/// until the batch's first sequence is known.
pub struct Plan<'a> {
    steps: Vec<Step>,
    pub versions: Vec<NewVersion<'a>>,
    /// Stored versions the batch replaces: (their sequence, the new version's number).
    pub superseded: Vec<(i64, usize)>,
}

impl<'a> Plan<'a> {
    /// Applies the items in order to the stored current versions, so that a batch may
    /// carry one document several times, or several versions of it.
    pub fn new(items: &'a [NewEvidence], mut current: HashMap<(&'a str, &'a str), Current>) -> Self {
        let mut plan = Plan {
            steps: Vec::with_capacity(items.len()),
            versions: Vec::with_capacity(items.len()),
            superseded: Vec::new(),
        };
        for item in items {
            let key = (item.source.as_str(), item.id.as_str());
            let previous = current.get(&key).copied();
            if let Some(previous) = previous.filter(|previous| previous.digest == item.digest) {
                plan.steps.push(Step::Unchanged(previous.version));
                continue;
            }
            let new = plan.versions.len();
            plan.versions.push(NewVersion {
                item,
                superseded_by: None,
            });
            plan.steps.push(match previous {
                None => Step::Inserted(new),
                Some(previous) => {
                    match previous.version {
                        Version::Stored(seq) => plan.superseded.push((seq, new)),
                        Version::New(older) => plan.versions[older].superseded_by = Some(new),
                    }
                    Step::Replaced(new)
                }
            });
            current.insert(
                key,
                Current {
                    version: Version::New(new),
                    digest: item.digest,
                },
            );
        }
        plan
    }

    pub fn outcomes(&self, first_seq: i64) -> Vec<IngestOutcome> {
        let seq_of = |version| match version {
            Version::Stored(seq) => seq,
            Version::New(new) => new_seq(first_seq, new),
        };
        self.steps
            .iter()
            .map(|step| match *step {
                Step::Unchanged(version) => IngestOutcome::Unchanged { seq: seq_of(version) },
                Step::Inserted(new) => IngestOutcome::Inserted {
                    seq: new_seq(first_seq, new),
                },
                Step::Replaced(new) => IngestOutcome::Replaced {
                    seq: new_seq(first_seq, new),
                },
            })
            .collect()
    }
}

/// The sequence of the batch's `new`-th new version.
pub fn new_seq(first_seq: i64, new: usize) -> i64 {
    first_seq + i64::try_from(new).unwrap_or(i64::MAX)
}
