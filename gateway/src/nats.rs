//! The NATS JetStream publisher (`[events.nats]`): every change of every tenant's log, published
//! to `<subject_prefix>.<tenant>.<kind>.<op>` with the change record (as `/v1/changes` sends it)
//! as the payload and `Nats-Msg-Id: <tenant>:<cursor>`.
//!
//! Delivery is at-least-once out of p8fs and exactly-once into the stream within its duplicate
//! window: a change is re-sent until JetStream acknowledges it, and a re-send carries the same
//! message id, which JetStream drops as a duplicate. The publisher's position (the last
//! acknowledged cursor of each tenant) is a key-value record in the reserved tenant, written
//! after each acknowledged batch, so a restart or a NATS outage resumes where it stopped.
//!
//! With several gateway nodes on one database, one publishes at a time: it holds the lease
//! `events/nats/lease` ([`crate::lease`]); another node takes over when the holder stops
//! renewing, at most one ttl later, and starts from the stored positions. A holder that finds
//! the lease taken stops publishing.
//!
//! The reserved tenant's own log (sign-ins, tokens, S3 keys, these records) is never published.
//! A change trimmed by retention before it could be published is logged as lost, naming how many.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use p8fs_auth::RESERVED_TENANT;
use p8fs_core::{Backend, ChangeCursor, Clock, Error, Limit, TenantId, Version};
use p8fs_rest::changes::ChangeRecord;
use tokio::sync::watch;

use crate::changes::ChangeHub;
use crate::config::NatsConfig;
use crate::lease::{Lease, Positions, lost, node_id};

/// Changes read and published per batch (the position is stored after each).
const BATCH: u64 = 500;
/// Key of the lease record in the reserved tenant.
const LEASE_KEY: &str = "events/nats/lease";
/// Prefix of the position records in the reserved tenant: `events/nats/position/<tenant>`.
const POSITION_PREFIX: &str = "events/nats/position/";
/// Longest wait between two attempts after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the publisher; it runs until the process ends.
pub fn spawn(
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    hub: &Arc<ChangeHub>,
    config: NatsConfig,
) -> Result<(), String> {
    let node = node_id(clock.now());
    let reserved = TenantId::new(RESERVED_TENANT).map_err(|e| e.to_string())?;
    let lease = Lease::new(
        backend.clone(),
        reserved.clone(),
        LEASE_KEY,
        &node,
        config.lease_ttl,
    )
    .map_err(|e| e.to_string())?;
    let positions = Positions::new(backend.clone(), reserved.clone(), POSITION_PREFIX);
    let publisher = Publisher {
        backend,
        positions,
        heads: hub.follow_all(),
        node,
        reserved,
        lease,
        config,
    };
    tokio::spawn(publisher.run());
    Ok(())
}

struct Publisher {
    backend: Arc<dyn Backend>,
    /// Every tenant's newest cursor, from the change hub.
    heads: watch::Receiver<Arc<Vec<(TenantId, ChangeCursor)>>>,
    node: String,
    /// Where the lease and the positions live; its own log is never published.
    reserved: TenantId,
    lease: Lease,
    positions: Positions,
    config: NatsConfig,
}

/// Why publishing stopped.
enum Stop {
    /// Another node holds the lease.
    LeaseLost,
    /// NATS or the backend failed; try again after a pause.
    Failed(String),
}

