//! The change log (DESIGN.md, "Changes"; the contract on `p8fs_core::ChangeLog`): every committed
//! write appears once, with its kind, operation, subject, key-value version and commit time, at
//! the next dense cursor of its tenant; failed writes, deletes of absent or expired records, and
//! expiry append nothing; pages follow `after`/`limit` with `next` and `head`; a cursor beyond the
//! head is refused naming `after`; each tenant's log is its own; and concurrent writers are
//! logged exactly once, in an order a concurrent reader paging by cursor never skips.
//!
//! Every scenario checks the whole log after each step, so a failure names the step that
//! appended too much or too little. Retention (`trim_changes`) removes every tenant's old changes
//! on a shared server, so it is checked in [`crate::retention`], which runs exclusive; so are
//! purges and reaps.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use p8fs_core::object::plan_completion;
use p8fs_core::vector::upsert;
use p8fs_core::{
    Backend, BucketName, Change, ChangeCursor, ChangeOp, ChangePage, Clock, CollectionSpec,
    Embedding, Error, ErrorKind, JsonObject, KeyPrefix, Limit, Metric, ObjectAttributes,
    ObjectMeta, Precondition, Resource, Subject, TenantId, Version,
};

use crate::Harness;
use crate::object::{assert_kind, assert_not_found, bucket, make_bucket, okey, part_of, put_with};
use crate::support::{
    collection, fresh_tenant, key, label, limit, node, object, record, rel, spec, ttl, value,
    weight,
};

// ---------------------------------------------------------------------------------------------
// Helpers shared with the retention scenarios and the differential tests
// ---------------------------------------------------------------------------------------------

pub(crate) fn kv_s(k: &str) -> Subject {
    Subject::Kv { key: key(k) }
}

pub(crate) fn collection_s(name: &str) -> Subject {
    Subject::Collection {
        name: collection(name),
    }
}

pub(crate) fn vector_s(c: &str, id: &str) -> Subject {
    Subject::Vector {
        collection: collection(c),
        id: record(id),
    }
}

pub(crate) fn node_s(id: &str) -> Subject {
    Subject::Node { id: node(id) }
}

pub(crate) fn edge_s(src: &str, r: &str, dst: &str) -> Subject {
    Subject::Edge {
        src: node(src),
        rel: rel(r),
        dst: node(dst),
    }
}

pub(crate) fn bucket_s(name: &str) -> Subject {
    Subject::Bucket { name: bucket(name) }
}

pub(crate) fn object_s(b: &str, k: &str) -> Subject {
    Subject::Object {
        bucket: bucket(b),
        key: okey(k),
    }
}

/// One page of `tenant`'s log, checked for what every page must be: cursors ascending and dense
/// from `after + 1`, at most `limit` of them, `next` the last cursor (or `after` when empty) and
/// no later than `head`.
pub(crate) async fn page(
    b: &dyn Backend,
    tenant: &TenantId,
    after: u64,
    limit: Limit,
) -> p8fs_core::Result<ChangePage> {
    let page = b.changes(tenant, ChangeCursor(after), limit).await?;
    let cursors: Vec<u64> = page.changes.iter().map(|c| c.cursor.0).collect();
    let dense: Vec<u64> = (after + 1..).take(cursors.len()).collect();
    assert_eq!(
        cursors, dense,
        "a page after {after} holds the next cursors, in order, with no gap"
    );
    assert!(
        page.changes.len() <= limit.get(),
        "a page with limit {} held {} changes",
        limit.get(),
        page.changes.len()
    );
    assert_eq!(
        page.next.0,
        cursors.last().copied().unwrap_or(after),
        "next is the last cursor of the page, or `after` for an empty page"
    );
    assert!(
        page.next <= page.head,
        "next ({}) is beyond the head ({})",
        page.next,
        page.head
    );
    Ok(page)
}

/// The whole log of `tenant` from its start, read in pages of at most `size`, and its head.
pub(crate) async fn log_of(b: &dyn Backend, tenant: &TenantId, size: u64) -> (Vec<Change>, u64) {
    let mut changes = Vec::new();
    let mut after = 0;
    loop {
        let read = page(b, tenant, after, limit(size))
            .await
            .expect("the log can be read from its start");
        let empty = read.changes.is_empty();
        changes.extend(read.changes);
        after = read.next.0;
        if after == read.head.0 {
            return (changes, read.head.0);
        }
        assert!(
            !empty,
            "a page after {after} was empty below the head {}",
            read.head
        );
    }
}

