//! `GET /export-center/runs/{runId}/events`: the run's Server-Sent Events stream
//! (SPEC §7). Stored events after `Last-Event-ID` are replayed, then live ones follow;
//! the stream ends after a terminal event, after the idle timeout without events, when
//! the caller's token expires, or when the server shuts down. A tenant holds at most
//! `limits.sse_streams_per_tenant` streams on one process.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use export_core::{ErrorCode, RunId};
use export_store::{Run, RunEvent, Store};
use futures::stream::{BoxStream, StreamExt};
use http_body::Frame;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::body::{Path, Query};
use crate::context::{Caller, Scope};
use crate::error::ApiError;
use crate::event_hub::{EventHub, Message, Render, Subscription};
use crate::event_streams::StreamSlot;
use crate::links::{LinkWindow, Links};
use crate::runs::visible_run;
use crate::state::AppState;

/// Clients wait this long before reconnecting.
const RETRY: Duration = Duration::from_millis(2000);

/// Stored events read per store call.
const BATCH: u32 = 500;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsParams {
    /// For browsers that cannot send the `Last-Event-ID` header.
    #[param(value_type = Option<u64>)]
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
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id (one of the run's)"),
    ),
    responses(
        (status = 200, description = "text/event-stream of started, progress, artifact_ready, completed, failed and cancelled events", content_type = "text/event-stream"),
        (status = 404, description = "No such run for this tenant", body = export_api_types::Problem),
        (status = 406, description = "The client does not accept text/event-stream", body = export_api_types::Problem),
        (status = 429, description = "The tenant holds as many open event streams as it may", body = export_api_types::Problem,
            headers(("Retry-After" = u64, description = "Seconds before reconnecting"))),
    )
)]
pub(crate) async fn stream_run_events(
    State(app): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    Query(params): Query<EventsParams>,
    version: Version,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Scope::ExportRead)?;
    let slot = app
        .event_streams
        .open(&caller.tenant)
        .ok_or_else(|| too_many_streams(&caller))?;
    let run = visible_run(&app, &caller, &run_id).await?;
    if !accepts_event_stream(&headers) {
        return Err(ApiError::new(
            ErrorCode::RequestInvalid,
            "this endpoint answers text/event-stream only",
        )
        .with_status(StatusCode::NOT_ACCEPTABLE));
    }
    let header_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = resume_after(&app, &run, header_id, params.last_event_id.as_deref()).await?;
    let follow = Follow::new(&app, &caller, &run, slot, after);
    Ok(event_stream(follow, version))
}

/// The event id the stream resumes after (the `Last-Event-ID` header, else the
/// `lastEventId` parameter, else 0), which must be one of the run's stored events. Both
/// must be event ids when sent, even the one that is not used.
async fn resume_after(
    app: &AppState,
    run: &Run,
    header: Option<&str>,
    query: Option<&str>,
) -> Result<i64, ApiError> {
    let parse = |text: &str| {
        text.trim()
            .parse::<i64>()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(not_an_event_id)
    };
    let (header, query) = (header.map(parse).transpose()?, query.map(parse).transpose()?);
    let after = header.or(query).unwrap_or(0);
    // Event ids are numbered 1, 2, 3 … per run and stored before they are sent, so a
    // client can only hold one that is stored. A larger one would also become the start
    // of the run's shared feeder if this listener is the first, and starve the others.
    if after > 0
        && app
            .store
            .events_after(&run.id.tenant, &run.id, after - 1, 1)
            .await?
            .is_empty()
    {
        return Err(not_an_event_id());
    }
    Ok(after)
}

