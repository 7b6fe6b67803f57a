//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, what the MCP
//! authorization specification of 2025-11-25 relies on): a `client_id` that is an `https` URL
//! with a path names a public client whose metadata is the JSON document served at that URL.
//! No registration happens: the document is fetched when the client is first seen and kept in a
//! bounded in-memory cache.
//!
//! Fetching: `GET` with a [`CLIENT_METADATA_TIMEOUT`] for the whole exchange, redirects not
//! followed (a 3xx is refused like any status but 200), no proxy, and the body read chunk by
//! chunk up to [`MAX_CLIENT_METADATA_BYTES`] whatever `Content-Length` says. A document is kept
//! for its `Cache-Control: max-age`, held within [`CLIENT_METADATA_MIN_CACHE`] ..=
//! [`CLIENT_METADATA_MAX_CACHE`] (`no-store`/`no-cache` count as the minimum), or
//! [`CLIENT_METADATA_DEFAULT_CACHE`] without one. A document that could not be fetched or used
//! is refused again without a fetch for [`CLIENT_METADATA_MIN_CACHE`], and at most
//! [`CLIENT_METADATA_CONCURRENT_FETCHES`] fetches run at once (beyond, the client is refused for
//! now), so callers cannot turn the server into a source of unbounded outbound requests.
//!
//! Invariants:
//! - the URL is in normal form and used exactly as given: `https`, a host, a path other than
//!   `/`, no user information, no fragment, at most 256 bytes (it becomes the tokens'
//!   `client_id` claim), and equal to its own parsed form (so no dot segments, no default port,
//!   lowercase scheme and host);
//! - no request reaches the local network: the host must not be `localhost` or an address that
//!   is loopback, private, link-local, unique-local, shared, multicast, reserved or
//!   unspecified, and every address a name resolves to is checked the same way, by the resolver
//!   the connection itself uses, so a name cannot resolve to a public address for the check and
//!   a private one for the connection; [`super::OAuthConfig::allow_loopback_client_metadata`]
//!   (development only) lifts this and also allows `http`;
//! - the document is a public client: its `client_id` equals the URL byte for byte,
//!   `redirect_uris` is non-empty and each is a valid redirect URI (matched exactly at
//!   authorization, loopback ports aside as for every public client), `token_endpoint_auth_method`
//!   is absent or `none`, there is no `client_secret`, `grant_types` (default
//!   `authorization_code`) are within authorization_code and refresh_token, `response_types`
//!   only `code`, and `scope` (default every scope but `admin`) has no `admin`. PKCE is
//!   required as for every client;
//! - such a client is treated like a self-registered one: authorization errors are redirected
//!   only to native redirect URIs, and `client_name` (default: the URL's host) is shown on the
//!   consent page beside the URL's host, never alone.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::{ACCEPT, CACHE_CONTROL};
use p8fs_core::{Error, Timestamp};
use parking_lot::Mutex;
use serde::Deserialize;
use url::{Host, Url};

use super::accounts::{
    ClientInfo, ClientRecord, MAX_CLIENT_NAME_BYTES, MAX_REDIRECT_URIS, check_redirect_uri,
    user_scopes,
};
use super::{GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN, OAuthServer};
use crate::keys::duration_millis;
use crate::scope::ScopeSet;
use crate::token::MAX_CLAIM_BYTES;

/// The longest a metadata document fetch may take, connection included.
pub const CLIENT_METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest metadata document read.
pub const MAX_CLIENT_METADATA_BYTES: usize = 16 * 1024;
/// The shortest time a fetched document is kept.
pub const CLIENT_METADATA_MIN_CACHE: Duration = Duration::from_secs(60);
/// The longest time a fetched document is kept.
pub const CLIENT_METADATA_MAX_CACHE: Duration = Duration::from_secs(24 * 3600);
/// How long a document without `Cache-Control: max-age` is kept.
pub const CLIENT_METADATA_DEFAULT_CACHE: Duration = Duration::from_secs(600);
/// Most fetches of metadata documents running at once.
pub const CLIENT_METADATA_CONCURRENT_FETCHES: usize = 16;
/// Most documents (and refusals) kept.
const CACHE_CAPACITY: usize = 1024;

/// Why a client could not be found.
pub(crate) enum FindClientError {
    /// The `client_id` is a metadata document URL that cannot be used; why, for people.
    Refused(String),
    /// The store failed.
    Server(Error),
}

