//! Run events as `exportctl` shows them: from the SSE stream or synthesized while
//! polling, printed as JSON lines, plain log lines, or a progress bar on a terminal.

use std::collections::BTreeSet;
use std::io::IsTerminal as _;
use std::time::Duration;

use export_api_types::RunStatusResponse;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;
use serde_json::{json, Value};

/// One event of a run (SPEC §7).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunEvent {
    /// The run's event sequence; `None` for events synthesized from polling.
    pub(crate) id: Option<u64>,
    pub(crate) kind: String,
    pub(crate) data: Value,
}

/// How a followed run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
}

impl RunEvent {
    fn new(kind: &str, data: Value) -> Self {
        Self {
            id: None,
            kind: kind.to_owned(),
            data,
        }
    }

    /// The outcome when this is a terminal event.
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        match self.kind.as_str() {
            "completed" => Some(Outcome::Succeeded),
            "failed" => Some(Outcome::Failed),
            "cancelled" => Some(Outcome::Cancelled),
            _ => None,
        }
    }

    fn text(&self, field: &str) -> &str {
        self.data.get(field).and_then(Value::as_str).unwrap_or("?")
    }

    fn number(&self, field: &str) -> u64 {
        self.data.get(field).and_then(Value::as_u64).unwrap_or(0)
    }

    /// The plain log line: `started`, `progress 35% 70/200`,
    /// `artifact_ready manifest sha256:…`, `completed`, `failed <code>: <message>`.
    pub(crate) fn line(&self) -> String {
        match self.kind.as_str() {
            "started" | "completed" | "cancelled" => self.kind.clone(),
            "progress" => format!(
                "progress {}% {}/{}",
                self.number("percent"),
                self.number("itemsCompleted"),
                self.number("itemsTotal")
            ),
            "artifact_ready" => {
                let kind = self.text("type");
                let format = if is_data_kind(kind) {
                    format!(" {}", self.text("format"))
                } else {
                    String::new()
                };
                format!(
                    "artifact_ready {}{format} {}",
                    self.text("id"),
                    self.text("sha256")
                )
            }
            "failed" => format!("failed {}: {}", self.text("code"), self.text("message")),
            _ => format!("{} {}", self.kind, self.data),
        }
    }

    /// The JSON line of `--json`: `{"id":3,"event":"progress","data":{…}}`.
    pub(crate) fn json_line(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            id: Option<u64>,
            event: &'a str,
            data: &'a Value,
        }
        let line = Line {
            id: self.id,
            event: &self.kind,
            data: &self.data,
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// Data files are listed with their format; manifest, checksums, provenance and bundle
/// have one format only.
fn is_data_kind(kind: &str) -> bool {
    !matches!(kind, "manifest" | "checksums" | "provenance" | "bundle")
}

/// Turns successive run statuses into the events an SSE stream would have carried, for
/// servers without the stream. Each event is produced once.
#[derive(Debug, Default)]
pub(crate) struct StatusEvents {
    started: bool,
    progress: Option<(u64, u64)>,
    artifacts: BTreeSet<(String, String, String)>,
    ended: bool,
}

impl StatusEvents {
    pub(crate) fn next(&mut self, status: &RunStatusResponse) -> Vec<RunEvent> {
        let mut events = Vec::new();
        if self.ended {
            return events;
        }
        let run_id = &status.run_id;
        if !self.started && (status.started_at.is_some() || status.status == "running") {
            self.started = true;
            events.push(RunEvent::new(
                "started",
                json!({ "runId": run_id, "status": "running" }),
            ));
        }
        let progress = &status.progress;
        let counts = (progress.items_completed, progress.items_total);
        if self.started && progress.items_total > 0 && self.progress != Some(counts) {
            self.progress = Some(counts);
            events.push(RunEvent::new(
                "progress",
                json!({
                    "runId": run_id,
                    "percent": progress.percent,
                    "itemsCompleted": progress.items_completed,
                    "itemsTotal": progress.items_total,
                }),
            ));
        }
        for output in &status.outputs {
            let key = (output.kind.clone(), output.id.clone(), output.format.clone());
            if self.artifacts.insert(key) {
                events.push(RunEvent::new(
                    "artifact_ready",
                    json!({
                        "runId": run_id,
                        "type": output.kind,
                        "id": output.id,
                        "url": output.url,
                        "sha256": output.sha256,
                        "format": output.format,
                    }),
                ));
            }
        }
        let terminal = match status.status.as_str() {
            "succeeded" | "expired" => {
                let manifest = status.outputs.iter().find(|output| output.kind == "manifest");
                let mut data = json!({ "runId": run_id, "status": "succeeded" });
                if let Some(manifest) = manifest {
                    data["manifestUrl"] = json!(manifest.url);
                    if let Some(dsse_url) = &manifest.dsse_url {
                        data["manifestDsseUrl"] = json!(dsse_url);
                    }
                }
                Some(RunEvent::new("completed", data))
            }
            "failed" => {
                let error = status.errors.first();
                let mut data = json!({
                    "runId": run_id,
                    "status": "failed",
                    "code": error.map_or("ERR_EXPORT_INTERNAL", |e| e.code.as_str()),
                    "message": error.map_or("the run failed", |e| e.message.as_str()),
                });
                if let Some(seconds) = error.and_then(|e| e.retry_after_seconds) {
                    data["retryAfterSeconds"] = json!(seconds);
                }
                Some(RunEvent::new("failed", data))
            }
            "cancelled" => Some(RunEvent::new(
                "cancelled",
                json!({ "runId": run_id, "status": "cancelled" }),
            )),
            _ => None,
        };
        if let Some(event) = terminal {
            self.ended = true;
            events.push(event);
        }
        events
    }
}

/// Where events go: JSON lines (`--json`), a progress bar (stdout is a terminal), or
/// one plain line per event.
pub(crate) enum EventPrinter {
    Json,
    Lines,
    Bar(ProgressBar),
}

impl EventPrinter {
    pub(crate) fn new(json: bool) -> Self {
        if json {
            Self::Json
        } else if std::io::stdout().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            bar.set_style(spinner_style());
            bar.set_message("waiting for the run to start");
            bar.enable_steady_tick(Duration::from_millis(120));
            Self::Bar(bar)
        } else {
            Self::Lines
        }
    }

    pub(crate) fn event(&mut self, event: &RunEvent) {
        match self {
            Self::Json => println!("{}", event.json_line()),
            Self::Lines => println!("{}", event.line()),
            Self::Bar(bar) => match event.kind.as_str() {
                "started" => bar.set_message("running"),
                "progress" => {
                    let total = event.number("itemsTotal");
                    if bar.length() != Some(total) {
                        bar.set_style(bar_style());
                        bar.set_length(total);
                    }
                    bar.set_position(event.number("itemsCompleted"));
                }
                _ if event.outcome().is_some() => {
                    bar.finish_and_clear();
                    println!("{}", event.line());
                }
                _ => bar.println(event.line()),
            },
        }
    }

    /// A message for the person watching (reconnects), on stderr.
    pub(crate) fn note(&self, message: &str) {
        match self {
            Self::Bar(bar) => bar.suspend(|| eprintln!("{message}")),
            Self::Json | Self::Lines => eprintln!("{message}"),
        }
    }

    /// Prints a line of the command's own output (the run id) before the events.
    pub(crate) fn header(&self, line: &str) {
        match self {
            Self::Bar(bar) => bar.println(line),
            Self::Json | Self::Lines => println!("{line}"),
        }
    }
}

