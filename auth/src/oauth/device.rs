//! The device authorization grant (RFC 8628).
//!
//! `POST /oauth/device_authorization` creates a device code (256 random bits) and a user code
//! (8 letters from the consonant alphabet [`USER_CODE_ALPHABET`], about 34.6 bits, shown as
//! `XXXX-XXXX`; entry ignores case, dashes and spaces). Records:
//! `oauth/device/<digest of device code>` (client, scope, status, polling state) and
//! `oauth/user-code/<normalised code>` → device, both kept [`EXPIRED_GRACE`] past expiry so
//! a late poll gets `expired_token` rather than `invalid_grant`.
//!
//! Polling answers `authorization_pending` until the user decides, `slow_down` when a poll comes
//! sooner than the current interval after the previous one (the interval then grows by 5 s and
//! is remembered in the record), `access_denied`, `expired_token`, and once approved the tokens.
//! Redemption is a compare-and-swap from approved to redeemed, so of concurrent polls exactly
//! one gets tokens; later polls get `invalid_grant`.
//!
//! A `resource` (RFC 8707) at the device authorization endpoint must be a configured resource
//! (`invalid_target`); it is kept with the device code, and a poll may repeat it but not name
//! another.
//!
//! Device authorizations are limited per client and source address, so an anonymous caller
//! cannot lock the users of the public `p8fs-cli` client out, and by a much higher server-wide
//! ceiling that bounds the pending records anonymous callers can make the server keep (see
//! `limits.rs`).

use std::time::Duration;

use p8fs_core::{Error, Result, TenantId, Timestamp};
use serde::{Deserialize, Serialize};

use super::accounts::{ClientRecord, UserRecord, user_scopes};
use super::limits::{
    ClientAddress, DEVICE_AUTHORIZATION_ADDRESS_LIMIT, DEVICE_AUTHORIZATION_GLOBAL_LIMIT, Taken,
};
use super::store::{Store, digest, new_secret};
use super::tokens::{Grant, TokenResponse, grant_scopes, new_family_id};
use super::wire::OAuthError;
use super::{GRANT_DEVICE_CODE, OAuthServer};
use crate::keys::duration_millis;
use crate::random_bytes;
use crate::scope::ScopeSet;

/// The letters of user codes: consonants without look-alikes (no vowels, so no words).
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code.
pub const USER_CODE_LENGTH: usize = 8;
/// How long device records outlive their expiry, to answer `expired_token`.
pub const EXPIRED_GRACE: Duration = Duration::from_secs(600);
/// How much `slow_down` adds to the polling interval.
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
enum DeviceStatus {
    Pending,
    Approved {
        username: String,
        tenant: String,
        scope: String,
    },
    Denied,
    Redeemed {
        family: String,
    },
}

#[derive(Serialize, Deserialize, Clone)]
struct DeviceRecord {
    client_id: String,
    scope: String,
    user_code: String,
    status: DeviceStatus,
    interval_secs: u64,
    last_poll: Option<Timestamp>,
    expires_at: Timestamp,
    created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct UserCodeRecord {
    device: String,
    expires_at: Timestamp,
}

/// The response of the device authorization endpoint (RFC 8628 3.2). `Debug` is not derived:
/// it holds the device code.
#[derive(Serialize)]
pub(crate) struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    expires_in: u64,
    interval: u64,
}

/// A pending request, as the confirmation page shows it.
pub(crate) struct PendingDevice {
    pub(crate) user_code: String,
    pub(crate) client_id: String,
    pub(crate) client_name: String,
    pub(crate) scopes: ScopeSet,
}

/// What became of a decision on the confirmation page.
pub(crate) enum Decision {
    Approved,
    Denied,
    /// The code expired, was decided already, or never existed.
    Gone,
}

/// The canonical form of a typed user code: uppercase, without dashes and white space; `None`
/// unless it is 8 letters of the alphabet.
pub(crate) fn normalize_user_code(input: &str) -> Option<String> {
    if input.len() > 64 {
        return None;
    }
    let code: String = input
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LENGTH && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// `XXXX-XXXX`.
pub(crate) fn display_user_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(head), Some(tail)) => format!("{head}-{tail}"),
        _ => code.to_owned(),
    }
}

fn new_user_code() -> Result<String> {
    let mut code = String::with_capacity(USER_CODE_LENGTH);
    while code.len() < USER_CODE_LENGTH {
        for byte in random_bytes::<16>()? {
            // 240 = 12 × 20: rejecting larger bytes keeps the letters uniform.
            if byte < 240 && code.len() < USER_CODE_LENGTH {
                code.push(char::from(USER_CODE_ALPHABET[usize::from(byte % 20)]));
            }
        }
    }
    Ok(code)
}