/// The log a scenario expects of one tenant, built step by step.
pub(crate) struct Expected {
    tenant: TenantId,
    changes: Vec<Change>,
}

impl Expected {
    pub(crate) fn new(tenant: &TenantId) -> Self {
        Self {
            tenant: tenant.clone(),
            changes: Vec::new(),
        }
    }

    fn push(&mut self, h: &Harness, op: ChangeOp, subject: Subject, version: Option<Version>) {
        self.changes.push(Change {
            cursor: ChangeCursor(self.changes.len() as u64 + 1),
            at: h.clock.now(),
            op,
            subject,
            version,
        });
    }

    /// A `Put` committed now; `version` for key-value writes.
    pub(crate) fn put(&mut self, h: &Harness, subject: Subject, version: Option<Version>) {
        self.push(h, ChangeOp::Put, subject, version);
    }

    /// A `Delete` committed now.
    pub(crate) fn delete(&mut self, h: &Harness, subject: Subject) {
        self.push(h, ChangeOp::Delete, subject, None);
    }

    /// The expected changes after `cursor`.
    pub(crate) fn after(&self, cursor: u64) -> &[Change] {
        &self.changes[cursor as usize..]
    }

    pub(crate) fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub(crate) fn head(&self) -> u64 {
        self.changes.len() as u64
    }

    /// Asserts that the tenant's log is exactly what is expected, read whole and in pages of 2.
    pub(crate) async fn check(&self, h: &Harness, after: &str) {
        let (whole, head) = log_of(h.b(), &self.tenant, 1000).await;
        assert_eq!(
            whole, self.changes,
            "the log after {after}: the backend's (left), the expected (right)"
        );
        assert_eq!(head, self.head(), "the head after {after}");
        let (paged, _) = log_of(h.b(), &self.tenant, 2).await;
        assert_eq!(paged, whole, "the log after {after}, read in pages of 2");
    }
}

fn assert_err<T: Debug>(result: p8fs_core::Result<T>, kind: ErrorKind, what: &str) {
    assert_kind(result, kind, what);
}

