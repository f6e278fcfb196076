//! Following a run to its end: the SSE stream of SPEC §7 with reconnects that resume from
//! `Last-Event-ID` (never printing an event twice), or, on a server without the stream,
//! polling the run's status.

use std::time::Duration;

use anyhow::Context;
use export_api_types::RunStatusResponse;
use futures::StreamExt as _;
use reqwest::header::ACCEPT;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use crate::api::{self, Api, Unreachable};
use crate::backoff::RetryPolicy;
use crate::events::{EventPrinter, Outcome, RunEvent, StatusEvents};
use crate::sse::{SseMessage, SseParser};

/// Follows `run_id` until its terminal event.
pub(crate) async fn follow(
    api: &Api,
    run_id: &str,
    printer: &mut EventPrinter,
    policy: RetryPolicy,
) -> anyhow::Result<Outcome> {
    let run_path = api::run_path(run_id)?;
    let events_path = format!("{run_path}/events");
    let mut stream = EventStream::default();
    // The step of the backoff schedule, reset by a connection that delivered an event.
    let mut attempt = 0u32;
    // Consecutive attempts that got no stream at all; too many and we give up.
    let mut failures = 0u32;
    loop {
        let last_id = stream.last_id;
        let result = api
            .send(Method::GET, &events_path, |request| {
                let request = request.header(ACCEPT, "text/event-stream");
                match last_id {
                    Some(id) => request.header("Last-Event-ID", id.to_string()),
                    None => request,
                }
            })
            .await;
        let (wait, reason) = match result {
            Err(err) if err.is::<Unreachable>() => {
                failures += 1;
                if failures > policy.max_retries {
                    return Err(err);
                }
                (policy.delay(attempt), format!("{err:#}"))
            }
            Err(err) => return Err(err),
            Ok(response) => match response.status() {
                status if status.is_success() => {
                    failures = 0;
                    let before = stream.delivered;
                    let end = stream.read(api, response, printer).await;
                    if let Ok(outcome) = end {
                        return Ok(outcome);
                    }
                    if stream.delivered > before {
                        attempt = 0;
                    }
                    let reason = match end {
                        Err(Some(err)) => format!("event stream interrupted: {err:#}"),
                        _ => "event stream closed".to_owned(),
                    };
                    (policy.delay(attempt), reason)
                }
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                    // Either the run does not exist (its status says so, as a problem) or
                    // the server predates the stream: then poll.
                    let status: RunStatusResponse = api.get(&run_path).await?;
                    printer.note("this server has no event stream; polling the run's status");
                    return poll(api, &run_path, status, StatusEvents::default(), printer, policy).await;
                }
                status if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                    failures += 1;
                    let asked = api::retry_after(&response);
                    if failures > policy.max_retries {
                        return Err(api::problem_of(response).await);
                    }
                    let wait = asked.unwrap_or_else(|| policy.delay(attempt));
                    (wait, format!("server answered {}", status.as_u16()))
                }
                _ => return Err(api::problem_of(response).await),
            },
        };
        printer.note(&format!("{reason}; reconnecting in {}", seconds(wait)));
        tokio::time::sleep(wait).await;
        attempt = attempt.saturating_add(1);
    }
}

/// What the stream has shown so far, across connections.
#[derive(Debug, Default)]
struct EventStream {
    last_id: Option<u64>,
    delivered: u64,
}

impl EventStream {
    /// Reads one connection. `Ok` at the terminal event; `Err` when the stream ended
    /// before it, with the transport error if there was one.
    async fn read(
        &mut self,
        api: &Api,
        response: Response,
        printer: &mut EventPrinter,
    ) -> Result<Outcome, Option<anyhow::Error>> {
        let mut parser = SseParser::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| Some(api.transport_error(err)))?;
            for event in parser.push(&chunk).into_iter().filter_map(|m| self.accept(m)) {
                printer.event(&event);
                if let Some(outcome) = event.outcome() {
                    return Ok(outcome);
                }
            }
        }
        Err(None)
    }

    /// The event of a message, unless its id was already seen (a replay overlapping what
    /// was shown before a reconnect).
    fn accept(&mut self, message: SseMessage) -> Option<RunEvent> {
        let id = message.id.as_deref().and_then(|id| id.trim().parse::<u64>().ok());
        if let (Some(id), Some(last)) = (id, self.last_id) {
            if id <= last {
                return None;
            }
        }
        if id.is_some() {
            self.last_id = id;
        }
        self.delivered += 1;
        let data = serde_json::from_str(&message.data).unwrap_or(Value::String(message.data));
        Some(RunEvent {
            id,
            kind: message.event,
            data,
        })
    }
}

/// Follows a run by reading its status every backoff base (1 s by default).
async fn poll(
    api: &Api,
    run_path: &str,
    mut status: RunStatusResponse,
    mut events: StatusEvents,
    printer: &mut EventPrinter,
    policy: RetryPolicy,
) -> anyhow::Result<Outcome> {
    let mut failures = 0u32;
    loop {
        for event in events.next(&status) {
            printer.event(&event);
            if let Some(outcome) = event.outcome() {
                return Ok(outcome);
            }
        }
        let mut wait = policy.base;
        status = loop {
            tokio::time::sleep(wait).await;
            match api.get::<RunStatusResponse>(run_path).await {
                Ok(status) => break status,
                Err(err) if err.is::<Unreachable>() && failures < policy.max_retries => {
                    wait = policy.delay(failures);
                    failures += 1;
                    printer.note(&format!("{err:#}; retrying in {}", seconds(wait)));
                }
                Err(err) => return Err(err).context("reading the run's status"),
            }
        };
        failures = 0;
    }
}

fn seconds(wait: Duration) -> String {
    format!("{:.1} s", wait.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, event: &str) -> SseMessage {
        SseMessage {
            id: Some(id.to_owned()),
            event: event.to_owned(),
            data: format!(r#"{{"n":{id}}}"#),
        }
    }

    #[test]
    fn replayed_events_are_shown_once() {
        let mut stream = EventStream::default();
        let first: Vec<u64> = ["1", "2", "3"]
            .into_iter()
            .filter_map(|id| stream.accept(message(id, "progress")))
            .filter_map(|event| event.id)
            .collect();
        // The server resumes after 3, but a replay that overlaps is dropped all the same.
        let second: Vec<u64> = ["2", "3", "4", "5"]
            .into_iter()
            .filter_map(|id| stream.accept(message(id, "progress")))
            .filter_map(|event| event.id)
            .collect();
        assert_eq!(first, [1, 2, 3]);
        assert_eq!(second, [4, 5]);
        assert_eq!(stream.last_id, Some(5));
        assert_eq!(stream.delivered, 5);
    }

    #[test]
    fn event_data_is_parsed_as_json() {
        let event = EventStream::default().accept(message("7", "completed")).unwrap();
        assert_eq!(event.data["n"], 7);
        assert_eq!(event.outcome(), Some(Outcome::Succeeded));
    }
}