/// Whether `client_id` names a client by the URL of its metadata document (registered client
/// ids never contain `:` or `/`).
pub(crate) fn is_metadata_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// The host of a metadata document URL, to show beside the client's name.
pub(crate) fn metadata_host(client_id: &str) -> Option<String> {
    if !is_metadata_url(client_id) {
        return None;
    }
    let url = Url::parse(client_id).ok()?;
    let host = url.host_str()?.to_owned();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// A client, or why its document was refused, and until when that holds.
type Cached = (Result<ClientRecord, String>, Timestamp);

/// The fetcher and the cache of metadata documents.
pub(crate) struct MetadataClients {
    /// `None` if the HTTP client could not be built (then every document is refused).
    http: Option<reqwest::Client>,
    allow_local: bool,
    cache: Mutex<HashMap<String, Cached>>,
    fetches: tokio::sync::Semaphore,
}

impl MetadataClients {
    /// The fetcher; `roots` are PEM certificates trusted besides the public roots.
    pub(crate) fn new(allow_local: bool, roots: Option<&str>) -> Self {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(CLIENT_METADATA_TIMEOUT)
            .connect_timeout(CLIENT_METADATA_TIMEOUT)
            .no_proxy()
            .https_only(!allow_local)
            .user_agent(concat!("p8fs/", env!("CARGO_PKG_VERSION")));
        if !allow_local {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let trusted = match roots.map(|pem| reqwest::Certificate::from_pem_bundle(pem.as_bytes())) {
            None => Ok(Vec::new()),
            Some(parsed) => parsed,
        };
        let http = match trusted.and_then(|certificates| {
            certificates
                .into_iter()
                .fold(builder, reqwest::ClientBuilder::add_root_certificate)
                .build()
        }) {
            Ok(http) => Some(http),
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "oauth: no HTTP client for client metadata documents; they are refused"
                );
                None
            }
        };
        Self {
            http,
            allow_local,
            cache: Mutex::new(HashMap::new()),
            fetches: tokio::sync::Semaphore::new(CLIENT_METADATA_CONCURRENT_FETCHES),
        }
    }

    fn cached(&self, client_id: &str, now: Timestamp) -> Option<Result<ClientRecord, String>> {
        let cache = self.cache.lock();
        let (client, until) = cache.get(client_id)?;
        (now < *until).then(|| client.clone())
    }

    fn remember(
        &self,
        client_id: &str,
        client: Result<ClientRecord, String>,
        until: Timestamp,
        now: Timestamp,
    ) {
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (_, until)| now < *until);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(client_id.to_owned(), (client, until));
    }

    /// Fetches the document at `url`: its bytes and how long to keep it.
    async fn fetch(&self, url: Url) -> Result<(Vec<u8>, Duration), String> {
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| "the server cannot fetch documents".to_owned())?;
        let mut response = http
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("fetching it failed ({})", describe(&e)))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!(
                "fetching it answered HTTP {} (only 200 is accepted; redirects are not followed)",
                response.status().as_u16()
            ));
        }
        let lifetime = cache_lifetime(
            response
                .headers()
                .get_all(CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading it failed ({})", describe(&e)))?
        {
            if body.len() + chunk.len() > MAX_CLIENT_METADATA_BYTES {
                return Err(format!(
                    "it is larger than {MAX_CLIENT_METADATA_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, lifetime))
    }
}

/// An error and its causes, for people (the resolver's refusal is among the causes).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        format!("no answer within {} s", CLIENT_METADATA_TIMEOUT.as_secs())
    } else {
        "cannot connect".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// How long to keep a document, from its `Cache-Control` values.
fn cache_lifetime<'a>(values: impl Iterator<Item = &'a str>) -> Duration {
    let mut lifetime = None;
    for directive in values.flat_map(|v| v.split(',')) {
        let directive = directive.trim();
        let name = directive.split('=').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return CLIENT_METADATA_MIN_CACHE;
        }
        if name.eq_ignore_ascii_case("max-age")
            && let Some((_, seconds)) = directive.split_once('=')
            && let Ok(seconds) = seconds.trim().trim_matches('"').parse::<u64>()
        {
            lifetime = Some(Duration::from_secs(seconds));
        }
    }
    lifetime.map_or(CLIENT_METADATA_DEFAULT_CACHE, |l| {
        l.clamp(CLIENT_METADATA_MIN_CACHE, CLIENT_METADATA_MAX_CACHE)
    })
}

/// Whether `ip` is an address on the public internet: not loopback, private, link-local,
/// unique-local, shared (CGNAT), multicast, documentation, benchmarking, reserved or
/// unspecified, also when embedded in an IPv6 address.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() {
                return false;
            }
            let s = v6.segments();
            // IPv4-mapped, IPv4-compatible and NAT64 (64:ff9b::/96) addresses.
            if let Some(v4) = v6.to_ipv4() {
                return is_public_v4(v4);
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            let unique_local = s[0] & 0xfe00 == 0xfc00;
            let link_local = s[0] & 0xffc0 == 0xfe80;
            let site_local = s[0] & 0xffc0 == 0xfec0;
            let documentation = s[0] == 0x2001 && s[1] == 0x0db8;
            !(unique_local || link_local || site_local || documentation)
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && b & 0xc0 == 64)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && b & 0xfe == 18)
        || a >= 240)
}

