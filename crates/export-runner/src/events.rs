//! The run's event stream as the runner writes it (SPEC §7): each event is stored, so
//! any replica can replay it, and the process's stream fan-out is woken at once.

use std::sync::Arc;

use export_core::{Clock, RunId, MANIFEST_DSSE_PATH};
use export_store::{RunOutput, Store};
use serde_json::{json, Value};

/// Called after an event of a run was stored (wakes the SSE fan-out of this process).
pub type EventNotifier = Arc<dyn Fn(&RunId) + Send + Sync>;

#[derive(Clone)]
pub struct EventSink {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    notify: EventNotifier,
}

impl EventSink {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, notify: EventNotifier) -> Self {
        Self { store, clock, notify }
    }

    /// Stores the event; a failure is logged, never fails the run (the run's status
    /// stays authoritative, and a stream ends once the run has ended).
    pub async fn emit(&self, run_id: &RunId, event: &str, data: Value) {
        match self
            .store
            .append_event(&run_id.tenant, run_id, event, &data, self.clock.now())
            .await
        {
            Ok(_) => self.stored(run_id),
            Err(err) => tracing::warn!(error = %err, "could not store the {event} event of run {run_id}"),
        }
    }

    /// Wakes this process's listeners of the run: an event of it was just stored.
    pub fn stored(&self, run_id: &RunId) {
        (self.notify)(run_id);
    }

    pub async fn started(&self, run_id: &RunId) {
        self.emit(
            run_id,
            "started",
            json!({ "runId": run_id.to_string(), "status": "running" }),
        )
        .await;
    }

    /// `percent` is capped at 99 until the run has succeeded.
    pub async fn progress(&self, run_id: &RunId, completed: u64, total: u64) {
        let percent = completed
            .saturating_mul(100)
            .checked_div(total)
            .unwrap_or(0)
            .min(99);
        let data = json!({
            "runId": run_id.to_string(),
            "percent": percent,
            "itemsCompleted": completed,
            "itemsTotal": total,
        });
        self.emit(run_id, "progress", data).await;
    }

    /// An output was published. The stream turns its `path` into a signed `url`.
    pub async fn artifact_ready(&self, run_id: &RunId, output: &RunOutput) {
        if output.path == MANIFEST_DSSE_PATH {
            // Announced with the manifest, as its `dsseUrl`.
            return;
        }
        let data = json!({
            "runId": run_id.to_string(),
            "type": output.kind,
            "id": output.id,
            "path": output.path,
            "sha256": output.sha256.to_string(),
            "format": output.format,
        });
        self.emit(run_id, "artifact_ready", data).await;
    }
}
