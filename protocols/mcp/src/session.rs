//! Legacy (2025-era) MCP sessions kept in the shared key-value store, so that any gateway node
//! can serve a client's next request: rmcp's session store (the client's `initialize`
//! parameters, replayed on a node that has not seen the session) and the session's owner (the
//! subject and tenant of the token that opened it).
//!
//! Records live under the reserved tenant: `mcp/session/<id>/state` and
//! `mcp/session/<id>/owner`, each with a ttl of [`SESSION_TTL`], renewed on every store.
//! Session ids are rmcp's random UUIDs; a malformed id is simply unknown.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use p8fs_auth::{Principal, RESERVED_TENANT};
use p8fs_core::{Backend, Error, JsonValue, Key, Result, TenantId, Ttl};
use rmcp::transport::streamable_http_server::session::store::{
    SessionState, SessionStore, SessionStoreError,
};
use serde::{Deserialize, Serialize};

/// How long a session's records outlive their last write.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest session id accepted as a key.
const MAX_SESSION_ID_BYTES: usize = 128;

/// Who opened a session.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub(crate) struct Owner {
    tenant: String,
    subject: String,
}

impl Owner {
    pub(crate) fn of(principal: &Principal) -> Self {
        Owner {
            tenant: principal.tenant.to_string(),
            subject: principal.subject.clone(),
        }
    }
}

/// Session records over the backend's key-value store.
#[derive(Clone)]
pub(crate) struct StoredSessions {
    backend: Arc<dyn Backend>,
}

impl StoredSessions {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }

    /// Who opened session `id`; `None` for an unknown (or expired) session.
    pub(crate) async fn owner(&self, id: &str) -> Result<Option<Owner>> {
        self.load(id, "owner").await
    }

    /// Records who opened session `id`.
    pub(crate) async fn set_owner(&self, id: &str, owner: &Owner) -> Result<()> {
        self.save(id, "owner", owner).await
    }

    async fn load<T: for<'de> Deserialize<'de>>(&self, id: &str, what: &str) -> Result<Option<T>> {
        let Some(key) = key(id, what) else {
            return Ok(None);
        };
        let Some(entry) = self.backend.get(&tenant()?, &key).await? else {
            return Ok(None);
        };
        serde_json::from_value(entry.value).map(Some).map_err(|e| {
            Error::internal(
                format!("a stored MCP session {what} is malformed: {e}"),
                None,
            )
        })
    }

    async fn save<T: Serialize>(&self, id: &str, what: &str, value: &T) -> Result<()> {
        let key = key(id, what).ok_or_else(|| Error::invalid("Mcp-Session-Id", "malformed"))?;
        let value = serde_json::to_value(value).map_err(|e| {
            Error::internal(format!("cannot store an MCP session {what}: {e}"), None)
        })?;
        let ttl = Ttl::from_millis(i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX))?;
        self.backend
            .put(&tenant()?, &key, &JsonValue::new(value)?, Some(ttl))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for StoredSessions {
    async fn load(
        &self,
        session_id: &str,
    ) -> std::result::Result<Option<SessionState>, SessionStoreError> {
        Ok(StoredSessions::load(self, session_id, "state").await?)
    }

    async fn store(
        &self,
        session_id: &str,
        state: &SessionState,
    ) -> std::result::Result<(), SessionStoreError> {
        Ok(self.save(session_id, "state", state).await?)
    }

    async fn delete(&self, session_id: &str) -> std::result::Result<(), SessionStoreError> {
        let tenant = tenant()?;
        for what in ["state", "owner"] {
            if let Some(key) = key(session_id, what) {
                self.backend.delete(&tenant, &key).await?;
            }
        }
        Ok(())
    }
}

fn tenant() -> Result<TenantId> {
    TenantId::new(RESERVED_TENANT)
}

/// The key of a session's record; `None` for an id that cannot be one of rmcp's.
fn key(id: &str, what: &str) -> Option<Key> {
    let plausible = !id.is_empty()
        && id.len() <= MAX_SESSION_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    plausible
        .then(|| Key::new(format!("mcp/session/{id}/{what}")).ok())
        .flatten()
}