/// Resolves names and refuses any that resolves to an address that is not public.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            if addrs.iter().any(|a| !is_public(a.ip())) {
                return Err(format!(
                    "{host} resolves to a loopback, private or otherwise non-public address"
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks a metadata document URL (see the module invariants).
pub(crate) fn check_url(client_id: &str, allow_local: bool) -> Result<Url, String> {
    if client_id.len() > MAX_CLAIM_BYTES {
        return Err(format!(
            "a client_id URL must be at most {MAX_CLAIM_BYTES} bytes"
        ));
    }
    let url = Url::parse(client_id).map_err(|_| "client_id is not a valid URL".to_owned())?;
    if url.as_str() != client_id {
        return Err(
            "client_id must be a URL in normal form (lowercase scheme and host, no default \
             port, no dot segments, no characters that need percent-encoding)"
                .to_owned(),
        );
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_local => {}
        _ => return Err("client_id must be an https URL".to_owned()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("client_id must not contain user information".to_owned());
    }
    if url.fragment().is_some() {
        return Err("client_id must not contain a fragment".to_owned());
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err("client_id must have a path (the document's, not just /)".to_owned());
    }
    let public = match url.host() {
        Some(Host::Ipv4(ip)) => is_public(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => is_public(IpAddr::V6(ip)),
        Some(Host::Domain(domain)) => {
            let domain = domain.trim_end_matches('.');
            !(domain == "localhost" || domain.ends_with(".localhost"))
        }
        None => return Err("client_id must have a host".to_owned()),
    };
    if !public && !allow_local {
        return Err(
            "client_id must not name a loopback, private or otherwise non-public host".to_owned(),
        );
    }
    Ok(url)
}

/// A client metadata document (RFC 7591 2 fields; others are ignored).
#[derive(Deserialize)]
struct Document {
    client_id: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    client_name: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    scope: Option<String>,
    client_secret: Option<serde_json::Value>,
}

/// The client a document describes, if it is usable (see the module invariants).
pub(crate) fn client_of(client_id: &str, url: &Url, body: &[u8]) -> Result<ClientRecord, String> {
    let document: Document = serde_json::from_slice(body)
        .map_err(|e| format!("it is not a JSON client metadata document ({e})"))?;
    if document.client_id != client_id {
        return Err("its client_id differs from the URL it was fetched from".to_owned());
    }
    if document.client_secret.is_some() {
        return Err("it must not contain a client_secret (the client is public)".to_owned());
    }
    if document
        .token_endpoint_auth_method
        .as_deref()
        .is_some_and(|m| m != "none")
    {
        return Err("token_endpoint_auth_method must be none".to_owned());
    }
    if document.redirect_uris.is_empty() {
        return Err("redirect_uris must not be empty".to_owned());
    }
    if document.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(format!(
            "redirect_uris may have at most {MAX_REDIRECT_URIS} entries"
        ));
    }
    for uri in &document.redirect_uris {
        check_redirect_uri(uri).map_err(|e| e.to_string())?;
    }
    if document
        .response_types
        .as_ref()
        .is_some_and(|types| types.iter().any(|t| t != "code"))
    {
        return Err("response_types may only contain code".to_owned());
    }
    let grant_types = document
        .grant_types
        .unwrap_or_else(|| vec![GRANT_AUTHORIZATION_CODE.to_owned()]);
    if grant_types
        .iter()
        .any(|g| g != GRANT_AUTHORIZATION_CODE && g != GRANT_REFRESH_TOKEN)
        || !grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE)
    {
        return Err(
            "grant_types must contain authorization_code and nothing but it and refresh_token"
                .to_owned(),
        );
    }
    let scope = match &document.scope {
        Some(scope) => {
            let scopes = ScopeSet::parse(scope).map_err(|e| format!("scope: {e}"))?;
            if !user_scopes().is_superset(&scopes) {
                return Err("scope must not contain admin".to_owned());
            }
            scopes.to_string()
        }
        None => user_scopes().to_string(),
    };
    let host = url.host_str().unwrap_or_default();
    let name = match document.client_name.as_deref().map(str::trim) {
        Some(name)
            if !name.is_empty()
                && name.len() <= MAX_CLIENT_NAME_BYTES
                && !name.chars().any(char::is_control) =>
        {
            name.to_owned()
        }
        Some(_) => {
            return Err(format!(
                "client_name must be 1..={MAX_CLIENT_NAME_BYTES} bytes without control characters"
            ));
        }
        None => host.to_owned(),
    };
    Ok(ClientRecord {
        info: ClientInfo {
            client_id: client_id.to_owned(),
            name,
            confidential: false,
            redirect_uris: document.redirect_uris,
            grant_types,
            scope,
            tenant: None,
            created_at: 0,
        },
        secret_digest: None,
        dynamic: true,
        unused: false,
    })
}

impl OAuthServer {
    /// The client `client_id` names: a registered one, or the one its metadata document
    /// describes (from the cache, or fetched now). `Ok(None)`: no such registered client.
    pub(crate) async fn find_client(
        &self,
        client_id: &str,
    ) -> Result<Option<ClientRecord>, FindClientError> {
        if !is_metadata_url(client_id) {
            return self
                .accounts
                .client(client_id)
                .await
                .map_err(FindClientError::Server);
        }
        let clients = &self.metadata_clients;
        let now = self.store.now();
        if let Some(cached) = clients.cached(client_id, now) {
            return cached.map(Some).map_err(FindClientError::Refused);
        }
        let refused = |why: String| {
            tracing::info!(client_id, reason = %why, "oauth: a client metadata document is refused");
            FindClientError::Refused(why)
        };
        let url = check_url(client_id, clients.allow_local).map_err(refused)?;
        // Not remembered: a refusal for lack of a fetch slot says nothing of the document.
        let _permit = clients.fetches.try_acquire().map_err(|_| {
            refused(
                "too many client metadata documents are being fetched; try again shortly".into(),
            )
        })?;
        let (result, lifetime) = match clients.fetch(url.clone()).await {
            Ok((body, lifetime)) => match client_of(client_id, &url, &body) {
                Ok(client) => (Ok(client), lifetime),
                Err(why) => (Err(why), CLIENT_METADATA_MIN_CACHE),
            },
            Err(why) => (Err(why), CLIENT_METADATA_MIN_CACHE),
        };
        clients.remember(
            client_id,
            result.clone(),
            now.saturating_add(duration_millis(lifetime)),
            now,
        );
        result.map(Some).map_err(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_with_a_path_in_normal_form() {
        for ok in [
            "https://app.example/client.json",
            "https://app.example/oauth/metadata",
            "https://app.example:8443/c",
            "https://8.8.8.8/c",
        ] {
            assert!(check_url(ok, false).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("http://app.example/c", "https"),
            ("https://app.example", "normal form"),
            ("https://app.example/", "path"),
            ("https://APP.example/c", "normal form"),
            ("https://app.example:443/c", "normal form"),
            ("https://app.example/a/../c", "normal form"),
            ("https://app.example/./c", "normal form"),
            ("https://u:p@app.example/c", "user information"),
            ("https://app.example/c#f", "fragment"),
            ("https://app.example/c d", "normal form"),
            ("https://127.0.0.1/c", "non-public"),
            ("https://10.1.2.3/c", "non-public"),
            ("https://169.254.169.254/latest", "non-public"),
            ("https://[::1]/c", "non-public"),
            ("https://[fd00::1]/c", "non-public"),
            ("https://[::ffff:7f00:1]/c", "non-public"),
            ("https://[::ffff:127.0.0.1]/c", "normal form"),
            ("https://localhost/c", "non-public"),
            ("https://a.localhost/c", "non-public"),
            ("ftp://app.example/c", "valid URL"),
        ] {
            let e = check_url(bad, false).unwrap_err();
            if !bad.starts_with("ftp") {
                assert!(e.contains(why), "{bad}: {e}");
            }
        }
        let long = format!("https://app.example/{}", "a".repeat(250));
        assert!(check_url(&long, false).unwrap_err().contains("256"));
        // The development setting allows http and loopback hosts; the rest still holds.
        assert!(check_url("http://127.0.0.1:8080/c", true).is_ok());
        assert!(check_url("https://localhost/c", true).is_ok());
        assert!(check_url("http://127.0.0.1:8080/", true).is_err());
    }

    #[test]
    fn only_public_addresses_are_public() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for local in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(!is_public(local.parse().unwrap()), "{local}");
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_local_addresses() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let e = match PublicOnly.resolve(name).await {
            Ok(_) => panic!("localhost resolved"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("non-public"), "{e}");
        // And a fetch through the guarded client never connects to it.
        let clients = MetadataClients::new(false, None);
        let url = Url::parse("https://localhost:1/c").unwrap();
        let e = clients.fetch(url).await.unwrap_err();
        assert!(e.contains("non-public"), "{e}");
    }

    #[test]
    fn cache_lifetimes_are_bounded() {
        let of = |values: &[&str]| cache_lifetime(values.iter().copied());
        assert_eq!(of(&[]), CLIENT_METADATA_DEFAULT_CACHE);
        assert_eq!(of(&["public, max-age=3600"]), Duration::from_secs(3600));
        assert_eq!(of(&["max-age=1"]), CLIENT_METADATA_MIN_CACHE);
        assert_eq!(of(&["max-age=999999999"]), CLIENT_METADATA_MAX_CACHE);
        assert_eq!(of(&["no-store"]), CLIENT_METADATA_MIN_CACHE);
        assert_eq!(of(&["max-age=300", "no-cache"]), CLIENT_METADATA_MIN_CACHE);
        assert_eq!(of(&["max-age=x"]), CLIENT_METADATA_DEFAULT_CACHE);
    }

    fn document(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut doc = serde_json::json!({
            "client_id": "https://app.example/client.json",
            "client_name": "Example App",
            "redirect_uris": ["https://app.example/cb", "http://127.0.0.1/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        edit(&mut doc);
        serde_json::to_vec(&doc).unwrap()
    }

    fn refusal(result: Result<ClientRecord, String>) -> String {
        match result {
            Ok(client) => panic!("{} was accepted", client.info.client_id),
            Err(why) => why,
        }
    }

    #[test]
    fn documents_are_validated() {
        let id = "https://app.example/client.json";
        let url = Url::parse(id).unwrap();
        let client = client_of(id, &url, &document(|_| {})).unwrap();
        assert_eq!(client.info.client_id, id);
        assert_eq!(client.info.name, "Example App");
        assert!(!client.info.confidential && client.dynamic);
        assert!(client.allows_grant(GRANT_REFRESH_TOKEN));
        assert_eq!(client.info.scope, user_scopes().to_string());
        // Defaults: the host as the name, the code grant only.
        let minimal = client_of(
            id,
            &url,
            &document(|d| {
                let d = d.as_object_mut().unwrap();
                d.remove("client_name");
                d.remove("grant_types");
                d.remove("token_endpoint_auth_method");
            }),
        )
        .unwrap();
        assert_eq!(minimal.info.name, "app.example");
        assert_eq!(minimal.info.grant_types, [GRANT_AUTHORIZATION_CODE]);
        type Edit = fn(&mut serde_json::Value);
        let refused: [(Edit, &str); 11] = [
            (
                |d| d["client_id"] = "https://app.example/other.json".into(),
                "client_id differs",
            ),
            (
                |d| d["client_id"] = "https://app.example/client.json/".into(),
                "client_id differs",
            ),
            (
                |d| d["redirect_uris"] = serde_json::json!([]),
                "redirect_uris",
            ),
            (
                |d| d["redirect_uris"] = serde_json::json!(["http://app.example/cb"]),
                "redirect_uris",
            ),
            (
                |d| d["token_endpoint_auth_method"] = "client_secret_basic".into(),
                "token_endpoint_auth_method",
            ),
            (|d| d["client_secret"] = "s3cret".into(), "client_secret"),
            (
                |d| d["grant_types"] = serde_json::json!(["client_credentials"]),
                "grant_types",
            ),
            (
                |d| d["grant_types"] = serde_json::json!(["refresh_token"]),
                "grant_types",
            ),
            (
                |d| d["response_types"] = serde_json::json!(["token"]),
                "response_types",
            ),
            (|d| d["scope"] = "admin".into(), "admin"),
            (|d| d["client_name"] = "".into(), "client_name"),
        ];
        for (edit, why) in refused {
            let e = refusal(client_of(id, &url, &document(edit)));
            assert!(e.contains(why), "{why}: {e}");
        }
        assert!(refusal(client_of(id, &url, b"not json")).contains("JSON"));
        assert!(refusal(client_of(id, &url, b"{}")).contains("JSON"));
    }

    #[test]
    fn hosts_are_shown_with_their_port() {
        assert_eq!(
            metadata_host("https://app.example/c").as_deref(),
            Some("app.example")
        );
        assert_eq!(
            metadata_host("http://127.0.0.1:8080/c").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(metadata_host("p8fs-cli"), None);
    }
}
