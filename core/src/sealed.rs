//! Encryption at rest, decided once for every backend: [`Sealed`] is a [`Backend`] that seals
//! what it writes to an inner backend and opens what it reads.
//!
//! Envelope encryption: each tenant has a random 256-bit data key, stored wrapped by the master
//! key ([`MasterKeys`], from configuration) in the reserved tenant [`KEYRING_TENANT`]; every
//! record and object chunk is AES-256-GCM under a key of its own derived from the tenant's data
//! key and a random salt ([`keys`]), and its associated data binds it to the format version,
//! the tenant, the capability, the record it belongs to (key, collection and id, node, edge,
//! bucket and object key, blob and chunk) and the data key id. A row copied to another tenant, record or store fails to open
//! with an `Internal` error saying so. Rotating the master key re-wraps the data keys only
//! ([`Sealed::rewrap_data_keys`]).
//!
//! What stays comparable, because the contract compares or orders it in the backend: tenant ids,
//! keys and key prefixes, collection names, record, node and edge ids, labels and relations, edge
//! weights, embeddings, bucket names, object keys, sizes, times, blob ids and segment lists,
//! upload ids and part numbers, expiry times and versions; change-log entries carry only these.
//! Key-value values and vector metadata keep their object field names and, in place of every
//! other value, a keyed token (HMAC-SHA-256 under a key derived from the data key) of its
//! canonical form, so equality filters keep working in the backend and reveal only which stored
//! values are equal within one tenant. Everything else is ciphertext: values, metadata, node
//! and edge properties, object bytes (each chunk on its own, so ranges read only their
//! chunks), ETags (stored as tokens, compared as tokens) and all object and part attributes.
//!
//! A store that held data before encryption was turned on is read as it is (plain records are
//! told apart by their form) and each record is sealed when it is next written, or by
//! [`Sealed::reseal`], which rewrites what is plain or in an older format tenant by tenant;
//! equality lookups there also ask the backend for plain matches. A store sealed
//! since its creation refuses plain records. Retired master keys are dropped once no data key
//! needs them ([`Sealed::prune_masters`]).

mod graph;
mod json;
mod keyring;
pub mod keys;
mod kv;
mod object;
mod reseal;
mod vector;

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

pub use keyring::{KEYRING_TENANT, MasterSource, Rewrapped};
pub use keys::{MasterKey, MasterKeys, OVERHEAD};
pub use object::CHUNK_OVERHEAD;
pub use reseal::Resealed;

use crate::backend::{Backend, Maintenance};
use crate::change::{ChangeCursor, ChangeLog, ChangePage};
use crate::error::{Error, ErrorKind, Result};
use crate::types::{Key, Limit, TenantId, Timestamp};
use crate::validate::stored;
use keyring::{Keyring, MARKER_KEY, keyring_tenant};
use keys::{Context, DataKey};

/// What dropping the retired master keys did ([`Sealed::prune_masters`]).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Pruned {
    /// The id of the current master key, now the only one.
    pub current: String,
    /// Data keys examined.
    pub data_keys: u64,
    /// Data keys that were wrapped by a retired master key and now are by the current one.
    pub rewrapped: u64,
    /// The ids of the master keys dropped.
    pub dropped: Vec<String>,
}

/// Since when a store is sealed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SealedSince {
    /// Since it was created: every record is sealed, and a plain one is an error.
    Creation,
    /// Since a later start: records written before are read as they are until rewritten.
    Upgrade,
}

/// The sealing layer over an inner backend.
pub struct Sealed {
    inner: Arc<dyn Backend>,
    keyring: Keyring,
    since: SealedSince,
}

impl Sealed {
    /// Seals `inner` with `masters` (the first wraps new data keys); `source`, if given, reloads
    /// them when a data key names a master key not among them (rotated by another process). The
    /// first open of a store records whether it held data already (then plain records stay
    /// readable); a store with no change log yet is new.
    pub async fn open(
        inner: Arc<dyn Backend>,
        masters: MasterKeys,
        source: Option<MasterSource>,
    ) -> Result<Self> {
        let since = Self::mark(inner.as_ref()).await?;
        Ok(Self {
            keyring: Keyring::new(inner.clone(), masters, source),
            inner,
            since,
        })
    }

