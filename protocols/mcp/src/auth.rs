//! `/mcp` as an OAuth protected resource (RFC 9728, RFC 6750): the guard in front of the MCP
//! service and the resource metadata clients discover our authorization server from.
//!
//! The guard verifies the bearer token with the one [`Verifier`] for the endpoint's resource
//! URI; without a valid one the answer is `401` with `WWW-Authenticate: Bearer
//! resource_metadata="..."` (and `error="invalid_token"` when one was presented). A tool call
//! or resource read needing a scope the token lacks is refused before it reaches the tool, with
//! `403` and `error="insufficient_scope", scope="<needed>"`, so a client can step up. A request
//! naming a session (`Mcp-Session-Id`) must come from the subject and tenant that opened it.
//! The verified [`Principal`] travels to the tools in the request's extensions.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use p8fs_auth::{Scope, Verifier, bearer_token};
use p8fs_core::ErrorKind;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::session::{Owner, StoredSessions};
use crate::{McpSettings, McpState, tools};

/// The header naming a legacy (2025-era) session.
const SESSION_HEADER: &str = "mcp-session-id";

/// What the guard needs.
pub(crate) struct Guard {
    verifier: Arc<Verifier>,
    settings: Arc<McpSettings>,
    sessions: StoredSessions,
    /// `resource_metadata="<url>"`, as every challenge carries it.
    metadata_parameter: String,
    /// Sessions' owners already read from the store (an owner never changes), so a session's
    /// requests read the store once per node.
    owners: Mutex<HashMap<String, Owner>>,
}

/// Session owners remembered per node; past this the memory starts over.
const MAX_REMEMBERED_OWNERS: usize = 10_000;

impl Guard {
    pub(crate) fn new(state: &McpState, settings: Arc<McpSettings>) -> Self {
        let metadata_parameter = format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            settings.issuer
        );
        Self {
            verifier: state.verifier.clone(),
            sessions: StoredSessions::new(state.backend.clone()),
            settings,
            metadata_parameter,
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// Who opened session `id`: remembered, else from the store.
    async fn owner(&self, id: &str) -> p8fs_core::Result<Option<Owner>> {
        if let Some(owner) = self.owners.lock().get(id) {
            return Ok(Some(owner.clone()));
        }
        let owner = self.sessions.owner(id).await?;
        if let Some(owner) = &owner {
            self.remember(id, owner);
        }
        Ok(owner)
    }

    fn remember(&self, id: &str, owner: &Owner) {
        let mut owners = self.owners.lock();
        if owners.len() >= MAX_REMEMBERED_OWNERS {
            owners.clear();
        }
        owners.insert(id.to_owned(), owner.clone());
    }

    /// `401` with the challenge; `error` when a token was presented and refused.
    fn unauthorized(&self, error: Option<&str>) -> Response {
        let mut challenge = format!("Bearer {}", self.metadata_parameter);
        if let Some(description) = error {
            challenge.push_str(&format!(
                ", error=\"invalid_token\", error_description=\"{}\"",
                quoted(description)
            ));
        }
        challenge_response(
            StatusCode::UNAUTHORIZED,
            &challenge,
            "a valid bearer token is required",
        )
    }

    /// `403` naming the scope a step-up must ask for.
    fn insufficient_scope(&self, scope: Scope) -> Response {
        let challenge = format!(
            "Bearer error=\"insufficient_scope\", scope=\"{scope}\", {}",
            self.metadata_parameter
        );
        challenge_response(
            StatusCode::FORBIDDEN,
            &challenge,
            &format!("the token lacks the scope {scope}"),
        )
    }
}

/// The guard: token, scope of the call, owner of the session, then the MCP service.
pub(crate) async fn guard(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer_token(request.headers()) else {
        return guard.unauthorized(None);
    };
    let principal = match guard
        .verifier
        .verify_for(token, &guard.settings.resource)
        .await
    {
        Ok(principal) => principal,
        Err(e) if e.kind() == ErrorKind::Unauthorized => {
            return guard.unauthorized(Some(&e.client_message()));
        }
        Err(e) => return failure(&e),
    };
    let (mut parts, body) = request.into_parts();
    let bytes = if parts.method == Method::POST {
        match axum::body::to_bytes(body, guard.settings.max_body_bytes).await {
            Ok(bytes) => bytes,
            Err(_) => {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the request body exceeds {} bytes",
                        guard.settings.max_body_bytes
                    ),
                )
                    .into_response();
            }
        }
    } else {
        Bytes::new()
    };
    if let Some(scope) = needed_scope(&bytes)
        && !principal.scopes.contains(scope)
    {
        return guard.insufficient_scope(scope);
    }
    let owner = Owner::of(&principal);
    let session = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(id) = &session {
        match guard.owner(id).await {
            Ok(Some(opened_by)) if opened_by != owner => {
                return (
                    StatusCode::NOT_FOUND,
                    "no such session for this token; initialize a new one",
                )
                    .into_response();
            }
            Ok(_) => {}
            Err(e) => return failure(&e),
        }
    }
    parts.extensions.insert(principal);
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if session.is_none()
        && let Some(opened) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        if let Err(e) = guard.sessions.set_owner(opened, &owner).await {
            return failure(&e);
        }
        guard.remember(opened, &owner);
    }
    response
}

