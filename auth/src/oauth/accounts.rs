//! Users and OAuth clients: validated creation, argon2id passwords, client secrets, listing.
//!
//! Records: `oauth/user/<username>` and `oauth/client/<client_id>` in the reserved tenant, kept
//! forever. Passwords are stored only as argon2id PHC strings; client secrets only as SHA-256
//! digests (they are 256-bit random values, so a fast hash is enough). Neither appears in
//! `Debug` output or errors. Every argon2 hash and verification (sign-in, `user add`,
//! `user passwd`, the decoy of unknown users) runs in the bounded [`PasswordPool`].
//!
//! Limits: usernames 1..=64 bytes of `[a-z0-9._-]` starting with a letter or digit; passwords
//! 8..=1024 bytes; client ids 1..=128 bytes of `[A-Za-z0-9._~-]`; client names 1..=128 bytes
//! without control characters; at most 16 redirect URIs of at most 2000 bytes each, absolute,
//! without fragment or user info, `https`, `http` on a loopback host (`localhost`,
//! `127.0.0.0/8`, `[::1]`), or a private-use scheme named after a reversed domain name
//! (`com.example.app:/callback`, RFC 8252 7.1) only.
//!
//! Scopes: users may hold every scope except `admin` (admin tokens come from `p8fs token issue`
//! or a confidential client registered with `admin` in its scope, through client_credentials).

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p8fs_core::{Clock, Error, KvStore, Result, TenantId, Timestamp};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::flows::is_private_use_scheme;
use super::limits::DYNAMIC_CLIENT_UNUSED_TTL;
use super::password_pool::PasswordPool;
use super::store::{Store, digest, new_secret, same_digest};
use super::{
    BUILTIN_CLI_CLIENT, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE,
    GRANT_JWT_BEARER, GRANT_REFRESH_TOKEN,
};
use crate::random_bytes;
use crate::scope::{Scope, ScopeSet};

/// Longest username, in bytes.
pub const MAX_USERNAME_BYTES: usize = 64;
/// Shortest password, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 8;
/// Longest password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest client id, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 128;
/// Longest client name, in bytes.
pub const MAX_CLIENT_NAME_BYTES: usize = 128;
/// Most redirect URIs per client.
pub const MAX_REDIRECT_URIS: usize = 16;
/// Longest redirect URI, in bytes.
pub const MAX_REDIRECT_URI_BYTES: usize = 2000;

/// A user as the admin commands show it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub tenant: String,
    pub disabled: bool,
    pub created_at: Timestamp,
}

/// An OAuth client as the admin commands show it (no secret).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    pub name: String,
    pub confidential: bool,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// The scopes the client may ask for, space-separated.
    pub scope: String,
    /// The tenant a client acts in through client_credentials.
    pub tenant: Option<String>,
    pub created_at: Timestamp,
}

/// What an admin (or dynamic registration) asks for when adding a client.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    /// The id to use; generated when `None`.
    pub client_id: Option<String>,
    pub name: String,
    /// `true`: a secret is generated and returned once.
    pub confidential: bool,
    pub redirect_uris: Vec<String>,
    /// Empty: device_code and refresh_token, plus authorization_code when redirect URIs are
    /// given, plus client_credentials for a confidential client with a tenant.
    pub grant_types: Vec<String>,
    /// Allowed scopes, space-separated; empty means every scope except `admin`.
    pub scope: String,
    /// Required for client_credentials: the tenant the client acts in.
    pub tenant: Option<String>,
}

/// A client just added, with its secret (shown once, never stored).
#[derive(Serialize, Deserialize)]
pub struct CreatedClient {
    pub client: ClientInfo,
    pub client_secret: Option<String>,
}

impl fmt::Debug for CreatedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedClient")
            .field("client", &self.client)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// The argon2id cost of new password hashes. Verification always uses the cost recorded in the
/// stored hash, so changing this affects only passwords set afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordHashing {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for PasswordHashing {
    /// The argon2 crate's recommended defaults (OWASP): 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

