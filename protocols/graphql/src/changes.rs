//! `subscription { changes(after, kinds, prefix) }`: the tenant's change log live, over
//! `graphql-transport-ws` or the legacy `graphql-ws`. A caller sees only the kinds it could read
//! (the scopes `kv:read`, `vectors:read`, `graph:read`, `s3:read`); asking for another kind is
//! FORBIDDEN. Without `after` it starts at the log's head (only new changes); with it, right
//! after that cursor, so a client that kept the last cursor it saw resumes without a gap or a
//! repeat, on any gateway node. A subscription ends with an UNAUTHENTICATED error when the
//! access token of its connection expires or is revoked (checked every
//! [`REVOCATION_CHECK`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, Enum, Object, Subscription};
use futures::Stream;
use p8fs_auth::Verifier;
use p8fs_core::change::Follower;
use p8fs_core::{Change, ChangeCursor, ChangeKind, ChangeOp, Error, Limit, Subject};

use crate::context::state;
use crate::error::{GqlResult, coded, to_graphql};
use crate::scalars::Long;

/// How often a live subscription checks that its token has not been revoked.
pub const REVOCATION_CHECK: Duration = Duration::from_secs(10);

/// The access token a WebSocket connection was opened with (its `connection_init` payload),
/// kept to check for revocation. Never logged.
#[derive(Clone)]
pub struct SessionToken(pub Arc<str>);

/// The kind of record a change is about.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "ChangeKind")]
pub enum ChangeKindName {
    Kv,
    Collection,
    Vector,
    Node,
    Edge,
    Bucket,
    Object,
}

impl From<ChangeKindName> for ChangeKind {
    fn from(kind: ChangeKindName) -> Self {
        match kind {
            ChangeKindName::Kv => ChangeKind::Kv,
            ChangeKindName::Collection => ChangeKind::Collection,
            ChangeKindName::Vector => ChangeKind::Vector,
            ChangeKindName::Node => ChangeKind::Node,
            ChangeKindName::Edge => ChangeKind::Edge,
            ChangeKindName::Bucket => ChangeKind::Bucket,
            ChangeKindName::Object => ChangeKind::Object,
        }
    }
}

impl From<ChangeKind> for ChangeKindName {
    fn from(kind: ChangeKind) -> Self {
        match kind {
            ChangeKind::Kv => ChangeKindName::Kv,
            ChangeKind::Collection => ChangeKindName::Collection,
            ChangeKind::Vector => ChangeKindName::Vector,
            ChangeKind::Node => ChangeKindName::Node,
            ChangeKind::Edge => ChangeKindName::Edge,
            ChangeKind::Bucket => ChangeKindName::Bucket,
            ChangeKind::Object => ChangeKindName::Object,
        }
    }
}

/// What a change did.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOperation {
    /// Created or replaced.
    Put,
    /// Removed.
    Delete,
}

/// One committed change.
pub struct ChangeView(pub Change);

#[Object(name = "Change")]
impl ChangeView {
    /// Its position in the tenant's log: pass it as `after` to resume right after it.
    async fn cursor(&self) -> String {
        self.0.cursor.to_string()
    }

    /// When the write committed, in milliseconds since the Unix epoch.
    async fn at(&self) -> Long {
        Long(self.0.at)
    }

    async fn op(&self) -> ChangeOperation {
        match self.0.op {
            ChangeOp::Put => ChangeOperation::Put,
            ChangeOp::Delete => ChangeOperation::Delete,
        }
    }

    async fn kind(&self) -> ChangeKindName {
        self.0.subject.kind().into()
    }

    /// The subject's path: `key`, `collection/id`, `src/rel/dst`, `bucket/key`, or a name.
    async fn path(&self) -> String {
        self.0.subject.path()
    }

    /// The key of a kv record or an object.
    async fn key(&self) -> Option<&str> {
        match &self.0.subject {
            Subject::Kv { key } => Some(key.as_str()),
            Subject::Object { key, .. } => Some(key.as_str()),
            _ => None,
        }
    }

    /// The id of a vector record or a node.
    async fn id(&self) -> Option<&str> {
        match &self.0.subject {
            Subject::Vector { id, .. } => Some(id.as_str()),
            Subject::Node { id } => Some(id.as_str()),
            _ => None,
        }
    }

    /// The name of a collection or a bucket.
    async fn name(&self) -> Option<&str> {
        match &self.0.subject {
            Subject::Collection { name } => Some(name.as_str()),
            Subject::Bucket { name } => Some(name.as_str()),
            _ => None,
        }
    }