/// Asserts that `result` is `InvalidInput` naming `after`.
pub(crate) fn assert_bad_after<T: Debug>(result: p8fs_core::Result<T>, what: &str) {
    match result {
        Err(Error::InvalidInput { field, .. }) if field == "after" => {}
        other => panic!("{what}: expected InvalidInput naming after, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// What each write appends
// ---------------------------------------------------------------------------------------------

pub async fn kv_writes_are_logged(h: &Harness) {
    let (b, t) = (h.b(), &h.tenant);
    let mut log = Expected::new(t);
    log.check(h, "nothing was written").await;

    let v = b
        .put(t, &key("a"), &value(json!(1)), None)
        .await
        .expect("put");
    log.put(h, kv_s("a"), Some(v));
    log.check(h, "put").await;

    h.advance(1);
    let vb = b
        .put_if_absent(t, &key("b"), &value(json!("b")), None)
        .await
        .expect("put_if_absent");
    log.put(h, kv_s("b"), Some(vb));
    log.check(h, "put_if_absent of a new key").await;

    h.advance(1);
    assert_err(
        b.put_if_absent(t, &key("a"), &value(json!(2)), None).await,
        ErrorKind::AlreadyExists,
        "put_if_absent of a visible key",
    );
    log.check(h, "a put_if_absent that found a visible key")
        .await;

    let v2 = b
        .compare_and_swap(t, &key("a"), v, &value(json!(3)), None)
        .await
        .expect("compare_and_swap");
    log.put(h, kv_s("a"), Some(v2));
    log.check(h, "compare_and_swap").await;

    assert_err(
        b.compare_and_swap(t, &key("a"), v, &value(json!(4)), None)
            .await,
        ErrorKind::Conflict,
        "compare_and_swap at a stale version",
    );
    assert_not_found(
        b.compare_and_swap(t, &key("missing"), v, &value(json!(4)), None)
            .await,
        Resource::Key,
        "compare_and_swap of a missing key",
    );
    log.check(h, "failed compare_and_swaps").await;

    h.advance(1);
    assert!(b.delete(t, &key("b")).await.expect("delete"));
    log.delete(h, kv_s("b"));
    log.check(h, "delete of a visible key").await;
    assert!(!b.delete(t, &key("b")).await.expect("delete"));
    assert!(!b.delete(t, &key("never")).await.expect("delete"));
    log.check(h, "deletes of absent keys").await;

    // A put over a deleted key, a key with a ttl, and what its expiry does: nothing.
    h.advance(1);
    let vb2 = b
        .put(t, &key("b"), &value(json!([])), None)
        .await
        .expect("put");
    log.put(h, kv_s("b"), Some(vb2));
    let ve = b
        .put(t, &key("e"), &value(json!(null)), ttl(10))
        .await
        .expect("put");
    log.put(h, kv_s("e"), Some(ve));
    log.check(h, "puts with and without a ttl").await;
    h.advance(10);
    log.check(h, "the key's expiry").await;
    assert!(!b.delete(t, &key("e")).await.expect("delete"));
    assert_not_found(
        b.compare_and_swap(t, &key("e"), ve, &value(json!(1)), None)
            .await,
        Resource::Key,
        "compare_and_swap of an expired key",
    );
    log.check(h, "a delete and a compare_and_swap of an expired key")
        .await;
    let ve2 = b
        .put_if_absent(t, &key("e"), &value(json!(5)), None)
        .await
        .expect("put_if_absent over an expired key");
    log.put(h, kv_s("e"), Some(ve2));
    log.check(h, "put_if_absent over an expired key").await;

    // Reads append nothing.
    b.get(t, &key("a")).await.expect("get");
    b.scan(t, &KeyPrefix::all(), None, Limit::MAX)
        .await
        .expect("scan");
    log.check(h, "reads").await;
}

pub async fn vector_writes_are_logged(h: &Harness) {
    let (b, t) = (h.b(), &h.tenant);
    let c = collection("docs");
    let mut log = Expected::new(t);
    let meta = JsonObject::empty();

    assert!(
        b.create_collection(t, &spec("docs", 2, Metric::L2))
            .await
            .expect("create_collection")
    );
    log.put(h, collection_s("docs"), None);
    log.check(h, "create_collection").await;
    h.advance(1);
    assert!(
        !b.create_collection(t, &spec("docs", 2, Metric::L2))
            .await
            .expect("create_collection")
    );
    assert_err(
        b.create_collection(t, &spec("docs", 3, Metric::L2)).await,
        ErrorKind::Conflict,
        "create_collection with another spec",
    );
    log.check(h, "a repeated and a conflicting create_collection")
        .await;

    upsert(b, t, &c, &record("r1"), vec![1.0, 0.0], &meta, None)
        .await
        .expect("upsert");
    log.put(h, vector_s("docs", "r1"), None);
    h.advance(1);
    upsert(b, t, &c, &record("r1"), vec![0.0, 1.0], &meta, None)
        .await
        .expect("upsert");
    log.put(h, vector_s("docs", "r1"), None);
    log.check(h, "an upsert and its replacement").await;

    let other: CollectionSpec = spec("docs", 3, Metric::L2);
    let misfit = Embedding::new("vector", &other, vec![1.0, 2.0, 3.0]).expect("valid for its spec");
    assert_err(
        b.upsert_vector(t, &c, &record("r9"), &misfit, &meta, None)
            .await,
        ErrorKind::Conflict,
        "an upsert that does not fit the collection",
    );
    assert_not_found(
        upsert(
            b,
            t,
            &collection("none"),
            &record("r1"),
            vec![1.0, 0.0],
            &meta,
            None,
        )
        .await,
        Resource::Collection,
        "an upsert into a missing collection",
    );
    log.check(h, "failed upserts").await;

    upsert(b, t, &c, &record("r2"), vec![1.0, 1.0], &meta, ttl(5))
        .await
        .expect("upsert");
    log.put(h, vector_s("docs", "r2"), None);
    h.advance(5);
    log.check(h, "an upsert with a ttl, and its expiry").await;
    assert!(
        !b.delete_vector(t, &c, &record("r2"))
            .await
            .expect("delete_vector")
    );
    log.check(h, "delete_vector of an expired record").await;

    assert!(
        b.delete_vector(t, &c, &record("r1"))
            .await
            .expect("delete_vector")
    );
    log.delete(h, vector_s("docs", "r1"));
    assert!(
        !b.delete_vector(t, &c, &record("r1"))
            .await
            .expect("delete_vector")
    );
    assert_not_found(
        b.delete_vector(t, &collection("none"), &record("r1")).await,
        Resource::Collection,
        "delete_vector in a missing collection",
    );
    log.check(
        h,
        "delete_vector of a visible, an absent and a missing collection's record",
    )
    .await;

    h.advance(1);
    for id in ["r3", "r4"] {
        upsert(b, t, &c, &record(id), vec![2.0, 0.0], &meta, None)
            .await
            .expect("upsert");
        log.put(h, vector_s("docs", id), None);
    }
    h.advance(1);
    assert!(b.drop_collection(t, &c).await.expect("drop_collection"));
    log.delete(h, collection_s("docs"));
    log.check(h, "drop_collection: one change, none per record")
        .await;
    assert!(!b.drop_collection(t, &c).await.expect("drop_collection"));
    log.check(h, "drop_collection of a missing collection")
        .await;
}

pub async fn graph_writes_are_logged(h: &Harness) {
    let (b, t) = (h.b(), &h.tenant);
    let props = &JsonObject::empty();
    let mut log = Expected::new(t);
    let put_node = |id: &'static str, ttl_ms: Option<i64>| async move {
        b.put_node(t, &node(id), &label("thing"), props, ttl_ms.and_then(ttl))
            .await
    };
    let put_edge = |src: &'static str, r: &'static str, dst: &'static str, ttl_ms: Option<i64>| async move {
        b.put_edge(
            t,
            &node(src),
            &rel(r),
            &node(dst),
            weight(1.0),
            props,
            ttl_ms.and_then(ttl),
        )
        .await
    };

    // "Z" sorts before lower case as bytes (not under a case-insensitive collation), "é" after.
    for id in ["b", "a", "c", "Z", "é"] {
        put_node(id, None).await.expect("put_node");
        log.put(h, node_s(id), None);
    }
    h.advance(1);
    put_node("b", None).await.expect("put_node");
    log.put(h, node_s("b"), None);
    put_node("gone", Some(5)).await.expect("put_node");
    log.put(h, node_s("gone"), None);
    log.check(h, "put_node").await;

    // Edges around b, written out of order.
    h.advance(1);
    for (src, r, dst) in [
        ("c", "a", "b"),
        ("b", "z", "a"),
        ("b", "self", "b"),
        ("é", "r", "b"),
        ("a", "x", "b"),
        ("b", "b", "c"),
        ("Z", "r", "b"),
        ("b", "r", "gone"),
        ("c", "r", "a"),
    ] {
        put_edge(src, r, dst, None).await.expect("put_edge");
        log.put(h, edge_s(src, r, dst), None);
    }
    put_edge("a", "y", "b", Some(5)).await.expect("put_edge");
    log.put(h, edge_s("a", "y", "b"), None);
    log.check(h, "put_edge").await;
    assert_not_found(
        put_edge("a", "r", "missing", None).await,
        Resource::Node,
        "put_edge to a missing node",
    );
    log.check(h, "put_edge to a missing node").await;

    // The edge a -y-> b, the node gone and so the edge b -r-> gone expire.
    h.advance(5);
    log.check(h, "expiry").await;
    assert_not_found(
        put_edge("a", "r", "gone", None).await,
        Resource::Node,
        "put_edge to an expired node",
    );
    assert!(
        !b.delete_edge(t, &node("a"), &rel("y"), &node("b"))
            .await
            .expect("delete_edge")
    );
    log.check(
        h,
        "put_edge to an expired node, delete_edge of an expired edge",
    )
    .await;

    h.advance(1);
    assert!(
        b.delete_edge(t, &node("c"), &rel("r"), &node("a"))
            .await
            .expect("delete_edge")
    );
    log.delete(h, edge_s("c", "r", "a"));
    assert!(
        !b.delete_edge(t, &node("c"), &rel("r"), &node("a"))
            .await
            .expect("delete_edge")
    );
    log.check(h, "delete_edge of a visible and of an absent edge")
        .await;

    // Deleting b: its Delete, then one per visible edge it removed, ordered by (src, rel, dst)
    // as raw bytes; the expired edge a -y-> b and the edge to the expired node are not visible.
    h.advance(1);
    assert!(b.delete_node(t, &node("b")).await.expect("delete_node"));
    log.delete(h, node_s("b"));
    for (src, r, dst) in [
        ("Z", "r", "b"),
        ("a", "x", "b"),
        ("b", "b", "c"),
        ("b", "self", "b"),
        ("b", "z", "a"),
        ("c", "a", "b"),
        ("é", "r", "b"),
    ] {
        log.delete(h, edge_s(src, r, dst));
    }
    log.check(h, "delete_node with its edges").await;

    assert!(!b.delete_node(t, &node("b")).await.expect("delete_node"));
    assert!(!b.delete_node(t, &node("gone")).await.expect("delete_node"));
    assert!(!b.delete_node(t, &node("never")).await.expect("delete_node"));
    log.check(h, "delete_node of a deleted, an expired and a missing node")
        .await;

    // A node put again has no edges: deleting it again appends its Delete alone.
    h.advance(1);
    put_node("b", None).await.expect("put_node");
    log.put(h, node_s("b"), None);
    assert!(b.delete_node(t, &node("b")).await.expect("delete_node"));
    log.delete(h, node_s("b"));
    log.check(h, "a re-created node deleted again").await;
}

/// The object a completion of `upload` from all its parts commits, modified now.
async fn completed(h: &Harness, b: &BucketName, upload: &p8fs_core::UploadInfo) -> ObjectMeta {
    let parts = h
        .b()
        .list_parts(&h.tenant, b, upload.id, 0, Limit::MAX)
        .await
        .expect("list_parts");
    let requested: Vec<(u32, String)> = parts.iter().map(|p| (p.number, p.etag.clone())).collect();
    let plan = plan_completion(&requested, &parts).expect("a valid part list");
    ObjectMeta {
        key: upload.key.clone(),
        size: plan.size,
        etag: plan.etag,
        last_modified: h.clock.now(),
        expires_at: upload.expires_at,
        attributes: upload.attributes.clone(),
        segments: plan.segments,
    }
}

/// Starts an upload of `key` in `pics` with one small part.
async fn upload_with_a_part(h: &Harness, key: &str) -> p8fs_core::UploadInfo {
    let (s, t, b) = (h.b(), &h.tenant, &bucket("pics"));
    let upload = s
        .create_upload(t, b, &okey(key), &ObjectAttributes::default(), None)
        .await
        .expect("create_upload");
    let written = crate::object::write_data(h, t, b"a part").await;
    s.put_part(t, b, upload.id, &part_of(h, 1, &written))
        .await
        .expect("put_part");
    upload
}

pub async fn object_writes_are_logged(h: &Harness) {
    let (s, t) = (h.b(), &h.tenant);
    let pics = bucket("pics");
    let mut log = Expected::new(t);
    let put = |key: &'static str, expires_at: Option<i64>, condition: Precondition| async move {
        put_with(h, t, "pics", key, b"content", expires_at, &condition).await
    };

    make_bucket(h, t, "pics").await;
    log.put(h, bucket_s("pics"), None);
    assert_err(
        s.create_bucket(t, &pics).await,
        ErrorKind::AlreadyExists,
        "create_bucket of an existing bucket",
    );
    log.check(h, "create_bucket, then again").await;

    h.advance(1);
    let first = put("a.txt", None, Precondition::None)
        .await
        .expect("put_object");
    log.put(h, object_s("pics", "a.txt"), None);
    log.check(h, "put_object").await;
    assert_err(
        put("a.txt", None, Precondition::IfAbsent).await,
        ErrorKind::Conflict,
        "put_object if absent over a visible object",
    );
    assert_err(
        put("a.txt", None, Precondition::IfEtag("0".repeat(32))).await,
        ErrorKind::Conflict,
        "put_object if the ETag matches another",
    );
    assert_not_found(
        put_with(h, t, "none", "a.txt", b"x", None, &Precondition::None).await,
        Resource::Bucket,
        "put_object into a missing bucket",
    );
    log.check(h, "put_objects whose precondition or bucket fails")
        .await;
    h.advance(1);
    put("a.txt", None, Precondition::IfEtag(first.etag.clone()))
        .await
        .expect("put_object if the ETag matches");
    log.put(h, object_s("pics", "a.txt"), None);
    log.check(h, "a replacing put_object").await;

    let expiry = h.clock.now() + 5;
    put("tmp", Some(expiry), Precondition::None)
        .await
        .expect("put_object");
    log.put(h, object_s("pics", "tmp"), None);
    h.advance(5);
    log.check(h, "a put_object with an expiry, and the expiry")
        .await;
    assert!(
        !s.delete_object(t, &pics, &okey("tmp"))
            .await
            .expect("delete_object")
    );
    log.check(h, "delete_object of an expired object").await;

    h.advance(1);
    assert!(
        s.delete_object(t, &pics, &okey("a.txt"))
            .await
            .expect("delete_object")
    );
    log.delete(h, object_s("pics", "a.txt"));
    assert!(
        !s.delete_object(t, &pics, &okey("a.txt"))
            .await
            .expect("delete_object")
    );
    assert_not_found(
        s.delete_object(t, &bucket("none"), &okey("a.txt")).await,
        Resource::Bucket,
        "delete_object in a missing bucket",
    );
    log.check(
        h,
        "delete_object of a visible, an absent and a missing bucket's object",
    )
    .await;

    // Multipart: nothing until the completion, which appends one object Put.
    h.advance(1);
    let upload = upload_with_a_part(h, "big").await;
    log.check(h, "create_upload and put_part").await;
    h.advance(1);
    let meta = completed(h, &pics, &upload).await;
    s.complete_upload(t, &pics, upload.id, &meta, &Precondition::None)
        .await
        .expect("complete_upload");
    log.put(h, object_s("pics", "big"), None);
    log.check(h, "complete_upload").await;
    assert_not_found(
        s.complete_upload(t, &pics, upload.id, &meta, &Precondition::None)
            .await,
        Resource::Upload,
        "completing twice",
    );
    let second = upload_with_a_part(h, "big").await;
    let meta = completed(h, &pics, &second).await;
    assert_err(
        s.complete_upload(t, &pics, second.id, &meta, &Precondition::IfAbsent)
            .await,
        ErrorKind::Conflict,
        "complete_upload if absent over a visible object",
    );
    s.abort_upload(t, &pics, second.id)
        .await
        .expect("abort_upload");
    log.check(h, "a failed completion and an abort").await;

    assert_err(
        s.delete_bucket(t, &pics).await,
        ErrorKind::Conflict,
        "delete_bucket of a non-empty bucket",
    );
    log.check(h, "delete_bucket of a non-empty bucket").await;
    h.advance(1);
    assert!(
        s.delete_object(t, &pics, &okey("big"))
            .await
            .expect("delete_object")
    );
    log.delete(h, object_s("pics", "big"));
    // An upload left open goes with its bucket, appending nothing of its own.
    upload_with_a_part(h, "open").await;
    s.delete_bucket(t, &pics).await.expect("delete_bucket");
    log.delete(h, bucket_s("pics"));
    log.check(h, "delete_object, then delete_bucket").await;
    assert_not_found(
        s.delete_bucket(t, &pics).await,
        Resource::Bucket,
        "delete_bucket of a missing bucket",
    );
    log.check(h, "delete_bucket of a missing bucket").await;
}

