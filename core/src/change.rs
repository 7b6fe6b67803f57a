//! The change log: every committed write, once, in commit order per tenant.
//!
//! Contract (`DESIGN.md`, "Changes"):
//! - Every committed write appends one [`Change`] in the same atomic step as the write itself (one
//!   RocksDB `WriteBatch`, one SQL transaction). A write that fails or rolls back appends nothing;
//!   a committed write is never logged twice.
//! - Each tenant has its own log. Its cursors are dense: the first change of a tenant is cursor 1,
//!   each later one is the previous plus one, and cursors are assigned in commit order, so a reader
//!   that pages by cursor while writes are in flight never skips a late committer.
//! - What appends what:
//!   - key-value: `put`, `put_if_absent` and `compare_and_swap` append a `Put` with the new
//!     version; `delete` appends a `Delete` when a visible record existed;
//!   - vectors: `create_collection` appends a collection `Put` when it created one;
//!     `drop_collection` appends one collection `Delete` when a collection existed (its records
//!     go with it, without a change each); `upsert_vector` appends a `Put`, `delete_vector` a
//!     `Delete` when a visible record existed;
//!   - graph: `put_node` and `put_edge` append a `Put`; `delete_node` appends a node `Delete`
//!     when a visible node existed, followed (same cursor order, same atomic step) by an edge
//!     `Delete` for each visible edge it removed; `delete_edge` appends a `Delete` when a visible
//!     edge existed; removing records that were already invisible appends nothing;
//!   - objects: `create_bucket` appends a bucket `Put`, `delete_bucket` a bucket `Delete`;
//!     `put_object` and `complete_upload` append an object `Put`; `delete_object` appends a
//!     `Delete` when a visible object existed. Multipart uploads and parts, which are invisible
//!     until completed, append nothing until `complete_upload`.
//! - Expiry is not a write: a record whose ttl passes appends nothing, and neither do
//!   [`Maintenance::purge_expired`](crate::Maintenance::purge_expired) and
//!   [`ObjectStore::reap_objects`](crate::ObjectStore::reap_objects).
//! - Retention: [`ChangeLog::trim_changes`] removes changes older than a time. A reader whose
//!   cursor falls before what remains gets [`Error::Gone`] naming the oldest cursor it may use;
//!   a cursor beyond the newest change is `InvalidInput` naming `after` ([`check_cursor`]).
//! - The log is per tenant: no read, head or error ever shows another tenant's changes.

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::types::{
    BucketName, CollectionName, Key, Limit, NodeId, ObjectKey, RecordId, Rel, TenantId, Timestamp,
    Version,
};

/// A position in one tenant's log: the cursor of the last change a reader has seen; `0` is
/// before the first change.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct ChangeCursor(pub u64);

impl fmt::Display for ChangeCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a write did to its subject.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ChangeOp {
    /// Created or replaced.
    Put,
    /// Removed.
    Delete,
}

impl ChangeOp {
    /// The stored and wire name: `put` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Put => "put",
            ChangeOp::Delete => "delete",
        }
    }

    /// Parses a stored name; `field` names the source in the error.
    pub fn parse(value: &str, field: &'static str) -> Result<Self> {
        match value {
            "put" => Ok(ChangeOp::Put),
            "delete" => Ok(ChangeOp::Delete),
            other => Err(Error::invalid(
                field,
                format!("{other:?} is not a change operation (put, delete)"),
            )),
        }
    }
}

/// The kind of record a change is about.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum ChangeKind {
    Kv,
    Collection,
    Vector,
    Node,
    Edge,
    Bucket,
    Object,
}

impl ChangeKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ChangeKind; 7] = [
        ChangeKind::Kv,
        ChangeKind::Collection,
        ChangeKind::Vector,
        ChangeKind::Node,
        ChangeKind::Edge,
        ChangeKind::Bucket,
        ChangeKind::Object,
    ];

    /// The stored and wire name (`kv`, `collection`, `vector`, `node`, `edge`, `bucket`,
    /// `object`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Kv => "kv",
            ChangeKind::Collection => "collection",
            ChangeKind::Vector => "vector",
            ChangeKind::Node => "node",
            ChangeKind::Edge => "edge",
            ChangeKind::Bucket => "bucket",
            ChangeKind::Object => "object",
        }
    }

    /// Parses a kind name; `field` names the source in the error.
    pub fn parse(value: &str, field: &'static str) -> Result<Self> {
        ChangeKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value)
            .ok_or_else(|| {
                Error::invalid(
                    field,
                    format!(
                        "{value:?} is not a change kind (kv, collection, vector, node, edge, bucket, object)"
                    ),
                )
            })
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The record a change is about.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Subject {
    Kv {
        key: Key,
    },
    Collection {
        name: CollectionName,
    },
    Vector {
        collection: CollectionName,
        id: RecordId,
    },
    Node {
        id: NodeId,
    },
    Edge {
        src: NodeId,
        rel: Rel,
        dst: NodeId,
    },
    Bucket {
        name: BucketName,
    },
    Object {
        bucket: BucketName,
        key: ObjectKey,
    },
}

