//! The data keys of a store: one per tenant, made at random on the tenant's first write, stored
//! wrapped by a master key as key-value records of the reserved tenant [`KEYRING_TENANT`], and
//! held unwrapped in memory once used. Rotating the master key re-wraps these records and
//! nothing else.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use super::keys::{DataKey, DataKeyBytes, MasterKeys, parse_key_id};
use crate::backend::Backend;
use crate::error::{Error, ErrorKind, Result};
use crate::kv::KvEntry;
use crate::types::{Key, KeyPrefix, Limit, TenantId};
use crate::validate::stored;

/// The tenant whose key-value records hold the wrapped data keys and the store's sealing
/// marker. Only the sealing layer reaches it: every call for it through the layer is refused.
pub const KEYRING_TENANT: &str = "p8fs-keyring";

const DATA_KEY_PREFIX: &str = "data-key/";
/// The records saying a tenant was resealed ([`super::reseal`]), and in which format.
const RESEALED_PREFIX: &str = "resealed/";
/// The record saying since when the store is sealed.
pub(crate) const MARKER_KEY: &str = "store";

/// Reloads the master keys (the key file after a rotation by another process).
pub type MasterSource = Arc<dyn Fn() -> Result<MasterKeys> + Send + Sync>;

/// What a re-wrap did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Rewrapped {
    /// Data keys examined.
    pub examined: u64,
    /// Data keys that were wrapped by another master key and now are by the current one.
    pub rewrapped: u64,
}

pub(crate) struct Keyring {
    inner: Arc<dyn Backend>,
    tenant: TenantId,
    masters: RwLock<MasterKeys>,
    source: Option<MasterSource>,
    cache: RwLock<HashMap<TenantId, Arc<DataKey>>>,
}

pub(crate) fn keyring_tenant() -> TenantId {
    TenantId::new(KEYRING_TENANT).unwrap_or_else(|_| unreachable!("a valid tenant id"))
}

fn data_key_record(tenant: &TenantId) -> Result<Key> {
    Key::new(format!("{DATA_KEY_PREFIX}{tenant}"))
}

fn data_key_tenant(record: &Key) -> Result<TenantId> {
    TenantId::new(record.as_str().trim_start_matches(DATA_KEY_PREFIX))
}

impl Keyring {
    pub(crate) fn new(
        inner: Arc<dyn Backend>,
        masters: MasterKeys,
        source: Option<MasterSource>,
    ) -> Self {
        Self {
            inner,
            tenant: keyring_tenant(),
            masters: RwLock::new(masters),
            source,
            cache: RwLock::new(HashMap::new()),
        }
    }

