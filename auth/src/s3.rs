//! S3 credentials: static access keys that belong to a tenant, and temporary credentials minted
//! from an access token (STS `AssumeRoleWithWebIdentity`), both resolved by access key id for
//! the S3 front-end's SigV4 check.
//!
//! Records live in the key-value store under the reserved tenant [`crate::RESERVED_TENANT`]:
//! `s3/key/<access key id>` for static keys (forever, until revoked) and
//! `s3/session/<access key id>` for temporary credentials (with a ttl ending at their expiry).
//! SigV4 needs the secret itself, so a digest will not do: secrets and session tokens are
//! stored sealed with the [`SealingKey`] (XChaCha20-Poly1305, the access key id as associated
//! data), never in clear.
//!
//! Invariants:
//! - a credential carries only the scopes `s3:read` and `s3:write`, and acts in one tenant,
//!   never the reserved one;
//! - temporary credentials expire no later than the token they came from, and stop resolving
//!   as soon as that token is revoked (a user's password change, disablement or logout revokes
//!   their tokens);
//! - secrets, session tokens and the sealing key never appear in `Debug` output, logs or
//!   errors; a record that does not unseal fails closed (an error, never a credential).

mod sealing;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use p8fs_core::error::Source;
use p8fs_core::validate::MAX_TTL_MILLIS;
use p8fs_core::{
    Clock, Error, ErrorKind, JsonValue, Key, KeyPrefix, KvStore, Limit, Result, TenantId,
    Timestamp, Ttl,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use sealing::{SEALING_KEY_FILE_NAME, SealingKey};

use crate::keys::duration_millis;
use crate::principal::Principal;
use crate::random_bytes;
use crate::scope::{Scope, ScopeSet};
use crate::verify::{Verifier, reserved_tenant};

/// Length of every access key id.
pub const ACCESS_KEY_ID_LEN: usize = 20;
/// The prefix of static access key ids (as AWS's `AKIA`).
pub const STATIC_KEY_PREFIX: &str = "P8A";
/// The prefix of temporary access key ids (as AWS's `ASIA`).
pub const TEMPORARY_KEY_PREFIX: &str = "P8T";
/// Length of a secret access key (as AWS's).
pub const SECRET_LEN: usize = 40;
/// The shortest lifetime `AssumeRoleWithWebIdentity` grants (`DurationSeconds`), as AWS.
pub const MIN_SESSION_DURATION: Duration = Duration::from_secs(15 * 60);
/// The longest lifetime `AssumeRoleWithWebIdentity` grants (`DurationSeconds`), as AWS.
pub const MAX_SESSION_DURATION: Duration = Duration::from_secs(12 * 3600);
/// The lifetime asked for when `DurationSeconds` is absent, as AWS.
pub const DEFAULT_SESSION_DURATION: Duration = Duration::from_secs(3600);
/// The longest access key description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 256;
/// The `client_id` of the principal of a static access key.
pub const STATIC_KEY_CLIENT_ID: &str = "s3-access-key";

const KEY_RECORDS: &str = "s3/key/";
const SESSION_RECORDS: &str = "s3/session/";
const ID_ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// Attempts at a fresh access key id before giving up (a collision is astronomically rare).
const CREATE_ATTEMPTS: usize = 4;

/// The scopes an S3 credential may carry: `s3:read` and `s3:write`.
pub fn s3_scopes() -> ScopeSet {
    [Scope::S3Read, Scope::S3Write].into_iter().collect()
}

/// Static access keys and temporary credentials over one key-value store. Cheap to clone.
#[derive(Clone)]
pub struct S3Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KvStore>,
    tenant: TenantId,
    sealing: SealingKey,
    verifier: Arc<Verifier>,
    clock: Arc<dyn Clock>,
}

/// What the S3 front-end needs to check a request signed with an access key.
pub struct S3Credential {
    /// The secret access key, for the SigV4 signature.
    pub secret: Zeroizing<String>,
    /// Who acts: the tenant, the scopes (`s3:read` / `s3:write` only), until when
    /// (`expires_at`: the expiry of a temporary credential, `Timestamp::MAX` for a static key).
    /// `token_id` is the access key id; `subject` and `client_id` are those of the token a
    /// temporary credential came from, and the access key id and [`STATIC_KEY_CLIENT_ID`] for
    /// a static key.
    pub principal: Principal,
    /// Some for temporary credentials: a request must carry exactly this
    /// `x-amz-security-token`.
    pub session_token: Option<Zeroizing<String>>,
}