impl PasswordHashing {
    /// The cheapest parameters argon2 allows. For tests only: never use it for real users.
    pub fn insecure_minimum_for_tests() -> Self {
        Self {
            memory_kib: Params::MIN_M_COST,
            iterations: Params::MIN_T_COST,
            parallelism: Params::MIN_P_COST,
        }
    }

    fn params(self) -> Result<Params> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None).map_err(|e| {
            Error::invalid(
                "password_hashing",
                format!("invalid argon2 parameters: {e}"),
            )
        })
    }
}

/// Argon2 of `password` and `salt` into `out`, working in `memory` (grown to the block count of
/// `params` if it is smaller).
fn argon2_into(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> argon2::Result<()> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt,
        out,
        &mut memory[..blocks],
    )
}

/// A user as stored.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct UserRecord {
    pub(crate) username: String,
    pub(crate) tenant: String,
    pub(crate) disabled: bool,
    pub(crate) created_at: Timestamp,
    /// The argon2id PHC string.
    pub(crate) password_hash: String,
    /// The credential generation: moves on whenever the password changes or the user is
    /// disabled. Browser sessions and device keys remember the generation they were made in and
    /// stop working when it moves on.
    #[serde(default)]
    pub(crate) generation: u64,
}

impl UserRecord {
    fn info(&self) -> UserInfo {
        UserInfo {
            username: self.username.clone(),
            tenant: self.tenant.clone(),
            disabled: self.disabled,
            created_at: self.created_at,
        }
    }
}

/// A client as stored.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct ClientRecord {
    #[serde(flatten)]
    pub(crate) info: ClientInfo,
    /// The digest of the secret of a confidential client.
    pub(crate) secret_digest: Option<String>,
    /// Whether the client registered itself (RFC 7591).
    #[serde(default)]
    pub(crate) dynamic: bool,
    /// A dynamically registered client that has not obtained a token yet: its record expires
    /// after [`DYNAMIC_CLIENT_UNUSED_TTL`] unless the first token clears this.
    #[serde(default)]
    pub(crate) unused: bool,
}

impl ClientRecord {
    pub(crate) fn allows_grant(&self, grant: &str) -> bool {
        self.info.grant_types.iter().any(|g| g == grant)
    }

    /// The scopes the client may be granted.
    pub(crate) fn scopes(&self) -> ScopeSet {
        ScopeSet::parse(&self.info.scope).unwrap_or_default()
    }

    /// Whether `secret` is this client's secret (constant time).
    pub(crate) fn secret_matches(&self, secret: &str) -> bool {
        self.secret_digest
            .as_deref()
            .is_some_and(|expected| same_digest(secret, expected))
    }
}

/// The outcome of checking a username and password.
pub(crate) enum SignIn {
    Ok(UserRecord),
    BadCredentials,
    Disabled,
}

/// Every scope a user may hold: all but `admin`.
pub(crate) fn user_scopes() -> ScopeSet {
    Scope::ALL
        .into_iter()
        .filter(|s| *s != Scope::Admin)
        .collect()
}