    fn masters(&self) -> MasterKeys {
        self.masters
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the master keys (after a rotation).
    pub(crate) fn set_masters(&self, masters: MasterKeys) {
        *self
            .masters
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = masters;
    }

    fn reload(&self) -> Result<bool> {
        match &self.source {
            Some(source) => {
                self.set_masters(source()?);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The tenant's data key, made and stored on first use.
    pub(crate) async fn key(&self, tenant: &TenantId) -> Result<Arc<DataKey>> {
        if let Some(key) = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant)
        {
            return Ok(key.clone());
        }
        let record = data_key_record(tenant)?;
        let key = loop {
            if let Some(entry) = self.inner.get(&self.tenant, &record).await? {
                break Arc::new(self.unwrap_record(tenant, &entry.value)?.open());
            }
            let fresh = DataKeyBytes::generate()?;
            let value = self.record_value(tenant, &fresh)?;
            match self
                .inner
                .put_if_absent(&self.tenant, &record, &stored::value(value), None)
                .await
            {
                Ok(_) => break Arc::new(fresh.open()),
                // Another writer made the tenant's key first: use theirs.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        self.cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant.clone(), key.clone());
        Ok(key)
    }

    fn record_value(&self, tenant: &TenantId, key: &DataKeyBytes) -> Result<Value> {
        let masters = self.masters();
        let master = masters.current();
        Ok(json!({
            "format": 1,
            "key_id": crate::object::hex(&key.id),
            "master": master.id(),
            "wrapped": key.wrap(master, tenant)?,
        }))
    }

    fn unwrap_record(&self, tenant: &TenantId, value: &Value) -> Result<DataKeyBytes> {
        let bad = || {
            Error::internal(
                format!("the data key record of tenant {tenant} is malformed"),
                None,
            )
        };
        let field = |name: &str| value.get(name).and_then(Value::as_str).ok_or_else(bad);
        let id = parse_key_id(field("key_id")?).ok_or_else(bad)?;
        let master_id = field("master")?;
        let wrapped = field("wrapped")?;
        let mut master = self.masters().find(master_id).cloned();
        if master.is_none() && self.reload()? {
            master = self.masters().find(master_id).cloned();
        }
        let master = master.ok_or_else(|| {
            Error::internal(
                format!(
                    "the data key of tenant {tenant} is wrapped by master key {master_id}, which is \
                     not configured"
                ),
                None,
            )
        })?;
        DataKeyBytes::unwrap(&master, tenant, id, wrapped)
    }

    /// Re-wraps every data key under the current master key (reloading the master keys first
    /// when they come from a file). Data keys do not change, so nothing else is rewritten and
    /// readers holding a key or a retired master key keep working throughout.
    pub(crate) async fn rewrap(&self) -> Result<Rewrapped> {
        self.reload()?;
        self.rewrap_held().await
    }

    /// As [`Keyring::rewrap`], with the master keys held now (not reloaded).
    pub(crate) async fn rewrap_held(&self) -> Result<Rewrapped> {
        let mut done = Rewrapped::default();
        for entry in self.records(DATA_KEY_PREFIX).await? {
            done.examined += 1;
            let tenant = data_key_tenant(&entry.key)?;
            if self.rewrap_one(&tenant, &entry.key).await? {
                done.rewrapped += 1;
            }
        }
        Ok(done)
    }

    /// Every keyring record under `prefix`, keys ascending.
    async fn records(&self, prefix: &str) -> Result<Vec<KvEntry>> {
        let prefix = KeyPrefix::new(prefix)?;
        let mut after: Option<Key> = None;
        let mut records = Vec::new();
        loop {
            let page = self
                .inner
                .scan(&self.tenant, &prefix, after.as_ref(), Limit::MAX)
                .await?;
            records.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(records),
            }
        }
    }

    /// Every tenant with a data key, ascending.
    pub(crate) async fn tenants(&self) -> Result<Vec<TenantId>> {
        self.records(DATA_KEY_PREFIX)
            .await?
            .iter()
            .map(|entry| data_key_tenant(&entry.key))
            .collect()
    }

    /// The tenants whose data keys a master key other than the current one wraps, with its id.
    pub(crate) async fn wrapped_by_retired(&self) -> Result<Vec<(TenantId, String)>> {
        let current = self.masters().current().id().to_owned();
        let mut found = Vec::new();
        for entry in self.records(DATA_KEY_PREFIX).await? {
            let master = entry.value.get("master").and_then(Value::as_str);
            if master != Some(current.as_str()) {
                let master = master.unwrap_or("(none)").to_owned();
                found.push((data_key_tenant(&entry.key)?, master));
            }
        }
        Ok(found)
    }

    /// The master keys held now.
    pub(crate) fn held(&self) -> MasterKeys {
        self.masters()
    }

    /// Whether `tenant` was resealed in ciphertext format `format` (see [`super::reseal`]).
    pub(crate) async fn resealed(&self, tenant: &TenantId, format: u8) -> Result<bool> {
        let record = Key::new(format!("{RESEALED_PREFIX}{tenant}"))?;
        Ok(self
            .inner
            .get(&self.tenant, &record)
            .await?
            .is_some_and(|entry| {
                entry.value.get("format").and_then(Value::as_u64) == Some(u64::from(format))
            }))
    }

    /// Records that `tenant` holds only ciphertexts of format `format`.
    pub(crate) async fn mark_resealed(&self, tenant: &TenantId, format: u8) -> Result<()> {
        let record = Key::new(format!("{RESEALED_PREFIX}{tenant}"))?;
        self.inner
            .put(
                &self.tenant,
                &record,
                &stored::value(json!({ "format": format })),
                None,
            )
            .await?;
        Ok(())
    }

    async fn rewrap_one(&self, tenant: &TenantId, record: &Key) -> Result<bool> {
        loop {
            let Some(entry) = self.inner.get(&self.tenant, record).await? else {
                return Ok(false);
            };
            let current = self.masters().current().id().to_owned();
            if entry.value.get("master").and_then(Value::as_str) == Some(current.as_str()) {
                return Ok(false);
            }
            let key = self.unwrap_record(tenant, &entry.value)?;
            let value = self.record_value(tenant, &key)?;
            match self
                .inner
                .compare_and_swap(
                    &self.tenant,
                    record,
                    entry.version,
                    &stored::value(value),
                    None,
                )
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
