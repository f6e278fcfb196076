//! Fan-out of run events to SSE listeners: one subscription per run per process feeds
//! every listener of that run, and no listener reads the database itself.
//!
//! A run's channel is fed by one task, its feeder, which reads the stored events after
//! the last one it sent, renders each into its SSE message once (signed links included:
//! they depend on the run, the path and the link window, not on the listener), and
//! broadcasts the ready bytes. The feeder is woken at once by this process's runner
//! (`notify`), by the watcher when another process has appended events, and every
//! `poll_interval` in any case.
//!
//! The watcher is one task per process, running while any run is followed: every
//! `WATCH_INTERVAL` it asks the store which runs had events appended since its last
//! look (`Store::runs_with_events_after`, one indexed read) and wakes only their
//! feeders. So events written by a worker in another process reach the listeners
//! within tens of milliseconds, at the cost of one small read per interval per process,
//! and a busy run does not make the feeders of quiet ones read the store.
//!
//! Feeders and the watcher run on a small runtime of their own, on one thread. Sending
//! an event wakes every listener's connection task on the server's runtime, thousands
//! of them; were the feeders there too, the next event would wait in line behind that
//! whole fan-out before it is even read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use export_core::RunId;
use export_store::{RunEvent, Store};
use tokio::runtime::Handle;
use tokio::sync::{broadcast, oneshot, watch, Notify};

/// Messages buffered per run for slow listeners; one that falls further behind is
/// disconnected and resumes with `Last-Event-ID`.
const BUFFER: usize = 256;

/// Events read per store call: half the buffer, so a feeder catching up on a backlog
/// gives its listeners a store read's time to drain between batches instead of
/// overrunning them.
const BATCH: u32 = (BUFFER / 2) as u32;

/// How often the watcher looks for events appended by another process.
const WATCH_INTERVAL: Duration = Duration::from_millis(25);

/// Appended events the watcher looks at per store call.
const WATCH_BATCH: u32 = 1_000;

/// How long listeners wait, after a run's terminal event, for every other listener to
/// have it before they end their streams; a listener too slow to take it in that time
/// keeps the others waiting no longer.
const FAN_OUT_WAIT: Duration = Duration::from_secs(2);

/// How often the feeder looks whether every listener has the terminal event.
const FAN_OUT_CHECK: Duration = Duration::from_millis(2);

/// One stored event as every listener sends it.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) seq: i64,
    /// `completed`, `failed` or `cancelled`: the stream ends after it.
    pub(crate) terminal: bool,
    /// The whole SSE message: `id`, `event` and `data` lines and the blank line.
    pub(crate) bytes: Bytes,
}

/// Renders a stored event of one run into its message; given by the first listener of the
/// run, used by its feeder for every listener.
pub(crate) type Render = Arc<dyn Fn(RunEvent) -> Message + Send + Sync>;

pub struct EventHub {
    store: Arc<dyn Store>,
    poll_interval: Duration,
    inner: Mutex<Inner>,
    feeders: Feeders,
}

/// Where feeders and the watcher run: a runtime on a thread of its own, which ends when
/// the hub is dropped (or, should that thread fail to start, the caller's runtime).
struct Feeders {
    handle: Handle,
    /// Dropping it ends the thread.
    _stop: Option<oneshot::Sender<()>>,
}

