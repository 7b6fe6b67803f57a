//! Admin commands (`p8fs token issue`, `keys ...`, `user ...`, `client ...`,
//! `s3 keys ...`) and the local admin socket through which they reach a running server.
//!
//! RocksDB admits one process, so while `p8fs serve` runs, admin commands go to it over
//! `<data_dir>/admin.sock`: a Unix socket of mode 0600 that also checks the peer's user id
//! (the server's own user or root only). One connection carries one JSON request line and one
//! JSON reply line, at most [`MAX_MESSAGE_BYTES`] each. When no server answers on the socket,
//! the command opens the key ring (and, for accounts, the store) itself. Either way the same
//! [`Admin::execute`] runs, so a command behaves the same with or without a server.
//!
//! Passwords, client secrets and S3 secret access keys cross the socket but never appear in logs
//! or `Debug` output.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use p8fs_auth::oauth::{Accounts, NewClient, OAuthServer, Revoked};
use p8fs_auth::s3::{S3Credentials, SEALING_KEY_FILE_NAME, SealingKey};
use p8fs_auth::{Issuer, KeyRing, ScopeSet, Verifier};
use p8fs_core::{Backend, Clock, KvStore, Maintenance, SystemClock, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::sealing::Encryption;
use crate::server;

/// The socket's file name inside the data directory.
pub const SOCKET_NAME: &str = "admin.sock";
/// Longest request or reply line, in bytes.
pub const MAX_MESSAGE_BYTES: u64 = 64 * 1024;
/// How long either side waits for the other.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client waits for the reply to a request that rewrites data.
const LONG_REPLY_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// One admin command. Not `Debug`: it may carry a password.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminRequest {
    /// Mint an access token with the current signing key.
    TokenIssue {
        tenant: String,
        sub: String,
        scope: String,
        ttl_seconds: u64,
        client_id: String,
        /// The audience (a resource URI, e.g. the MCP endpoint's); the configured one when
        /// absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
    /// Make a new signing key current.
    KeysRotate { retain_seconds: u64 },
    /// Make a new master key current and re-wrap every data key under it.
    MasterRotate,
    /// Drop the retired master keys once every data key is wrapped by the current one.
    MasterPrune,
    /// Every tenant of the store, with whether it is resealed in the current format.
    ResealTenants,
    /// Rewrite what `tenant` holds in the clear or in an older format in the current one.
    Reseal { tenant: String },
    /// Drop from the store's files what overwritten and deleted records left there.
    StorageCompact,
    /// Create a user of `tenant`.
    UserAdd {
        tenant: String,
        username: String,
        password: String,
    },
    /// Set a user's password; the user's sessions, tokens and device keys are revoked.
    UserPasswd { username: String, password: String },
    /// Disable (the user's sessions, tokens and device keys are revoked) or enable again a user.
    UserDisable { username: String, disabled: bool },
    /// Every user.
    UserList,
    /// Register an OAuth client.
    ClientAdd { client: NewClient },
    /// Every OAuth client.
    ClientList,
    /// Remove an OAuth client, the tokens issued through it and the device keys registered
    /// through it.
    ClientRemove { client_id: String },
    /// Create an S3 access key of `tenant`; the reply carries its secret (shown only this once).
    S3KeyCreate {
        tenant: String,
        /// Space-separated: `s3:read`, `s3:write` or both.
        scope: String,
        description: Option<String>,
    },
    /// The S3 access keys, of one tenant or all (never their secrets).
    S3KeyList { tenant: Option<String> },
    /// Revoke an S3 access key.
    S3KeyRevoke { access_key_id: String },
    /// The bytes of object data a tenant stores (every chunk, whatever its state: committed,
    /// being uploaded, or freed and awaiting the reaper).
    S3Usage { tenant: String },
}

impl AdminRequest {
    fn needs_store(&self) -> bool {
        !matches!(
            self,
            AdminRequest::TokenIssue { .. } | AdminRequest::KeysRotate { .. }
        )
    }

    /// How long the client waits for the reply: a tenant's reseal and a compaction take as
    /// long as the data they rewrite.
    fn reply_timeout(&self) -> Duration {
        match self {
            AdminRequest::Reseal { .. } | AdminRequest::StorageCompact => LONG_REPLY_TIMEOUT,
            _ => IO_TIMEOUT,
        }
    }
}

/// The reply to one request.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AdminReply {
    Ok(Value),
    Error(String),
}