    async fn mark(inner: &dyn Backend) -> Result<SealedSince> {
        let tenant = keyring_tenant();
        let key = Key::new(MARKER_KEY)?;
        loop {
            if let Some(since) = Self::since(inner).await? {
                return Ok(since);
            }
            let heads = inner.change_heads().await?;
            let since = if heads.iter().all(|(t, _)| *t == tenant) {
                "creation"
            } else {
                "upgrade"
            };
            let value = json!({"format": 1, "sealed_since": since});
            match inner
                .put_if_absent(&tenant, &key, &stored::value(value), None)
                .await
            {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether (and since when) a store is sealed, read from the store itself: a store sealed
    /// once must not be opened without the layer.
    pub async fn since(inner: &dyn Backend) -> Result<Option<SealedSince>> {
        let entry = inner.get(&keyring_tenant(), &Key::new(MARKER_KEY)?).await?;
        Ok(entry.map(
            |e| match e.value.get("sealed_since").and_then(Value::as_str) {
                Some("creation") => SealedSince::Creation,
                _ => SealedSince::Upgrade,
            },
        ))
    }

    /// Since when this store is sealed.
    pub fn sealed_since(&self) -> SealedSince {
        self.since
    }

    /// Makes `masters` the master keys (the first current) and re-wraps every data key under
    /// the current one. Online: data keys do not change, so readers and writers go on.
    pub async fn rotate_master(&self, masters: MasterKeys) -> Result<Rewrapped> {
        self.keyring.set_masters(masters);
        self.keyring.rewrap().await
    }

    /// Re-wraps every data key under the current master key (reloaded from its source first).
    pub async fn rewrap_data_keys(&self) -> Result<Rewrapped> {
        self.keyring.rewrap().await
    }

    /// Drops the retired master keys once no data key needs them. Re-wraps every data key
    /// under the current master key (reloaded first), and refuses (`Conflict`, naming them)
    /// while a data key is wrapped by another, which a process still running with a retired
    /// key as its current one would cause. Then `persist` stores the current key alone (the key
    /// file), whatever such a process wrapped meanwhile is re-wrapped with the keys still held,
    /// and from then on this layer holds the current key alone. Returns the ids dropped.
    ///
    /// A backup taken before the data keys were re-wrapped needs the dropped keys: keep them
    /// as long as such backups.
    pub async fn prune_masters<F, P>(&self, persist: F) -> Result<Pruned>
    where
        F: FnOnce(MasterKeys) -> P + Send,
        P: Future<Output = Result<()>> + Send,
    {
        let rewrapped = self.keyring.rewrap().await?;
        let still = self.keyring.wrapped_by_retired().await?;
        if !still.is_empty() {
            let named: Vec<String> = still
                .iter()
                .map(|(tenant, master)| format!("tenant {tenant} (master key {master})"))
                .collect();
            return Err(Error::conflict(format!(
                "retired master keys still wrap data keys of {}: is a process running with an \
                 older key file?",
                named.join(", ")
            )));
        }
        let held = self.keyring.held();
        let current = MasterKeys::new(held.current().clone(), []);
        let dropped: Vec<String> = held.all()[1..].iter().map(|k| k.id().to_owned()).collect();
        persist(current.clone()).await?;
        // What was wrapped by a retired key between the check and now opens with the keys
        // still held.
        let late = self.keyring.rewrap_held().await?;
        self.keyring.set_masters(current);
        Ok(Pruned {
            current: held.current().id().to_owned(),
            data_keys: rewrapped.examined.max(late.examined),
            rewrapped: rewrapped.rewrapped + late.rewrapped,
            dropped,
        })
    }

    /// The data key of `tenant`; the keyring tenant itself is refused.
    async fn key(&self, tenant: &TenantId) -> Result<Arc<DataKey>> {
        if tenant.as_str() == KEYRING_TENANT {
            return Err(Error::invalid(
                "tenant",
                format!("{KEYRING_TENANT} is reserved for the keys of the store"),
            ));
        }
        self.keyring.key(tenant).await
    }

    fn plain_ok(&self) -> bool {
        self.since == SealedSince::Upgrade
    }

    fn refuse_keyring(tenant: &TenantId) -> Result<()> {
        if tenant.as_str() == KEYRING_TENANT {
            return Err(Error::invalid(
                "tenant",
                format!("{KEYRING_TENANT} is reserved for the keys of the store"),
            ));
        }
        Ok(())
    }
}

impl Sealed {
    /// How many of the keyring tenant's changes a trim at `before` removes: those before its
    /// first change committed at or after `before`.
    async fn keyring_changes_before(&self, before: Timestamp) -> Result<u64> {
        let tenant = keyring_tenant();
        let mut after = ChangeCursor(0);
        let mut count = 0;
        loop {
            let page = match self.inner.changes(&tenant, after, Limit::MAX).await {
                Ok(page) => page,
                Err(Error::Gone { oldest }) => {
                    after = oldest;
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::InvalidInput => return Ok(count),
                Err(e) => return Err(e),
            };
            for change in &page.changes {
                if change.at >= before {
                    return Ok(count);
                }
                count += 1;
            }
            if page.changes.is_empty() || page.next == page.head {
                return Ok(count);
            }
            after = page.next;
        }
    }
}

fn ctx<'a>(tenant: &'a TenantId, capability: &'static str, record: &'a [&'a [u8]]) -> Context<'a> {
    Context {
        tenant,
        capability,
        record,
    }
}

#[async_trait]
impl ChangeLog for Sealed {
    async fn changes(
        &self,
        tenant: &TenantId,
        after: ChangeCursor,
        limit: Limit,
    ) -> Result<ChangePage> {
        Self::refuse_keyring(tenant)?;
        self.inner.changes(tenant, after, limit).await
    }

    async fn change_heads(&self) -> Result<Vec<(TenantId, ChangeCursor)>> {
        let mut heads = self.inner.change_heads().await?;
        heads.retain(|(t, _)| t.as_str() != KEYRING_TENANT);
        Ok(heads)
    }

    async fn trim_changes(&self, before: Timestamp) -> Result<u64> {
        // The keyring's own changes are trimmed too, but are not the callers' to count.
        let own = self.keyring_changes_before(before).await?;
        let removed = self.inner.trim_changes(before).await?;
        Ok(removed.saturating_sub(own))
    }
}

#[async_trait]
impl Maintenance for Sealed {
    async fn purge_expired(&self) -> Result<u64> {
        self.inner.purge_expired().await
    }

    async fn compact_storage(&self) -> Result<()> {
        self.inner.compact_storage().await
    }
}