impl OAuthServer {
    /// `POST /oauth/device_authorization` for an authenticated client, from `address`. Limited
    /// per client and source address (`DEVICE_AUTHORIZATIONS_PER_ADDRESS`) and for the whole
    /// server (`DEVICE_AUTHORIZATIONS_PER_WINDOW`): 429 with `Retry-After` beyond either.
    pub(crate) async fn start_device_flow(
        &self,
        client: &ClientRecord,
        scope: Option<&str>,
        resource: Option<&str>,
        address: ClientAddress,
    ) -> Result<DeviceAuthorization, OAuthError> {
        if !client.allows_grant(GRANT_DEVICE_CODE) {
            return Err(OAuthError::unauthorized_client(
                "the client may not use the device_code grant",
            ));
        }
        let resource = self.requested_resource(resource)?;
        let allowed: ScopeSet = client
            .scopes()
            .iter()
            .filter(|s| user_scopes().contains(*s))
            .collect();
        let scopes = grant_scopes(scope, allowed)?;
        // Per client and source address first, so a caller over its own limit never touches
        // the server-wide ceiling that only protects storage.
        let bucket = format!("{}/{}", address.bucket(), client.info.client_id);
        for (limit, bucket, description) in [
            (
                DEVICE_AUTHORIZATION_ADDRESS_LIMIT,
                bucket.as_str(),
                "too many device authorizations from this address; retry later",
            ),
            (
                DEVICE_AUTHORIZATION_GLOBAL_LIMIT,
                "",
                "too many device authorizations; retry later",
            ),
        ] {
            if let Taken::Limited(after) = limit
                .take(&self.store, bucket)
                .await
                .map_err(OAuthError::server)?
            {
                return Err(OAuthError::rate_limited(description, after));
            }
        }
        let now = self.store.now();
        let ttl = self.config.device_code_ttl;
        let expires_at = now.saturating_add(duration_millis(ttl));
        let interval_secs = self.config.device_poll_interval.as_secs().max(1);
        let device_code = new_secret()?;
        let device_digest = digest(&device_code);
        let mut user_code = String::new();
        for _ in 0..8 {
            let candidate = new_user_code()?;
            let record = UserCodeRecord {
                device: device_digest.clone(),
                expires_at,
            };
            if self
                .store
                .create(
                    &Store::key("user-code", &candidate)?,
                    &record,
                    Some(ttl + EXPIRED_GRACE),
                )
                .await?
            {
                user_code = candidate;
                break;
            }
        }
        if user_code.is_empty() {
            return Err(OAuthError::server(Error::unavailable(
                "no free user code was found",
                None,
            )));
        }
        let record = DeviceRecord {
            client_id: client.info.client_id.clone(),
            scope: scopes.to_string(),
            user_code: user_code.clone(),
            status: DeviceStatus::Pending,
            interval_secs,
            last_poll: None,
            expires_at,
            created_at: now,
            resource,
        };
        self.store
            .put(
                &Store::key("device", &device_digest)?,
                &record,
                Some(ttl + EXPIRED_GRACE),
            )
            .await?;
        let shown = display_user_code(&user_code);
        let verification_uri = self.url("/device");
        Ok(DeviceAuthorization {
            device_code,
            verification_uri_complete: format!("{verification_uri}?user_code={shown}"),
            verification_uri,
            user_code: shown,
            expires_in: ttl.as_secs(),
            interval: interval_secs,
        })
    }