/// Executes admin requests against one key ring and, when opened with them, the OAuth server
/// and the S3 credentials over the store.
pub struct Admin {
    keys: Arc<KeyRing>,
    issuer: Arc<Issuer>,
    oauth: Option<Arc<OAuthServer>>,
    s3: Option<S3Credentials>,
    storage: Option<Arc<dyn Backend>>,
    encryption: Option<Encryption>,
}

impl Admin {
    /// An executor over `keys` (signing with `issuer`) and, if given, the accounts and tokens
    /// of `oauth`.
    pub fn new(keys: Arc<KeyRing>, issuer: Arc<Issuer>, oauth: Option<Arc<OAuthServer>>) -> Self {
        Self {
            keys,
            issuer,
            oauth,
            s3: None,
            storage: None,
            encryption: None,
        }
    }

    /// The same executor, managing the S3 access keys of `s3` too.
    pub fn with_s3(mut self, s3: S3Credentials) -> Self {
        self.s3 = Some(s3);
        self
    }

    /// The same executor, rotating the master key of `encryption` too.
    pub fn with_encryption(mut self, encryption: Option<Encryption>) -> Self {
        self.encryption = encryption;
        self
    }

    /// The same executor, reporting storage use of `storage` too.
    pub fn with_storage(mut self, storage: Arc<dyn Backend>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// The encryption layer, which the key and reseal commands need.
    fn encryption(&self) -> Result<&Encryption, String> {
        self.encryption.as_ref().ok_or_else(|| {
            "encryption is off (encryption.enabled = false): there is no master key".to_owned()
        })
    }

    /// Runs one request; the error is a message for the operator.
    pub async fn execute(&self, request: AdminRequest) -> Result<Value, String> {
        let text = |e: p8fs_core::Error| e.to_string();
        match request {
            AdminRequest::TokenIssue {
                tenant,
                sub,
                scope,
                ttl_seconds,
                client_id,
                audience,
            } => {
                let tenant = TenantId::new(tenant).map_err(text)?;
                let scopes = ScopeSet::parse(&scope).map_err(text)?;
                let ttl = Duration::from_secs(ttl_seconds);
                let token = match audience {
                    None => self.issuer.issue(&tenant, &sub, &client_id, &scopes, ttl),
                    Some(audience) => self
                        .issuer
                        .issue_for(&audience, &tenant, &sub, &client_id, &scopes, ttl),
                }
                .map_err(text)?;
                Ok(Value::String(token.token))
            }
            AdminRequest::KeysRotate { retain_seconds } => {
                let kid = self
                    .keys
                    .rotate(Duration::from_secs(retain_seconds))
                    .map_err(text)?;
                Ok(json!({ "kid": kid }))
            }
            AdminRequest::MasterRotate => {
                let (id, done) = crate::sealing::rotate(self.encryption()?).await?;
                Ok(json!({
                    "master_key_id": id,
                    "data_keys": done.examined,
                    "rewrapped": done.rewrapped,
                }))
            }
            AdminRequest::MasterPrune => crate::sealing::prune(self.encryption()?).await,
            AdminRequest::ResealTenants => {
                let tenants = self
                    .encryption()?
                    .sealed
                    .reseal_tenants()
                    .await
                    .map_err(text)?;
                Ok(Value::Array(
                    tenants
                        .into_iter()
                        .map(|(tenant, resealed)| {
                            json!({"tenant": tenant.as_str(), "resealed": resealed})
                        })
                        .collect(),
                ))
            }
            AdminRequest::Reseal { tenant } => {
                let tenant = TenantId::new(tenant).map_err(text)?;
                let done = self
                    .encryption()?
                    .sealed
                    .reseal(&tenant, &SystemClock)
                    .await
                    .map_err(|e| format!("resealing tenant {tenant}: {e}"))?;
                Ok(json!({
                    "tenant": tenant.as_str(),
                    "skipped": done.skipped,
                    "examined": done.examined,
                    "rewritten": done.rewritten,
                    "chunks": done.chunks,
                    "uploads_pending": done.uploads_pending,
                    "overwritten": done.overwritten,
                    "complete": done.complete,
                }))
            }
            AdminRequest::StorageCompact => {
                self.encryption()?
                    .sealed
                    .compact_storage()
                    .await
                    .map_err(text)?;
                Ok(json!({ "compacted": true }))
            }
            AdminRequest::UserAdd {
                tenant,
                username,
                password,
            } => {
                let tenant = TenantId::new(tenant).map_err(text)?;
                let user = self
                    .accounts()?
                    .add_user(&tenant, &username, &password)
                    .await
                    .map_err(text)?;
                to_value(&user)
            }
            AdminRequest::UserPasswd { username, password } => {
                let revoked = self
                    .oauth()?
                    .set_password(&username, &password)
                    .await
                    .map_err(text)?;
                Ok(revoked_json(revoked))
            }
            AdminRequest::UserDisable { username, disabled } => {
                let revoked = self
                    .oauth()?
                    .set_disabled(&username, disabled)
                    .await
                    .map_err(text)?;
                Ok(revoked_json(revoked))
            }
            AdminRequest::UserList => to_value(&self.accounts()?.list_users().await.map_err(text)?),
            AdminRequest::ClientAdd { client } => {
                to_value(&self.accounts()?.add_client(client).await.map_err(text)?)
            }
            AdminRequest::ClientList => {
                to_value(&self.accounts()?.list_clients().await.map_err(text)?)
            }
            AdminRequest::ClientRemove { client_id } => {
                match self
                    .oauth()?
                    .remove_client(&client_id)
                    .await
                    .map_err(text)?
                {
                    Some(revoked) => Ok(revoked_json(revoked)),
                    None => Err(format!("no client {client_id}")),
                }
            }
            AdminRequest::S3KeyCreate {
                tenant,
                scope,
                description,
            } => {
                let tenant = TenantId::new(tenant).map_err(text)?;
                let scopes = ScopeSet::parse(&scope).map_err(text)?;
                let created = self
                    .s3()?
                    .create_key(&tenant, scopes, description)
                    .await
                    .map_err(text)?;
                let mut reply = to_value(&created.info)?;
                reply["secret_access_key"] = Value::String(created.secret_access_key.to_string());
                Ok(reply)
            }
            AdminRequest::S3KeyList { tenant } => {
                let tenant = tenant.map(TenantId::new).transpose().map_err(text)?;
                to_value(&self.s3()?.list_keys(tenant.as_ref()).await.map_err(text)?)
            }
            AdminRequest::S3Usage { tenant } => {
                let tenant = TenantId::new(tenant).map_err(text)?;
                let storage = self.storage.as_ref().ok_or_else(|| {
                    "this command needs the storage, which is not open".to_owned()
                })?;
                let bytes = storage.stored_bytes(&tenant).await.map_err(text)?;
                Ok(json!({"tenant": tenant.as_str(), "stored_bytes": bytes}))
            }
            AdminRequest::S3KeyRevoke { access_key_id } => {
                if self.s3()?.revoke_key(&access_key_id).await.map_err(text)? {
                    Ok(Value::Null)
                } else {
                    Err(format!("no access key {access_key_id}"))
                }
            }
        }
    }

    fn s3(&self) -> Result<&S3Credentials, String> {
        self.s3
            .as_ref()
            .ok_or_else(|| "this command needs the S3 credentials, which are not open".to_owned())
    }

    fn oauth(&self) -> Result<&OAuthServer, String> {
        self.oauth
            .as_deref()
            .ok_or_else(|| "this command needs the store, which is not open".to_owned())
    }

    fn accounts(&self) -> Result<&Accounts, String> {
        Ok(self.oauth()?.accounts())
    }
}

/// The reply of a command that revoked sign-ins.
fn revoked_json(revoked: Revoked) -> Value {
    json!({
        "revoked_families": revoked.families,
        "removed_device_keys": revoked.device_keys,
    })
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| format!("cannot encode the reply: {e}"))
}

