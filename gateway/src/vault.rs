//! The vault's command-line client: `p8fs models install` ([`models`]) puts the builtin
//! embedding model where `p8fs serve` looks for it, `p8fs ingest` ([`ingest`]) uploads files
//! for indexing and `p8fs search` ([`search`]) asks by meaning.
//!
//! `ingest` and `search` talk to a server's REST API ([`Remote`]): the server is `--server`, else
//! the issuer of the only `p8fs login`; the bearer token is `--token` (or `P8FS_TOKEN`), else the
//! login's access token ([`crate::login::access_token`], refreshed when about to expire). Plain
//! `http` is accepted only for loopback servers, as for `p8fs login`. Errors the server answers
//! as `application/problem+json` become `<detail> (field: <field>)`.
//!
//! Invariants: the token never appears in messages or `Debug` output; requests are never
//! redirected (a redirect could carry the token elsewhere); object keys are percent-encoded one
//! `/`-separated segment at a time.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use p8fs_core::{Clock, SystemClock};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::login::{check_url, credentials_path, normalise_issuer, pick_issuer, read_credentials};

pub mod ingest;
pub mod models;
pub mod search;

pub use ingest::{IngestArgs, ingest};
pub use models::{ModelsInstallArgs, models_install};
pub use search::{SearchArgs, search};

/// The environment variable `--token` also reads.
pub const TOKEN_ENV: &str = "P8FS_TOKEN";
/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a small request (listing, status, search) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an upload may go without the server reading or answering.
const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// The most of an error reply read.
const MAX_PROBLEM_BYTES: usize = 64 * 1024;

/// Which server to call and with what token: `--server` and `--token`.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// The server's base URL, e.g. https://vault.example.com (default: the issuer of the only
    /// `p8fs login`; plain http only on loopback).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// An access token to send instead of the login's.
    #[arg(long, value_name = "TOKEN", env = TOKEN_ENV, hide_env_values = true)]
    pub token: Option<String>,
}

impl fmt::Debug for ServerArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerArgs")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A server's REST API with a bearer token.
pub struct Remote {
    base: Url,
    token: String,
    http: reqwest::Client,
    /// Where the token came from when it is a login's: renewed by [`Remote::renew`].
    login: Option<Login>,
}

/// The login a token came from.
struct Login {
    issuer: String,
    path: PathBuf,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("base", &self.base.as_str())
            .field("token", &"<redacted>")
            .finish()
    }
}

/// An RFC 9457 problem as the REST API writes it.
#[derive(Debug, Default, Deserialize)]
pub struct Problem {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
}

impl Problem {
    /// `<detail> (field: <field>)`, falling back to the title and then to `status`.
    pub fn message(&self, status: StatusCode) -> String {
        let text = self
            .detail
            .as_deref()
            .or(self.title.as_deref())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the server answered {status}"));
        match &self.field {
            Some(field) if !field.is_empty() => format!("{text} (field: {field})"),
            _ => text,
        }
    }
}

impl Remote {
    /// The server and token of `args`, else of the login in the credentials file `path`.
    pub async fn connect(
        args: &ServerArgs,
        path: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let token = args.token.clone().filter(|t| !t.trim().is_empty());
        let server = match (&args.server, &token) {
            (Some(server), _) => normalise_issuer(server),
            (None, Some(_)) => pick_issuer(&read_credentials(path)?, None)
                .map_err(|e| format!("{e}; or pass --server URL"))?,
            (None, None) => pick_issuer(&read_credentials(path)?, None)?,
        };
        let base = check_url("the server", &server)?;
        match token {
            Some(token) => Self::new(base, token.trim().to_owned()),
            None => {
                let token = crate::login::access_token(Some(&server), path, clock.clone()).await?;
                let mut remote = Self::new(base, token)?;
                remote.login = Some(Login {
                    issuer: server,
                    path: path.to_owned(),
                    clock,
                });
                Ok(remote)
            }
        }
    }

    /// Takes the login's current access token, refreshed if it is about to expire (a long
    /// ingest outlives one); a token given with `--token` stays as it is.
    pub async fn renew(&mut self) -> Result<(), String> {
        if let Some(login) = &self.login {
            self.token =
                crate::login::access_token(Some(&login.issuer), &login.path, login.clock.clone())
                    .await?;
        }
        Ok(())
    }

    /// A client for `base` sending `token`.
    pub fn new(base: Url, token: String) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("p8fs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Self {
            base,
            token,
            http,
            login: None,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `<base>/<segments...>`, each segment percent-encoded; a segment holding `/` is split
    /// there (object keys).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            for segment in segments {
                path.extend(segment.split('/'));
            }
        }
        url
    }

    /// A request with the bearer token.
    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.token)
    }

    /// GETs `url` and decodes the JSON reply; `Ok(None)` on 404.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<Option<T>, String> {
        let response = self
            .request(reqwest::Method::GET, url.clone())
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| unreachable(&url, &e))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = checked(response).await?;
        response
            .json()
            .await
            .map(Some)
            .map_err(|e| format!("the reply of {} is not what was expected: {e}", url.path()))
    }

    /// GETs `url` and returns the body as text (after checking the status).
    pub async fn get_text(&self, url: Url) -> Result<String, String> {
        let response = self
            .request(reqwest::Method::GET, url.clone())
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| unreachable(&url, &e))?;
        checked(response)
            .await?
            .text()
            .await
            .map_err(|e| format!("cannot read the reply of {}: {}", url.path(), chain(&e)))
    }
}

/// The response if its status is a success; else the server's problem as a message.
pub async fn checked(response: reqwest::Response) -> Result<reqwest::Response, String> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let bytes = response.bytes().await.unwrap_or_default();
    let problem: Problem =
        serde_json::from_slice(&bytes[..bytes.len().min(MAX_PROBLEM_BYTES)]).unwrap_or_default();
    Err(problem.message(status))
}

/// A message for a request that got no answer.
fn unreachable(url: &Url, error: &reqwest::Error) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    format!("cannot reach {shown}: {}", chain(error))
}

/// An error and its causes, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A current-thread runtime for one command.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// The server of `args` with the login's credentials file from the environment.
async fn remote_from_env(args: &ServerArgs) -> Result<Remote, String> {
    let path = credentials_path(|name| std::env::var_os(name))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Remote::connect(args, &path, clock).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_segment_by_segment() {
        let remote =
            Remote::new(Url::parse("http://127.0.0.1:8080/").unwrap(), "t".into()).unwrap();
        let url = remote.url(&["v1", "objects", "docs", "a b/c#d?.md"]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/v1/objects/docs/a%20b/c%23d%3F.md"
        );
        let behind = Remote::new(
            Url::parse("https://example.com/vault/").unwrap(),
            "t".into(),
        )
        .unwrap();
        assert_eq!(
            behind.url(&["v1", "search"]).as_str(),
            "https://example.com/vault/v1/search"
        );
    }

    #[test]
    fn problems_name_the_field() {
        let problem: Problem = serde_json::from_str(
            r#"{"title":"Bad Request","status":400,"detail":"k: must be 1..=1000","field":"k"}"#,
        )
        .unwrap();
        assert_eq!(
            problem.message(StatusCode::BAD_REQUEST),
            "k: must be 1..=1000 (field: k)"
        );
        assert_eq!(
            Problem::default().message(StatusCode::BAD_GATEWAY),
            "the server answered 502 Bad Gateway"
        );
    }

    #[test]
    fn the_token_is_not_shown() {
        let args = ServerArgs {
            server: None,
            token: Some("secret-token".into()),
        };
        assert!(!format!("{args:?}").contains("secret"));
    }
}