impl Drop for EventPrinter {
    fn drop(&mut self) {
        if let Self::Bar(bar) = self {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{wide_bar}] {pos}/{len} items {percent}% ({rate}, ETA {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key("rate", |state: &ProgressState, out: &mut dyn std::fmt::Write| {
        let _ = write!(out, "{:.0} items/s", state.per_sec());
    })
    .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use export_api_types::{OutputResponse, Progress, RunErrorBody, TriggerBody};

    use super::*;

    fn event(kind: &str, data: Value) -> RunEvent {
        RunEvent::new(kind, data)
    }

    #[test]
    fn plain_lines_name_the_event_and_its_essentials() {
        let lines: Vec<String> = [
            event("started", json!({"runId": "r", "status": "running"})),
            event(
                "progress",
                json!({"runId": "r", "percent": 35, "itemsCompleted": 70, "itemsTotal": 200}),
            ),
            event(
                "artifact_ready",
                json!({"type": "manifest", "id": "manifest", "format": "json", "sha256": "sha256:ab"}),
            ),
            event(
                "artifact_ready",
                json!({"type": "advisory", "id": "advisory:osv-go", "format": "ndjson", "sha256": "sha256:cd"}),
            ),
            event("failed", json!({"code": "ERR_EXPORT_TIMEOUT", "message": "over the job timeout"})),
            event("completed", json!({"status": "succeeded"})),
        ]
        .iter()
        .map(RunEvent::line)
        .collect();
        assert_eq!(
            lines,
            [
                "started",
                "progress 35% 70/200",
                "artifact_ready manifest sha256:ab",
                "artifact_ready advisory:osv-go ndjson sha256:cd",
                "failed ERR_EXPORT_TIMEOUT: over the job timeout",
                "completed",
            ]
        );
    }

    #[test]
    fn json_lines_carry_the_id() {
        let mut started = event("started", json!({"runId": "r"}));
        started.id = Some(1);
        assert_eq!(
            started.json_line(),
            r#"{"id":1,"event":"started","data":{"runId":"r"}}"#
        );
    }

    fn status(state: &str, done: u64, outputs: &[&str]) -> RunStatusResponse {
        RunStatusResponse {
            run_id: "r".to_owned(),
            status: state.to_owned(),
            profile_id: "p".to_owned(),
            profile_revision: "sha256:0".to_owned(),
            project: None,
            priority: "normal".to_owned(),
            created_at: "2025-12-06T10:00:00Z".to_owned(),
            started_at: (state != "queued").then(|| "2025-12-06T10:00:01Z".to_owned()),
            completed_at: None,
            expires_at: None,
            trigger: TriggerBody::default(),
            outputs: outputs
                .iter()
                .map(|kind| OutputResponse {
                    kind: (*kind).to_owned(),
                    id: (*kind).to_owned(),
                    format: "json".to_owned(),
                    url: format!("http://x/{kind}"),
                    sha256: "sha256:00".to_owned(),
                    bytes: 1,
                    dsse_url: None,
                    expires_at: "2025-12-06T16:00:00Z".to_owned(),
                })
                .collect(),
            progress: Progress {
                percent: u8::try_from(done * 100 / 4).unwrap_or(100),
                items_completed: done,
                items_total: 4,
            },
            queue_position: None,
            warnings: Vec::new(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn polling_produces_each_event_once() {
        let mut events = StatusEvents::default();
        let mut kinds = Vec::new();
        for status in [
            status("queued", 0, &[]),
            status("running", 1, &[]),
            status("running", 1, &[]),
            status("running", 3, &["advisory"]),
            status("succeeded", 4, &["advisory", "manifest"]),
            status("succeeded", 4, &["advisory", "manifest"]),
        ] {
            kinds.extend(events.next(&status).into_iter().map(|event| event.line()));
        }
        assert_eq!(
            kinds,
            [
                "started",
                "progress 25% 1/4",
                "progress 75% 3/4",
                "artifact_ready advisory json sha256:00",
                "progress 100% 4/4",
                "artifact_ready manifest sha256:00",
                "completed",
            ]
        );
    }

    #[test]
    fn polling_a_failed_run_reports_its_error() {
        let mut failed = status("failed", 1, &[]);
        failed.errors.push(RunErrorBody {
            code: "ERR_EXPORT_TIMEOUT".to_owned(),
            message: "over the job timeout".to_owned(),
            retry_after_seconds: None,
        });
        let events = StatusEvents::default().next(&failed);
        let last = events.last().unwrap();
        assert_eq!(last.outcome(), Some(Outcome::Failed));
        assert_eq!(last.line(), "failed ERR_EXPORT_TIMEOUT: over the job timeout");
    }
}