impl S3Credential {
    /// Whether the presented `x-amz-security-token` is the one this credential requires:
    /// none for a static key, exactly the session token for a temporary one. Constant time in
    /// the token's content.
    pub fn session_token_matches(&self, presented: Option<&str>) -> bool {
        match (&self.session_token, presented) {
            (None, None) => true,
            (Some(expected), Some(presented)) => Sha256::digest(expected.as_bytes())
                .ct_eq(&Sha256::digest(presented.as_bytes()))
                .into(),
            _ => false,
        }
    }
}

impl fmt::Debug for S3Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credential")
            .field("secret", &"<redacted>")
            .field("principal", &self.principal)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A static access key just created: the only time its secret is shown.
pub struct NewAccessKey {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    /// The key as `list_keys` shows it.
    pub info: AccessKeyInfo,
}

impl fmt::Debug for NewAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("info", &self.info)
            .finish()
    }
}

/// A static access key as the admin commands show it (no secret).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyInfo {
    pub access_key_id: String,
    pub tenant: String,
    /// The scopes, space-separated.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: Timestamp,
}

/// Temporary credentials from `AssumeRoleWithWebIdentity`.
pub struct TemporaryCredentials {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Zeroizing<String>,
    /// Milliseconds since the Unix epoch.
    pub expiration: Timestamp,
    /// The `sub` of the web identity token (STS's `SubjectFromWebIdentityToken`).
    pub subject: String,
    /// The tenant the credentials act in.
    pub tenant: TenantId,
    /// The scopes granted: the token's `s3:*` scopes.
    pub scopes: ScopeSet,
}

impl fmt::Debug for TemporaryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemporaryCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expiration", &self.expiration)
            .field("subject", &self.subject)
            .field("tenant", &self.tenant)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// A static key as stored.
#[derive(Serialize, Deserialize)]
struct KeyRecord {
    tenant: String,
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    created_at: Timestamp,
    /// The secret access key, sealed.
    secret: String,
}

/// Temporary credentials as stored.
#[derive(Serialize, Deserialize)]
struct SessionRecord {
    tenant: String,
    scope: String,
    subject: String,
    client_id: String,
    /// The `jti` of the token the credentials came from, checked for revocation.
    token_id: String,
    created_at: Timestamp,
    expires_at: Timestamp,
    /// The secret access key, sealed.
    secret: String,
    /// The session token, sealed.
    session_token: String,
}

/// Which kind of credential an access key id names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Static,
    Temporary,
}

impl Kind {
    /// The kind of a well-formed access key id; `None` for anything else.
    fn of(access_key_id: &str) -> Option<Kind> {
        if access_key_id.len() != ACCESS_KEY_ID_LEN
            || !access_key_id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return None;
        }
        if access_key_id.starts_with(STATIC_KEY_PREFIX) {
            Some(Kind::Static)
        } else if access_key_id.starts_with(TEMPORARY_KEY_PREFIX) {
            Some(Kind::Temporary)
        } else {
            None
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Kind::Static => STATIC_KEY_PREFIX,
            Kind::Temporary => TEMPORARY_KEY_PREFIX,
        }
    }

    fn records(self) -> &'static str {
        match self {
            Kind::Static => KEY_RECORDS,
            Kind::Temporary => SESSION_RECORDS,
        }
    }

    fn key(self, access_key_id: &str) -> Result<Key> {
        Key::new(format!("{}{access_key_id}", self.records()))
    }
}

/// The associated data of a sealed field: it ties the ciphertext to its access key id and to
/// what it is.
fn seal_context(field: &str, access_key_id: &str) -> String {
    format!("p8fs-s3/{field}/{access_key_id}")
}

