//! Fan-out of run events to SSE listeners: one subscription per run per process feeds
//! every listener of that run. A run's channel is fed by one task that reads the
//! stored events after the last one it sent, woken at once by this process's runner and
//! every `poll_interval` otherwise (events written by another process), so listeners
//! never poll the database themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use export_core::RunId;
use export_store::{RunEvent, Store};
use tokio::sync::{broadcast, Notify};

/// Events buffered per run for slow listeners; one that falls further behind is
/// disconnected and resumes with `Last-Event-ID`.
const BUFFER: usize = 256;

pub struct EventHub {
    store: Arc<dyn Store>,
    poll_interval: Duration,
    channels: Mutex<HashMap<RunId, Arc<Channel>>>,
}

struct Channel {
    sender: broadcast::Sender<RunEvent>,
    wake: Notify,
}

impl EventHub {
    pub fn new(store: Arc<dyn Store>, poll_interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            poll_interval,
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// Wakes the feeder of `run_id`, if anyone listens: an event was just stored.
    pub fn notify(&self, run_id: &RunId) {
        if let Some(channel) = self.lock().get(run_id) {
            channel.wake.notify_one();
        }
    }

    /// Listens to the run's events stored after `after` (and possibly some before:
    /// listeners skip what they have already sent).
    pub fn subscribe(self: &Arc<Self>, run_id: &RunId, after: i64) -> broadcast::Receiver<RunEvent> {
        let mut channels = self.lock();
        if let Some(channel) = channels.get(run_id) {
            return channel.sender.subscribe();
        }
        let (sender, receiver) = broadcast::channel(BUFFER);
        let channel = Arc::new(Channel {
            sender,
            wake: Notify::new(),
        });
        channels.insert(run_id.clone(), channel.clone());
        drop(channels);
        let hub = self.clone();
        let run_id = run_id.clone();
        tokio::spawn(async move { hub.feed(run_id, channel, after).await });
        receiver
    }

    async fn feed(self: Arc<Self>, run_id: RunId, channel: Arc<Channel>, mut last: i64) {
        loop {
            match self.store.events_after(&run_id.tenant, &run_id, last, 500).await {
                Ok(events) => {
                    for event in events {
                        last = event.seq;
                        let _ = channel.sender.send(event);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "reading the events of run {run_id}"),
            }
            if channel.sender.receiver_count() == 0 {
                let mut channels = self.lock();
                // A listener may have joined between the check and the lock.
                if channel.sender.receiver_count() == 0 {
                    channels.remove(&run_id);
                    return;
                }
            }
            tokio::select! {
                _ = channel.wake.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Arc<Channel>>> {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