impl Publisher {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some(client) = self.connect().await else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            };
            let context = jetstream::new(client);
            if let Err(error) = self.ensure_stream(&context).await {
                tracing::warn!(%error, stream = %self.config.stream, "NATS: the JetStream stream is not usable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            // Connected: publish whenever this node holds the lease, until NATS fails.
            loop {
                let lease = match self.lease.acquire().await {
                    Ok(Some(version)) => version,
                    Ok(None) => {
                        tokio::time::sleep(self.lease.renew_every()).await;
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "NATS publisher: reading the lease failed");
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                };
                tracing::info!(node = %self.node, "NATS publisher holds the lease");
                match self.publish(&context, lease).await {
                    Stop::LeaseLost => {
                        tracing::info!(node = %self.node, "NATS publisher lost the lease");
                    }
                    Stop::Failed(error) => {
                        tracing::warn!(%error, "NATS publisher paused");
                        self.lease.release().await;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        break;
                    }
                }
            }
        }
    }

    async fn connect(&self) -> Option<async_nats::Client> {
        let options = async_nats::ConnectOptions::new()
            .name("p8fs")
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(self.config.ack_timeout));
        match options.connect(self.config.url.as_str()).await {
            Ok(client) => Some(client),
            Err(error) => {
                // The error names the server, never the credentials in the URL.
                tracing::warn!(%error, "NATS: cannot connect");
                None
            }
        }
    }

    /// Creates the stream capturing `<prefix>.>` unless it exists (an operator may have made it
    /// with other limits; it must capture the prefix).
    async fn ensure_stream(&self, context: &jetstream::Context) -> Result<(), String> {
        let config = jetstream::stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![format!("{}.>", self.config.subject_prefix)],
            duplicate_window: self.config.duplicate_window,
            ..Default::default()
        };
        context
            .get_or_create_stream(config)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Publishes while the lease is held: every tenant's changes after its stored position,
    /// then waits for the hub to report new heads.
    async fn publish(&mut self, context: &jetstream::Context, mut lease: Version) -> Stop {
        let renew_every = self.lease.renew_every();
        let mut renewed = tokio::time::Instant::now();
        // Positions are read from the backend each time the lease is taken: another node may
        // have advanced them.
        let mut positions: HashMap<TenantId, ChangeCursor> = HashMap::new();
        loop {
            if renewed.elapsed() >= renew_every {
                match self.lease.renew(lease).await {
                    Ok(version) => {
                        lease = version;
                        renewed = tokio::time::Instant::now();
                    }
                    Err(e) if lost(&e) => return Stop::LeaseLost,
                    Err(e) => return Stop::Failed(format!("renewing the lease: {e}")),
                }
            }
            let heads = Arc::clone(&self.heads.borrow_and_update());
            let mut behind = false;
            for (tenant, head) in heads.iter() {
                if *tenant == self.reserved {
                    continue;
                }
                let position = match positions.get(tenant) {
                    Some(position) => *position,
                    None => match self.positions.get(tenant).await {
                        Ok(position) => *positions.entry(tenant.clone()).or_insert(position),
                        Err(e) => return Stop::Failed(format!("reading a position: {e}")),
                    },
                };
                if position >= *head {
                    continue;
                }
                match self.publish_batch(context, tenant, position).await {
                    Ok((next, more)) => {
                        positions.insert(tenant.clone(), next);
                        behind |= more;
                    }
                    Err(stop) => return stop,
                }
                if renewed.elapsed() >= renew_every {
                    behind = true;
                    break;
                }
            }
            if !behind {
                let until_renewal = renew_every.saturating_sub(renewed.elapsed());
                tokio::select! {
                    changed = self.heads.changed() => {
                        if changed.is_err() {
                            return Stop::Failed("the change hub stopped".into());
                        }
                    }
                    () = tokio::time::sleep(until_renewal) => {}
                }
            }
        }
    }

    /// Publishes one batch of `tenant`'s changes after `position`, waits for every
    /// acknowledgement, stores the new position and returns it with whether more remain.
    async fn publish_batch(
        &self,
        context: &jetstream::Context,
        tenant: &TenantId,
        position: ChangeCursor,
    ) -> Result<(ChangeCursor, bool), Stop> {
        let limit = Limit::new(BATCH).map_err(|e| Stop::Failed(e.to_string()))?;
        let page = match self.backend.changes(tenant, position, limit).await {
            Ok(page) => page,
            Err(Error::Gone { oldest }) => {
                tracing::warn!(
                    tenant = %tenant.as_str(),
                    lost = oldest.0.saturating_sub(position.0),
                    "NATS publisher: changes were trimmed by retention before they were published"
                );
                self.positions
                    .put(tenant, oldest)
                    .await
                    .map_err(|e| Stop::Failed(format!("storing a position: {e}")))?;
                return Ok((oldest, true));
            }
            Err(e) => return Err(Stop::Failed(format!("reading the change log: {e}"))),
        };
        let mut acks: Vec<(ChangeCursor, PublishAckFuture)> =
            Vec::with_capacity(page.changes.len());
        for change in &page.changes {
            let subject = format!(
                "{}.{}.{}.{}",
                self.config.subject_prefix,
                tenant.as_str(),
                change.subject.kind().as_str(),
                change.op.as_str()
            );
            let payload = serde_json::to_vec(&ChangeRecord::of(change))
                .map_err(|e| Stop::Failed(format!("encoding a change: {e}")))?;
            let message = PublishMessage::build()
                .payload(payload.into())
                .message_id(format!("{}:{}", tenant.as_str(), change.cursor));
            match context.send_publish(subject, message).await {
                Ok(ack) => acks.push((change.cursor, ack)),
                Err(e) => {
                    // What was acknowledged before it counts.
                    self.settle(tenant, position, acks).await;
                    return Err(Stop::Failed(format!("publishing: {e}")));
                }
            }
        }
        let (acknowledged, failure) = self.settle(tenant, position, acks).await;
        match failure {
            Some(error) => Err(Stop::Failed(error)),
            None => {
                let next = page.next.max(acknowledged);
                if next > acknowledged {
                    // An empty page past `position` (nothing to publish there).
                    self.positions
                        .put(tenant, next)
                        .await
                        .map_err(|e| Stop::Failed(format!("storing a position: {e}")))?;
                }
                Ok((next, next < page.head))
            }
        }
    }

    /// Waits for the acknowledgements in order and stores the position of the last one of the
    /// unbroken run; returns it and the first failure.
    async fn settle(
        &self,
        tenant: &TenantId,
        position: ChangeCursor,
        acks: Vec<(ChangeCursor, PublishAckFuture)>,
    ) -> (ChangeCursor, Option<String>) {
        let mut acknowledged = position;
        let mut failure = None;
        for (cursor, ack) in acks {
            match ack.await {
                Ok(_) => acknowledged = cursor,
                Err(e) => {
                    failure = Some(format!("JetStream did not acknowledge a change: {e}"));
                    break;
                }
            }
        }
        if acknowledged > position
            && let Err(e) = self.positions.put(tenant, acknowledged).await
        {
            failure.get_or_insert(format!("storing a position: {e}"));
        }
        (acknowledged, failure)
    }
}