impl S3Credentials {
    /// Credentials over `store` (records under the reserved tenant, like all auth state),
    /// sealing secrets with `sealing`; `verifier` verifies web identity tokens and tells
    /// whether the token a temporary credential came from was revoked; time from `clock`.
    pub fn new(
        store: Arc<dyn KvStore>,
        sealing: SealingKey,
        verifier: Arc<Verifier>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                tenant: reserved_tenant(),
                sealing,
                verifier,
                clock,
            }),
        }
    }

    /// The credential of an access key id, or `None` when it is unknown, revoked or expired,
    /// or (temporary credentials) its source token was revoked. A malformed id is `None`,
    /// never an error. Errors: the store's failures as they are, and `Internal` for a record
    /// that does not unseal (another sealing key): that fails closed.
    pub async fn resolve(&self, access_key_id: &str) -> Result<Option<S3Credential>> {
        let Some(kind) = Kind::of(access_key_id) else {
            return Ok(None);
        };
        let key = kind.key(access_key_id)?;
        match kind {
            Kind::Static => {
                let Some(record) = self.get::<KeyRecord>(&key).await? else {
                    return Ok(None);
                };
                let secret = self.open("secret", access_key_id, &record.secret)?;
                Ok(Some(S3Credential {
                    secret,
                    principal: Principal {
                        tenant: stored_tenant(&record.tenant, &key)?,
                        subject: access_key_id.to_owned(),
                        client_id: STATIC_KEY_CLIENT_ID.to_owned(),
                        scopes: stored_scopes(&record.scope, &key)?,
                        token_id: access_key_id.to_owned(),
                        expires_at: Timestamp::MAX,
                    },
                    session_token: None,
                }))
            }
            Kind::Temporary => {
                let Some(record) = self.get::<SessionRecord>(&key).await? else {
                    return Ok(None);
                };
                if self.inner.clock.now() >= record.expires_at {
                    return Ok(None);
                }
                let tenant = stored_tenant(&record.tenant, &key)?;
                if self
                    .inner
                    .verifier
                    .is_revoked(&tenant, &record.token_id)
                    .await?
                {
                    return Ok(None);
                }
                let secret = self.open("secret", access_key_id, &record.secret)?;
                let session_token =
                    self.open("session-token", access_key_id, &record.session_token)?;
                Ok(Some(S3Credential {
                    secret,
                    principal: Principal {
                        tenant,
                        subject: record.subject,
                        client_id: record.client_id,
                        scopes: stored_scopes(&record.scope, &key)?,
                        token_id: access_key_id.to_owned(),
                        expires_at: record.expires_at,
                    },
                    session_token: Some(session_token),
                }))
            }
        }
    }

    /// Creates a static access key of `tenant` with `scopes` (a non-empty subset of `s3:read`
    /// and `s3:write`). `InvalidInput` naming `tenant` (the reserved tenant), `scope` or
    /// `description` (at most [`MAX_DESCRIPTION_BYTES`] bytes, no control characters).
    pub async fn create_key(
        &self,
        tenant: &TenantId,
        scopes: ScopeSet,
        description: Option<String>,
    ) -> Result<NewAccessKey> {
        self.check_tenant(tenant)?;
        if scopes.is_empty() || !s3_scopes().is_superset(&scopes) {
            return Err(Error::invalid(
                "scope",
                "an access key carries s3:read, s3:write or both, and no other scope",
            ));
        }
        if let Some(description) = &description
            && (description.len() > MAX_DESCRIPTION_BYTES
                || description.chars().any(char::is_control))
        {
            return Err(Error::invalid(
                "description",
                format!("must be at most {MAX_DESCRIPTION_BYTES} bytes without control characters"),
            ));
        }
        let created_at = self.inner.clock.now();
        for _ in 0..CREATE_ATTEMPTS {
            let access_key_id = new_access_key_id(Kind::Static)?;
            let secret = new_secret()?;
            let record = KeyRecord {
                tenant: tenant.to_string(),
                scope: scopes.to_string(),
                description: description.clone(),
                created_at,
                secret: self.seal("secret", &access_key_id, &secret)?,
            };
            if self
                .create(&Kind::Static.key(&access_key_id)?, &record, None)
                .await?
            {
                let info = AccessKeyInfo {
                    access_key_id: access_key_id.clone(),
                    tenant: record.tenant,
                    scope: record.scope,
                    description: record.description,
                    created_at,
                };
                return Ok(NewAccessKey {
                    access_key_id,
                    secret_access_key: secret,
                    info,
                });
            }
        }
        Err(Error::internal("cannot find a free access key id", None))
    }

    /// The static access keys, of `tenant` or of every tenant, by access key id. Never the
    /// secrets.
    pub async fn list_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<AccessKeyInfo>> {
        let prefix = KeyPrefix::new(KEY_RECORDS)?;
        let mut out = Vec::new();
        let mut after: Option<Key> = None;
        loop {
            let page = self
                .inner
                .store
                .scan(&self.inner.tenant, &prefix, after.as_ref(), Limit::MAX)
                .await?;
            for entry in page.items {
                let record: KeyRecord = decode(&entry.key, entry.value)?;
                if tenant.is_some_and(|t| t.as_str() != record.tenant) {
                    continue;
                }
                let access_key_id = entry
                    .key
                    .as_str()
                    .strip_prefix(KEY_RECORDS)
                    .unwrap_or_default()
                    .to_owned();
                out.push(AccessKeyInfo {
                    access_key_id,
                    tenant: record.tenant,
                    scope: record.scope,
                    description: record.description,
                    created_at: record.created_at,
                });
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Revokes an access key (static, or temporary credentials before their expiry): requests
    /// signed with it fail from now on. Returns whether it existed; a malformed id is `false`.
    pub async fn revoke_key(&self, access_key_id: &str) -> Result<bool> {
        let Some(kind) = Kind::of(access_key_id) else {
            return Ok(false);
        };
        self.inner
            .store
            .delete(&self.inner.tenant, &kind.key(access_key_id)?)
            .await
    }

    /// STS `AssumeRoleWithWebIdentity`: verifies the access token (strictly, with the one
    /// [`Verifier`]), requires `s3:read` or `s3:write` in it, and mints temporary credentials
    /// acting in the token's tenant with the token's `s3:*` scopes, expiring at the earlier of
    /// the token's expiry and `duration` from now (default [`DEFAULT_SESSION_DURATION`]).
    /// Errors: `InvalidInput` naming `DurationSeconds` outside
    /// [`MIN_SESSION_DURATION`]..=[`MAX_SESSION_DURATION`]; `Unauthorized` for a token that does
    /// not verify; `Forbidden` for one without an s3 scope.
    pub async fn assume_role_with_web_identity(
        &self,
        web_identity_token: &str,
        duration: Option<Duration>,
    ) -> Result<TemporaryCredentials> {
        let duration = duration.unwrap_or(DEFAULT_SESSION_DURATION);
        if !(MIN_SESSION_DURATION..=MAX_SESSION_DURATION).contains(&duration) {
            return Err(Error::invalid(
                "DurationSeconds",
                format!(
                    "must be between {} and {} seconds",
                    MIN_SESSION_DURATION.as_secs(),
                    MAX_SESSION_DURATION.as_secs()
                ),
            ));
        }
        let principal = self.inner.verifier.verify(web_identity_token).await?;
        let scopes: ScopeSet = principal
            .scopes
            .iter()
            .filter(|s| s3_scopes().contains(*s))
            .collect();
        if scopes.is_empty() {
            return Err(Error::Forbidden(
                "the token lacks the scope s3:read or s3:write".into(),
            ));
        }
        self.mint(&principal, scopes, duration).await
    }

    /// Temporary credentials for a principal already verified (the caller of another
    /// front-end, e.g. for a presigned download URL): acting in its tenant with `scopes` (which
    /// must be `s3:*` scopes the principal holds), expiring at the earlier of its token's expiry
    /// and `duration` from now, and resolving only while that token is not revoked.
    /// Errors: `Forbidden` for scopes outside `s3:*` or not held; `Unauthorized` for an
    /// expired principal.
    pub async fn mint(
        &self,
        principal: &Principal,
        scopes: ScopeSet,
        duration: Duration,
    ) -> Result<TemporaryCredentials> {
        if let Some(scope) = scopes
            .iter()
            .find(|s| !s3_scopes().contains(*s) || !principal.scopes.contains(*s))
        {
            return Err(Error::Forbidden(
                format!("temporary credentials cannot carry the scope {scope}").into(),
            ));
        }
        self.check_tenant(&principal.tenant)?;
        let now = self.inner.clock.now();
        let expiration = principal
            .expires_at
            .min(now.saturating_add(duration_millis(duration)));
        if expiration <= now {
            return Err(Error::Unauthorized("token expired".into()));
        }
        let ttl = Ttl::from_millis(expiration.saturating_sub(now).min(MAX_TTL_MILLIS))?;
        for _ in 0..CREATE_ATTEMPTS {
            let access_key_id = new_access_key_id(Kind::Temporary)?;
            let secret = new_secret()?;
            let session_token = new_session_token()?;
            let record = SessionRecord {
                tenant: principal.tenant.to_string(),
                scope: scopes.to_string(),
                subject: principal.subject.clone(),
                client_id: principal.client_id.clone(),
                token_id: principal.token_id.clone(),
                created_at: now,
                expires_at: expiration,
                secret: self.seal("secret", &access_key_id, &secret)?,
                session_token: self.seal("session-token", &access_key_id, &session_token)?,
            };
            let key = Kind::Temporary.key(&access_key_id)?;
            if self.create(&key, &record, Some(ttl)).await? {
                return Ok(TemporaryCredentials {
                    access_key_id,
                    secret_access_key: secret,
                    session_token,
                    expiration,
                    subject: principal.subject.clone(),
                    tenant: principal.tenant.clone(),
                    scopes,
                });
            }
        }
        Err(Error::internal("cannot find a free access key id", None))
    }

    fn check_tenant(&self, tenant: &TenantId) -> Result<()> {
        if crate::is_reserved(tenant.as_str()) {
            return Err(crate::reserved_refusal(tenant.as_str()));
        }
        Ok(())
    }

    fn seal(&self, field: &str, access_key_id: &str, plaintext: &str) -> Result<String> {
        self.inner
            .sealing
            .seal(&seal_context(field, access_key_id), plaintext.as_bytes())
    }

    fn open(&self, field: &str, access_key_id: &str, sealed: &str) -> Result<Zeroizing<String>> {
        let context = seal_context(field, access_key_id);
        let bytes = self.inner.sealing.open(&context, sealed)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::internal(format!("the sealed {context} is not text"), None))?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    async fn get<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<T>> {
        match self.inner.store.get(&self.inner.tenant, key).await? {
            Some(entry) => decode(key, entry.value).map(Some),
            None => Ok(None),
        }
    }

    /// Creates the record if none exists; `false` if one does.
    async fn create<T: Serialize>(&self, key: &Key, record: &T, ttl: Option<Ttl>) -> Result<bool> {
        let value = serde_json::to_value(record).map_err(|e| {
            Error::internal(
                "cannot encode an S3 credential record",
                Some(Box::new(e) as Source),
            )
        })?;
        match self
            .inner
            .store
            .put_if_absent(&self.inner.tenant, key, &JsonValue::new(value)?, ttl)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials").finish_non_exhaustive()
    }
}

fn decode<T: DeserializeOwned>(key: &Key, value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| corrupt(key, Some(Box::new(e) as Source)))
}

fn corrupt(key: &Key, source: Option<Source>) -> Error {
    Error::internal(
        format!("the S3 credential record {key} cannot be decoded"),
        source,
    )
}

fn stored_tenant(tenant: &str, key: &Key) -> Result<TenantId> {
    TenantId::new(tenant).map_err(|_| corrupt(key, None))
}

/// The stored scopes, only ever `s3:*` ones.
fn stored_scopes(scope: &str, key: &Key) -> Result<ScopeSet> {
    let scopes = ScopeSet::parse(scope).map_err(|_| corrupt(key, None))?;
    Ok(scopes.iter().filter(|s| s3_scopes().contains(*s)).collect())
}

/// A new access key id: the kind's prefix, then random characters of `[A-Z0-9]`.
fn new_access_key_id(kind: Kind) -> Result<String> {
    let mut id = String::with_capacity(ACCESS_KEY_ID_LEN);
    id.push_str(kind.prefix());
    while id.len() < ACCESS_KEY_ID_LEN {
        for byte in random_bytes::<32>()? {
            // 252 = 7 * 36: rejecting larger bytes keeps every character equally likely.
            if byte < 252 && id.len() < ACCESS_KEY_ID_LEN {
                id.push(char::from(ID_ALPHABET[usize::from(byte % 36)]));
            }
        }
    }
    Ok(id)
}

/// A new secret access key: 240 random bits, base64url (40 characters).
fn new_secret() -> Result<Zeroizing<String>> {
    use base64::Engine;
    let bytes = Zeroizing::new(random_bytes::<30>()?);
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
    ))
}

/// A new session token: 512 random bits, base64url (86 characters).
fn new_session_token() -> Result<Zeroizing<String>> {
    use base64::Engine;
    let bytes = Zeroizing::new(random_bytes::<64>()?);
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
    ))
}

#[cfg(test)]
mod tests;
