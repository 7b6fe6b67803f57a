//! `p8fs login`, `p8fs token` and `p8fs logout`: the command-line OAuth client.
//!
//! `login` runs the device authorization grant (RFC 8628) against any server that publishes
//! RFC 8414 metadata at `<issuer>/.well-known/oauth-authorization-server`: it shows the
//! verification URL and user code (and a QR code of `verification_uri_complete` on a terminal)
//! on stderr, polls the token endpoint honouring `interval` and `slow_down`, and stops at
//! `expires_in`, `access_denied` or `expired_token`. `token` prints a valid access token,
//! refreshing it first when it expires within [`REFRESH_MARGIN_MILLIS`]. `logout` revokes the
//! refresh and the access token at the server's `revocation_endpoint` (RFC 7009) and forgets
//! them.
//!
//! Tokens live in one JSON file keyed by issuer ([`credentials_path`]: `$P8FS_CREDENTIALS`, else
//! `$XDG_CONFIG_HOME/p8fs/credentials.json`, else `~/.config/p8fs/credentials.json`), created
//! with mode 0600 in a 0700 directory and replaced atomically (a temporary file in the same
//! directory, then a rename). A lock file next to it serialises refreshes, so two `p8fs token`
//! running at once never present the same refresh token twice (which a server with reuse
//! detection answers by revoking the whole login).
//!
//! `p8fs s3 credentials` ([`sts`]) exchanges the login's access token for temporary S3
//! credentials.
//!
//! Invariants: tokens reach stdout only through `p8fs token`; they never appear in messages or
//! `Debug` output; plain `http` is accepted only for loopback servers; time comes from the
//! injected [`Clock`].

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponse, BasicTokenResponse};
use oauth2::url::{Host, Url};
use oauth2::{
    AuthType, ClientId, DeviceAuthorizationUrl, DeviceCodeErrorResponse,
    DeviceCodeErrorResponseType, EndpointNotSet, EndpointSet, ErrorResponse, RefreshToken,
    RequestTokenError, Scope, StandardDeviceAuthorizationResponse, TokenResponse, TokenUrl,
};
use p8fs_core::{Clock, SystemClock, Timestamp};
use serde::{Deserialize, Serialize};

pub mod sts;

pub use sts::{S3CredentialsArgs, s3_credentials};

/// The client `p8fs login` uses unless told otherwise: the server's built-in public client.
pub const DEFAULT_CLIENT_ID: &str = "p8fs-cli";
/// `p8fs token` refreshes an access token that expires within this many milliseconds.
pub const REFRESH_MARGIN_MILLIS: i64 = 60_000;
/// The environment variable naming the credentials file.
pub const CREDENTIALS_ENV: &str = "P8FS_CREDENTIALS";
/// RFC 8414's well-known path of the authorization server metadata.
const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How long a request to the server may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for another `p8fs` holding the credentials lock.
const LOCK_WAIT: Duration = Duration::from_secs(15);
/// A lock file older than this is left over from a crashed process and is taken over.
const LOCK_STALE_MILLIS: i64 = 60_000;

/// `p8fs login`: sign in with the device flow and keep the tokens.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The authorization server's issuer URL, e.g. https://vault.example.com (its metadata is
    /// read from <issuer>/.well-known/oauth-authorization-server; plain http only on loopback).
    #[arg(long, value_name = "URL")]
    pub issuer: String,
    /// The OAuth client to sign in as (a public client allowed the device flow).
    #[arg(long, value_name = "ID", default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// Space-separated scopes to ask for (default: whatever the client may have).
    #[arg(long, value_name = "SCOPES")]
    pub scope: Option<String>,
    /// Do not draw a QR code of the verification link.
    #[arg(long)]
    pub no_qr: bool,
    /// Ask for tokens for this resource (RFC 8707) instead of the REST API's audience, e.g.
    /// `<issuer>/mcp` for `p8fs mcp --stdio`. Kept as a login of its own, named by the
    /// resource URL, beside the issuer's.
    #[arg(long, value_name = "URL")]
    pub resource: Option<String>,
}

/// `p8fs token` (without a subcommand): print a valid access token from `p8fs login`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Which login to use, by issuer URL (needed when logged in to several servers).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
}

