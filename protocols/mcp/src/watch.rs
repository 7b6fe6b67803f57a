//! Resource change notifications from the change log: a memory resource is updated when its
//! record changes (forgotten, expired), a file resource when its object is written or deleted.
//! The 2026-07-28 revision asks with `subscriptions/listen` (one stream, ended by the client or
//! at the token's expiry); 2025-era sessions with `resources/subscribe`, answered by
//! `notifications/resources/updated` on the session's stream until `resources/unsubscribe` or
//! the session's end. Both follow the tenant's log from its head through core's [`Follower`],
//! which ends at the token's expiry.

use std::collections::HashMap;
use std::future::Future;

use p8fs_auth::{Principal, Scope};
use p8fs_core::change::Follower;
use p8fs_core::{ChangeCursor, ChangeFilter, ChangeKind, ErrorKind};
use percent_encoding::percent_decode_str;
use rmcp::ErrorData;

use crate::McpState;

/// What a `p8fs://` URI is in the change log: the subject's kind and path, and the scope
/// reading it needs. `None` for anything else.
pub(crate) fn watched(uri: &str) -> Option<(ChangeKind, String, Scope)> {
    let rest = uri.strip_prefix("p8fs://")?;
    if let Some(id) = rest.strip_prefix("memories/") {
        let key = p8fs_memory::record_key(id).ok()?;
        return Some((ChangeKind::Kv, key.into_string(), Scope::MemoriesRead));
    }
    let path = rest.strip_prefix("objects/")?;
    let (bucket, key) = path.split_once('/')?;
    let key = percent_decode_str(key).decode_utf8().ok()?;
    Some((ChangeKind::Object, format!("{bucket}/{key}"), Scope::S3Read))
}

/// Follows `principal`'s log from its head, calling `notify(uri)` for each change to one of
/// `uris` (all already checked with [`watched`] and the principal's scopes), until `stop`
/// completes, `notify` fails (the client is gone) or the token expires.
pub(crate) async fn follow<N, F>(
    state: &McpState,
    principal: &Principal,
    uris: &[String],
    mut notify: N,
    stop: impl Future<Output = ()>,
) -> Result<(), ErrorData>
where
    N: FnMut(String) -> F,
    F: Future<Output = bool>,
{
    let targets: HashMap<(ChangeKind, String), String> = uris
        .iter()
        .filter_map(|uri| watched(uri).map(|(kind, path, _)| ((kind, path), uri.clone())))
        .collect();
    let heads = state
        .backend
        .change_heads()
        .await
        .map_err(|e| ErrorData::internal_error(e.client_message(), None))?;
    let head = heads
        .into_iter()
        .find(|(tenant, _)| tenant == &principal.tenant)
        .map(|(_, cursor)| cursor)
        .unwrap_or_else(ChangeCursor::default);
    let mut follower = Follower::new(
        state.backend.clone(),
        state.changes.clone(),
        state.clock.clone(),
        principal.tenant.clone(),
        principal.expires_at,
        ChangeFilter {
            kinds: Some([ChangeKind::Kv, ChangeKind::Object].into_iter().collect()),
            prefix: None,
        },
        head,
    );
    tokio::pin!(stop);
    loop {
        let change = tokio::select! {
            () = &mut stop => return Ok(()),
            change = follower.next() => change,
        };
        match change {
            None => return Ok(()),
            Some(Err(e)) if e.kind() == ErrorKind::Unauthorized => return Ok(()),
            Some(Err(e)) => return Err(ErrorData::internal_error(e.client_message(), None)),
            Some(Ok(change)) => {
                let target = (change.subject.kind(), change.subject.path());
                if let Some(uri) = targets.get(&target)
                    && !notify(uri.clone()).await
                {
                    return Ok(());
                }
            }
        }
    }
}

/// The scopes `uris` need that `principal` lacks, or the first URI that is not a resource.
pub(crate) fn check(principal: &Principal, uris: &[String]) -> Result<(), ErrorData> {
    for uri in uris {
        let (_, _, scope) = watched(uri).ok_or_else(|| {
            ErrorData::invalid_params(format!("{uri} is not a resource of this server"), None)
        })?;
        principal
            .require(scope)
            .map_err(|e| ErrorData::invalid_request(e.client_message(), None))?;
    }
    Ok(())
}