impl Subject {
    /// The kind of record.
    pub fn kind(&self) -> ChangeKind {
        match self {
            Subject::Kv { .. } => ChangeKind::Kv,
            Subject::Collection { .. } => ChangeKind::Collection,
            Subject::Vector { .. } => ChangeKind::Vector,
            Subject::Node { .. } => ChangeKind::Node,
            Subject::Edge { .. } => ChangeKind::Edge,
            Subject::Bucket { .. } => ChangeKind::Bucket,
            Subject::Object { .. } => ChangeKind::Object,
        }
    }

    /// The subject as three strings, the way backends store it: the record's own key or id last
    /// (`["", "", key]`, `["", collection, id]`, `[src, rel, dst]`, `["", bucket, key]`). Unused
    /// parts are empty, which no identifier is, so the encoding is unambiguous.
    pub fn parts(&self) -> [&str; 3] {
        match self {
            Subject::Kv { key } => ["", "", key.as_str()],
            Subject::Collection { name } => ["", "", name.as_str()],
            Subject::Vector { collection, id } => ["", collection.as_str(), id.as_str()],
            Subject::Node { id } => ["", "", id.as_str()],
            Subject::Edge { src, rel, dst } => [src.as_str(), rel.as_str(), dst.as_str()],
            Subject::Bucket { name } => ["", "", name.as_str()],
            Subject::Object { bucket, key } => ["", bucket.as_str(), key.as_str()],
        }
    }

    /// The subject as one string, for prefix filters: its non-empty parts joined by `/`
    /// (`key`, `collection/id`, `src/rel/dst`, `bucket/key`).
    pub fn path(&self) -> String {
        let parts = self.parts();
        let mut path = String::new();
        for part in parts.iter().filter(|p| !p.is_empty()) {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
        }
        path
    }

    /// Rebuilds a subject from its kind and [`parts`](Subject::parts). Stored data that does not
    /// decode is reported as `Internal` by the backend; here it is `InvalidInput` naming `change`.
    pub fn from_parts(kind: ChangeKind, parts: [&str; 3]) -> Result<Self> {
        let [a, b, c] = parts;
        let expect_empty = |part: &str| {
            if part.is_empty() {
                Ok(())
            } else {
                Err(Error::invalid(
                    "change",
                    format!("a {kind} change has an unexpected subject part {part:?}"),
                ))
            }
        };
        Ok(match kind {
            ChangeKind::Kv => {
                expect_empty(a)?;
                expect_empty(b)?;
                Subject::Kv { key: Key::new(c)? }
            }
            ChangeKind::Collection => {
                expect_empty(a)?;
                expect_empty(b)?;
                Subject::Collection {
                    name: CollectionName::new(c)?,
                }
            }
            ChangeKind::Vector => {
                expect_empty(a)?;
                Subject::Vector {
                    collection: CollectionName::new(b)?,
                    id: RecordId::new(c)?,
                }
            }
            ChangeKind::Node => {
                expect_empty(a)?;
                expect_empty(b)?;
                Subject::Node {
                    id: NodeId::new(c)?,
                }
            }
            ChangeKind::Edge => Subject::Edge {
                src: NodeId::new(a)?,
                rel: Rel::new(b)?,
                dst: NodeId::new(c)?,
            },
            ChangeKind::Bucket => {
                expect_empty(a)?;
                expect_empty(b)?;
                Subject::Bucket {
                    name: BucketName::new(c)?,
                }
            }
            ChangeKind::Object => {
                expect_empty(a)?;
                Subject::Object {
                    bucket: BucketName::new(b)?,
                    key: ObjectKey::new(c)?,
                }
            }
        })
    }
}

/// What a write records; the backend adds the cursor and the time when it commits.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChangeEvent {
    pub op: ChangeOp,
    pub subject: Subject,
    /// The record's new version, for key-value writes; `None` for other kinds and for deletes.
    pub version: Option<Version>,
}

impl ChangeEvent {
    /// A `Put` of `subject`.
    pub fn put(subject: Subject, version: Option<Version>) -> Self {
        Self {
            op: ChangeOp::Put,
            subject,
            version,
        }
    }

    /// A `Delete` of `subject`.
    pub fn delete(subject: Subject) -> Self {
        Self {
            op: ChangeOp::Delete,
            subject,
            version: None,
        }
    }
}

/// A committed change.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Change {
    /// Its position in the tenant's log.
    pub cursor: ChangeCursor,
    /// The backend clock's `now` when the write committed.
    pub at: Timestamp,
    pub op: ChangeOp,
    pub subject: Subject,
    /// The record's new version, for key-value writes.
    pub version: Option<Version>,
}

