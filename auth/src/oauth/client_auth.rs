//! Client authentication at the token, device authorization, revocation and introspection
//! endpoints: `client_secret_basic` (RFC 6749 2.3.1, both parts form-urlencoded),
//! `client_secret_post`, or `none` (a public client sends only `client_id`). Using two methods
//! at once is `invalid_request`; an unknown client, a wrong secret, a confidential client
//! without its secret or a public client with a secret are `invalid_client`. A client named by
//! the URL of its metadata document (`client_metadata.rs`) is public; a document that cannot be
//! used is `invalid_client` too.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::OAuthServer;
use super::accounts::ClientRecord;
use super::client_metadata::FindClientError;
use super::wire::{OAuthError, Params};

/// What the request presented.
pub(crate) struct Presented {
    pub(crate) client_id: String,
    secret: Option<Zeroizing<String>>,
}

/// The client credentials of the request, if it presents any.
pub(crate) fn presented(
    headers: &HeaderMap,
    params: &Params,
) -> Result<Option<Presented>, OAuthError> {
    let basic = basic_credentials(headers)?;
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    match basic {
        Some(basic) => {
            if body_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not both Basic and client_secret",
                ));
            }
            if body_id.is_some_and(|id| id != basic.client_id) {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the client authenticated by Basic",
                ));
            }
            Ok(Some(basic))
        }
        None => match (body_id, body_secret) {
            (Some(id), secret) => Ok(Some(Presented {
                client_id: id.to_owned(),
                secret: secret.map(|s| Zeroizing::new(s.to_owned())),
            })),
            (None, Some(_)) => Err(OAuthError::invalid_request(
                "client_secret without client_id",
            )),
            (None, None) => Ok(None),
        },
    }
}

fn basic_credentials(headers: &HeaderMap) -> Result<Option<Presented>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(OAuthError::invalid_client("malformed Authorization header"));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| OAuthError::invalid_client("malformed Basic credentials"))?;
    let decoded = Zeroizing::new(
        String::from_utf8(decoded)
            .map_err(|_| OAuthError::invalid_client("malformed Basic credentials"))?,
    );
    let Some((id, secret)) = decoded.split_once(':') else {
        return Err(OAuthError::invalid_client("malformed Basic credentials"));
    };
    let id = url_decode(id);
    let secret = Zeroizing::new(url_decode(secret));
    if id.is_empty() {
        return Err(OAuthError::invalid_client("malformed Basic credentials"));
    }
    Ok(Some(Presented {
        client_id: id,
        secret: if secret.is_empty() {
            None
        } else {
            Some(secret)
        },
    }))
}

/// Form-urldecodes one Basic credential part (RFC 6749 2.3.1).
fn url_decode(part: &str) -> String {
    form_urlencoded::parse(format!("x={part}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Authenticates the client of the request; the client must be present.
pub(crate) async fn authenticate(
    server: &OAuthServer,
    headers: &HeaderMap,
    params: &Params,
) -> Result<ClientRecord, OAuthError> {
    let presented = presented(headers, params)?
        .ok_or_else(|| OAuthError::invalid_client("client authentication is required"))?;
    check(server, presented).await
}

/// Authenticates presented credentials.
pub(crate) async fn check(
    server: &OAuthServer,
    presented: Presented,
) -> Result<ClientRecord, OAuthError> {
    let client = match server.find_client(&presented.client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => {
            return Err(OAuthError::invalid_client(
                "unknown client or wrong credentials",
            ));
        }
        Err(FindClientError::Refused(why)) => {
            return Err(OAuthError::invalid_client(format!(
                "the client's metadata document cannot be used: {why}"
            )));
        }
        Err(FindClientError::Server(e)) => return Err(OAuthError::server(e)),
    };
    match (&presented.secret, client.info.confidential) {
        (Some(secret), true) if client.secret_matches(secret) => Ok(client),
        (None, false) => Ok(client),
        (Some(_), false) => Err(OAuthError::invalid_client(
            "a public client has no secret; send client_id only",
        )),
        _ => Err(OAuthError::invalid_client(
            "unknown client or wrong credentials",
        )),
    }
}