/// Users and OAuth clients. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    hashing: PasswordHashing,
    /// Where every hash and verification runs (bounded; shared by clones).
    pool: PasswordPool,
    /// A hash verified against when the user does not exist, so a sign-in takes as long for an
    /// unknown user as for a wrong password.
    decoy: Arc<parking_lot::Mutex<Option<String>>>,
}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts")
            .field("hashing", &self.hashing)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    /// Accounts in `kv` (reserved tenant), with the recommended password-hashing cost.
    pub fn new(kv: Arc<dyn KvStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store: Store::new(kv, clock),
            hashing: PasswordHashing::default(),
            pool: PasswordPool::per_core(),
            decoy: Arc::new(parking_lot::Mutex::new(None)),
        }
    }

    /// The same accounts hashing new passwords with `hashing`.
    pub fn with_password_hashing(mut self, hashing: PasswordHashing) -> Self {
        self.hashing = hashing;
        self.decoy = Arc::new(parking_lot::Mutex::new(None));
        self
    }

    /// The same accounts running every password hash and verification in `pool`.
    pub fn with_password_pool(mut self, pool: PasswordPool) -> Self {
        self.pool = pool;
        self
    }

    /// The pool every password hash and verification runs in.
    pub fn password_pool(&self) -> &PasswordPool {
        &self.pool
    }

    /// Creates the built-in public client `p8fs-cli` (device_code and refresh_token grants,
    /// every scope but `admin`) if missing. An existing one is left as it is.
    pub async fn ensure_builtin_clients(&self) -> Result<()> {
        let record = ClientRecord {
            info: ClientInfo {
                client_id: BUILTIN_CLI_CLIENT.to_owned(),
                name: "p8fs command line".to_owned(),
                confidential: false,
                redirect_uris: Vec::new(),
                grant_types: vec![GRANT_DEVICE_CODE.to_owned(), GRANT_REFRESH_TOKEN.to_owned()],
                scope: user_scopes().to_string(),
                tenant: None,
                created_at: self.store.now(),
            },
            secret_digest: None,
            dynamic: false,
            unused: false,
        };
        self.store
            .create(&Store::key("client", BUILTIN_CLI_CLIENT)?, &record, None)
            .await?;
        Ok(())
    }

    /// Adds a user of `tenant`. `Conflict` if the username is taken; `InvalidInput` naming
    /// `username`, `password` or `tenant`.
    pub async fn add_user(
        &self,
        tenant: &TenantId,
        username: &str,
        password: &str,
    ) -> Result<UserInfo> {
        check_username(username)?;
        check_password(password)?;
        if crate::is_reserved(tenant.as_str()) {
            return Err(crate::reserved_refusal(tenant.as_str()));
        }
        let key = Store::key("user", username)?;
        if self.store.get::<UserRecord>(&key).await?.is_some() {
            return Err(Error::conflict(format!("the username {username} is taken")));
        }
        let record = UserRecord {
            username: username.to_owned(),
            tenant: tenant.as_str().to_owned(),
            disabled: false,
            created_at: self.store.now(),
            password_hash: self.hash_password(password).await?,
            generation: 0,
        };
        if !self.store.create(&key, &record, None).await? {
            return Err(Error::conflict(format!("the username {username} is taken")));
        }
        Ok(record.info())
    }

    /// Sets a user's password. `NotFound` if there is no such user.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<()> {
        check_username(username)?;
        check_password(password)?;
        let hash = self.hash_password(password).await?;
        self.update_user(username, |user| {
            user.password_hash = hash.clone();
            user.generation = user.generation.saturating_add(1);
        })
        .await
    }

    /// Disables or re-enables a user. A disabled user cannot sign in, and the refresh tokens
    /// issued to them stop working; disabling also ends their browser sessions and device keys
    /// for good (the credential generation moves on). `NotFound` if there is no such user.
    pub async fn set_disabled(&self, username: &str, disabled: bool) -> Result<()> {
        check_username(username)?;
        self.update_user(username, |user| {
            user.disabled = disabled;
            if disabled {
                user.generation = user.generation.saturating_add(1);
            }
        })
        .await
    }

    /// Every user, by username.
    pub async fn list_users(&self) -> Result<Vec<UserInfo>> {
        let users: Vec<UserRecord> = self.store.scan("user").await?;
        Ok(users.iter().map(UserRecord::info).collect())
    }

    /// Adds a client. `Conflict` if the client id is taken; `InvalidInput` naming the field.
    pub async fn add_client(&self, new: NewClient) -> Result<CreatedClient> {
        self.create_client(new, false).await
    }

    /// Every client, by client id.
    pub async fn list_clients(&self) -> Result<Vec<ClientInfo>> {
        let clients: Vec<ClientRecord> = self.store.scan("client").await?;
        Ok(clients.into_iter().map(|c| c.info).collect())
    }

    /// Removes a client; whether it existed. Its refresh tokens stop working.
    pub async fn remove_client(&self, client_id: &str) -> Result<bool> {
        check_client_id(client_id)?;
        self.store.delete(&Store::key("client", client_id)?).await
    }

    pub(crate) async fn create_client(
        &self,
        new: NewClient,
        dynamic: bool,
    ) -> Result<CreatedClient> {
        let mut info = check_new_client(new)?;
        info.created_at = self.store.now();
        let generated = info.client_id.is_empty();
        let secret = if info.confidential {
            Some(new_secret()?)
        } else {
            None
        };
        for _ in 0..4 {
            if generated {
                info.client_id = format!("c-{}", URL_SAFE_NO_PAD.encode(random_bytes::<16>()?));
            }
            let record = ClientRecord {
                info: info.clone(),
                secret_digest: secret.as_deref().map(digest),
                dynamic,
                unused: dynamic,
            };
            let ttl = dynamic.then_some(DYNAMIC_CLIENT_UNUSED_TTL);
            if self
                .store
                .create(&Store::key("client", &info.client_id)?, &record, ttl)
                .await?
            {
                return Ok(CreatedClient {
                    client: info,
                    client_secret: secret,
                });
            }
            if !generated {
                break;
            }
        }
        Err(Error::conflict(format!(
            "the client id {} is taken",
            info.client_id
        )))
    }

    /// Keeps a dynamically registered client for good once it obtained a token (clears its
    /// ttl). Nothing to do for any other client.
    pub(crate) async fn mark_client_used(&self, client_id: &str) -> Result<()> {
        let key = Store::key("client", client_id)?;
        for _ in 0..16 {
            let Some(stored) = self.store.get::<ClientRecord>(&key).await? else {
                return Ok(());
            };
            if !stored.value.unused {
                return Ok(());
            }
            let mut client = stored.value;
            client.unused = false;
            if self.store.swap(&key, stored.version, &client, None).await? {
                return Ok(());
            }
        }
        Err(Error::unavailable(
            "the client record is too contended",
            None,
        ))
    }

    pub(crate) async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>> {
        if check_client_id(client_id).is_err() {
            return Ok(None);
        }
        Ok(self
            .store
            .get(&Store::key("client", client_id)?)
            .await?
            .map(|s| s.value))
    }

    pub(crate) async fn user(&self, username: &str) -> Result<Option<UserRecord>> {
        if check_username(username).is_err() {
            return Ok(None);
        }
        Ok(self
            .store
            .get(&Store::key("user", username)?)
            .await?
            .map(|s| s.value))
    }

    /// Checks a username and password. Takes about as long whether or not the user exists.
    pub(crate) async fn sign_in(&self, username: &str, password: &str) -> Result<SignIn> {
        let user = if password.len() > MAX_PASSWORD_BYTES {
            None
        } else {
            self.user(username).await?
        };
        let hash = match &user {
            Some(user) => user.password_hash.clone(),
            None => self.decoy_hash().await?,
        };
        let ok = self.verify_password(password.to_owned(), hash).await?;
        Ok(match user {
            Some(user) if ok && user.disabled => SignIn::Disabled,
            Some(user) if ok => SignIn::Ok(user),
            _ => SignIn::BadCredentials,
        })
    }

    async fn decoy_hash(&self) -> Result<String> {
        if let Some(hash) = self.decoy.lock().clone() {
            return Ok(hash);
        }
        let hash = self.hash_password(&new_secret()?).await?;
        *self.decoy.lock() = Some(hash.clone());
        Ok(hash)
    }

    async fn update_user(&self, username: &str, change: impl Fn(&mut UserRecord)) -> Result<()> {
        let key = Store::key("user", username)?;
        for _ in 0..16 {
            let Some(stored) = self.store.get::<UserRecord>(&key).await? else {
                return Err(Error::NotFound {
                    resource: p8fs_core::Resource::Key,
                    id: format!("user {username}"),
                });
            };
            let mut user = stored.value;
            change(&mut user);
            if self.store.swap(&key, stored.version, &user, None).await? {
                return Ok(());
            }
        }
        Err(Error::unavailable("the user record is too contended", None))
    }

    /// Hashes a new password in the pool. `Unavailable` at once when the pool is full.
    /// The PHC string is what the argon2 crate's `PasswordHasher` makes (argon2id, version 19,
    /// the raw 16-byte salt), computed in the pool's memory instead of a fresh allocation.
    async fn hash_password(&self, password: &str) -> Result<String> {
        let params = self.hashing.params()?;
        let password = Zeroizing::new(password.to_owned());
        let salt = random_bytes::<16>()?;
        let failed =
            |e: &dyn fmt::Display| Error::internal(format!("cannot hash a password: {e}"), None);
        self.pool
            .run_with_memory(move |memory| {
                let encoded = SaltString::encode_b64(&salt).map_err(|e| failed(&e))?;
                let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
                argon2_into(
                    Algorithm::Argon2id,
                    Version::V0x13,
                    params.clone(),
                    password.as_bytes(),
                    &salt,
                    &mut out,
                    memory,
                )
                .map_err(|e| failed(&e))?;
                let phc = PasswordHash {
                    algorithm: Algorithm::Argon2id.ident(),
                    version: Some(Version::V0x13.into()),
                    params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
                    salt: Some(encoded.as_salt()),
                    hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
                };
                Ok(phc.to_string())
            })
            .await?
    }

    /// Checks a password against a PHC string in the pool. `Unavailable` at once when the pool
    /// is full.
    async fn verify_password(&self, password: String, hash: String) -> Result<bool> {
        let password = Zeroizing::new(password);
        self.pool
            .run_with_memory(move |memory| {
                let Ok(parsed) = PasswordHash::new(&hash) else {
                    return false;
                };
                let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
                    return false;
                };
                let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
                    return false;
                };
                let Ok(version) = parsed.version.map_or(Ok(Version::V0x13), Version::try_from)
                else {
                    return false;
                };
                let Ok(params) = Params::try_from(&parsed) else {
                    return false;
                };
                let mut salt_bytes = [0u8; 64];
                let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
                    return false;
                };
                let mut out = vec![0u8; expected.len()];
                argon2_into(
                    algorithm,
                    version,
                    params,
                    password.as_bytes(),
                    salt,
                    &mut out,
                    memory,
                )
                .is_ok()
                    // Output compares in constant time.
                    && Output::new(&out).is_ok_and(|computed| computed == expected)
            })
            .await
    }
}