/// A page of changes, cursors ascending. `next` is the cursor to read after for the following
/// page: the last change's, or the `after` that was asked for when the page is empty.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    pub next: ChangeCursor,
    /// The cursor of the tenant's newest change when the page was read; the reader is caught up
    /// when `next == head`.
    pub head: ChangeCursor,
}

/// Reading and trimming the change log. Appending is not a method: each write appends its own
/// change in its own atomic step.
#[async_trait]
pub trait ChangeLog: Send + Sync {
    /// Changes of `tenant` with cursors after `after`, ascending, at most `limit`.
    /// `Gone` (naming the oldest usable cursor) if changes after `after` were trimmed;
    /// `InvalidInput` naming `after` if `after` is beyond the tenant's newest change.
    async fn changes(
        &self,
        tenant: &TenantId,
        after: ChangeCursor,
        limit: Limit,
    ) -> Result<ChangePage>;

    /// Every tenant that has a log, with the cursor of its newest change, tenants ascending by
    /// raw bytes. For followers of all tenants (the event publisher).
    async fn change_heads(&self) -> Result<Vec<(TenantId, ChangeCursor)>>;

    /// Retention: for each tenant, removes the oldest changes up to (not including) its first
    /// change committed at or after `before`, and returns how many were removed. What remains of
    /// a log is always a suffix of it; the last removed cursor becomes the tenant's floor (the
    /// oldest `after` a reader may use). Cursors keep counting from where they were; a tenant's
    /// head never goes back, also when every change of it was removed.
    async fn trim_changes(&self, before: Timestamp) -> Result<u64>;
}

/// How a follower that has caught up learns that a tenant's log has grown, without asking the
/// backend in a loop of its own. The gateway implements it once (one poller of
/// [`ChangeLog::change_heads`] for every follower, woken at once by writes on its own node), so
/// a write on one gateway node reaches followers on every node.
#[async_trait]
pub trait ChangeSignal: Send + Sync {
    /// Returns once `tenant`'s head may be beyond `seen`. It may return early (the caller reads
    /// and waits again); it never misses a change that committed before it returns.
    async fn changed(&self, tenant: &TenantId, seen: ChangeCursor);
}

/// The check every backend makes before reading a page: `after` must lie between the last
/// trimmed cursor (`floor`) and the `head`.
pub fn check_cursor(after: ChangeCursor, floor: ChangeCursor, head: ChangeCursor) -> Result<()> {
    if after < floor {
        return Err(Error::Gone { oldest: floor });
    }
    if after > head {
        return Err(Error::invalid(
            "after",
            format!("cursor {after} is beyond the newest change ({head})"),
        ));
    }
    Ok(())
}

/// What a follower wants to see of a log: some kinds, subjects under a path prefix.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ChangeFilter {
    /// Only these kinds; `None` is every kind.
    pub kinds: Option<BTreeSet<ChangeKind>>,
    /// Only subjects whose [`Subject::path`] starts with this.
    pub prefix: Option<String>,
}

impl ChangeFilter {
    /// Whether `change` passes the filter.
    pub fn accepts(&self, change: &Change) -> bool {
        let kind = change.subject.kind();
        self.kinds
            .as_ref()
            .is_none_or(|kinds| kinds.contains(&kind))
            && self
                .prefix
                .as_deref()
                .is_none_or(|prefix| change.subject.path().starts_with(prefix))
    }

    /// Whether nothing can pass (an empty set of kinds).
    pub fn is_empty(&self) -> bool {
        self.kinds.as_ref().is_some_and(BTreeSet::is_empty)
    }
}

/// Most changes one [`read_filtered`] call examines, so that a filter matching little cannot
/// make one read walk a whole log; the reader continues from the page's `next`.
pub const MAX_EXAMINED: usize = 10_000;

/// Up to `limit` changes of `tenant` after `after` that pass `filter`, cursors ascending. The
/// page's `next` is the last cursor *examined* (matching or not), so a follower resumes after
/// everything it has been shown or skipped; the page is short when the log's head or
/// [`MAX_EXAMINED`] is reached first.
pub async fn read_filtered(
    log: &dyn ChangeLog,
    tenant: &TenantId,
    after: ChangeCursor,
    limit: Limit,
    filter: &ChangeFilter,
) -> Result<ChangePage> {
    let mut changes = Vec::new();
    let mut next = after;
    let mut examined = 0;
    loop {
        let page = log.changes(tenant, next, Limit::MAX).await?;
        let head = page.head;
        if page.changes.is_empty() {
            return Ok(ChangePage {
                changes,
                next,
                head,
            });
        }
        for change in page.changes {
            examined += 1;
            next = change.cursor;
            if filter.accepts(&change) {
                changes.push(change);
            }
            if changes.len() == limit.get() || examined >= MAX_EXAMINED {
                return Ok(ChangePage {
                    changes,
                    next,
                    head,
                });
            }
        }
        if next >= head {
            return Ok(ChangePage {
                changes,
                next,
                head,
            });
        }
    }
}

mod follow;
pub use follow::Follower;

#[cfg(test)]
mod tests;