/// `p8fs logout`: revoke the tokens of a login and forget them.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Which login to end, by issuer URL (needed when logged in to several servers).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
    /// Forget the tokens without asking the server to revoke them (e.g. the server is gone).
    #[arg(long)]
    pub no_revoke: bool,
}

/// One login: the tokens for one issuer and where to refresh and revoke them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The client the tokens were issued to.
    pub client_id: String,
    /// Where the refresh grant goes.
    pub token_endpoint: String,
    /// RFC 7009 revocation endpoint, when the server has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// The access token.
    pub access_token: String,
    /// The refresh token, when the server issued one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires, in milliseconds since the epoch (unknown: `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The scopes granted, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The resource (RFC 8707) the tokens are for; `None`: the issuer's default audience. A
    /// login for a resource is keyed by the resource URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("client_id", &self.client_id)
            .field("token_endpoint", &self.token_endpoint)
            .field("revocation_endpoint", &self.revocation_endpoint)
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("resource", &self.resource)
            .finish()
    }
}

impl Entry {
    /// Whether the access token should be refreshed before use at `now`.
    pub fn needs_refresh(&self, now: Timestamp) -> bool {
        self.needs_refresh_within(now, REFRESH_MARGIN_MILLIS)
    }

    /// Whether the access token expires within `margin` milliseconds of `now` (and should be
    /// refreshed before a use that must last that long).
    pub fn needs_refresh_within(&self, now: Timestamp, margin: i64) -> bool {
        self.expires_at
            .is_some_and(|at| at.saturating_sub(now) <= margin)
    }

    /// The entry after a token response at `now` (a refresh keeps the old refresh token when the
    /// server sends no new one).
    fn updated(&self, response: &BasicTokenResponse, now: Timestamp) -> Entry {
        Entry {
            access_token: response.access_token().secret().clone(),
            refresh_token: response
                .refresh_token()
                .map(|t| t.secret().clone())
                .or_else(|| self.refresh_token.clone()),
            expires_at: expiry(response, now),
            scope: scope_text(response).or_else(|| self.scope.clone()),
            ..self.clone()
        }
    }
}

/// All logins, keyed by issuer URL.
pub type Credentials = BTreeMap<String, Entry>;

/// The credentials file: `$P8FS_CREDENTIALS`, else `$XDG_CONFIG_HOME/p8fs/credentials.json`,
/// else `$HOME/.config/p8fs/credentials.json`. `env` reads a variable (empty counts as unset).
pub fn credentials_path(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, String> {
    let var = |name: &str| env(name).filter(|value| !value.is_empty());
    if let Some(path) = var(CREDENTIALS_ENV) {
        return Ok(PathBuf::from(path));
    }
    let config_home = match var("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => match var("HOME") {
            Some(home) => PathBuf::from(home).join(".config"),
            None => {
                return Err(format!(
                    "cannot tell where to keep credentials: set {CREDENTIALS_ENV} or HOME"
                ));
            }
        },
    };
    Ok(config_home.join("p8fs").join("credentials.json"))
}

