//! The authorization server's records in the key-value store: typed JSON get/put/create/swap
//! under `oauth/<kind>/<id>` in the reserved tenant, secret generation and digests.
//!
//! Invariants: secrets (tokens, codes, passwords, client secrets) are never stored; records
//! that name one are keyed by [`digest`], the base64url SHA-256 of the secret. Secrets are
//! compared by their digests in constant time ([`same_digest`]). Every record that expires has a
//! key-value ttl, so the store forgets it without a sweeper.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p8fs_core::error::Source;
use p8fs_core::validate::MAX_TTL_MILLIS;
use p8fs_core::{
    Clock, Error, ErrorKind, JsonValue, Key, KeyPrefix, KvStore, Limit, Result, TenantId,
    Timestamp, Ttl, Version,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::keys::duration_millis;
use crate::random_bytes;
use crate::verify::reserved_tenant;

/// A record read back with its version, for compare-and-swap.
pub(crate) struct Stored<T> {
    pub(crate) value: T,
    pub(crate) version: Version,
}

/// Typed access to the `oauth/` records of the reserved tenant.
#[derive(Clone)]
pub(crate) struct Store {
    kv: Arc<dyn KvStore>,
    tenant: TenantId,
    clock: Arc<dyn Clock>,
}

impl Store {
    pub(crate) fn new(kv: Arc<dyn KvStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            kv,
            tenant: reserved_tenant(),
            clock,
        }
    }

    /// The current time of the injected clock.
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The key of the record `id` of `kind` (`oauth/<kind>/<id>`).
    pub(crate) fn key(kind: &str, id: &str) -> Result<Key> {
        Key::new(format!("oauth/{kind}/{id}"))
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<Stored<T>>> {
        let Some(entry) = self.kv.get(&self.tenant, key).await? else {
            return Ok(None);
        };
        let value = serde_json::from_value(entry.value).map_err(|e| corrupt(key, e))?;
        Ok(Some(Stored {
            value,
            version: entry.version,
        }))
    }

    /// Upserts the record; `ttl` `None` keeps it forever.
    pub(crate) async fn put<T: Serialize>(
        &self,
        key: &Key,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.kv
            .put(
                &self.tenant,
                key,
                &json(value)?,
                ttl.map(to_ttl).transpose()?,
            )
            .await?;
        Ok(())
    }

    /// Creates the record if no visible one exists; `false` if one does.
    pub(crate) async fn create<T: Serialize>(
        &self,
        key: &Key,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        match self
            .kv
            .put_if_absent(
                &self.tenant,
                key,
                &json(value)?,
                ttl.map(to_ttl).transpose()?,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Replaces the record if it is still at `version`; `false` if it changed or vanished.
    pub(crate) async fn swap<T: Serialize>(
        &self,
        key: &Key,
        version: Version,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        match self
            .kv
            .compare_and_swap(
                &self.tenant,
                key,
                version,
                &json(value)?,
                ttl.map(to_ttl).transpose()?,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn delete(&self, key: &Key) -> Result<bool> {
        self.kv.delete(&self.tenant, key).await
    }

    /// Every visible record under `oauth/<kind>/`, keys ascending.
    pub(crate) async fn scan<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>> {
        let prefix = KeyPrefix::new(format!("oauth/{kind}/"))?;
        let mut out = Vec::new();
        let mut after: Option<Key> = None;
        loop {
            let page = self
                .kv
                .scan(&self.tenant, &prefix, after.as_ref(), Limit::MAX)
                .await?;
            for entry in page.items {
                out.push(serde_json::from_value(entry.value).map_err(|e| corrupt(&entry.key, e))?);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// The time left until `until`, at least 1 ms: the ttl of a record that must live until then.
    pub(crate) fn ttl_until(&self, until: Timestamp) -> Duration {
        let left = until.saturating_sub(self.now()).max(1);
        Duration::from_millis(u64::try_from(left).unwrap_or(1))
    }

    /// Counts one event in the fixed window of `window` containing now, under
    /// `oauth/limit/<name>/<window index>`, and returns the count before this event. Atomic
    /// (compare-and-swap with retries), so concurrent events are all counted.
    pub(crate) async fn count(&self, name: &str, window: Duration) -> Result<u64> {
        let key = self.window_key(name, window)?;
        for _ in 0..16 {
            match self.get::<u64>(&key).await? {
                None => {
                    if self.create(&key, &1u64, Some(window * 2)).await? {
                        return Ok(0);
                    }
                }
                Some(current) => {
                    if self
                        .swap(
                            &key,
                            current.version,
                            &(current.value + 1),
                            Some(window * 2),
                        )
                        .await?
                    {
                        return Ok(current.value);
                    }
                }
            }
        }
        Err(Error::unavailable(
            "the rate-limit counter is too contended",
            None,
        ))
    }

    fn window_key(&self, name: &str, window: Duration) -> Result<Key> {
        let length = duration_millis(window).max(1);
        let index = self.now().div_euclid(length);
        Self::key("limit", &format!("{name}/{index}"))
    }
}

fn json<T: Serialize>(value: &T) -> Result<JsonValue> {
    let value = serde_json::to_value(value).map_err(|e| {
        Error::internal("cannot encode an OAuth record", Some(Box::new(e) as Source))
    })?;
    JsonValue::new(value)
}

fn to_ttl(ttl: Duration) -> Result<Ttl> {
    Ttl::from_millis(duration_millis(ttl).clamp(1, MAX_TTL_MILLIS))
}

fn corrupt(key: &Key, e: serde_json::Error) -> Error {
    Error::internal(
        format!("the OAuth record {key} cannot be decoded"),
        Some(Box::new(e) as Source),
    )
}

/// A new secret of 256 random bits, base64url without padding (43 characters).
pub(crate) fn new_secret() -> Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// The base64url SHA-256 of a secret: what the store keeps instead of the secret.
pub(crate) fn digest(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `expected` (a [`digest`]), compared in constant time.
pub(crate) fn same_digest(secret: &str, expected: &str) -> bool {
    digest(secret).as_bytes().ct_eq(expected.as_bytes()).into()
}

/// Constant-time equality of two strings (equal lengths compared in constant time).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}