/// The `200` answer whose body is `follow`'s stream.
fn event_stream(follow: Follow, version: Version) -> Response {
    let chunks = futures::stream::unfold(follow, |mut follow| async move {
        let chunk = follow.next_chunk().await?;
        let last = matches!(follow.phase, Phase::Done);
        Some(((chunk, last), follow))
    });
    let body = Body::new(EventBody {
        chunks: chunks.boxed(),
        ended: false,
    });
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response();
    // A stream's end is its connection's end (HTTP/1; HTTP/2 has no such header): hyper
    // closes the connection in the same step as it ends the body, instead of keeping it
    // for another request and being woken again when the client hangs up.
    if version <= Version::HTTP_11 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// `429`: the tenant holds as many streams as it may; one must end first.
fn too_many_streams(caller: &Caller) -> ApiError {
    let mut error = ApiError::new(
        ErrorCode::RateLimit,
        format!(
            "tenant `{}` holds as many open event streams as it may",
            caller.tenant
        ),
    );
    error.retry_after = Some(RETRY.as_secs());
    error
}

fn not_an_event_id() -> ApiError {
    ApiError::invalid_field("Last-Event-ID", "must be an event id of this stream")
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

/// The response body: the stream's chunks as they come. It reports its end together
/// with its last chunk when it knows it (a replay that ends with the terminal event), so
/// hyper writes that chunk and the end of the chunked body in one write rather than two.
/// A terminal event that comes live is followed by a wait for the run's other listeners
/// ([`Subscription::fanned_out`]), and the end comes after it.
struct EventBody {
    /// Each chunk, and whether it is the last.
    chunks: BoxStream<'static, (Bytes, bool)>,
    ended: bool,
}

impl HttpBody for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match ready!(self.chunks.poll_next_unpin(cx)) {
            Some((chunk, last)) => {
                self.ended = last;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => {
                self.ended = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// The first message: the reconnection delay, and a comment so the client knows the
/// stream is set up.
fn connected_message() -> Bytes {
    Bytes::from(format!("retry: {}\n: connected\n\n", RETRY.as_millis()))
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// One listener's stream: stored events after `last`, then live messages of the run's
/// feeder, until a terminal event, the idle timeout, the token's expiry, the server's
/// shutdown, a listener too slow for the buffer, or a gone client (hyper then drops the
/// stream, and with it the tenant's slot).
struct Follow {
    store: Arc<dyn Store>,
    hub: Arc<EventHub>,
    keep_alive: Duration,
    idle_timeout: Duration,
    run_id: RunId,
    last: i64,
    render: Render,
    phase: Phase,
    live: Option<Subscription>,
    /// Fires for keep-alives, the idle timeout and the token's expiry; checked against
    /// the instants below when it fires, so events never touch the timer.
    timer: Pin<Box<Sleep>>,
    /// When the caller's token expires: the stream ends then.
    expires: Option<Instant>,
    /// Completes when the server shuts down: the stream ends then.
    closing: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The tenant's place for this stream, freed when it is dropped.
    slot: StreamSlot,
    last_event: Instant,
    last_write: Instant,
}

enum Phase {
    Connect,
    /// Sending stored events; `Live` follows.
    Replay,
    Live,
    /// The terminal event came live: waiting for the other listeners to have it too.
    Drain,
    Done,
}

impl Follow {
    /// The stream of `run` for `caller` after event `after`, holding `slot`.
    fn new(app: &AppState, caller: &Caller, run: &Run, slot: StreamSlot, after: i64) -> Self {
        let config = &app.config;
        // The token's lifetime left, by the service's clock, from now on this machine's.
        let expires = caller
            .token_expires
            .map(|exp| Instant::now() + (exp - app.clock.now()).to_std().unwrap_or(Duration::ZERO));
        let first_timer = Instant::now() + config.sse_keep_alive.min(config.sse_idle_timeout);
        Self {
            store: app.store.clone(),
            hub: app.events.clone(),
            keep_alive: config.sse_keep_alive,
            idle_timeout: config.sse_idle_timeout,
            render: renderer(app, run),
            live: None,
            phase: Phase::Connect,
            timer: Box::pin(tokio::time::sleep_until(
                expires.map_or(first_timer, |expires| expires.min(first_timer)),
            )),
            expires,
            closing: Box::pin(app.event_streams.closing()),
            slot,
            last_event: Instant::now(),
            last_write: Instant::now(),
            run_id: run.id.clone(),
            last: after,
        }
    }

    /// The next bytes to send, `None` when the stream ends.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.slot.is_closing() {
            self.phase = Phase::Done;
            return None;
        }
        loop {
            match self.phase {
                Phase::Connect => {
                    self.phase = Phase::Replay;
                    return Some(connected_message());
                }
                Phase::Replay => {
                    if let Some(chunk) = self.replay().await {
                        return Some(chunk);
                    }
                }
                Phase::Live => return self.live().await,
                Phase::Drain => {
                    if let Some(live) = self.live.as_mut() {
                        live.fanned_out().await;
                    }
                    self.phase = Phase::Done;
                }
                Phase::Done => return None,
            }
        }
    }

    /// Reads one batch of stored events: the chunk to send, if there is one, and the
    /// next phase. Subscribing comes after the stored events and is followed by one
    /// more read, so an event stored in between is not lost; a run whose terminal event
    /// is stored ends in the replay and never starts a feeder.
    async fn replay(&mut self) -> Option<Bytes> {
        let (tenant, run_id) = (&self.run_id.tenant, &self.run_id);
        let batch = match self.store.events_after(tenant, run_id, self.last, BATCH).await {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(error = %err, "replaying the events of run {run_id}");
                self.phase = Phase::Done;
                return None;
            }
        };
        let full = batch.len() == BATCH as usize;
        let mut chunk = BytesMut::new();
        for event in batch {
            let message = (self.render)(event);
            self.last = message.seq;
            chunk.extend_from_slice(&message.bytes);
            if message.terminal {
                self.phase = Phase::Done;
                return Some(chunk.freeze());
            }
        }
        if !full {
            if self.live.is_none() {
                let render = self.render.clone();
                self.live = Some(self.hub.subscribe(run_id, self.last, || render));
            } else {
                self.last_event = Instant::now();
                self.phase = if self.nothing_more().await {
                    Phase::Done
                } else {
                    Phase::Live
                };
            }
        }
        (!chunk.is_empty()).then(|| chunk.freeze())
    }

    /// Whether the run has ended and every event after `last` has been sent. A run's end
    /// and its terminal event are stored together, so this is the stream of a run whose
    /// terminal event the client already has (it resumed after it), or of a run ended by
    /// an earlier version without one: either way nothing more will come.
    async fn nothing_more(&self) -> bool {
        let (tenant, run_id) = (&self.run_id.tenant, &self.run_id);
        match self.store.get_run(tenant, run_id).await {
            Ok(Some(run)) if run.status.is_terminal() => {}
            Ok(_) => return false,
            Err(_) => return true,
        }
        match self.store.events_after(tenant, run_id, self.last, 1).await {
            Ok(events) => events.is_empty(),
            Err(_) => true,
        }
    }

    /// Waits for the next live messages and sends every one already waiting in one chunk,
    /// or a keep-alive; `None` at the end.
    async fn live(&mut self) -> Option<Bytes> {
        loop {
            let live = self.live.as_mut()?;
            tokio::select! {
                received = live.messages.recv() => {
                    let Ok(message) = received else {
                        // Closed, or lagged: the client resumes with `Last-Event-ID`.
                        self.phase = Phase::Done;
                        return None;
                    };
                    if message.seq <= self.last {
                        continue;
                    }
                    let chunk = self.take_waiting(message);
                    let now = Instant::now();
                    self.last_event = now;
                    self.last_write = now;
                    return Some(chunk);
                }
                () = self.timer.as_mut() => {
                    let now = Instant::now();
                    let idle_end = self.last_event + self.idle_timeout;
                    let end = self.expires.map_or(idle_end, |expires| expires.min(idle_end));
                    if now >= end {
                        self.phase = Phase::Done;
                        return None;
                    }
                    let keep_alive_due = self.last_write + self.keep_alive;
                    if now >= keep_alive_due {
                        self.last_write = now;
                        let next = (now + self.keep_alive).min(end);
                        self.timer.as_mut().reset(next);
                        return Some(Bytes::from_static(KEEP_ALIVE));
                    }
                    self.timer.as_mut().reset(keep_alive_due.min(end));
                }
                () = self.closing.as_mut() => {
                    self.phase = Phase::Done;
                    return None;
                }
            }
        }
    }

    /// `first` and every later message already received, as one chunk: a listener that
    /// fell behind catches up with one write instead of one per event.
    fn take_waiting(&mut self, first: Message) -> Bytes {
        self.last = first.seq;
        if first.terminal {
            self.phase = Phase::Drain;
            return first.bytes;
        }
        let Some(live) = self.live.as_mut() else {
            return first.bytes;
        };
        let mut chunk: Option<BytesMut> = None;
        loop {
            match live.messages.try_recv() {
                Ok(message) if message.seq <= self.last => {}
                Ok(message) => {
                    self.last = message.seq;
                    chunk
                        .get_or_insert_with(|| BytesMut::from(&first.bytes[..]))
                        .extend_from_slice(&message.bytes);
                    if message.terminal {
                        self.phase = Phase::Drain;
                        break;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(_)) | Err(TryRecvError::Closed) => {
                    self.phase = Phase::Done;
                    break;
                }
            }
        }
        chunk.map_or(first.bytes, BytesMut::freeze)
    }
}

/// Renders the run's stored events with fresh signed links in place of paths; shared by
/// this listener's replay and, if it starts it, the run's feeder.
fn renderer(app: &AppState, run: &Run) -> Render {
    let links = Links::new(app);
    let run_id = run.id.clone();
    // The links' cap: the run's retention end when the stream opened. A run that ends
    // while streaming has at least a day of retention left, longer than any link, so
    // `None` is safe for it.
    let retention_end = run.expires_at;
    Arc::new(move |event| render(&links.for_run(&run_id, retention_end), event))
}

/// The SSE message of a stored event, with links of `window` in place of paths.
fn render(window: &LinkWindow<'_>, event: RunEvent) -> Message {
    let terminal = event.is_terminal();
    let mut data = event.data;
    if let Value::Object(fields) = &mut data {
        for (path_key, url_key) in [
            ("path", "url"),
            ("manifestPath", "manifestUrl"),
            ("manifestDssePath", "manifestDsseUrl"),
        ] {
            if let Some(Value::String(path)) = fields.remove(path_key) {
                fields.insert(url_key.to_owned(), Value::String(window.url(&path)));
            }
        }
    }
    // Event names are ours and JSON is written on one line, so neither breaks a line.
    let data = serde_json::to_string(&data).unwrap_or_default();
    Message {
        seq: event.seq,
        terminal,
        bytes: Bytes::from(format!(
            "id: {}\nevent: {}\ndata: {data}\n\n",
            event.seq, event.event
        )),
    }
}