/// Reads the credentials file; a missing file is no logins.
pub fn read_credentials(path: &Path) -> Result<Credentials, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    warn_if_readable_by_others(path);
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a valid credentials file (line {}, column {}): delete it and log in again",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// Replaces the credentials file atomically: a new 0600 file in the same directory (made 0700
/// if missing), written and synced, then renamed over the old one.
pub fn write_credentials(path: &Path, credentials: &Credentials) -> Result<(), String> {
    let dir = parent_dir(path);
    create_private_dir(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "credentials.json".into());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let text = serde_json::to_string_pretty(credentials)
        .map_err(|e| format!("cannot encode the credentials: {e}"))?;
    // Left over only if a process with this id crashed mid-write: no live process uses it.
    let _ = std::fs::remove_file(&temp);
    let result = (|| {
        let mut file = private_file_options()
            .open(&temp)
            .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
        std::fs::rename(&temp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    // Make the rename durable; not every file system lets a directory be synced.
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn private_file_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            let _ = writeln!(
                std::io::stderr(),
                "p8fs: warning: {} is readable by other users; run `chmod 600` on it",
                path.display()
            );
        }
    }
}

/// An exclusive lock on the credentials file: a `<file>.lock` created with `O_EXCL`, removed on
/// drop. A lock older than [`LOCK_STALE_MILLIS`] is left over from a crash and taken over.
struct CredentialsLock {
    path: PathBuf,
}

impl CredentialsLock {
    async fn acquire(credentials: &Path, clock: &dyn Clock) -> Result<Self, String> {
        let mut name = credentials.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        create_private_dir(parent_dir(&path))?;
        let started = clock.now();
        loop {
            match private_file_options().open(&path) {
                Ok(_) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if lock_age_millis(&path, clock.now()).is_some_and(|a| a > LOCK_STALE_MILLIS) {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    if clock.now().saturating_sub(started) > LOCK_WAIT.as_millis() as i64 {
                        return Err(format!(
                            "another p8fs holds {}; if none runs, delete that file",
                            path.display()
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for CredentialsLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock_age_millis(path: &Path, now: Timestamp) -> Option<i64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let since_epoch = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(now.saturating_sub(i64::try_from(since_epoch.as_millis()).ok()?))
}

/// The issuer URL as a key: no trailing '/'.
pub fn normalise_issuer(issuer: &str) -> String {
    issuer.trim().trim_end_matches('/').to_owned()
}

/// Checks that `url` is an absolute https URL, or http on a loopback host.
pub fn check_url(what: &str, url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("{what} {url:?} is not a URL: {e}"))?;
    let loopback = match parsed.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(parsed),
        "http" if loopback => Ok(parsed),
        "http" => Err(format!(
            "{what} {url} uses plain http: only https is accepted, except on loopback"
        )),
        _ => Err(format!("{what} {url} is not an https URL")),
    }
}

/// The fields of RFC 8414 metadata a client needs.
#[derive(Debug, Deserialize)]
struct Metadata {
    issuer: String,
    token_endpoint: String,
    device_authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    grant_types_supported: Option<Vec<String>>,
}

/// Reads and checks the issuer's metadata (RFC 8414 section 3.3: its `issuer` must be the URL
/// it was fetched for).
async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Metadata, String> {
    let url = format!("{issuer}{METADATA_PATH}");
    let response = http
        .get(&url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {}", error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!(
            "{url} answered {status}: is {issuer} an OAuth authorization server?"
        ));
    }
    let metadata: Metadata = response
        .json()
        .await
        .map_err(|e| format!("{url} is not valid authorization server metadata: {e}"))?;
    if normalise_issuer(&metadata.issuer) != issuer {
        return Err(format!(
            "{url} names the issuer {:?}, not {issuer}: refusing it (RFC 8414 section 3.3)",
            metadata.issuer
        ));
    }
    check_url("the token endpoint", &metadata.token_endpoint)?;
    if let Some(endpoint) = &metadata.revocation_endpoint {
        check_url("the revocation endpoint", endpoint)?;
    }
    Ok(metadata)
}

/// The HTTP client: no redirects (OAuth endpoints must not be redirected to, RFC 6749 and the
/// oauth2 crate's advice), bounded time.
fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .user_agent(concat!("p8fs/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

/// A public client for `token_endpoint` (client_id in the request body).
fn oauth_client(
    client_id: &str,
    token_endpoint: &str,
) -> Result<
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>,
    String,
> {
    let token_url = TokenUrl::new(token_endpoint.to_owned())
        .map_err(|e| format!("the token endpoint {token_endpoint} is not a URL: {e}"))?;
    Ok(BasicClient::new(ClientId::new(client_id.to_owned()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(token_url))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn path_from_env() -> Result<PathBuf, String> {
    credentials_path(|name| std::env::var_os(name))
}

/// `p8fs login`.
pub fn login(args: LoginArgs) -> Result<(), String> {
    let path = path_from_env()?;
    runtime()?.block_on(login_with(args, &path, system_clock()))
}

/// `p8fs token` (print the stored access token, refreshed if needed).
pub fn token(args: TokenArgs) -> Result<(), String> {
    let path = path_from_env()?;
    let token = runtime()?.block_on(access_token(args.issuer.as_deref(), &path, system_clock()))?;
    std::io::stdout()
        .write_all(format!("{token}\n").as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

/// `p8fs logout`.
pub fn logout(args: LogoutArgs) -> Result<(), String> {
    let path = path_from_env()?;
    runtime()?.block_on(logout_with(
        args.issuer.as_deref(),
        args.no_revoke,
        &path,
        system_clock(),
    ))
}

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Runs the device flow against `args.issuer` and stores the tokens in `path`.
pub async fn login_with(args: LoginArgs, path: &Path, clock: Arc<dyn Clock>) -> Result<(), String> {
    let issuer = normalise_issuer(&args.issuer);
    check_url("the issuer", &issuer)?;
    // Fail on an unreadable credentials file before the user goes through the browser.
    read_credentials(path)?;
    let http = http_client()?;
    let metadata = discover(&http, &issuer).await?;
    if let Some(grants) = &metadata.grant_types_supported
        && !grants.iter().any(|g| g == DEVICE_CODE_GRANT)
    {
        return Err(format!(
            "{issuer} does not offer the device authorization grant (RFC 8628)"
        ));
    }
    let device_endpoint = metadata
        .device_authorization_endpoint
        .as_deref()
        .ok_or_else(|| {
            format!(
                "{issuer} publishes no device_authorization_endpoint: it does not offer RFC 8628"
            )
        })?;
    check_url("the device authorization endpoint", device_endpoint)?;
    let device_url = DeviceAuthorizationUrl::new(device_endpoint.to_owned())
        .map_err(|e| format!("the device authorization endpoint is not a URL: {e}"))?;
    let client = oauth_client(&args.client_id, &metadata.token_endpoint)?
        .set_device_authorization_url(device_url);

    let resource = args.resource.as_deref().map(normalise_issuer);
    if let Some(resource) = &resource {
        check_url("the resource", resource)?;
    }
    let mut request = client.exchange_device_code();
    if let Some(scope) = &args.scope {
        request = request.add_scopes(scope.split_whitespace().map(|s| Scope::new(s.to_owned())));
    }
    if let Some(resource) = &resource {
        request = request.add_extra_param("resource", resource.clone());
    }
    let details: StandardDeviceAuthorizationResponse = request
        .request_async(&http)
        .await
        .map_err(|e| token_error("the device authorization request", &issuer, e))?;

    show_code(&details, !args.no_qr);

    // RFC 8628 3.5: wait `interval` before the first poll as before every other.
    tokio::time::sleep(details.interval()).await;
    let poll_clock = clock.clone();
    let mut poll = client.exchange_device_access_token(&details);
    if let Some(resource) = &resource {
        poll = poll.add_extra_param("resource", resource.clone());
    }
    let response = poll
        .set_time_fn(move || {
            chrono::DateTime::<chrono::Utc>::from_timestamp_millis(poll_clock.now())
                .unwrap_or_default()
        })
        .request_async(&http, tokio::time::sleep, None)
        .await
        .map_err(|e| device_error(&issuer, &args.client_id, e))?;

    let now = clock.now();
    let placeholder = Entry {
        client_id: args.client_id.clone(),
        token_endpoint: metadata.token_endpoint.clone(),
        revocation_endpoint: metadata.revocation_endpoint.clone(),
        access_token: String::new(),
        refresh_token: None,
        expires_at: None,
        scope: args.scope.clone(),
        resource: resource.clone(),
    };
    let entry = placeholder.updated(&response, now);
    // A login for a resource is kept beside the issuer's, under the resource's URL.
    let issuer = resource.unwrap_or(issuer);
    let scope = entry.scope.clone();
    let replaced = {
        let _lock = CredentialsLock::acquire(path, clock.as_ref()).await?;
        let mut credentials = read_credentials(path)?;
        let replaced = credentials.insert(issuer.clone(), entry);
        write_credentials(path, &credentials)?;
        replaced
    };
    say(&format!(
        "Logged in to {issuer}{}. `p8fs token` prints an access token.",
        scope
            .map(|s| format!(" with scope '{s}'"))
            .unwrap_or_default()
    ));
    // The login this one replaces ends too, so its tokens do not outlive it unnoticed.
    if let (Some(old), Some(endpoint)) = (replaced, &metadata.revocation_endpoint) {
        for (token, hint) in tokens_of(&old) {
            if let Err(e) = revoke(&http, endpoint, &old.client_id, token, hint).await {
                say(&format!(
                    "p8fs: warning: the previous login was not revoked: {e}"
                ));
                break;
            }
        }
    }
    Ok(())
}

/// The tokens of a login to revoke, the refresh token first (RFC 7009 2.1: revoking it may end
/// the access tokens of the same grant too).
fn tokens_of(entry: &Entry) -> Vec<(&str, &'static str)> {
    let mut tokens = Vec::new();
    if let Some(refresh) = &entry.refresh_token {
        tokens.push((refresh.as_str(), "refresh_token"));
    }
    tokens.push((entry.access_token.as_str(), "access_token"));
    tokens
}

/// Shows the verification URL, the user code and the complete link (as a QR code too when
/// stderr is a terminal).
fn show_code(details: &StandardDeviceAuthorizationResponse, qr: bool) {
    use std::io::IsTerminal;
    let uri = details.verification_uri().as_str();
    let code = details.user_code().secret();
    let minutes = details.expires_in().as_secs().div_ceil(60);
    let mut text = format!(
        "To sign in, open this page in a browser:\n\n    {uri}\n\nand enter the code:\n\n    {code}\n\n"
    );
    if let Some(complete) = details.verification_uri_complete() {
        let complete = complete.secret();
        text.push_str(&format!(
            "Or open this link, which carries the code:\n\n    {complete}\n\n"
        ));
        if qr
            && std::io::stderr().is_terminal()
            && let Some(drawing) = qr_code(complete)
        {
            text.push_str(&drawing);
            text.push('\n');
        }
    }
    text.push_str(&format!(
        "Waiting for approval (the code expires in {minutes} minute{})...",
        if minutes == 1 { "" } else { "s" }
    ));
    say(&text);
}

/// `text` as a QR code in Unicode half blocks, light on dark as most terminals are.
fn qr_code(text: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// A message for a failed device-flow poll.
fn device_error<RE: std::error::Error>(
    issuer: &str,
    client_id: &str,
    error: RequestTokenError<RE, DeviceCodeErrorResponse>,
) -> String {
    match &error {
        RequestTokenError::ServerResponse(response) => match response.error() {
            DeviceCodeErrorResponseType::AccessDenied => {
                "login refused: the request was denied in the browser".into()
            }
            DeviceCodeErrorResponseType::ExpiredToken => format!(
                "login timed out: the code expired before it was approved; run `p8fs login --issuer {issuer}` again"
            ),
            _ => format!(
                "{issuer} refused the login of client {client_id}: {}",
                describe(response)
            ),
        },
        _ => token_error("polling the token endpoint", issuer, error),
    }
}

/// A message for a failed request to a token or device endpoint; never contains a token (a
/// response body that failed to parse is not shown).
fn token_error<RE: std::error::Error, T: ErrorResponse + fmt::Display>(
    what: &str,
    issuer: &str,
    error: RequestTokenError<RE, T>,
) -> String {
    match error {
        RequestTokenError::ServerResponse(response) => {
            format!("{issuer} refused {what}: {response}")
        }
        RequestTokenError::Request(e) => {
            format!("{what} to {issuer} failed: {}", error_chain(&e))
        }
        RequestTokenError::Parse(e, _body) => {
            format!(
                "{what}: {issuer} answered something that is not OAuth JSON ({})",
                e.path()
            )
        }
        RequestTokenError::Other(message) => format!("{what} to {issuer} failed: {message}"),
    }
}

fn describe(response: &DeviceCodeErrorResponse) -> String {
    match response.error_description() {
        Some(description) => format!("{} ({description})", response.error()),
        None => response.error().to_string(),
    }
}

/// An error and its sources, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn expiry(response: &BasicTokenResponse, now: Timestamp) -> Option<Timestamp> {
    let seconds = i64::try_from(response.expires_in()?.as_secs()).ok()?;
    Some(now.saturating_add(seconds.saturating_mul(1000)))
}

fn scope_text(response: &BasicTokenResponse) -> Option<String> {
    let scopes = response.scopes()?;
    Some(
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The issuer to act on: the one asked for, or the only one there is.
pub(crate) fn pick_issuer(
    credentials: &Credentials,
    asked: Option<&str>,
) -> Result<String, String> {
    match asked {
        Some(issuer) => {
            let issuer = normalise_issuer(issuer);
            if credentials.contains_key(&issuer) {
                Ok(issuer)
            } else {
                Err(format!(
                    "not logged in to {issuer}: run `p8fs login --issuer {issuer}`"
                ))
            }
        }
        None => {
            // Logins for a resource (`p8fs login --resource`) are only ever named.
            let mut issuers = credentials
                .iter()
                .filter(|(_, entry)| entry.resource.is_none())
                .map(|(issuer, _)| issuer);
            match (issuers.next(), issuers.next()) {
                (None, _) => Err("not logged in: run `p8fs login --issuer URL`".into()),
                (Some(only), None) => Ok(only.clone()),
                (Some(_), Some(_)) => Err(format!(
                    "logged in to several servers ({}): pass --issuer",
                    credentials.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            }
        }
    }
}

/// A valid access token for `issuer` (or the only login), refreshed first if it expires within
/// [`REFRESH_MARGIN_MILLIS`].
pub async fn access_token(
    issuer: Option<&str>,
    path: &Path,
    clock: Arc<dyn Clock>,
) -> Result<String, String> {
    access_token_lasting(issuer, path, clock, REFRESH_MARGIN_MILLIS).await
}

/// A valid access token for `issuer` (or the only login), refreshed first if it expires within
/// `margin` milliseconds (at least [`REFRESH_MARGIN_MILLIS`]): for a use that should last that
/// long, such as temporary S3 credentials, which never outlive the token.
pub async fn access_token_lasting(
    issuer: Option<&str>,
    path: &Path,
    clock: Arc<dyn Clock>,
    margin: i64,
) -> Result<String, String> {
    let margin = margin.max(REFRESH_MARGIN_MILLIS);
    let credentials = read_credentials(path)?;
    let issuer = pick_issuer(&credentials, issuer)?;
    let Some(entry) = credentials.get(&issuer) else {
        return Err(format!("not logged in to {issuer}"));
    };
    if !entry.needs_refresh_within(clock.now(), margin) {
        return Ok(entry.access_token.clone());
    }
    // Refresh under the lock, re-reading first: another process may just have refreshed.
    let _lock = CredentialsLock::acquire(path, clock.as_ref()).await?;
    let mut credentials = read_credentials(path)?;
    let Some(entry) = credentials.get(&issuer).cloned() else {
        return Err(format!(
            "not logged in to {issuer}: run `p8fs login --issuer {issuer}`"
        ));
    };
    let now = clock.now();
    if !entry.needs_refresh_within(now, margin) {
        return Ok(entry.access_token);
    }
    let Some(refresh_token) = entry.refresh_token.clone() else {
        if !entry.needs_refresh(now) {
            // Cannot be made to last longer, but still good for a while.
            return Ok(entry.access_token);
        }
        return Err(format!(
            "the access token for {issuer} has expired and there is no refresh token: run `p8fs login --issuer {issuer}` again"
        ));
    };
    check_url("the token endpoint", &entry.token_endpoint)?;
    let http = http_client()?;
    let client = oauth_client(&entry.client_id, &entry.token_endpoint)?;
    let response = client
        .exchange_refresh_token(&RefreshToken::new(refresh_token))
        .request_async(&http)
        .await
        .map_err(|e| refresh_error(&issuer, e))?;
    let updated = entry.updated(&response, clock.now());
    let token = updated.access_token.clone();
    credentials.insert(issuer, updated);
    write_credentials(path, &credentials)?;
    Ok(token)
}

fn refresh_error<RE: std::error::Error>(
    issuer: &str,
    error: RequestTokenError<RE, BasicErrorResponse>,
) -> String {
    match error {
        RequestTokenError::ServerResponse(response) => format!(
            "{issuer} refused to refresh the login ({response}): run `p8fs login --issuer {issuer}` again"
        ),
        other => token_error("the token refresh", issuer, other),
    }
}

/// Revokes the login's tokens (unless `no_revoke`) and removes it from `path`.
pub async fn logout_with(
    issuer: Option<&str>,
    no_revoke: bool,
    path: &Path,
    clock: Arc<dyn Clock>,
) -> Result<(), String> {
    let _lock = CredentialsLock::acquire(path, clock.as_ref()).await?;
    let mut credentials = read_credentials(path)?;
    let issuer = pick_issuer(&credentials, issuer)?;
    let Some(entry) = credentials.get(&issuer).cloned() else {
        return Err(format!("not logged in to {issuer}"));
    };
    if !no_revoke {
        let http = http_client()?;
        // The server's current revocation endpoint; the one seen at login if it cannot be read.
        let endpoint = match discover(&http, &issuer).await {
            Ok(metadata) => metadata.revocation_endpoint,
            Err(_) => entry.revocation_endpoint.clone(),
        };
        match endpoint {
            Some(endpoint) => {
                check_url("the revocation endpoint", &endpoint)?;
                for (token, hint) in tokens_of(&entry) {
                    revoke(&http, &endpoint, &entry.client_id, token, hint)
                        .await
                        .map_err(|e| {
                            format!(
                                "{e}; the login is kept (`p8fs logout --no-revoke` forgets it without revoking)"
                            )
                        })?;
                }
            }
            None => say(&format!(
                "p8fs: {issuer} has no revocation endpoint: the tokens stay valid until they expire"
            )),
        }
    }
    credentials.remove(&issuer);
    write_credentials(path, &credentials)?;
    say(&format!("Logged out of {issuer}."));
    Ok(())
}

/// One RFC 7009 revocation request from a public client. (The oauth2 crate refuses non-https
/// revocation endpoints outright, which would rule out a local server on loopback, so the
/// request is made here; [`check_url`] applies the same rule with the loopback exception.)
async fn revoke(
    http: &reqwest::Client,
    endpoint: &str,
    client_id: &str,
    token: &str,
    hint: &str,
) -> Result<(), String> {
    let form = [
        ("token", token),
        ("token_type_hint", hint),
        ("client_id", client_id),
    ];
    let body = oauth2::url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let response = http
        .post(endpoint)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("cannot reach {endpoint}: {}", error_chain(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // RFC 7009 2.2.1: errors are RFC 6749 5.2 JSON; show the code and description only.
    let detail = response
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|body| {
            let error = body.get("error")?.as_str()?.to_owned();
            Some(
                match body.get("error_description").and_then(|d| d.as_str()) {
                    Some(description) => format!("{error} ({description})"),
                    None => error,
                },
            )
        })
        .unwrap_or_else(|| status.to_string());
    Err(format!("{endpoint} refused to revoke the {hint}: {detail}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use p8fs_core::ManualClock;

    fn entry(expires_at: Option<Timestamp>) -> Entry {
        Entry {
            client_id: "p8fs-cli".into(),
            token_endpoint: "https://vault.example/oauth/token".into(),
            revocation_endpoint: None,
            access_token: "secret-access".into(),
            refresh_token: Some("secret-refresh".into()),
            expires_at,
            scope: Some("kv:read".into()),
            resource: None,
        }
    }

    #[test]
    fn the_credentials_path_follows_the_documented_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| OsString::from(*v))
            }
        };
        let all: &'static [(&str, &str)] = &[
            ("P8FS_CREDENTIALS", "/a/creds.json"),
            ("XDG_CONFIG_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            credentials_path(env(all)).unwrap(),
            PathBuf::from("/a/creds.json")
        );
        assert_eq!(
            credentials_path(env(&all[1..])).unwrap(),
            PathBuf::from("/x/p8fs/credentials.json")
        );
        assert_eq!(
            credentials_path(env(&all[2..])).unwrap(),
            PathBuf::from("/h/.config/p8fs/credentials.json")
        );
        assert_eq!(
            credentials_path(env(&[("P8FS_CREDENTIALS", ""), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.config/p8fs/credentials.json")
        );
        assert!(credentials_path(env(&[])).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn the_credentials_file_is_private_and_round_trips() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new").join("credentials.json");
        assert!(read_credentials(&path).unwrap().is_empty());
        let mut credentials = Credentials::new();
        credentials.insert("https://vault.example".into(), entry(Some(5)));
        write_credentials(&path, &credentials).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(read_credentials(&path).unwrap(), credentials);
        // Rewriting replaces the file and leaves no temporary file behind.
        credentials.clear();
        write_credentials(&path, &credentials).unwrap();
        assert!(read_credentials(&path).unwrap().is_empty());
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("credentials.json")]);
    }

    #[test]
    fn a_broken_credentials_file_is_reported_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        std::fs::write(&path, "{\"x\": \"secret-token\"").unwrap();
        let error = read_credentials(&path).unwrap_err();
        assert!(!error.contains("secret-token"), "{error}");
        assert!(error.contains("not a valid credentials file"), "{error}");
    }

    #[test]
    fn the_qr_code_is_drawn_in_half_blocks() {
        let drawing = qr_code("https://vault.example/device?user_code=BCDF-GHJK").unwrap();
        let lines: Vec<&str> = drawing.lines().collect();
        // Two modules per character row: a version-3 code (29 modules) plus the quiet zone.
        assert!(lines.len() >= 15 && lines.len() <= 30, "{}", lines.len());
        assert!(drawing.contains('\u{2580}') || drawing.contains('\u{2584}'));
    }

    #[test]
    fn debug_redacts_tokens() {
        let text = format!("{:?}", entry(Some(1)));
        assert!(!text.contains("secret-access"), "{text}");
        assert!(!text.contains("secret-refresh"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn refresh_happens_within_a_minute_of_expiry() {
        let clock = ManualClock::new(1_000_000);
        let now = clock.now();
        assert!(!entry(None).needs_refresh(now));
        assert!(!entry(Some(now + REFRESH_MARGIN_MILLIS + 1)).needs_refresh(now));
        assert!(entry(Some(now + REFRESH_MARGIN_MILLIS)).needs_refresh(now));
        assert!(entry(Some(now - 1)).needs_refresh(now));
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(check_url("issuer", "https://vault.example").is_ok());
        assert!(check_url("issuer", "http://127.0.0.1:8080").is_ok());
        assert!(check_url("issuer", "http://[::1]:8080").is_ok());
        assert!(check_url("issuer", "http://localhost:8080").is_ok());
        assert!(check_url("issuer", "http://vault.example").is_err());
        assert!(check_url("issuer", "http://127.0.0.1.example.com").is_err());
        assert!(check_url("issuer", "ftp://vault.example").is_err());
        assert!(check_url("issuer", "vault.example").is_err());
        assert_eq!(
            normalise_issuer("https://vault.example/"),
            "https://vault.example"
        );
    }

    #[test]
    fn the_issuer_is_picked_or_asked_for() {
        let mut credentials = Credentials::new();
        assert!(
            pick_issuer(&credentials, None)
                .unwrap_err()
                .contains("not logged in")
        );
        credentials.insert("https://a.example".into(), entry(None));
        assert_eq!(
            pick_issuer(&credentials, None).unwrap(),
            "https://a.example"
        );
        assert_eq!(
            pick_issuer(&credentials, Some("https://a.example/")).unwrap(),
            "https://a.example"
        );
        assert!(pick_issuer(&credentials, Some("https://b.example")).is_err());
        credentials.insert("https://b.example".into(), entry(None));
        assert!(
            pick_issuer(&credentials, None)
                .unwrap_err()
                .contains("--issuer")
        );
    }

    #[tokio::test]
    async fn the_lock_is_exclusive_and_stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        let clock = SystemClock;
        let first = CredentialsLock::acquire(&path, &clock).await.unwrap();
        let lock_path = first.path.clone();
        assert!(lock_path.exists());
        // A second acquirer waits; released, it gets the lock.
        let waiter = {
            let path = path.clone();
            tokio::spawn(async move {
                let _second = CredentialsLock::acquire(&path, &SystemClock).await.unwrap();
            })
        };
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(!waiter.is_finished());
        drop(first);
        waiter.await.unwrap();
        assert!(!lock_path.exists());
        // A lock file from a process that died long ago does not block.
        std::fs::write(&lock_path, "").unwrap();
        let later = ManualClock::new(SystemClock.now() + 2 * LOCK_STALE_MILLIS);
        let taken = CredentialsLock::acquire(&path, &later).await.unwrap();
        drop(taken);
    }
}