/// Records of every kind written with a ttl: their Puts are logged, their expiry is not, and
/// neither is any read of them.
pub async fn expiry_appends_nothing(h: &Harness) {
    let (b, t) = (h.b(), &h.tenant);
    let mut log = Expected::new(t);
    let props = JsonObject::empty();

    let v = b
        .put(t, &key("k"), &value(json!(1)), ttl(10))
        .await
        .expect("put");
    log.put(h, kv_s("k"), Some(v));
    b.create_collection(t, &spec("c", 2, Metric::Cosine))
        .await
        .expect("create_collection");
    log.put(h, collection_s("c"), None);
    upsert(
        b,
        t,
        &collection("c"),
        &record("r"),
        vec![1.0, 2.0],
        &object(json!({"x": 1})),
        ttl(10),
    )
    .await
    .expect("upsert");
    log.put(h, vector_s("c", "r"), None);
    for id in ["n", "m"] {
        b.put_node(t, &node(id), &label("l"), &props, ttl(10))
            .await
            .expect("put_node");
        log.put(h, node_s(id), None);
    }
    b.put_edge(
        t,
        &node("n"),
        &rel("r"),
        &node("m"),
        weight(1.0),
        &props,
        ttl(10),
    )
    .await
    .expect("put_edge");
    log.put(h, edge_s("n", "r", "m"), None);
    make_bucket(h, t, "bkt").await;
    log.put(h, bucket_s("bkt"), None);
    let expiry = h.clock.now() + 10;
    put_with(h, t, "bkt", "o", b"x", Some(expiry), &Precondition::None)
        .await
        .expect("put_object");
    log.put(h, object_s("bkt", "o"), None);
    log.check(h, "writes with a ttl").await;

    h.advance(9);
    log.check(h, "time passing").await;
    h.advance(1);
    log.check(h, "every record's expiry").await;
    assert_eq!(b.get(t, &key("k")).await.expect("get"), None);
    assert_eq!(b.get_node(t, &node("n")).await.expect("get_node"), None);
    assert_eq!(
        b.get_vector(t, &collection("c"), &record("r"))
            .await
            .expect("get_vector"),
        None
    );
    h.advance(1000);
    log.check(h, "reads of expired records, and more time")
        .await;
}

