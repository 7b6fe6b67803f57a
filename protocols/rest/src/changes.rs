//! `/v1/changes`: the tenant's change log (`p8fs_core::change`), as pages and as a live
//! Server-Sent Events stream.
//!
//! A caller sees only the kinds of change it could read (`Principal::readable_kinds`: a token
//! without `vectors:read` sees no vector changes), optionally narrowed by `kinds` and by a
//! `prefix` of the subject's path (`key`, `collection/id`, `src/rel/dst`, `bucket/key`).
//! Cursors are decimal strings; a page's `next` is where the following read starts, also when a
//! filter skipped everything it examined. A cursor older than the log's retention is 410 Gone
//! with the oldest usable cursor in the problem's `detail`.
//!
//! The stream (`GET /v1/changes/stream`) sends each change as an event with `id: <cursor>`, so a
//! client that reconnects with `Last-Event-ID` resumes exactly after the last change it saw
//! (`EventSource` does this by itself). Without a cursor it starts at the log's head: only new
//! changes. It waits on the gateway's [`ChangeSignal`] when caught up, sends a comment every
//! 15 s to keep proxies from closing it, and ends when the access token expires (the client
//! reconnects with a fresh token and `Last-Event-ID`) or with an `error` event carrying a problem
//! document when the log cannot be read.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use p8fs_core::change::{ChangeFilter, Follower, read_filtered};
use p8fs_core::{Change, ChangeCursor, ChangeKind, Error, Limit, Subject};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, Problem};
use crate::extract::{ApiQuery, Caller};
use crate::{DEFAULT_PAGE, RestState};

/// How long the stream waits before a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One committed change.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeRecord {
    /// Its position in the tenant's log: pass it as `after` to read what follows.
    pub cursor: String,
    /// When the write committed, in milliseconds since the Unix epoch.
    pub at: i64,
    /// `put` (created or replaced) or `delete`.
    #[schema(pattern = "^(put|delete)$")]
    pub op: String,
    /// `kv`, `collection`, `vector`, `node`, `edge`, `bucket` or `object`.
    #[schema(pattern = "^(kv|collection|vector|node|edge|bucket|object)$")]
    pub kind: String,
    /// The key of a kv record or an object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The id of a vector record or a node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The name of a collection or a bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The collection of a vector record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// The bucket of an object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// An edge's source node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// An edge's relation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rel: Option<String>,
    /// An edge's destination node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    /// The new version of a kv record (its `ETag`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl ChangeRecord {
    /// The record of `change`, as the stream, the pages and the NATS publisher send it.
    pub fn of(change: &Change) -> Self {
        let mut record = Self {
            cursor: change.cursor.to_string(),
            at: change.at,
            op: change.op.as_str().to_owned(),
            kind: change.subject.kind().as_str().to_owned(),
            key: None,
            id: None,
            name: None,
            collection: None,
            bucket: None,
            src: None,
            rel: None,
            dst: None,
            version: change.version.map(|v| v.to_string()),
        };
        let text = |s: &str| Some(s.to_owned());
        match &change.subject {
            Subject::Kv { key } => record.key = text(key.as_str()),
            Subject::Collection { name } => record.name = text(name.as_str()),
            Subject::Vector { collection, id } => {
                record.collection = text(collection.as_str());
                record.id = text(id.as_str());
            }
            Subject::Node { id } => record.id = text(id.as_str()),
            Subject::Edge { src, rel, dst } => {
                record.src = text(src.as_str());
                record.rel = text(rel.as_str());
                record.dst = text(dst.as_str());
            }
            Subject::Bucket { name } => record.name = text(name.as_str()),
            Subject::Object { bucket, key } => {
                record.bucket = text(bucket.as_str());
                record.key = text(key.as_str());
            }
        }
        record
    }
}

/// A page of changes, cursors ascending.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangePageBody {
    pub changes: Vec<ChangeRecord>,
    /// Pass as `after` for the next page (the last cursor examined, which a filter may have
    /// skipped).
    pub next: String,
    /// The cursor of the tenant's newest change when the page was read: caught up when
    /// `next == head`.
    pub head: String,
}

