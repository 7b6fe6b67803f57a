//! The ingest worker: follows every tenant's change log and, for each object written or deleted
//! through S3 or REST, brings its index in line ([`p8fs_memory::Memory::index_object`]: extract,
//! chunk, embed, swap the chunks in; or remove them).
//!
//! Crash-safe: its position in each tenant's log (`ingest/position/<tenant>` in the reserved
//! tenant) moves only after a batch of changes is done, and indexing is idempotent per object
//! version, so a restart redoes at most one batch and ends with every object indexed once. With
//! several gateway nodes, the node holding the lease `ingest/lease` ([`crate::lease`]) does the
//! work; the lease is renewed by a task of its own, so a long file never lets it lapse.
//!
//! An object that cannot be indexed (unsupported type, corrupt PDF, binary content) is recorded
//! as `failed` and never stops the worker. An error worth retrying (the database or the embedder
//! unavailable) is retried with backoff; an object that keeps failing after
//! [`ATTEMPTS`] tries is logged and left `pending`, and the worker moves on. When retention
//! trimmed changes the worker had not read, it reconciles the tenant: every object is checked.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use p8fs_auth::RESERVED_TENANT;
use p8fs_core::{
    Backend, BucketName, ChangeCursor, Clock, Error, Limit, ObjectKey, ObjectPrefix, Subject,
    TenantId, Version,
};
use p8fs_memory::Memory;
use tokio::sync::watch;

use crate::changes::ChangeHub;
use crate::lease::{Lease, Positions, lost, node_id};

/// Changes read per batch (the position is stored after each).
const BATCH: u64 = 100;
/// Key of the lease record in the reserved tenant.
const LEASE_KEY: &str = "ingest/lease";
/// Prefix of the position records in the reserved tenant.
const POSITION_PREFIX: &str = "ingest/position/";
/// Tries per object before it is left pending.
pub const ATTEMPTS: u32 = 3;
/// Longest wait between two attempts after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the worker; it runs until the process ends.
pub fn spawn(
    memory: Arc<Memory>,
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    hub: &Arc<ChangeHub>,
    lease_ttl: Duration,
) -> Result<(), String> {
    let reserved = TenantId::new(RESERVED_TENANT).map_err(|e| e.to_string())?;
    let node = node_id(clock.now());
    let lease = Lease::new(
        backend.clone(),
        reserved.clone(),
        LEASE_KEY,
        &node,
        lease_ttl,
    )
    .map_err(|e| e.to_string())?;
    let worker = Worker {
        memory,
        positions: Positions::new(backend.clone(), reserved.clone(), POSITION_PREFIX),
        backend,
        heads: hub.follow_all(),
        lease: Arc::new(lease),
        reserved,
    };
    tokio::spawn(worker.run());
    Ok(())
}

struct Worker {
    memory: Arc<Memory>,
    backend: Arc<dyn Backend>,
    heads: watch::Receiver<Arc<Vec<(TenantId, ChangeCursor)>>>,
    lease: Arc<Lease>,
    positions: Positions,
    reserved: TenantId,
}

