//! Browser sessions and CSRF tokens for the pages.
//!
//! A session is a random 256-bit id in a cookie (`p8fs_session`, or `__Host-p8fs_session` when
//! the issuer is https; `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` under https). A signed-in
//! session has a record `oauth/session/<digest of id>` holding the user, the user's credential
//! generation at sign-in and the session's CSRF token. Visitors who are not signed in get an
//! anonymous session (a cookie for 30 minutes) so that even the sign-in form is
//! CSRF-protected; it has no record, so anonymous page views cost the store nothing: its CSRF
//! token is derived from its id (a digest the page shows, while the id stays in the
//! `HttpOnly` cookie). Signing in replaces the session by a new one (new id, new CSRF token),
//! so a session id planted before sign-in is worthless afterwards.
//!
//! Every form posts the CSRF token in the field `csrf`; it is compared with the session's in
//! constant time. A signed-in session counts as signed out once its user is disabled or
//! removed, or the user's generation moved on (a password change, or being disabled even if
//! enabled again since).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use p8fs_core::{Result, Timestamp};
use serde::{Deserialize, Serialize};

use super::OAuthServer;
use super::accounts::UserRecord;
use super::store::{Store, digest, new_secret, same_secret};

/// Lifetime of an anonymous session.
const ANONYMOUS_SESSION_TTL: Duration = Duration::from_secs(30 * 60);

#[derive(Serialize, Deserialize, Clone)]
struct SessionRecord {
    /// The signed-in user.
    username: Option<String>,
    csrf: String,
    created_at: Timestamp,
    /// The user's credential generation at sign-in.
    #[serde(default)]
    generation: u64,
}

impl SessionRecord {
    /// The record an anonymous session would have: none is stored, the CSRF token is derived
    /// from the session id.
    fn anonymous(id: &str, now: Timestamp) -> Self {
        Self {
            username: None,
            csrf: digest(&format!("p8fs anonymous session csrf\n{id}")),
            created_at: now,
            generation: 0,
        }
    }
}

/// The session of the current request.
pub(crate) struct Session {
    key_digest: String,
    record: SessionRecord,
    /// The signed-in user, checked against the accounts (present and enabled).
    pub(crate) user: Option<UserRecord>,
    /// The cookie to set on the response, when the session is new.
    set_cookie: Option<String>,
}

impl Session {
    /// The session's CSRF token, for forms.
    pub(crate) fn csrf(&self) -> &str {
        &self.record.csrf
    }

    /// Whether `token` is this session's CSRF token (constant time).
    pub(crate) fn csrf_matches(&self, token: Option<&str>) -> bool {
        token.is_some_and(|token| same_secret(token, &self.record.csrf))
    }

    /// A short stable identifier for rate limits (a digest, never the session id itself).
    pub(crate) fn limit_id(&self) -> &str {
        &self.key_digest
    }

    /// Adds the `Set-Cookie` of a new session to `response`.
    pub(crate) fn apply(&self, mut response: Response) -> Response {
        if let Some(cookie) = &self.set_cookie
            && let Ok(value) = HeaderValue::from_str(cookie)
        {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }
}

fn cookie_name(server: &OAuthServer) -> &'static str {
    if server.secure_cookies() {
        "__Host-p8fs_session"
    } else {
        "p8fs_session"
    }
}

fn set_cookie(server: &OAuthServer, id: &str, max_age: Duration) -> String {
    let secure = if server.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        cookie_name(server),
        max_age.as_secs()
    )
}

/// A `Set-Cookie` that removes the session cookie.
pub(crate) fn clear_cookie(server: &OAuthServer) -> String {
    set_cookie(server, "", Duration::ZERO)
}

/// The session id sent in the request's cookies, if any.
fn cookie_value<'a>(server: &OAuthServer, headers: &'a HeaderMap) -> Option<&'a str> {
    let name = cookie_name(server);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, v)| *n == name && v.len() == 43)
        .map(|(_, v)| v)
}

/// The request's session, if its cookie names a stored one.
pub(crate) async fn current(server: &OAuthServer, headers: &HeaderMap) -> Result<Option<Session>> {
    let Some(id) = cookie_value(server, headers) else {
        return Ok(None);
    };
    let key_digest = digest(id);
    let Some(stored) = server
        .store
        .get::<SessionRecord>(&Store::key("session", &key_digest)?)
        .await?
    else {
        return Ok(None);
    };
    let record = stored.value;
    let user = match &record.username {
        Some(username) => server
            .accounts
            .user(username)
            .await?
            .filter(|user| !user.disabled && user.generation == record.generation),
        None => None,
    };
    Ok(Some(Session {
        key_digest,
        record,
        user,
        set_cookie: None,
    }))
}

/// The request's session: a stored one, else the anonymous session its cookie names (not
/// stored), if it has a session cookie at all.
pub(crate) async fn current_or_anonymous(
    server: &OAuthServer,
    headers: &HeaderMap,
) -> Result<Option<Session>> {
    if let Some(session) = current(server, headers).await? {
        return Ok(Some(session));
    }
    Ok(cookie_value(server, headers).map(|id| Session {
        key_digest: digest(id),
        record: SessionRecord::anonymous(id, server.store.now()),
        user: None,
        set_cookie: None,
    }))
}

/// The request's session, or a new anonymous one (whose cookie [`Session::apply`] sets).
pub(crate) async fn current_or_new(server: &OAuthServer, headers: &HeaderMap) -> Result<Session> {
    match current_or_anonymous(server, headers).await? {
        Some(session) => Ok(session),
        None => start(server, None).await,
    }
}

/// Starts a session for `user` (stored), or an anonymous one (not stored).
pub(crate) async fn start(server: &OAuthServer, user: Option<UserRecord>) -> Result<Session> {
    let id = new_secret()?;
    let key_digest = digest(&id);
    let now = server.store.now();
    let (record, ttl) = match &user {
        Some(user) => {
            let record = SessionRecord {
                username: Some(user.username.clone()),
                csrf: new_secret()?,
                created_at: now,
                generation: user.generation,
            };
            let ttl = server.config.session_ttl;
            server
                .store
                .put(&Store::key("session", &key_digest)?, &record, Some(ttl))
                .await?;
            (record, ttl)
        }
        None => (SessionRecord::anonymous(&id, now), ANONYMOUS_SESSION_TTL),
    };
    Ok(Session {
        key_digest,
        record,
        user,
        set_cookie: Some(set_cookie(server, &id, ttl)),
    })
}

/// Ends a session.
pub(crate) async fn end(server: &OAuthServer, session: &Session) -> Result<()> {
    server
        .store
        .delete(&Store::key("session", &session.key_digest)?)
        .await?;
    Ok(())
}