// ---------------------------------------------------------------------------------------------
// Cursors, pages and tenants
// ---------------------------------------------------------------------------------------------

pub async fn cursors_are_dense_and_page(h: &Harness) {
    let (b, t) = (h.b(), &h.tenant);
    let mut log = Expected::new(t);
    for i in 0..7 {
        let k = format!("k{i}");
        let v = b
            .put(t, &key(&k), &value(json!(i)), None)
            .await
            .expect("put");
        log.put(h, kv_s(&k), Some(v));
        h.advance(1);
    }
    log.check(h, "seven puts").await;

    let cursors = |p: &ChangePage| p.changes.iter().map(|c| c.cursor.0).collect::<Vec<_>>();
    for (after, size, expected, next) in [
        (0, 3, vec![1, 2, 3], 3),
        (3, 3, vec![4, 5, 6], 6),
        (6, 3, vec![7], 7),
        (7, 3, vec![], 7),
        (2, 1, vec![3], 3),
        (0, 1000, (1..=7).collect(), 7),
    ] {
        let got = page(b, t, after, limit(size)).await.expect("changes");
        assert_eq!(
            (cursors(&got), got.next.0, got.head.0),
            (expected, next, 7),
            "the page after {after} with limit {size}: cursors, next, head"
        );
        assert_eq!(
            got.changes,
            log.changes[after as usize..next as usize],
            "the changes of the page after {after} with limit {size}"
        );
    }
    for after in [8, 9, u64::MAX] {
        assert_bad_after(
            b.changes(t, ChangeCursor(after), limit(10)).await,
            &format!("a cursor ({after}) beyond the head (7)"),
        );
    }

    // The head moves with the next write, and a reader at the old head reads just it.
    let v = b
        .put(t, &key("k7"), &value(json!(7)), None)
        .await
        .expect("put");
    log.put(h, kv_s("k7"), Some(v));
    let got = page(b, t, 7, limit(10)).await.expect("changes");
    assert_eq!(
        (got.changes.as_slice(), got.next.0, got.head.0),
        (&log.changes[7..], 8, 8),
        "the page after the old head"
    );
}