impl Worker {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let version = match self.lease.acquire().await {
                Ok(Some(version)) => version,
                Ok(None) => {
                    tokio::time::sleep(self.lease.renew_every()).await;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "ingest worker: reading the lease failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            tracing::info!("ingest worker holds the lease");
            let held = Arc::new(AtomicBool::new(true));
            let renewer = tokio::spawn(renew(Arc::clone(&self.lease), version, held.clone()));
            match self.work(&held).await {
                Ok(()) => tracing::info!("ingest worker lost the lease"),
                Err(error) => {
                    tracing::warn!(%error, "ingest worker paused");
                    renewer.abort();
                    self.lease.release().await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            renewer.abort();
            backoff = Duration::from_millis(100);
        }
    }

    /// Indexes while the lease is held: every tenant's object changes after its position, then
    /// waits for new heads. Returns when the lease is lost; errors when the log cannot be read.
    async fn work(&mut self, held: &AtomicBool) -> Result<(), Error> {
        let mut positions: HashMap<TenantId, ChangeCursor> = HashMap::new();
        loop {
            let heads = Arc::clone(&self.heads.borrow_and_update());
            let mut behind = false;
            for (tenant, head) in heads.iter() {
                if !held.load(Ordering::Acquire) {
                    return Ok(());
                }
                if *tenant == self.reserved {
                    continue;
                }
                let position = match positions.get(tenant) {
                    Some(position) => *position,
                    None => *positions
                        .entry(tenant.clone())
                        .or_insert(self.positions.get(tenant).await?),
                };
                if position >= *head {
                    continue;
                }
                let (next, more) = self.batch(tenant, position, held).await?;
                positions.insert(tenant.clone(), next);
                behind |= more;
            }
            if !held.load(Ordering::Acquire) {
                return Ok(());
            }
            if !behind {
                tokio::select! {
                    changed = self.heads.changed() => {
                        if changed.is_err() {
                            return Err(Error::unavailable("the change hub stopped", None));
                        }
                    }
                    () = tokio::time::sleep(self.lease.renew_every()) => {}
                }
            }
        }
    }

    /// Indexes the objects changed in one batch of `tenant`'s log after `position`, stores the
    /// new position and returns it with whether more changes remain.
    async fn batch(
        &self,
        tenant: &TenantId,
        position: ChangeCursor,
        held: &AtomicBool,
    ) -> Result<(ChangeCursor, bool), Error> {
        let page = match self
            .backend
            .changes(tenant, position, Limit::new(BATCH)?)
            .await
        {
            Ok(page) => page,
            Err(Error::Gone { oldest }) => {
                tracing::warn!(
                    tenant = %tenant.as_str(),
                    "ingest worker: changes were trimmed before they were read; checking every object"
                );
                self.reconcile(tenant, held).await?;
                self.positions.put(tenant, oldest).await?;
                return Ok((oldest, true));
            }
            Err(e) => return Err(e),
        };
        // Each object once per batch: indexing looks at the object as it is now.
        let mut objects: Vec<(BucketName, ObjectKey)> = Vec::new();
        for change in &page.changes {
            if let Subject::Object { bucket, key } = &change.subject {
                let object = (bucket.clone(), key.clone());
                if !objects.contains(&object) {
                    objects.push(object);
                }
            }
        }
        for (bucket, key) in &objects {
            if !held.load(Ordering::Acquire) {
                // Another node has the lease and redoes this batch from the stored position.
                return Ok((position, false));
            }
            self.index(tenant, bucket, key).await;
        }
        if page.next > position {
            self.positions.put(tenant, page.next).await?;
        }
        Ok((page.next, page.next < page.head))
    }

    /// Indexes one object, retrying what is worth retrying.
    async fn index(&self, tenant: &TenantId, bucket: &BucketName, key: &ObjectKey) {
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=ATTEMPTS {
            match self.memory.index_object(tenant, bucket, key).await {
                Ok(_) => return,
                Err(error) if attempt == ATTEMPTS => {
                    tracing::error!(
                        tenant = %tenant.as_str(),
                        bucket = %bucket.as_str(),
                        %error,
                        "ingest worker: an object could not be indexed; it stays pending"
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, attempt, "ingest worker: indexing failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Checks every object of `tenant` (after changes were lost to retention).
    async fn reconcile(&self, tenant: &TenantId, held: &AtomicBool) -> Result<(), Error> {
        let page = Limit::new(1000)?;
        for bucket in self.backend.list_buckets(tenant).await? {
            let mut from: Vec<u8> = Vec::new();
            loop {
                let objects = self
                    .backend
                    .list_objects(tenant, &bucket.name, &ObjectPrefix::new("")?, &from, page)
                    .await?;
                let Some(last) = objects.last() else { break };
                from = last.key.as_bytes().to_vec();
                from.push(0);
                for object in &objects {
                    if !held.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    self.index(tenant, &bucket.name, &object.key).await;
                }
            }
        }
        Ok(())
    }
}

/// Renews the lease every third of its ttl while the worker works; clears `held` when it is
/// lost (or cannot be renewed before it would lapse).
async fn renew(lease: Arc<Lease>, mut version: Version, held: Arc<AtomicBool>) {
    let every = lease.renew_every();
    loop {
        tokio::time::sleep(every).await;
        match lease.renew(version).await {
            Ok(next) => version = next,
            Err(error) => {
                if !lost(&error) {
                    tracing::warn!(%error, "ingest worker: renewing the lease failed");
                }
                held.store(false, Ordering::Release);
                return;
            }
        }
    }
}