/// `[a-z0-9][a-z0-9._-]{0,63}`.
pub(crate) fn check_username(username: &str) -> Result<()> {
    let bytes = username.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_USERNAME_BYTES {
        return Err(Error::invalid(
            "username",
            format!("must be 1..={MAX_USERNAME_BYTES} bytes"),
        ));
    }
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !allowed(&bytes[0])
        || !bytes
            .iter()
            .all(|b| allowed(b) || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(Error::invalid(
            "username",
            "must be lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
        ));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<()> {
    if password.len() < MIN_PASSWORD_BYTES || password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(
            "password",
            format!("must be {MIN_PASSWORD_BYTES}..={MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// `[A-Za-z0-9._~-]{1,128}`.
pub(crate) fn check_client_id(client_id: &str) -> Result<()> {
    if client_id.is_empty()
        || client_id.len() > MAX_CLIENT_ID_BYTES
        || !client_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
    {
        return Err(Error::invalid(
            "client_id",
            format!(
                "must be 1..={MAX_CLIENT_ID_BYTES} bytes of letters, digits, '.', '_', '~' or '-'"
            ),
        ));
    }
    Ok(())
}

/// Validates a redirect URI: absolute, no fragment, no user info, `https`, `http` on a
/// loopback host, or a private-use scheme of a native app (RFC 8252 7.1, `com.example.app:`).
pub(crate) fn check_redirect_uri(uri: &str) -> Result<()> {
    const FIELD: &str = "redirect_uris";
    if uri.is_empty() || uri.len() > MAX_REDIRECT_URI_BYTES {
        return Err(Error::invalid(
            FIELD,
            format!("each must be 1..={MAX_REDIRECT_URI_BYTES} bytes"),
        ));
    }
    let parsed =
        url::Url::parse(uri).map_err(|_| Error::invalid(FIELD, "each must be an absolute URI"))?;
    if uri.contains('#') || parsed.fragment().is_some() {
        return Err(Error::invalid(FIELD, "must not contain a fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::invalid(FIELD, "must not contain user information"));
    }
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            FIELD,
            "must be printable ASCII without spaces (percent-encode other characters)",
        ));
    }
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        "http" => Err(Error::invalid(
            FIELD,
            "http is allowed only for loopback hosts (localhost, 127.0.0.1, [::1]); use https",
        )),
        scheme if is_private_use_scheme(scheme) && uri.starts_with(scheme) => Ok(()),
        _ => Err(Error::invalid(
            FIELD,
            "the scheme must be https, http on a loopback host, or a private-use scheme named \
             after a reversed domain name (com.example.app)",
        )),
    }
}

fn is_loopback(uri: &url::Url) -> bool {
    match uri.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The known grant types.
pub(crate) const GRANT_TYPES: [&str; 5] = [
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_DEVICE_CODE,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_JWT_BEARER,
];

/// Validates and normalises a new client (`created_at` left at 0, `client_id` empty when it is
/// to be generated).
fn check_new_client(new: NewClient) -> Result<ClientInfo> {
    let client_id = match new.client_id {
        Some(id) => {
            check_client_id(&id)?;
            id
        }
        None => String::new(),
    };
    let name = new.name.trim().to_owned();
    if name.is_empty() || name.len() > MAX_CLIENT_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            format!("must be 1..={MAX_CLIENT_NAME_BYTES} bytes without control characters"),
        ));
    }
    if new.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(Error::invalid(
            "redirect_uris",
            format!("at most {MAX_REDIRECT_URIS} are allowed"),
        ));
    }
    let mut redirect_uris: Vec<String> = Vec::new();
    for uri in new.redirect_uris {
        check_redirect_uri(&uri)?;
        if !redirect_uris.contains(&uri) {
            redirect_uris.push(uri);
        }
    }
    let tenant = match new.tenant {
        Some(tenant) => {
            let tenant = TenantId::new(tenant)?;
            if crate::is_reserved(tenant.as_str()) {
                return Err(crate::reserved_refusal(tenant.as_str()));
            }
            Some(tenant.into_string())
        }
        None => None,
    };
    let mut grant_types: Vec<String> = Vec::new();
    if new.grant_types.is_empty() {
        if !redirect_uris.is_empty() {
            grant_types.push(GRANT_AUTHORIZATION_CODE.to_owned());
        }
        grant_types.push(GRANT_DEVICE_CODE.to_owned());
        grant_types.push(GRANT_REFRESH_TOKEN.to_owned());
        if new.confidential && tenant.is_some() {
            grant_types.push(GRANT_CLIENT_CREDENTIALS.to_owned());
        }
    } else {
        for grant in new.grant_types {
            let Some(known) = GRANT_TYPES.iter().find(|g| **g == grant) else {
                return Err(Error::invalid(
                    "grant_types",
                    format!(
                        "unknown grant type; known ones are {}",
                        GRANT_TYPES.join(", ")
                    ),
                ));
            };
            if !grant_types.iter().any(|g| g == known) {
                grant_types.push((*known).to_owned());
            }
        }
    }
    let has = |grant: &str| grant_types.iter().any(|g| g == grant);
    if has(GRANT_AUTHORIZATION_CODE) && redirect_uris.is_empty() {
        return Err(Error::invalid(
            "redirect_uris",
            "the authorization_code grant needs at least one redirect URI",
        ));
    }
    if has(GRANT_CLIENT_CREDENTIALS) && !new.confidential {
        return Err(Error::invalid(
            "grant_types",
            "client_credentials is only for confidential clients",
        ));
    }
    if has(GRANT_CLIENT_CREDENTIALS) && tenant.is_none() {
        return Err(Error::invalid(
            "tenant",
            "a client with the client_credentials grant needs the tenant it acts in",
        ));
    }
    let scopes = ScopeSet::parse(&new.scope)?;
    let scopes = if scopes.is_empty() {
        user_scopes()
    } else {
        scopes
    };
    Ok(ClientInfo {
        client_id,
        name,
        confidential: new.confidential,
        redirect_uris,
        grant_types,
        scope: scopes.to_string(),
        tenant,
        created_at: 0,
    })
}

#[cfg(test)]
mod tests;
