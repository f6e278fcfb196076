//! `GET /export-center/runs/{runId}/events`: the run's Server-Sent Events stream
//! (SPEC §7). Stored events after `Last-Event-ID` are replayed, then live ones follow;
//! the stream ends after a terminal event, or after the idle timeout without events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use export_core::{ErrorCode, RunId};
use export_distribution::link_expiry;
use export_store::RunEvent;
use futures::stream::Stream;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::context::{Caller, Scope};
use crate::error::ApiError;
use crate::presenter::chrono_duration;
use crate::runs::visible_run;
use crate::state::AppState;

/// Clients wait this long before reconnecting.
const RETRY: Duration = Duration::from_millis(2000);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsParams {
    /// For browsers that cannot send the `Last-Event-ID` header.
    last_event_id: Option<String>,
}

/// The run's event stream.
#[utoipa::path(
    get,
    path = "/export-center/runs/{runId}/events",
    tag = "runs",
    params(
        ("runId" = String, Path, description = "export-run::<tenant>::<YYYY-MM-DD>::<seq>"),
        EventsParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
        ("X-StellaOps-Tenant" = String, Header, description = "The caller's tenant"),
    ),
    responses(
        (status = 200, description = "text/event-stream of started, progress, artifact_ready, completed, failed and cancelled events", content_type = "text/event-stream"),
        (status = 404, description = "No such run for this tenant", body = export_api_types::Problem),
        (status = 406, description = "The client does not accept text/event-stream", body = export_api_types::Problem),
    )
)]
pub(crate) async fn stream_run_events(
    State(app): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    Query(params): Query<EventsParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Scope::ExportRead)?;
    let run = visible_run(&app, &caller, &run_id).await?;
    if !accepts_event_stream(&headers) {
        return Err(ApiError::new(
            ErrorCode::RequestInvalid,
            "this endpoint answers text/event-stream only",
        )
        .with_status(StatusCode::NOT_ACCEPTABLE));
    }
    let header_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let after = match header_id.or(params.last_event_id) {
        None => 0,
        Some(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| ApiError::invalid_field("Last-Event-ID", "must be an event id of this stream"))?,
    };

    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(pump(app.clone(), run.id.clone(), after, tx));
    let keep_alive = KeepAlive::new()
        .interval(app.config.sse_keep_alive)
        .text("keep-alive");
    let mut response = Sse::new(receiver_stream(rx))
        .keep_alive(keep_alive)
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, "no-store".parse().expect("valid header"));
    Ok(response)
}

fn accepts_event_stream(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept
        .split(',')
        .map(|part| part.split(';').next().unwrap_or("").trim())
        .any(|kind| kind == "text/event-stream" || kind == "text/*" || kind == "*/*")
}

fn receiver_stream(rx: mpsc::Receiver<Event>) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    })
}

/// Replays the stored events after `after`, then forwards live ones, until a terminal
/// event, the idle timeout, a listener too slow for the buffer, or a gone client.
async fn pump(app: AppState, run_id: RunId, mut last: i64, tx: mpsc::Sender<Event>) {
    if tx
        .send(Event::default().retry(RETRY).comment("connected"))
        .await
        .is_err()
    {
        return;
    }
    // Subscribe before reading the store, so nothing falls between replay and live.
    let mut live = app.events.subscribe(&run_id, last);
    // The links' cap: the run's retention end, read once per stream rather than per
    // event and listener. A run that ends while streaming has at least a day of
    // retention left, longer than any link, so `None` is safe for it.
    let expires_at = match app.store.get_run(&run_id.tenant, &run_id).await {
        Ok(Some(run)) => run.expires_at,
        _ => None,
    };
    loop {
        let batch = match app.store.events_after(&run_id.tenant, &run_id, last, 500).await {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(error = %err, "replaying the events of run {run_id}");
                return;
            }
        };
        let full = batch.len() == 500;
        for event in batch {
            last = event.seq;
            let terminal = event.is_terminal();
            if tx.send(render(&app, &run_id, expires_at, event)).await.is_err() || terminal {
                return;
            }
        }
        if !full {
            break;
        }
    }
    // A run that has ended and whose stream has no terminal event (it was lost) ends here.
    match app.store.get_run(&run_id.tenant, &run_id).await {
        Ok(Some(run)) if run.status.is_terminal() => {
            let ended = app
                .store
                .events_after(&run_id.tenant, &run_id, last, 1)
                .await
                .map(|e| e.is_empty());
            if ended.unwrap_or(true) {
                return;
            }
        }
        Ok(_) => {}
        Err(_) => return,
    }
    loop {
        let next = tokio::time::timeout(app.config.sse_idle_timeout, live.recv()).await;
        let event = match next {
            Err(_idle) => return,
            Ok(Err(RecvError::Lagged(_))) | Ok(Err(RecvError::Closed)) => return,
            Ok(Ok(event)) => event,
        };
        if event.seq <= last {
            continue;
        }
        last = event.seq;
        let terminal = event.is_terminal();
        if tx.send(render(&app, &run_id, expires_at, event)).await.is_err() || terminal {
            return;
        }
    }
}

/// The SSE message of a stored event, with fresh signed links in place of paths.
fn render(app: &AppState, run_id: &RunId, expires_at: Option<DateTime<Utc>>, event: RunEvent) -> Event {
    let mut data = event.data;
    if let Value::Object(fields) = &mut data {
        let expires = link_expiry(
            app.clock.now(),
            chrono_duration(app.config.link_lifetime),
            expires_at,
        );
        for (path_key, url_key) in [
            ("path", "url"),
            ("manifestPath", "manifestUrl"),
            ("manifestDssePath", "manifestDsseUrl"),
        ] {
            if let Some(Value::String(path)) = fields.remove(path_key) {
                let url = format!(
                    "{}{}",
                    app.config.public_base_url,
                    app.urls.sign(run_id, &path, expires)
                );
                fields.insert(url_key.to_owned(), Value::String(url));
            }
        }
    }
    Event::default()
        .id(event.seq.to_string())
        .event(event.event)
        .data(serde_json::to_string(&data).unwrap_or_default())
}
