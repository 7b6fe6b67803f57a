//! A lease among gateway nodes on one database, for work that one node at a time must do (the
//! NATS publisher, the ingest worker): a key-value record in the reserved tenant naming its
//! holder, with a ttl the holder renews every third of it. Another node takes over when the
//! holder stops renewing (dies, or loses the database), at most one ttl later. Taking and
//! renewing are one `put_if_absent` or `compare_and_swap`, so two nodes never both hold it.
//!
//! Such work follows every tenant's change log; [`Positions`] keeps where it stands in each, as
//! records beside the lease, so the next holder resumes there.

use std::sync::Arc;
use std::time::Duration;

use p8fs_core::{Backend, ChangeCursor, Error, ErrorKind, JsonValue, Key, TenantId, Ttl, Version};
use serde_json::json;

/// One lease, as one node sees it.
pub(crate) struct Lease {
    backend: Arc<dyn Backend>,
    reserved: TenantId,
    key: Key,
    holder: JsonValue,
    ttl: Duration,
}

impl Lease {
    /// The lease at `key` of the reserved tenant, for the node named `node`.
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        reserved: TenantId,
        key: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<Self, Error> {
        Ok(Lease {
            backend,
            reserved,
            key: Key::new(key)?,
            holder: JsonValue::new(json!({ "holder": node }))?,
            ttl,
        })
    }

    /// How often the holder renews.
    pub(crate) fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    fn record_ttl(&self) -> Option<Ttl> {
        Ttl::from_millis(i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)).ok()
    }

    /// Takes the lease if it is free (or already this node's); `None` if another node holds it.
    pub(crate) async fn acquire(&self) -> Result<Option<Version>, Error> {
        let (reserved, key) = (&self.reserved, &self.key);
        match self.backend.get(reserved, key).await? {
            None => match self
                .backend
                .put_if_absent(reserved, key, &self.holder, self.record_ttl())
                .await
            {
                Ok(version) => Ok(Some(version)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(e),
            },
            Some(entry) if entry.value == *self.holder.get() => self
                .renew(entry.version)
                .await
                .map(Some)
                .or_else(|e| if lost(&e) { Ok(None) } else { Err(e) }),
            Some(_) => Ok(None),
        }
    }

    /// Extends the lease held at `version`; `Conflict` or `NotFound` when it is no longer ours.
    pub(crate) async fn renew(&self, version: Version) -> Result<Version, Error> {
        self.backend
            .compare_and_swap(
                &self.reserved,
                &self.key,
                version,
                &self.holder,
                self.record_ttl(),
            )
            .await
    }

    /// Gives the lease up, so that another node takes over at once.
    pub(crate) async fn release(&self) {
        let (reserved, key) = (&self.reserved, &self.key);
        if let Ok(Some(entry)) = self.backend.get(reserved, key).await
            && entry.value == *self.holder.get()
        {
            let _ = self.backend.delete(reserved, key).await;
        }
    }
}

/// A follower's position in each tenant's change log: `<prefix><tenant>` in the reserved
/// tenant, holding the last cursor done.
pub(crate) struct Positions {
    backend: Arc<dyn Backend>,
    reserved: TenantId,
    prefix: &'static str,
}

impl Positions {
    pub(crate) fn new(backend: Arc<dyn Backend>, reserved: TenantId, prefix: &'static str) -> Self {
        Positions {
            backend,
            reserved,
            prefix,
        }
    }

    fn key(&self, tenant: &TenantId) -> Result<Key, Error> {
        Key::new(format!("{}{}", self.prefix, tenant.as_str()))
    }

    /// The stored position, 0 when none.
    pub(crate) async fn get(&self, tenant: &TenantId) -> Result<ChangeCursor, Error> {
        let entry = self.backend.get(&self.reserved, &self.key(tenant)?).await?;
        Ok(entry
            .and_then(|e| e.value.get("cursor").and_then(|c| c.as_str()?.parse().ok()))
            .map(ChangeCursor)
            .unwrap_or(ChangeCursor(0)))
    }

    pub(crate) async fn put(&self, tenant: &TenantId, cursor: ChangeCursor) -> Result<(), Error> {
        let value = JsonValue::new(json!({ "cursor": cursor.to_string() }))?;
        self.backend
            .put(&self.reserved, &self.key(tenant)?, &value, None)
            .await
            .map(|_| ())
    }
}

/// Whether a renewal failed because the lease is no longer this node's.
pub(crate) fn lost(error: &Error) -> bool {
    matches!(error.kind(), ErrorKind::Conflict | ErrorKind::NotFound)
}

/// A name for this process that no other gateway node shares: host, pid and start time.
pub(crate) fn node_id(now_ms: i64) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default();
    format!("{host}/{}/{now_ms}", std::process::id())
}
