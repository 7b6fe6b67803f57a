//! `p8fs.v1.Changes`: the caller's change log live. `Watch` follows it through core's
//! [`Follower`] (the one REST's event stream and GraphQL's subscription use), showing only the
//! kinds the token may read (`Principal::change_filter`; asking for another is
//! `PERMISSION_DENIED`). Without `after` it starts at the log's head; with it, right after that
//! cursor. The stream ends with `UNAUTHENTICATED` when the token expires or is found revoked
//! (checked every [`REVOCATION_CHECK`]), and with `DEADLINE_EXCEEDED` at the call's deadline.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use p8fs_auth::Verifier;
use p8fs_core::change::Follower;
use p8fs_core::{Change, ChangeCursor, ChangeKind, ChangeOp, Error, ErrorKind, Limit};
use tonic::{Request, Response, Status};

use crate::error::{GrpcResult, status};
use crate::pb::{self, changes_server::Changes};
use crate::{GrpcState, bearer, deadline_of};

/// How often a live `Watch` checks that its token has not been revoked.
pub const REVOCATION_CHECK: Duration = Duration::from_secs(10);

/// The `Changes` service.
pub struct ChangesService(pub GrpcState);

/// The stream of a `Watch`.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Change, Status>> + Send + 'static>>;

fn kind_of(kind: i32) -> Result<ChangeKind, Status> {
    match pb::ChangeKind::try_from(kind) {
        Ok(pb::ChangeKind::Kv) => Ok(ChangeKind::Kv),
        Ok(pb::ChangeKind::Collection) => Ok(ChangeKind::Collection),
        Ok(pb::ChangeKind::Vector) => Ok(ChangeKind::Vector),
        Ok(pb::ChangeKind::Node) => Ok(ChangeKind::Node),
        Ok(pb::ChangeKind::Edge) => Ok(ChangeKind::Edge),
        Ok(pb::ChangeKind::Bucket) => Ok(ChangeKind::Bucket),
        Ok(pb::ChangeKind::Object) => Ok(ChangeKind::Object),
        Ok(pb::ChangeKind::Unspecified) | Err(_) => {
            Err(Error::invalid("kinds", "must name kinds of change")).grpc()
        }
    }
}

fn kind_name(kind: ChangeKind) -> pb::ChangeKind {
    match kind {
        ChangeKind::Kv => pb::ChangeKind::Kv,
        ChangeKind::Collection => pb::ChangeKind::Collection,
        ChangeKind::Vector => pb::ChangeKind::Vector,
        ChangeKind::Node => pb::ChangeKind::Node,
        ChangeKind::Edge => pb::ChangeKind::Edge,
        ChangeKind::Bucket => pb::ChangeKind::Bucket,
        ChangeKind::Object => pb::ChangeKind::Object,
    }
}

fn change(change: Change) -> pb::Change {
    pb::Change {
        cursor: change.cursor.0,
        at: change.at,
        op: match change.op {
            ChangeOp::Put => pb::ChangeOp::Put,
            ChangeOp::Delete => pb::ChangeOp::Delete,
        } as i32,
        kind: kind_name(change.subject.kind()) as i32,
        path: change.subject.path(),
        version: change.version.map(|v| v.0),
    }
}

/// `stream`, ended with `DEADLINE_EXCEEDED` at `deadline` when there is one.
pub(crate) fn until<T: Send + 'static>(
    stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
    deadline: Option<tokio::time::Instant>,
) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>> {
    let Some(deadline) = deadline else {
        return Box::pin(stream);
    };
    let stream = Box::pin(stream);
    Box::pin(futures::stream::unfold(
        (stream, false),
        move |(mut stream, done)| async move {
            if done {
                return None;
            }
            tokio::select! {
                item = stream.next() => item.map(|item| {
                    let end = item.is_err();
                    (item, (stream, end))
                }),
                () = tokio::time::sleep_until(deadline) => Some((
                    Err(Status::deadline_exceeded("the call's deadline passed")),
                    (stream, true),
                )),
            }
        },
    ))
}

#[tonic::async_trait]
impl Changes for ChangesService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let caller = self.0.authenticate(request.metadata()).await?;
        let token: Arc<str> = bearer(request.metadata()).grpc()?.into();
        let deadline = deadline_of(&request);
        let request = request.into_inner();
        let kinds = if request.kinds.is_empty() {
            None
        } else {
            Some(
                request
                    .kinds
                    .iter()
                    .map(|&kind| kind_of(kind))
                    .collect::<Result<BTreeSet<_>, _>>()?,
            )
        };
        let prefix = (!request.prefix.is_empty()).then_some(request.prefix);
        let filter = caller.change_filter(kinds, prefix).grpc()?;
        let state = &self.0;
        // Checked before the stream starts, so a stale or foreign cursor is the call's error.
        let first = state
            .backend
            .changes(
                &caller.tenant,
                request.after.map(ChangeCursor).unwrap_or_default(),
                Limit::new(1).grpc()?,
            )
            .await
            .grpc()?;
        let follower = Follower::new(
            state.backend.clone(),
            state.changes.clone(),
            state.clock.clone(),
            caller.tenant.clone(),
            caller.expires_at,
            filter,
            request.after.map_or(first.head, ChangeCursor),
        );
        let live = Live {
            follower,
            verifier: state.verifier.clone(),
            token,
            next_check: tokio::time::Instant::now() + REVOCATION_CHECK,
            ended: false,
        };
        let stream = futures::stream::unfold(live, |mut live| async move {
            let item = live.next().await?;
            Some((item, live))
        });
        Ok(Response::new(until(stream, deadline)))
    }
}

/// A watch's follower and its token's revocation check.
struct Live {
    follower: Follower,
    verifier: Arc<Verifier>,
    token: Arc<str>,
    next_check: tokio::time::Instant,
    ended: bool,
}

impl Live {
    async fn next(&mut self) -> Option<Result<pb::Change, Status>> {
        if self.ended {
            return None;
        }
        loop {
            tokio::select! {
                item = self.follower.next() => {
                    return match item? {
                        Ok(found) => Some(Ok(change(found))),
                        Err(error) => {
                            self.ended = true;
                            Some(Err(status(error)))
                        }
                    };
                }
                () = tokio::time::sleep_until(self.next_check) => {
                    self.next_check = tokio::time::Instant::now() + REVOCATION_CHECK;
                    // Only a definite no ends it: a check the backend could not answer is made
                    // again at the next interval.
                    if let Err(error) = self.verifier.verify(&self.token).await
                        && error.kind() == ErrorKind::Unauthorized
                    {
                        self.ended = true;
                        return Some(Err(status(error)));
                    }
                }
            }
        }
    }
}