    /// The device_code grant: one poll.
    pub(crate) async fn poll_device(
        &self,
        client: &ClientRecord,
        device_code: &str,
        resource: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.allows_grant(GRANT_DEVICE_CODE) {
            return Err(OAuthError::unauthorized_client(
                "the client may not use the device_code grant",
            ));
        }
        let key = Store::key("device", &digest(device_code))?;
        let Some(stored) = self.store.get::<DeviceRecord>(&key).await? else {
            return Err(OAuthError::invalid_grant("unknown device code"));
        };
        let record = stored.value;
        if record.client_id != client.info.client_id {
            return Err(OAuthError::invalid_grant(
                "the device code was issued to another client",
            ));
        }
        self.check_granted_resource(record.resource.as_deref(), resource)?;
        let now = self.store.now();
        if now >= record.expires_at {
            return Err(OAuthError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "expired_token",
                "the device code has expired; start again",
            ));
        }
        let interval_ms =
            i64::try_from(record.interval_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let too_fast = record
            .last_poll
            .is_some_and(|last| now.saturating_sub(last) < interval_ms);
        let ttl = self.store.ttl_until(record.expires_at) + EXPIRED_GRACE;
        match &record.status {
            DeviceStatus::Pending => {
                let mut next = record.clone();
                next.last_poll = Some(now);
                if too_fast {
                    next.interval_secs += SLOW_DOWN_STEP.as_secs();
                }
                // A lost race means another poll just updated the record; either way this poll
                // came too soon.
                let recorded = self
                    .store
                    .swap(&key, stored.version, &next, Some(ttl))
                    .await?;
                if too_fast || !recorded {
                    Err(OAuthError::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "slow_down",
                        format!("poll at most every {} seconds", next.interval_secs),
                    ))
                } else {
                    Err(OAuthError::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "authorization_pending",
                        "the user has not yet approved the request",
                    ))
                }
            }
            DeviceStatus::Denied => Err(OAuthError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "access_denied",
                "the user denied the request",
            )),
            DeviceStatus::Redeemed { .. } => Err(OAuthError::invalid_grant(
                "the device code was already used",
            )),
            DeviceStatus::Approved {
                username,
                tenant,
                scope,
            } => {
                let family = new_family_id()?;
                let mut next = record.clone();
                next.last_poll = Some(now);
                next.status = DeviceStatus::Redeemed {
                    family: family.clone(),
                };
                if !self
                    .store
                    .swap(&key, stored.version, &next, Some(ttl))
                    .await?
                {
                    return Err(OAuthError::invalid_grant(
                        "the device code was already used",
                    ));
                }
                let user = self.accounts.user(username).await?;
                if !user.is_some_and(|u| !u.disabled && &u.tenant == tenant) {
                    return Err(OAuthError::invalid_grant(
                        "the user who approved is disabled or no longer exists",
                    ));
                }
                let grant = Grant {
                    tenant: TenantId::new(tenant.as_str())?,
                    subject: username.clone(),
                    username: Some(username.clone()),
                    client_id: client.info.client_id.clone(),
                    scopes: ScopeSet::parse(scope)?,
                    resource: record.resource.clone(),
                };
                Ok(self.issue_in_new_family(&grant, client, family).await?)
            }
        }
    }

    /// The pending, unexpired request of a normalised user code.
    pub(crate) async fn pending_device(&self, user_code: &str) -> Result<Option<PendingDevice>> {
        let Some((record, _, _)) = self.device_by_user_code(user_code).await? else {
            return Ok(None);
        };
        if record.status != DeviceStatus::Pending {
            return Ok(None);
        }
        let Some(client) = self.accounts.client(&record.client_id).await? else {
            return Ok(None);
        };
        Ok(Some(PendingDevice {
            user_code: display_user_code(&record.user_code),
            client_id: client.info.client_id,
            client_name: client.info.name,
            scopes: ScopeSet::parse(&record.scope)?,
        }))
    }

    /// Approves or denies the pending request of a normalised user code for `user`.
    pub(crate) async fn decide_device(
        &self,
        user_code: &str,
        user: &UserRecord,
        approve: bool,
    ) -> Result<Decision> {
        let Some((record, key, version)) = self.device_by_user_code(user_code).await? else {
            return Ok(Decision::Gone);
        };
        if record.status != DeviceStatus::Pending {
            return Ok(Decision::Gone);
        }
        let mut next = record.clone();
        next.status = if approve {
            let scopes: ScopeSet = ScopeSet::parse(&record.scope)?
                .iter()
                .filter(|s| user_scopes().contains(*s))
                .collect();
            DeviceStatus::Approved {
                username: user.username.clone(),
                tenant: user.tenant.clone(),
                scope: scopes.to_string(),
            }
        } else {
            DeviceStatus::Denied
        };
        let ttl = self.store.ttl_until(record.expires_at) + EXPIRED_GRACE;
        if !self.store.swap(&key, version, &next, Some(ttl)).await? {
            return Ok(Decision::Gone);
        }
        self.store
            .delete(&Store::key("user-code", &record.user_code)?)
            .await?;
        Ok(if approve {
            Decision::Approved
        } else {
            Decision::Denied
        })
    }

    async fn device_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<Option<(DeviceRecord, p8fs_core::Key, p8fs_core::Version)>> {
        let Some(pointer) = self
            .store
            .get::<UserCodeRecord>(&Store::key("user-code", user_code)?)
            .await?
        else {
            return Ok(None);
        };
        if self.store.now() >= pointer.value.expires_at {
            return Ok(None);
        }
        let key = Store::key("device", &pointer.value.device)?;
        let Some(stored) = self.store.get::<DeviceRecord>(&key).await? else {
            return Ok(None);
        };
        if self.store.now() >= stored.value.expires_at {
            return Ok(None);
        }
        Ok(Some((stored.value, key, stored.version)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_normalise() {
        assert_eq!(
            normalize_user_code("bcdf-ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code(" BCDF GHJK ").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(normalize_user_code("BCDFGHJK").as_deref(), Some("BCDFGHJK"));
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
        assert_eq!(
            normalize_user_code("ABCD-EFGH"),
            None,
            "vowels are not in the alphabet"
        );
        assert_eq!(normalize_user_code("BCDF-GHJK-L"), None);
        assert_eq!(normalize_user_code(""), None);
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
    }

    #[test]
    fn new_user_codes_use_the_alphabet() {
        for _ in 0..200 {
            let code = new_user_code().unwrap();
            assert_eq!(code.len(), USER_CODE_LENGTH);
            assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
            assert_eq!(normalize_user_code(&display_user_code(&code)), Some(code));
        }
    }
}
