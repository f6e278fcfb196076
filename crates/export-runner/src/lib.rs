//! The run engine: workers claim queued runs from the store, stream the run's snapshot
//! into its data files, write the manifest and checksums, and finish the run.
//!
//! Every step is idempotent: a run restarted after a crash deletes whatever its earlier
//! attempt left and produces the same bytes again, because everything it writes is a
//! function of the plan and the snapshot.

mod bundle;
mod distribute;
mod events;
mod export;
mod mirror;
mod trivy;
mod worker;

pub use events::{EventNotifier, EventSink};
pub use export::{execute_export, ExportContext, ExportError};
pub use worker::{Runner, RunnerConfig};