/// The file of the key that seals S3 secrets at rest: next to the signing keys.
pub fn sealing_key_path(config: &Config) -> PathBuf {
    server::keys_dir(config).join(SEALING_KEY_FILE_NAME)
}

/// The S3 credentials over `store` (the same store the server's auth state lives in), sealing
/// with the key of `config`'s data directory (created on first use) and checking tokens with
/// `verifier`: `p8fs serve` builds one and hands it to the S3 listener and to [`Admin`].
pub fn s3_credentials(
    config: &Config,
    store: Arc<dyn KvStore>,
    verifier: Arc<Verifier>,
    clock: Arc<dyn Clock>,
) -> Result<S3Credentials, String> {
    let path = sealing_key_path(config);
    let sealing = SealingKey::load_or_create(&path)
        .map_err(|e| format!("S3 sealing key {}: {e}", path.display()))?;
    Ok(S3Credentials::new(store, sealing, verifier, clock))
}

/// The admin socket of a data directory.
pub fn socket_path(config: &Config) -> PathBuf {
    config.data_dir.join(SOCKET_NAME)
}

/// Runs `request` through the server on the data directory if one answers, else locally.
pub fn run(config: &Config, request: AdminRequest) -> Result<Value, String> {
    match send(&socket_path(config), &request)? {
        Some(reply) => reply,
        None => run_locally(config, request),
    }
}

