//! The change hub: one poller of the backend's log heads for every change follower of this
//! node (SSE streams and the NATS publisher today; GraphQL subscriptions, MCP and gRPC watchers
//! later), and the retention job that trims the log.
//!
//! A follower that has caught up waits in [`ChangeSignal::changed`] on a per-tenant
//! `watch` channel holding the tenant's newest cursor. The poller reads
//! [`ChangeLog::change_heads`] every `events.poll_interval` while anyone waits, and at once
//! after a write through this node ([`crate::metered::Metered`] notifies it), so a write here
//! reaches a stream here within about two milliseconds of the request (README, Performance)
//! and a write on another gateway node sharing the database within one poll interval more.
//! Nothing is polled when no one waits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use p8fs_core::{Backend, ChangeCursor, ChangeSignal, Clock, TenantId};
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

/// Shortest time between two polls, so that a burst of writes costs a poll per millisecond at
/// most.
const MIN_POLL_GAP: Duration = Duration::from_millis(1);

/// Wakes change followers when their tenant's log grows.
pub struct ChangeHub {
    backend: Arc<dyn Backend>,
    /// The newest cursor seen per tenant someone waits on.
    heads: Mutex<HashMap<TenantId, watch::Sender<ChangeCursor>>>,
    /// Every tenant's head, for followers of all tenants (the NATS publisher).
    all: watch::Sender<Arc<Vec<(TenantId, ChangeCursor)>>>,
    /// Notified after a write through this node, and when a follower starts waiting.
    wake: Arc<Notify>,
    interval: Duration,
}

impl ChangeHub {
    /// A hub over `backend`, polling every `interval` while followers wait and whenever `wake`
    /// is notified.
    pub fn new(backend: Arc<dyn Backend>, wake: Arc<Notify>, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            backend,
            heads: Mutex::new(HashMap::new()),
            all: watch::channel(Arc::new(Vec::new())).0,
            wake,
            interval,
        })
    }

    /// Runs the poller until the process ends.
    pub fn spawn(self: &Arc<Self>) {
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(hub.interval) => {}
                    () = hub.wake.notified() => {}
                }
                if hub.has_followers() {
                    hub.poll().await;
                }
                tokio::time::sleep(MIN_POLL_GAP).await;
            }
        });
    }

    /// Every tenant's head, updated on each poll that finds the log grown; the hub polls for
    /// as long as the receiver lives.
    pub fn follow_all(&self) -> watch::Receiver<Arc<Vec<(TenantId, ChangeCursor)>>> {
        let receiver = self.all.subscribe();
        self.wake.notify_one();
        receiver
    }

    /// Whether anyone waits; forgets tenants no one waits on any more.
    fn has_followers(&self) -> bool {
        let mut heads = self.heads.lock();
        heads.retain(|_, sender| sender.receiver_count() > 0);
        !heads.is_empty() || self.all.receiver_count() > 0
    }

    /// Reads every tenant's head and wakes the followers of those that grew.
    async fn poll(&self) {
        match self.backend.change_heads().await {
            Ok(all) => {
                self.all.send_if_modified(|seen| {
                    let grew = **seen != all;
                    if grew {
                        *seen = Arc::new(all.clone());
                    }
                    grew
                });
                let heads = self.heads.lock();
                for (tenant, head) in all {
                    if let Some(sender) = heads.get(&tenant) {
                        sender.send_if_modified(|seen| {
                            let grew = head > *seen;
                            if grew {
                                *seen = head;
                            }
                            grew
                        });
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "reading the change log's heads failed"),
        }
    }
}

#[async_trait]
impl ChangeSignal for ChangeHub {
    async fn changed(&self, tenant: &TenantId, seen: ChangeCursor) {
        let mut receiver = self
            .heads
            .lock()
            .entry(tenant.clone())
            .or_insert_with(|| watch::channel(ChangeCursor(0)).0)
            .subscribe();
        // A poll soon after subscribing covers a change that committed before it.
        self.wake.notify_one();
        // The sender lives in the map while this receiver does; an error cannot happen.
        let _ = receiver.wait_for(|head| *head > seen).await;
    }
}

/// Trims the change log to `retention` every `interval`.
pub fn spawn_retention(
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    retention: Duration,
    interval: Duration,
) {
    let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            let before = clock.now().saturating_sub(retention);
            match backend.trim_changes(before).await {
                Ok(removed) if removed > 0 => {
                    tracing::info!(removed, "trimmed the change log to its retention");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "trimming the change log failed"),
            }
        }
    });
}