    /// The collection of a vector record.
    async fn collection(&self) -> Option<&str> {
        match &self.0.subject {
            Subject::Vector { collection, .. } => Some(collection.as_str()),
            _ => None,
        }
    }

    /// The bucket of an object.
    async fn bucket(&self) -> Option<&str> {
        match &self.0.subject {
            Subject::Object { bucket, .. } => Some(bucket.as_str()),
            _ => None,
        }
    }

    /// An edge's source, relation and destination.
    async fn src(&self) -> Option<&str> {
        match &self.0.subject {
            Subject::Edge { src, .. } => Some(src.as_str()),
            _ => None,
        }
    }

    async fn rel(&self) -> Option<&str> {
        match &self.0.subject {
            Subject::Edge { rel, .. } => Some(rel.as_str()),
            _ => None,
        }
    }

    async fn dst(&self) -> Option<&str> {
        match &self.0.subject {
            Subject::Edge { dst, .. } => Some(dst.as_str()),
            _ => None,
        }
    }

    /// The new version of a kv record.
    async fn version(&self) -> Option<String> {
        self.0.version.map(|v| v.to_string())
    }
}

#[derive(Default)]
pub struct ChangeSubscription;

#[Subscription]
impl ChangeSubscription {
    /// The tenant's changes as they commit, optionally only some kinds and subjects whose path
    /// starts with `prefix`.
    async fn changes(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        kinds: Option<Vec<ChangeKindName>>,
        prefix: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ChangeView>> + use<>> {
        let caller = ctx
            .data_opt::<p8fs_auth::Principal>()
            .ok_or_else(|| coded("UNAUTHENTICATED", "a bearer token is required"))?
            .clone();
        let token = ctx
            .data_opt::<SessionToken>()
            .ok_or_else(|| coded("UNAUTHENTICATED", "subscriptions need a WebSocket session"))?
            .clone();
        let kinds = kinds.map(|kinds| {
            kinds
                .into_iter()
                .map(ChangeKind::from)
                .collect::<BTreeSet<_>>()
        });
        let filter = caller.change_filter(kinds, prefix).gql()?;
        let after = after
            .map(|a| {
                a.parse::<u64>()
                    .map(ChangeCursor)
                    .map_err(|_| Error::invalid("after", "must be a cursor: decimal digits"))
            })
            .transpose()
            .gql()?;
        let state = state(ctx).clone();
        // Checked before the subscription starts, so a stale or foreign cursor is its error.
        let first = state
            .backend
            .changes(
                &caller.tenant,
                after.unwrap_or_default(),
                Limit::new(1).gql()?,
            )
            .await
            .gql()?;
        let follower = Follower::new(
            state.backend.clone(),
            state.changes.clone(),
            state.clock.clone(),
            caller.tenant.clone(),
            caller.expires_at,
            filter,
            after.unwrap_or(first.head),
        );
        let live = Live {
            follower,
            verifier: state.verifier.clone(),
            token,
            next_check: tokio::time::Instant::now() + REVOCATION_CHECK,
            ended: false,
        };
        Ok(futures::stream::unfold(live, |mut live| async move {
            let item = live.next().await?;
            Some((item, live))
        }))
    }
}

/// A subscription's follower and its token's revocation check.
struct Live {
    follower: Follower,
    verifier: Arc<Verifier>,
    token: SessionToken,
    next_check: tokio::time::Instant,
    ended: bool,
}

impl Live {
    async fn next(&mut self) -> Option<async_graphql::Result<ChangeView>> {
        if self.ended {
            return None;
        }
        loop {
            tokio::select! {
                item = self.follower.next() => {
                    return match item? {
                        Ok(change) => Some(Ok(ChangeView(change))),
                        Err(error) => {
                            self.ended = true;
                            Some(Err(to_graphql(&error)))
                        }
                    };
                }
                () = tokio::time::sleep_until(self.next_check) => {
                    self.next_check = tokio::time::Instant::now() + REVOCATION_CHECK;
                    // Only a definite no ends it: a check the backend could not answer is
                    // made again at the next interval.
                    if let Err(error) = self.verifier.verify(&self.token.0).await
                        && error.kind() == p8fs_core::ErrorKind::Unauthorized
                    {
                        self.ended = true;
                        return Some(Err(to_graphql(&error)));
                    }
                }
            }
        }
    }
}