/// Sends `request` to a running server; `None` when none listens on `path`.
fn send(path: &Path, request: &AdminRequest) -> Result<Option<Result<Value, String>>, String> {
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => {
            return Err(format!(
                "cannot reach the server at {}: {e}",
                path.display()
            ));
        }
    };
    let failed = |e: std::io::Error| format!("admin socket {}: {e}", path.display());
    stream
        .set_read_timeout(Some(request.reply_timeout()))
        .map_err(failed)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(failed)?;
    let mut line = serde_json::to_vec(request).map_err(|e| format!("cannot encode: {e}"))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(failed)?;
    let mut reply = String::new();
    BufReader::new(std::io::Read::take(&stream, MAX_MESSAGE_BYTES))
        .read_line(&mut reply)
        .map_err(failed)?;
    match serde_json::from_str::<AdminReply>(&reply) {
        Ok(AdminReply::Ok(value)) => Ok(Some(Ok(value))),
        Ok(AdminReply::Error(message)) => Ok(Some(Err(message))),
        Err(e) => Err(format!(
            "the server's reply on {} is not understood: {e}",
            path.display()
        )),
    }
}

/// Opens what `request` needs in this process and runs it.
fn run_locally(config: &Config, request: AdminRequest) -> Result<Value, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| format!("cannot create data_dir {}: {e}", config.data_dir.display()))?;
        let keys = Arc::new(
            KeyRing::load_or_create(&server::keys_dir(config), clock.clone())
                .map_err(|e| format!("signing keys: {e}"))?,
        );
        let admin = if request.needs_store() {
            let (backend, encryption) =
                crate::backend::open_with_encryption(config, clock.clone()).await?;
            let auth = server::auth(config, backend.clone(), &keys, clock.clone()).await?;
            let s3 = s3_credentials(config, backend.clone(), auth.verifier.clone(), clock)?;
            Admin::new(keys, auth.issuer, Some(auth.oauth))
                .with_s3(s3)
                .with_storage(backend)
                .with_encryption(encryption)
        } else {
            let issuer = Issuer::new(keys.clone(), server::token_config(config), clock);
            Admin::new(keys, Arc::new(issuer), None)
        };
        admin.execute(request).await
    })
}

/// Listens on the admin socket of `config`'s data directory and serves `admin` there until
/// the process ends. Fails if another server already answers on it.
pub async fn listen(config: &Config, admin: Arc<Admin>) -> Result<(), String> {
    let path = socket_path(config);
    if tokio::net::UnixStream::connect(&path).await.is_ok() {
        return Err(format!(
            "another p8fs server answers on {}; stop it first",
            path.display()
        ));
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove the stale {}: {e}", path.display())),
    }
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| format!("cannot create the admin socket {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
    let owner = std::fs::metadata(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .uid();
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let admin = admin.clone();
                    tokio::spawn(async move {
                        if let Err(error) = serve_connection(stream, owner, &admin).await {
                            tracing::warn!(%error, "admin connection failed");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

/// Removes the admin socket on shutdown.
pub fn remove_socket(config: &Config) {
    let _ = std::fs::remove_file(socket_path(config));
}

async fn serve_connection(
    stream: tokio::net::UnixStream,
    owner: u32,
    admin: &Admin,
) -> Result<(), String> {
    let peer = stream
        .peer_cred()
        .map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
    if peer.uid() != owner && peer.uid() != 0 {
        return Err(format!("refused a connection from user id {}", peer.uid()));
    }
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(reader.take(MAX_MESSAGE_BYTES));
    tokio::time::timeout(IO_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| "timed out reading the request".to_owned())?
        .map_err(|e| format!("cannot read the request: {e}"))?;
    let reply = match serde_json::from_str::<AdminRequest>(&line) {
        Ok(request) => match admin.execute(request).await {
            Ok(value) => AdminReply::Ok(value),
            Err(message) => AdminReply::Error(message),
        },
        Err(e) => AdminReply::Error(format!("malformed admin request: {e}")),
    };
    let mut bytes = serde_json::to_vec(&reply).map_err(|e| format!("cannot encode: {e}"))?;
    bytes.push(b'\n');
    tokio::time::timeout(IO_TIMEOUT, writer.write_all(&bytes))
        .await
        .map_err(|_| "timed out writing the reply".to_owned())?
        .map_err(|e| format!("cannot write the reply: {e}"))
}