/// The scope a JSON-RPC message (or batch) needs before it may reach the service: a tool's own
/// scope for `tools/call`, the read scope of a resource's kind for `resources/read`.
fn needed_scope(body: &[u8]) -> Option<Scope> {
    if body.is_empty() {
        return None;
    }
    let message: Value = serde_json::from_slice(body).ok()?;
    let messages = match &message {
        Value::Array(batch) => batch.iter().collect(),
        single => vec![single],
    };
    messages.into_iter().find_map(|message| {
        let params = message.get("params");
        match message.get("method")?.as_str()? {
            "tools/call" => tools::scope_of(params?.get("name")?.as_str()?),
            "resources/read" => tools::resource_scope(params?.get("uri")?.as_str()?),
            _ => None,
        }
    })
}

/// RFC 9728 metadata of the endpoint.
pub(crate) async fn resource_metadata(State(settings): State<Arc<McpSettings>>) -> Response {
    let scopes: Vec<String> = tools::SCOPES.iter().map(ToString::to_string).collect();
    let body = json!({
        "resource": settings.resource,
        "authorization_servers": [settings.issuer],
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": "p8fs memory vault",
    });
    (
        [
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
        ],
        axum::Json(body),
    )
        .into_response()
}

fn challenge_response(status: StatusCode, challenge: &str, message: &str) -> Response {
    let mut response = (status, axum::Json(json!({ "error": message }))).into_response();
    if let Ok(value) = HeaderValue::from_str(challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// A store failure while guarding: `503` when transient, `500` otherwise; details in the log.
fn failure(error: &p8fs_core::Error) -> Response {
    let status = if error.kind() == ErrorKind::Unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        tracing::error!(%error, "the MCP guard failed");
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (status, error.client_message()).into_response()
}

/// `text` safe inside a quoted-string of a challenge.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control())
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_of_a_call_comes_from_its_tool_or_resource() {
        let call = |name: &str| {
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": name, "arguments": {}}})
            .to_string()
        };
        assert_eq!(
            needed_scope(call("remember").as_bytes()),
            Some(Scope::MemoriesWrite)
        );
        assert_eq!(needed_scope(call("kv_get").as_bytes()), Some(Scope::KvRead));
        assert_eq!(needed_scope(call("no_such_tool").as_bytes()), None);
        let read = json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read",
                          "params": {"uri": "p8fs://memories/m1"}});
        assert_eq!(
            needed_scope(read.to_string().as_bytes()),
            Some(Scope::MemoriesRead)
        );
        let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        assert_eq!(needed_scope(list.to_string().as_bytes()), None);
        assert_eq!(needed_scope(b"not json"), None);
    }

    #[test]
    fn challenge_text_cannot_break_out_of_its_quotes() {
        assert_eq!(quoted("bad \"token\"\r\n\u{e9}"), "bad 'token'");
    }
}