/// One event of `GET /v1/changes/stream`, as a Server-Sent Events parser yields it (OpenAPI 3.1
/// reads a `text/event-stream` schema as the schema of one event). Documentation only: the
/// stream is written by axum's SSE encoder.
#[derive(Debug, ToSchema)]
pub struct StreamEvent {
    /// `change`, or `error` for the last event of a stream that could not go on.
    #[schema(pattern = "^(change|error)$")]
    pub event: String,
    /// The change's cursor (absent on `error`): what `Last-Event-ID` resumes after.
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub id: Option<String>,
    /// A ChangeRecord as JSON, or on `error` a problem document as JSON.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// A read of the change log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Changes after this cursor (default 0: from the oldest kept).
    #[param(pattern = "^[0-9]{1,20}$")]
    pub after: Option<String>,
    /// Changes per page, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// Only these kinds, comma-separated (`kv,object`); a kind the token cannot read is a 403.
    #[param(
        pattern = "^(kv|collection|vector|node|edge|bucket|object)(,(kv|collection|vector|node|edge|bucket|object))*$"
    )]
    pub kinds: Option<String>,
    /// Only subjects whose path (`key`, `collection/id`, `src/rel/dst`, `bucket/key`) starts
    /// with this.
    #[param(max_length = 2048, pattern = "^[^\\u0000]*$")]
    pub prefix: Option<String>,
}

/// A live stream of the change log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Changes after this cursor; `Last-Event-ID` takes precedence. Absent, the stream starts
    /// at the log's head (only new changes).
    #[param(pattern = "^[0-9]{1,20}$")]
    pub after: Option<String>,
    /// Only these kinds, comma-separated; a kind the token cannot read is a 403.
    #[param(
        pattern = "^(kv|collection|vector|node|edge|bucket|object)(,(kv|collection|vector|node|edge|bucket|object))*$"
    )]
    pub kinds: Option<String>,
    /// Only subjects whose path starts with this.
    #[param(max_length = 2048, pattern = "^[^\\u0000]*$")]
    pub prefix: Option<String>,
}

fn cursor(value: &str, field: &'static str) -> Result<ChangeCursor, Error> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(field, "must be a cursor: decimal digits"));
    }
    value
        .parse::<u64>()
        .map(ChangeCursor)
        .map_err(|_| Error::invalid(field, "must be a cursor: decimal digits"))
}

/// The filter of a read: the kinds asked for, comma-separated (all the caller can read when
/// absent), and the prefix.
fn filter(
    caller: &p8fs_auth::Principal,
    kinds: Option<&str>,
    prefix: Option<String>,
) -> Result<ChangeFilter, Error> {
    let kinds = kinds
        .map(|list| {
            list.split(',')
                .map(|name| ChangeKind::parse(name.trim(), "kinds"))
                .collect::<Result<BTreeSet<_>, Error>>()
        })
        .transpose()?;
    caller.change_filter(kinds, prefix)
}

/// Reads a page of the tenant's changes.
#[utoipa::path(get, path = "/v1/changes", tag = "changes", params(PageParams),
    responses(
        (status = 200, description = "A page of changes", body = ChangePageBody),
        (status = 400, description = "Bad input, or a cursor beyond the newest change", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token can read none of the kinds asked for", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The cursor is older than the log's retention; `detail` names the oldest usable one", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["kv:read", "vectors:read", "graph:read", "s3:read"])))]
pub(crate) async fn read_changes(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<ChangePageBody>, ApiError> {
    let filter = filter(&caller, params.kinds.as_deref(), params.prefix)?;
    let after = params
        .after
        .as_deref()
        .map(|a| cursor(a, "after"))
        .transpose()?
        .unwrap_or_default();
    let limit = Limit::new(params.limit.unwrap_or(DEFAULT_PAGE))?;
    let page = read_filtered(
        state.backend.as_ref(),
        &caller.tenant,
        after,
        limit,
        &filter,
    )
    .await?;
    Ok(Json(ChangePageBody {
        changes: page.changes.iter().map(ChangeRecord::of).collect(),
        next: page.next.to_string(),
        head: page.head.to_string(),
    }))
}

/// Streams the tenant's changes as Server-Sent Events.
#[utoipa::path(get, path = "/v1/changes/stream", tag = "changes",
    params(
        StreamParams,
        ("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = "^[0-9]{1,20}$",
            description = "Resume after this cursor (the `id` of the last event received)"),
    ),
    responses(
        (status = 200, description = "`event: change` events, `id` the cursor and `data` a ChangeRecord; an `event: error` with a problem document ends the stream", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "Bad input, or a cursor beyond the newest change", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token can read none of the kinds asked for", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The cursor is older than the log's retention", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["kv:read", "vectors:read", "graph:read", "s3:read"])))]