pub async fn logs_are_per_tenant(h: &Harness) {
    let b = h.b();
    let fresh = fresh_tenant();
    // A tenant whose id extends this one's: a prefix match on tenants would mix them up.
    let longer = TenantId::new(format!("{}-b", h.tenant)).expect("valid tenant");

    let empty = page(b, &fresh, 0, limit(10)).await.expect("changes");
    assert_eq!(
        (empty.changes.len(), empty.next.0, empty.head.0),
        (0, 0, 0),
        "a tenant that never wrote reads an empty page at head 0"
    );
    assert_bad_after(
        b.changes(&fresh, ChangeCursor(1), limit(10)).await,
        "a cursor beyond a fresh tenant's head",
    );

    // The same keys in three tenants, interleaved.
    let mut logs: BTreeMap<&str, Expected> = BTreeMap::new();
    let tenants = [&h.tenant, &h.other, &longer];
    for (i, tenant) in tenants.iter().enumerate() {
        logs.insert(tenant.as_str(), Expected::new(tenant));
        for j in 0..=i {
            let v = b
                .put(tenant, &key("k"), &value(json!(j)), None)
                .await
                .expect("put");
            logs.get_mut(tenant.as_str())
                .expect("just inserted")
                .put(h, kv_s("k"), Some(v));
            h.advance(1);
        }
    }
    b.put_node(
        &h.tenant,
        &node("k"),
        &label("l"),
        &JsonObject::empty(),
        None,
    )
    .await
    .expect("put_node");
    logs.get_mut(h.tenant.as_str())
        .expect("inserted")
        .put(h, node_s("k"), None);
    assert!(b.delete(&h.other, &key("k")).await.expect("delete"));
    logs.get_mut(h.other.as_str())
        .expect("inserted")
        .delete(h, kv_s("k"));
    for log in logs.values() {
        log.check(h, "writes in three tenants").await;
    }
    let again = page(b, &fresh, 0, limit(10)).await.expect("changes");
    assert_eq!(
        (again.changes.len(), again.head.0),
        (0, 0),
        "other tenants' writes never show in a tenant's log"
    );

    // A cursor valid in other tenants' logs is beyond this one's head.
    assert_bad_after(
        b.changes(&h.tenant, ChangeCursor(3), limit(10)).await,
        "a cursor beyond this tenant's head (2), within the others' (3)",
    );

    // Heads: only tenants with a log, each its own, in raw byte order. Other cases' tenants on
    // a shared server are left out of the comparison.
    let ours = [&h.tenant, &h.other, &longer, &fresh];
    let heads: Vec<(TenantId, ChangeCursor)> = b
        .change_heads()
        .await
        .expect("change_heads")
        .into_iter()
        .filter(|(tenant, _)| ours.contains(&tenant))
        .collect();
    let mut expected: Vec<(TenantId, ChangeCursor)> = logs
        .values()
        .map(|log| (log.tenant.clone(), ChangeCursor(log.head())))
        .collect();
    expected.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    assert_eq!(
        heads, expected,
        "change_heads of this case's tenants: one per tenant with a log, by raw bytes"
    );
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

/// What a committed write must show as in the log, comparable across orders.
fn entry(subject: &Subject, version: Option<Version>) -> String {
    format!("{subject:?} {version:?}")
}

pub async fn concurrent_writers_are_logged_once(h: &Harness) {
    const WRITERS: usize = 4;
    const WRITES: usize = 24;
    let t = &h.tenant;
    let counter = h
        .b()
        .put(t, &key("counter"), &value(json!(0)), None)
        .await
        .expect("put");
    let mut expected = vec![entry(&kv_s("counter"), Some(counter))];

    // A reader paging by cursor while the writers run: every page must continue exactly where
    // the previous one ended, so a change committed late under an earlier cursor cannot be
    // skipped.
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (backend, tenant, done) = (h.backend.clone(), t.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen: Vec<Change> = Vec::new();
            let mut after = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let read = page(backend.as_ref(), &tenant, after, limit(7))
                    .await
                    .expect("changes while writes are in flight");
                after = read.next.0;
                seen.extend(read.changes);
                if finished && after == read.head.0 {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (backend, tenant) = (h.backend.clone(), t.clone());
        writers.push(tokio::spawn(async move {
            let b = backend.as_ref();
            let mut committed = Vec::new();
            for i in 0..WRITES {
                match i % 4 {
                    0 => {
                        let k = format!("w{w}/{i}");
                        let v = b
                            .put(&tenant, &key(&k), &value(json!(i)), None)
                            .await
                            .expect("put");
                        committed.push(entry(&kv_s(&k), Some(v)));
                    }
                    1 => {
                        // Every writer tries the same keys: one wins each.
                        let k = format!("shared/{}", i / 4);
                        match b
                            .put_if_absent(&tenant, &key(&k), &value(json!(w)), None)
                            .await
                        {
                            Ok(v) => committed.push(entry(&kv_s(&k), Some(v))),
                            Err(Error::AlreadyExists { .. }) => {}
                            Err(e) => panic!("put_if_absent: {e}"),
                        }
                    }
                    2 => {
                        let id = format!("n{w}-{i}");
                        b.put_node(&tenant, &node(&id), &label("l"), &JsonObject::empty(), None)
                            .await
                            .expect("put_node");
                        committed.push(entry(&node_s(&id), None));
                    }
                    _ => {
                        // Compare-and-swap races on one key: the losers append nothing.
                        let current = b
                            .get(&tenant, &key("counter"))
                            .await
                            .expect("get")
                            .expect("the counter exists");
                        match b
                            .compare_and_swap(
                                &tenant,
                                &key("counter"),
                                current.version,
                                &value(json!(w)),
                                None,
                            )
                            .await
                        {
                            Ok(v) => committed.push(entry(&kv_s("counter"), Some(v))),
                            Err(Error::Conflict { .. }) => {}
                            Err(e) => panic!("compare_and_swap: {e}"),
                        }
                    }
                }
            }
            committed
        }));
    }
    for writer in writers {
        expected.extend(writer.await.expect("a writer finishes"));
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.expect("the reader finishes");

    let (log, head) = log_of(h.b(), t, 1000).await;
    assert_eq!(
        head,
        expected.len() as u64,
        "the head is the number of committed writes"
    );
    assert_eq!(
        seen, log,
        "the concurrent reader saw exactly the log, in order"
    );
    for (i, change) in log.iter().enumerate() {
        assert_eq!(change.cursor.0, i as u64 + 1, "cursors are dense from 1");
        assert_eq!(
            (change.op, change.at),
            (ChangeOp::Put, h.clock.now()),
            "change {}",
            change.cursor
        );
    }
    let mut logged: Vec<String> = log.iter().map(|c| entry(&c.subject, c.version)).collect();
    logged.sort();
    expected.sort();
    assert_eq!(
        logged, expected,
        "every committed write exactly once (left: the log, right: the writes that returned Ok)"
    );
}