impl Feeders {
    fn start() -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        // The runtime is built, run and dropped on its own thread: dropping a runtime
        // inside the server's would panic.
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("event-feeders".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = handle_tx.send(Err(err));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async move { _ = stopped.await });
            });
        let started = spawned.and_then(|_| {
            handle_rx
                .recv()
                .map_err(|_| std::io::Error::other("the event feeders' thread ended at once"))?
        });
        match started {
            Ok(handle) => Self {
                handle,
                _stop: Some(stop),
            },
            Err(err) => {
                tracing::warn!(error = %err, "event feeders share the server's runtime: their thread did not start");
                Self {
                    handle: Handle::current(),
                    _stop: None,
                }
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    channels: HashMap<RunId, Arc<Channel>>,
    watching: bool,
}

struct Channel {
    sender: broadcast::Sender<Message>,
    wake: Notify,
    /// Set once every listener has the terminal event (or `FAN_OUT_WAIT` has passed).
    fanned_out: watch::Sender<bool>,
}

/// A listener's share of a run's channel.
pub(crate) struct Subscription {
    pub(crate) messages: broadcast::Receiver<Message>,
    fanned_out: watch::Receiver<bool>,
}

impl Subscription {
    /// Waits until every listener of the run has its terminal event, so that streams end,
    /// and their connections close, only after the last one was sent: the teardown of
    /// thousands of connections does not delay the terminal event of the others.
    pub(crate) async fn fanned_out(&mut self) {
        let _ = tokio::time::timeout(FAN_OUT_WAIT, self.fanned_out.wait_for(|done| *done)).await;
    }
}

impl EventHub {
    pub fn new(store: Arc<dyn Store>, poll_interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            poll_interval,
            inner: Mutex::new(Inner::default()),
            feeders: Feeders::start(),
        })
    }

    /// Wakes the feeder of `run_id`, if anyone listens: an event was just stored.
    pub fn notify(&self, run_id: &RunId) {
        if let Some(channel) = self.lock().channels.get(run_id) {
            channel.wake.notify_one();
        }
    }

    /// Listens to the messages of the run's events stored after `after` (and possibly
    /// some before: listeners skip what they have already sent). `render` is used if
    /// this call starts the run's feeder.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        run_id: &RunId,
        after: i64,
        render: impl FnOnce() -> Render,
    ) -> Subscription {
        let mut inner = self.lock();
        if let Some(channel) = inner.channels.get(run_id) {
            return Subscription {
                messages: channel.sender.subscribe(),
                fanned_out: channel.fanned_out.subscribe(),
            };
        }
        let (sender, messages) = broadcast::channel(BUFFER);
        let (fanned_out, fanned_out_receiver) = watch::channel(false);
        let channel = Arc::new(Channel {
            sender,
            wake: Notify::new(),
            fanned_out,
        });
        inner.channels.insert(run_id.clone(), channel.clone());
        let start_watcher = !std::mem::replace(&mut inner.watching, true);
        drop(inner);
        let spawner = &self.feeders.handle;
        spawner.spawn(self.clone().feed(run_id.clone(), channel, after, render()));
        if start_watcher {
            spawner.spawn(self.clone().watch());
        }
        Subscription {
            messages,
            fanned_out: fanned_out_receiver,
        }
    }

    async fn feed(self: Arc<Self>, run_id: RunId, channel: Arc<Channel>, mut last: i64, render: Render) {
        // However the feeder ends, even by a panic, its channel leaves the map, so that
        // the next listener starts a new feeder rather than join one nobody feeds.
        let _unregister = Unregister {
            hub: self.clone(),
            run_id: run_id.clone(),
            channel: channel.clone(),
        };
        loop {
            let mut ended = false;
            let mut full = false;
            match self
                .store
                .events_after(&run_id.tenant, &run_id, last, BATCH)
                .await
            {
                Ok(events) => {
                    full = events.len() == BATCH as usize;
                    for event in events {
                        last = event.seq;
                        let message = render(event);
                        ended |= message.terminal;
                        let _ = channel.sender.send(message);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "reading the events of run {run_id}"),
            }
            if (ended || channel.sender.receiver_count() == 0) && self.leave(&run_id, &channel, ended) {
                if ended {
                    // A message stays queued until every listener has received it.
                    let deadline = tokio::time::Instant::now() + FAN_OUT_WAIT;
                    while !channel.sender.is_empty() && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(FAN_OUT_CHECK).await;
                    }
                    channel.fanned_out.send_replace(true);
                }
                return;
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = channel.wake.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    /// Wakes the feeders of the runs that had events appended (by any process) since
    /// its last look; ends when no run is followed any more. It starts by waking every
    /// feeder once, so nothing appended before its first reading is missed.
    async fn watch(self: Arc<Self>) {
        let mut seen: Option<i64> = None;
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let mut more = true;
            while more {
                more = false;
                let moved = match seen {
                    None => self
                        .store
                        .event_watermark()
                        .await
                        .map(|watermark| (watermark, None)),
                    Some(watermark) => self
                        .store
                        .runs_with_events_after(watermark, WATCH_BATCH)
                        .await
                        .map(|activity| {
                            more = activity.more;
                            (activity.watermark, Some(activity.runs))
                        }),
                };
                let mut inner = self.lock();
                if inner.channels.is_empty() {
                    inner.watching = false;
                    return;
                }
                match moved {
                    Ok((watermark, runs)) => {
                        seen = Some(watermark);
                        let wake = |channel: &Arc<Channel>| channel.wake.notify_one();
                        match runs {
                            None => inner.channels.values().for_each(wake),
                            Some(runs) => runs.iter().filter_map(|id| inner.channels.get(id)).for_each(wake),
                        }
                    }
                    Err(err) => tracing::debug!(error = %err, "reading which runs have new events"),
                }
            }
        }
    }

    /// Takes the run's channel out of the hub if its feeder is done: after the terminal
    /// event, or when nobody listens. A listener may have joined since the caller looked;
    /// after the terminal event no other event comes, and a listener that joins later
    /// replays it from the store. The removal happens under the lock of the check
    /// (`Unregister` then finds nothing to remove).
    fn leave(&self, run_id: &RunId, channel: &Channel, ended: bool) -> bool {
        let mut inner = self.lock();
        if ended || channel.sender.receiver_count() == 0 {
            inner.channels.remove(run_id);
            return true;
        }
        false
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Removes a feeder's channel from the hub when the feeder ends, unless a newer
/// channel has taken its place.
struct Unregister {
    hub: Arc<EventHub>,
    run_id: RunId,
    channel: Arc<Channel>,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        if inner
            .channels
            .get(&self.run_id)
            .is_some_and(|current| Arc::ptr_eq(current, &self.channel))
        {
            inner.channels.remove(&self.run_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use export_core::Priority;
    use export_store::testing::{at, new_run, tenant};
    use export_store_sqlite::SqliteStore;

    use super::*;

    fn render() -> Render {
        Arc::new(|event: RunEvent| Message {
            seq: event.seq,
            terminal: event.is_terminal(),
            bytes: Bytes::from(event.event),
        })
    }

    /// A hub over a real store, one queued run, and `listeners` subscriptions to it.
    async fn listened_run(
        listeners: usize,
    ) -> (
        tempfile::TempDir,
        Arc<dyn Store>,
        RunId,
        Arc<EventHub>,
        Vec<Subscription>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("events.db")).await.unwrap());
        let acme = tenant("acme");
        let run = store
            .create_run(&acme, new_run(&acme, "daily", at(0), Priority::Normal), None)
            .await
            .unwrap();
        let hub = EventHub::new(store.clone(), Duration::from_secs(3600));
        let subscriptions = (0..listeners)
            .map(|_| hub.subscribe(&run.id, 0, render))
            .collect();
        (dir, store, run.id, hub, subscriptions)
    }

    /// Cancels the queued run (which stores its terminal event) and wakes its feeder.
    async fn end(store: &Arc<dyn Store>, hub: &EventHub, run_id: &RunId) {
        store.request_cancel(&run_id.tenant, run_id, at(1)).await.unwrap();
        hub.notify(run_id);
    }

    #[tokio::test]
    async fn streams_end_once_every_listener_has_the_terminal_event() {
        let (_dir, store, run_id, hub, mut listeners) = listened_run(2).await;
        end(&store, &hub, &run_id).await;
        let (mut first, mut second) = (listeners.remove(0), listeners.remove(0));
        assert!(first.messages.recv().await.unwrap().terminal);
        let early = tokio::time::timeout(Duration::from_millis(300), first.fanned_out()).await;
        assert!(
            early.is_err(),
            "the other listener does not have the terminal event yet"
        );
        assert!(second.messages.recv().await.unwrap().terminal);
        tokio::time::timeout(Duration::from_millis(500), first.fanned_out())
            .await
            .expect("every listener has it: the streams may end");
        tokio::time::timeout(Duration::from_millis(500), second.fanned_out())
            .await
            .expect("the last listener does not wait either");
    }

    #[tokio::test]
    async fn a_listener_that_never_takes_the_terminal_event_holds_the_others_back_for_a_while_only() {
        let (_dir, store, run_id, hub, mut listeners) = listened_run(2).await;
        end(&store, &hub, &run_id).await;
        let mut first = listeners.remove(0);
        assert!(first.messages.recv().await.unwrap().terminal);
        let started = tokio::time::Instant::now();
        tokio::time::timeout(FAN_OUT_WAIT * 2, first.fanned_out())
            .await
            .expect("the wait is bounded");
        assert!(started.elapsed() >= FAN_OUT_WAIT / 2, "{:?}", started.elapsed());
    }
}