pub(crate) async fn stream_changes(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiQuery(params): ApiQuery<StreamParams>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let filter = filter(&caller, params.kinds.as_deref(), params.prefix)?;
    // Both are checked; a reconnecting EventSource sends its original URL with the header.
    let after = params
        .after
        .as_deref()
        .map(|a| cursor(a, "after"))
        .transpose()?;
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(cursor(
            value
                .to_str()
                .map_err(|_| Error::invalid("last-event-id", "must be a cursor"))?,
            "last-event-id",
        )?),
        None => after,
    };
    // Checked before the stream starts, so a stale or foreign cursor is an HTTP error.
    let first = state
        .backend
        .changes(&caller.tenant, resume.unwrap_or_default(), Limit::new(1)?)
        .await?;
    let after = resume.unwrap_or(first.head);
    let follower = Follower::new(
        state.backend.clone(),
        state.changes.clone(),
        state.clock.clone(),
        caller.tenant.clone(),
        caller.expires_at,
        filter,
        after,
    );
    let events = futures::stream::unfold(follower, |mut follower| async move {
        let event = match follower.next().await? {
            Ok(change) => change_event(&change),
            Err(error) => error_event(&error),
        };
        Some((Ok(event), follower))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn change_event(change: &Change) -> Event {
    let data = serde_json::to_string(&ChangeRecord::of(change)).unwrap_or_default();
    Event::default()
        .event("change")
        .id(change.cursor.to_string())
        .data(data)
}

fn error_event(error: &Error) -> Event {
    if matches!(error, Error::Internal { .. } | Error::Unavailable { .. }) {
        tracing::warn!(%error, "a change stream ended");
    }
    let problem = ApiError::problem_of(error);
    Event::default()
        .event("error")
        .data(serde_json::to_string(&problem).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use p8fs_core::ChangeOp;

    use super::*;

    #[test]
    fn cursors_are_decimal() {
        assert_eq!(cursor("0", "after").unwrap(), ChangeCursor(0));
        assert_eq!(
            cursor("18446744073709551615", "after").unwrap(),
            ChangeCursor(u64::MAX)
        );
        for bad in ["", "-1", "1.0", "18446744073709551616", "abc", " 1"] {
            assert_eq!(cursor(bad, "after").unwrap_err().field(), Some("after"));
        }
    }

    #[test]
    fn kinds_must_be_readable() {
        let caller = p8fs_auth::Principal {
            tenant: p8fs_core::TenantId::new("t").unwrap(),
            subject: "s".into(),
            client_id: "c".into(),
            scopes: p8fs_auth::ScopeSet::parse("kv:read s3:read").unwrap(),
            token_id: "j".into(),
            expires_at: 0,
        };
        let readable: BTreeSet<ChangeKind> =
            [ChangeKind::Kv, ChangeKind::Bucket, ChangeKind::Object].into();
        let all = filter(&caller, None, None).unwrap();
        assert_eq!(all.kinds, Some(readable));
        let one = filter(&caller, Some("object"), Some("notes/".into())).unwrap();
        assert_eq!(one.kinds, Some([ChangeKind::Object].into()));
        assert_eq!(one.prefix.as_deref(), Some("notes/"));
        let err = filter(&caller, Some("vector"), None).unwrap_err();
        assert_eq!(err.kind(), p8fs_core::ErrorKind::Forbidden);
        let err = filter(&caller, Some("blob"), None).unwrap_err();
        assert_eq!(err.field(), Some("kinds"));
    }

    #[test]
    fn records_name_the_subject_s_parts() {
        let change = Change {
            cursor: ChangeCursor(7),
            at: 1,
            op: ChangeOp::Delete,
            subject: Subject::Edge {
                src: p8fs_core::NodeId::new("a").unwrap(),
                rel: p8fs_core::Rel::new("knows").unwrap(),
                dst: p8fs_core::NodeId::new("b").unwrap(),
            },
            version: None,
        };
        let json = serde_json::to_value(ChangeRecord::of(&change)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"cursor": "7", "at": 1, "op": "delete", "kind": "edge",
                "src": "a", "rel": "knows", "dst": "b"})
        );
    }
}
