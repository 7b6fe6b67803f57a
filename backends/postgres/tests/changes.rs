//! The change log on a real PostgreSQL server: what each write appends (and what a failed one
//! does not), dense cursors in commit order while many writers of one tenant race a reader that
//! pages behind them, `delete_node` racing `delete_edge` (each edge's `Delete` once), and
//! retention (a suffix kept, `Gone` naming the floor, heads that never go back).
//!
//! Retention works across tenants, so each test runs in a database of its own, made from the
//! server's template `p8fs_template` on the server of `P8FS_TEST_POSTGRES_URL` (a missing
//! variable fails the test) and dropped at the end.

mod common;
use common::drop_scratch_database;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;
use sqlx::Connection;

use p8fs_backend_postgres::{PgBackend, PgOptions};
use p8fs_core::object::ObjectWriter;
use p8fs_core::{
    BucketName, Change, ChangeCursor, ChangeLog, ChangeOp, CollectionName, CollectionSpec,
    Embedding, Error, ErrorKind, GraphStore, JsonObject, JsonValue, Key, KvStore, Label, Limit,
    ManualClock, Metric, NodeId, ObjectAttributes, ObjectKey, ObjectMeta, ObjectStore, PartRecord,
    Precondition, RecordId, Rel, Subject, TenantId, Ttl, VectorStore, Version, Weight,
};

const START: i64 = 1_700_000_000_000;

/// A database of the test's own, dropped by [`Scratch::drop_database`].
struct Scratch {
    admin: sqlx::PgConnection,
    database: String,
    backend: PgBackend,
    clock: Arc<ManualClock>,
}

fn unique(tag: &str) -> String {
    use std::hash::BuildHasher;
    let n = std::collections::hash_map::RandomState::new().hash_one(tag);
    format!("{n:016x}")
}

impl Scratch {
    async fn new(tag: &str) -> Self {
        let base = std::env::var("P8FS_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!("set P8FS_TEST_POSTGRES_URL (scripts/services/postgres.sh url): these tests need a server")
        });
        let (server, _) = base.rsplit_once('/').expect("a URL with a database");
        let database = format!("p8fs_changes_{tag}_{}", unique(tag));
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .expect("connect to P8FS_TEST_POSTGRES_URL");
        sqlx::raw_sql(&format!(
            "CREATE DATABASE {database} TEMPLATE p8fs_template"
        ))
        .execute(&mut admin)
        .await
        .expect("create a database from p8fs_template");
        let clock = Arc::new(ManualClock::new(START));
        let options = PgOptions {
            max_connections: 24,
            ..PgOptions::default()
        };
        let backend = PgBackend::connect(&format!("{server}/{database}"), clock.clone(), options)
            .await
            .expect("connect to the test's database");
        Self {
            admin,
            database,
            backend,
            clock,
        }
    }

    async fn drop_database(mut self) {
        self.backend.close().await;
        drop_scratch_database(&mut self.admin, &self.database).await;
    }
}

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("tenant")
}

fn key(s: &str) -> Key {
    Key::new(s).expect("key")
}

fn node(s: &str) -> NodeId {
    NodeId::new(s).expect("node id")
}

fn rel(s: &str) -> Rel {
    Rel::new(s).expect("rel")
}

fn value(v: serde_json::Value) -> JsonValue {
    JsonValue::new(v).expect("value")
}

fn object(v: serde_json::Value) -> JsonObject {
    JsonObject::new("properties", v).expect("object")
}

fn limit(n: u64) -> Limit {
    Limit::new(n).expect("limit")
}

fn label() -> Label {
    Label::new("thing").expect("label")
}

fn weight() -> Weight {
    Weight::new(1.0).expect("weight")
}

/// Every change of `tenant` after `after`, read in pages of `page`.
async fn read_all(log: &dyn ChangeLog, tenant: &TenantId, after: u64, page: u64) -> Vec<Change> {
    let mut out = Vec::new();
    let mut cursor = ChangeCursor(after);
    loop {
        let read = log
            .changes(tenant, cursor, limit(page))
            .await
            .expect("read changes");
        out.extend(read.changes);
        if read.next == read.head {
            return out;
        }
        cursor = read.next;
    }
}

/// What a change says, without its cursor and time.
fn summary(change: &Change) -> (ChangeOp, Subject, Option<Version>) {
    (change.op, change.subject.clone(), change.version)
}

fn put(subject: Subject, version: Option<Version>) -> (ChangeOp, Subject, Option<Version>) {
    (ChangeOp::Put, subject, version)
}

fn delete(subject: Subject) -> (ChangeOp, Subject, Option<Version>) {
    (ChangeOp::Delete, subject, None)
}

fn kv(k: &str) -> Subject {
    Subject::Kv { key: key(k) }
}

fn edge(src: &str, r: &str, dst: &str) -> Subject {
    Subject::Edge {
        src: node(src),
        rel: rel(r),
        dst: node(dst),
    }
}

/// Writes `body` as a pending blob and returns the metadata that commits it at `key`.
async fn write_object(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    key: &ObjectKey,
    body: &[u8],
) -> ObjectMeta {
    let mut writer = ObjectWriter::begin(store, tenant, u64::MAX)
        .await
        .expect("begin data");
    writer.write(body).await.expect("write");
    let written = writer.finish().await.expect("finish");
    ObjectMeta {
        key: key.clone(),
        size: written.size,
        segments: vec![written.segment()],
        etag: written.md5,
        last_modified: START,
        expires_at: None,
        attributes: ObjectAttributes::default(),
    }
}

fn assert_dense(changes: &[Change], first: u64) {
    for (change, expected) in changes.iter().zip(first..) {
        assert_eq!(change.cursor, ChangeCursor(expected), "{changes:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_write_appends_its_change_and_failed_writes_append_nothing() {
    let scratch = Scratch::new("writes").await;
    let b = &scratch.backend;
    let t = tenant("writes");
    let mut expected = Vec::new();

    // Key-value.
    let v1 = b.put(&t, &key("a"), &value(json!(1)), None).await.unwrap();
    expected.push(put(kv("a"), Some(v1)));
    let err = b
        .put_if_absent(&t, &key("a"), &value(json!(2)), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let err = b
        .compare_and_swap(&t, &key("a"), Version(v1.0 + 1000), &value(json!(3)), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let err = b
        .compare_and_swap(&t, &key("absent"), v1, &value(json!(3)), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let v2 = b
        .compare_and_swap(&t, &key("a"), v1, &value(json!(4)), None)
        .await
        .unwrap();
    expected.push(put(kv("a"), Some(v2)));
    let v3 = b
        .put_if_absent(
            &t,
            &key("b"),
            &value(json!(5)),
            Some(Ttl::from_millis(10).unwrap()),
        )
        .await
        .unwrap();
    expected.push(put(kv("b"), Some(v3)));
    assert!(!b.delete(&t, &key("absent")).await.unwrap());
    assert!(b.delete(&t, &key("a")).await.unwrap());
    expected.push(delete(kv("a")));
    // "b" expires: its expiry appends nothing, deleting the expired record neither, and writing
    // it again replaces the expired row with a Put.
    scratch.clock.advance(20);
    assert!(!b.delete(&t, &key("b")).await.unwrap());
    let v4 = b
        .put_if_absent(&t, &key("b"), &value(json!(6)), None)
        .await
        .unwrap();
    expected.push(put(kv("b"), Some(v4)));

    // Vectors.
    let spec = CollectionSpec::new("docs", 2, Metric::L2).unwrap();
    let docs = CollectionName::new("docs").unwrap();
    let collection = Subject::Collection { name: docs.clone() };
    assert!(b.create_collection(&t, &spec).await.unwrap());
    expected.push(put(collection.clone(), None));
    assert!(!b.create_collection(&t, &spec).await.unwrap());
    let other = CollectionSpec::new("docs", 3, Metric::L2).unwrap();
    let err = b.create_collection(&t, &other).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let id = RecordId::new("r1").unwrap();
    let embedding = Embedding::new("vector", &spec, vec![1.0, 2.0]).unwrap();
    let wrong = Embedding::new("vector", &other, vec![1.0, 2.0, 3.0]).unwrap();
    let meta = object(json!({"m": 1}));
    b.upsert_vector(&t, &docs, &id, &embedding, &meta, None)
        .await
        .unwrap();
    let vector = Subject::Vector {
        collection: docs.clone(),
        id: id.clone(),
    };
    expected.push(put(vector.clone(), None));
    let err = b
        .upsert_vector(&t, &docs, &id, &wrong, &meta, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(b.delete_vector(&t, &docs, &id).await.unwrap());
    expected.push(delete(vector.clone()));
    assert!(!b.delete_vector(&t, &docs, &id).await.unwrap());
    b.upsert_vector(&t, &docs, &id, &embedding, &meta, None)
        .await
        .unwrap();
    expected.push(put(vector.clone(), None));
    // Dropping appends the collection's Delete only, not one per record.
    assert!(b.drop_collection(&t, &docs).await.unwrap());
    expected.push(delete(collection.clone()));
    assert!(!b.drop_collection(&t, &docs).await.unwrap());

    // Graph.
    let props = object(json!({}));
    for id in ["a", "b", "c"] {
        b.put_node(&t, &node(id), &label(), &props, None)
            .await
            .unwrap();
        expected.push(put(Subject::Node { id: node(id) }, None));
    }
    let err = b
        .put_edge(
            &t,
            &node("a"),
            &rel("r"),
            &node("zz"),
            weight(),
            &props,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let short = Some(Ttl::from_millis(10).unwrap());
    for (src, r, dst, ttl) in [
        ("b", "x", "a", None),
        ("a", "self", "a", None),
        ("a", "r", "b", None),
        ("a", "old", "b", short),
        ("c", "r", "a", None),
        ("b", "r", "c", None),
    ] {
        b.put_edge(&t, &node(src), &rel(r), &node(dst), weight(), &props, ttl)
            .await
            .unwrap();
        expected.push(put(edge(src, r, dst), None));
    }
    assert!(
        b.delete_edge(&t, &node("b"), &rel("r"), &node("c"))
            .await
            .unwrap()
    );
    expected.push(delete(edge("b", "r", "c")));
    assert!(
        !b.delete_edge(&t, &node("b"), &rel("r"), &node("c"))
            .await
            .unwrap()
    );
    // c expires; its edge c->a with it (invisible, appends nothing when removed).
    b.put_node(&t, &node("c"), &label(), &props, short)
        .await
        .unwrap();
    expected.push(put(Subject::Node { id: node("c") }, None));
    scratch.clock.advance(20);
    // Deleting a: the node, then its visible edges in (src, rel, dst) order; the expired edge
    // a-old->b and the edge from the expired c are removed without a change.
    assert!(b.delete_node(&t, &node("a")).await.unwrap());
    expected.push(delete(Subject::Node { id: node("a") }));
    expected.push(delete(edge("a", "r", "b")));
    expected.push(delete(edge("a", "self", "a")));
    expected.push(delete(edge("b", "x", "a")));
    assert!(!b.delete_node(&t, &node("a")).await.unwrap());
    assert!(!b.delete_node(&t, &node("c")).await.unwrap());
    // An expired node written again: its earlier incarnation's leftovers go without a change.
    b.put_node(&t, &node("b"), &label(), &props, short)
        .await
        .unwrap();
    expected.push(put(Subject::Node { id: node("b") }, None));
    b.put_node(&t, &node("d"), &label(), &props, None)
        .await
        .unwrap();
    expected.push(put(Subject::Node { id: node("d") }, None));
    b.put_edge(
        &t,
        &node("d"),
        &rel("r"),
        &node("b"),
        weight(),
        &props,
        None,
    )
    .await
    .unwrap();
    expected.push(put(edge("d", "r", "b"), None));
    scratch.clock.advance(20);
    b.put_node(&t, &node("b"), &label(), &props, None)
        .await
        .unwrap();
    expected.push(put(Subject::Node { id: node("b") }, None));

    // Objects.
    let bucket = BucketName::new("photos").unwrap();
    let bucket_subject = Subject::Bucket {
        name: bucket.clone(),
    };
    b.create_bucket(&t, &bucket).await.unwrap();
    expected.push(put(bucket_subject.clone(), None));
    let err = b.create_bucket(&t, &bucket).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let k = ObjectKey::new("cat.jpg").unwrap();
    let object_subject = Subject::Object {
        bucket: bucket.clone(),
        key: k.clone(),
    };
    let meta = write_object(b, &t, &k, b"meow").await;
    b.put_object(&t, &bucket, &meta, &Precondition::None)
        .await
        .unwrap();
    expected.push(put(object_subject.clone(), None));
    let again = write_object(b, &t, &k, b"purr").await;
    let err = b
        .put_object(&t, &bucket, &again, &Precondition::IfAbsent)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let err = b.delete_bucket(&t, &bucket).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(b.delete_object(&t, &bucket, &k).await.unwrap());
    expected.push(delete(object_subject.clone()));
    assert!(!b.delete_object(&t, &bucket, &k).await.unwrap());
    // A multipart upload appends one Put, at completion; an aborted one nothing.
    let upload = b
        .create_upload(&t, &bucket, &k, &ObjectAttributes::default(), None)
        .await
        .unwrap();
    let mut writer = ObjectWriter::begin(b as &dyn ObjectStore, &t, u64::MAX)
        .await
        .unwrap();
    writer.write(b"part one").await.unwrap();
    let written = writer.finish().await.unwrap();
    let part = PartRecord {
        number: 1,
        data: written.data,
        size: written.size,
        etag: written.md5.clone(),
        checksums: BTreeMap::new(),
        last_modified: START,
    };
    b.put_part(&t, &bucket, upload.id, &part).await.unwrap();
    let completed = ObjectMeta {
        key: k.clone(),
        size: written.size,
        segments: vec![written.segment()],
        etag: format!("{}-1", written.md5),
        last_modified: START,
        expires_at: None,
        attributes: ObjectAttributes::default(),
    };
    b.complete_upload(&t, &bucket, upload.id, &completed, &Precondition::None)
        .await
        .unwrap();
    expected.push(put(object_subject.clone(), None));
    let aborted = b
        .create_upload(&t, &bucket, &k, &ObjectAttributes::default(), None)
        .await
        .unwrap();
    b.abort_upload(&t, &bucket, aborted.id).await.unwrap();
    let err = b
        .complete_upload(&t, &bucket, aborted.id, &completed, &Precondition::None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(b.delete_object(&t, &bucket, &k).await.unwrap());
    expected.push(delete(object_subject.clone()));
    b.delete_bucket(&t, &bucket).await.unwrap();
    expected.push(delete(bucket_subject.clone()));

    let changes = read_all(b, &t, 0, 7).await;
    assert_dense(&changes, 1);
    let got: Vec<_> = changes.iter().map(summary).collect();
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (i, (got, want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "change {}", i + 1);
    }
    // Times are the clock's at each write.
    assert_eq!(changes[0].at, START);
    assert_eq!(changes.last().unwrap().at, START + 60);
    let page = b.changes(&t, ChangeCursor(0), limit(3)).await.unwrap();
    assert_eq!(page.next, ChangeCursor(3));
    assert_eq!(page.head, ChangeCursor(expected.len() as u64));
    // Another tenant sees none of it.
    let stranger = tenant("stranger");
    let page = b
        .changes(&stranger, ChangeCursor(0), limit(3))
        .await
        .unwrap();
    assert!(page.changes.is_empty());
    assert_eq!((page.next, page.head), (ChangeCursor(0), ChangeCursor(0)));
    let err = b
        .changes(&stranger, ChangeCursor(1), limit(3))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "after"),
        "{err:?}"
    );
    let heads = b.change_heads().await.unwrap();
    assert_eq!(
        heads,
        vec![(t.clone(), ChangeCursor(expected.len() as u64))]
    );
    scratch.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_one_tenant_give_dense_cursors_in_commit_order() {
    const WRITERS: usize = 8;
    const WRITES: usize = 60;
    let scratch = Scratch::new("race").await;
    let backend = Arc::new(scratch.backend.clone());
    let t = tenant("race");
    // Another tenant written at the same time, whose log must stay apart.
    let noise = tenant("noise");

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let backend = Arc::clone(&backend);
        let (t, noise) = (t.clone(), noise.clone());
        writers.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in 0..WRITES {
                // Half the writers share keys, so per-key commit order is exercised too.
                let k = if w % 2 == 0 {
                    key(&format!("shared{}", i % 3))
                } else {
                    key(&format!("own{w}-{i}"))
                };
                let v = backend
                    .put(&t, &k, &value(json!(i)), None)
                    .await
                    .expect("put");
                versions.push((k, v));
                // A compare-and-swap that cannot match: nothing appended.
                let err = backend
                    .compare_and_swap(&t, &key("never"), Version(1), &value(json!(0)), None)
                    .await
                    .expect_err("no such key");
                assert_eq!(err.kind(), ErrorKind::NotFound);
                if i % 10 == 0 {
                    backend
                        .put(&noise, &key("n"), &value(json!(i)), None)
                        .await
                        .expect("noise");
                }
            }
            versions
        }));
    }

    // The reader pages behind the writers while they run.
    let reader = {
        let backend = Arc::clone(&backend);
        let t = t.clone();
        tokio::spawn(async move {
            let total = (WRITERS * WRITES) as u64;
            let mut seen: Vec<Change> = Vec::new();
            let mut cursor = ChangeCursor(0);
            while cursor.0 < total {
                let page = backend
                    .changes(&t, cursor, limit(5))
                    .await
                    .expect("read while writing");
                assert!(page.head >= page.next);
                assert_eq!(page.next, page.changes.last().map_or(cursor, |c| c.cursor));
                seen.extend(page.changes);
                cursor = page.next;
                if cursor == page.head {
                    tokio::task::yield_now().await;
                }
            }
            seen
        })
    };

    let mut written: BTreeMap<Version, Key> = BTreeMap::new();
    for writer in writers {
        for (k, v) in writer.await.expect("writer") {
            written.insert(v, k);
        }
    }
    let seen = reader.await.expect("reader");
    assert_eq!(seen.len(), WRITERS * WRITES);
    assert_dense(&seen, 1);
    // Exactly the committed writes, each once.
    let logged: BTreeMap<Version, Key> = seen
        .iter()
        .map(|c| match &c.subject {
            Subject::Kv { key } => (c.version.expect("a kv put has a version"), key.clone()),
            other => panic!("unexpected subject {other:?}"),
        })
        .collect();
    assert_eq!(logged, written);
    // Commit order per key: a key's versions grow with the cursor.
    let mut last: BTreeMap<Key, Version> = BTreeMap::new();
    for change in &seen {
        let Subject::Kv { key } = &change.subject else {
            unreachable!()
        };
        let version = change.version.expect("version");
        if let Some(previous) = last.insert(key.clone(), version) {
            assert!(previous < version, "{key}: {previous:?} then {version:?}");
        }
    }
    let noise_changes = read_all(&*backend, &noise, 0, 100).await;
    assert_eq!(noise_changes.len(), WRITERS * WRITES / 10);
    assert_dense(&noise_changes, 1);
    drop(backend);
    scratch.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_deletions_append_each_edge_delete_once() {
    let scratch = Scratch::new("edges").await;
    let backend = Arc::new(scratch.backend.clone());
    let t = tenant("edges");
    let props = object(json!({}));
    for round in 0..15 {
        let (a, b) = (node(&format!("a{round}")), node(&format!("b{round}")));
        for n in [&a, &b] {
            backend
                .put_node(&t, n, &label(), &props, None)
                .await
                .unwrap();
        }
        for r in ["p", "q", "r"] {
            backend
                .put_edge(&t, &a, &rel(r), &b, weight(), &props, None)
                .await
                .unwrap();
            backend
                .put_edge(&t, &b, &rel(r), &a, weight(), &props, None)
                .await
                .unwrap();
        }
        let mut tasks = Vec::new();
        for n in [a.clone(), b.clone()] {
            let backend = Arc::clone(&backend);
            let t = t.clone();
            tasks.push(tokio::spawn(async move {
                backend.delete_node(&t, &n).await.map(|_| ())
            }));
        }
        for r in ["p", "q", "r"] {
            let backend = Arc::clone(&backend);
            let (t, a, b) = (t.clone(), a.clone(), b.clone());
            tasks.push(tokio::spawn(async move {
                backend.delete_edge(&t, &a, &rel(r), &b).await.map(|_| ())
            }));
        }
        for task in tasks {
            match task.await.expect("task") {
                Ok(()) => {}
                // A deadlock between the two node deletions is reported as retryable.
                Err(e) if e.kind() == ErrorKind::Unavailable => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        // Whatever a retryable failure left, finish the deletion.
        for n in [&a, &b] {
            backend.delete_node(&t, n).await.unwrap();
        }
    }
    let changes = read_all(&*backend, &t, 0, 1000).await;
    assert_dense(&changes, 1);
    let mut deletes: HashMap<Subject, usize> = HashMap::new();
    let mut puts = HashSet::new();
    for change in &changes {
        match change.op {
            ChangeOp::Put => {
                puts.insert(change.subject.clone());
            }
            ChangeOp::Delete => *deletes.entry(change.subject.clone()).or_default() += 1,
        }
    }
    // Every node and edge that was written is deleted exactly once.
    assert_eq!(puts.len(), 15 * 8);
    assert_eq!(deletes.len(), puts.len());
    assert!(deletes.values().all(|&n| n == 1), "{deletes:#?}");
    assert!(puts.iter().all(|s| deletes.contains_key(s)));
    drop(backend);
    scratch.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_keeps_a_suffix_and_older_cursors_are_gone() {
    let scratch = Scratch::new("trim").await;
    let b = &scratch.backend;
    let (t, u) = (tenant("trim"), tenant("untrimmed"));
    // Changes 1..=5 at START + 0, 10, 20, 30, 40.
    for i in 0..5 {
        b.put(&t, &key(&format!("k{i}")), &value(json!(i)), None)
            .await
            .unwrap();
        scratch.clock.advance(10);
    }
    // A gateway whose clock lags writes change 6 at START: older than change 5, newer in the log.
    let lagging = b.with_clock(Arc::new(ManualClock::new(START)));
    lagging
        .put(&t, &key("late"), &value(json!(0)), None)
        .await
        .unwrap();
    // The other tenant's only change, at START + 50.
    b.put(&u, &key("x"), &value(json!(0)), None).await.unwrap();
    assert_eq!(b.trim_changes(START).await.unwrap(), 0);

    // Before START + 25: changes 1..=3 go.
    assert_eq!(b.trim_changes(START + 25).await.unwrap(), 3);
    let err = b.changes(&t, ChangeCursor(0), limit(10)).await.unwrap_err();
    assert!(
        matches!(err, Error::Gone { oldest } if oldest == ChangeCursor(3)),
        "{err:?}"
    );
    assert_eq!(
        b.changes(&t, ChangeCursor(2), limit(10))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Gone
    );
    let rest = read_all(b, &t, 3, 10).await;
    assert_eq!(
        rest.iter().map(|c| c.cursor.0).collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    // Before START + 45: 4 and 5 (at START + 30 and 40) and 6 (at START) go: the whole log.
    assert_eq!(b.trim_changes(START + 45).await.unwrap(), 3);
    let page = b.changes(&t, ChangeCursor(6), limit(10)).await.unwrap();
    assert!(page.changes.is_empty());
    assert_eq!((page.next, page.head), (ChangeCursor(6), ChangeCursor(6)));
    assert_eq!(
        b.changes(&t, ChangeCursor(5), limit(10))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Gone
    );
    // The other tenant's change is newer than the bound: kept.
    assert_eq!(read_all(b, &u, 0, 10).await.len(), 1);
    // A fully trimmed log keeps its head, and its cursors go on from there.
    assert_eq!(
        b.change_heads().await.unwrap(),
        vec![(t.clone(), ChangeCursor(6)), (u.clone(), ChangeCursor(1))]
    );
    b.put(&t, &key("again"), &value(json!(1)), None)
        .await
        .unwrap();
    let next = read_all(b, &t, 6, 10).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].cursor, ChangeCursor(7));
    scratch.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_stops_at_the_first_change_at_or_after_the_bound() {
    let scratch = Scratch::new("stop").await;
    let b = &scratch.backend;
    let t = tenant("stop");
    // Cursor 1 at START + 100, cursor 2 at START (a lagging clock), cursor 3 at START + 100.
    scratch.clock.advance(100);
    b.put(&t, &key("a"), &value(json!(1)), None).await.unwrap();
    let lagging = b.with_clock(Arc::new(ManualClock::new(START)));
    lagging
        .put(&t, &key("b"), &value(json!(1)), None)
        .await
        .unwrap();
    b.put(&t, &key("c"), &value(json!(1)), None).await.unwrap();
    // The first change is not older than the bound: nothing goes, also not the older second one.
    assert_eq!(b.trim_changes(START + 50).await.unwrap(), 0);
    assert_eq!(read_all(b, &t, 0, 10).await.len(), 3);
    scratch.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trimming_while_writing_and_reading_keeps_the_log_a_dense_suffix() {
    const WRITES: usize = 400;
    let scratch = Scratch::new("busy").await;
    let backend = Arc::new(scratch.backend.clone());
    let t = tenant("busy");
    let writer = {
        let backend = Arc::clone(&backend);
        let t = t.clone();
        tokio::spawn(async move {
            for i in 0..WRITES {
                backend
                    .put(&t, &key(&format!("k{}", i % 7)), &value(json!(i)), None)
                    .await
                    .expect("put");
            }
        })
    };
    let trimmer = {
        let backend = Arc::clone(&backend);
        tokio::spawn(async move {
            let mut removed = 0;
            for _ in 0..40 {
                // Every change is older than this bound: whatever is committed may go.
                removed += backend.trim_changes(START + 1).await.expect("trim");
                tokio::task::yield_now().await;
            }
            removed
        })
    };
    // A reader that follows the log, restarting from the floor when it falls behind.
    let mut cursor = ChangeCursor(0);
    let mut seen = 0_u64;
    while cursor.0 < WRITES as u64 {
        match backend.changes(&t, cursor, limit(3)).await {
            Ok(page) => {
                assert_dense(&page.changes, cursor.0 + 1);
                if page.changes.is_empty() {
                    tokio::task::yield_now().await;
                }
                seen += page.changes.len() as u64;
                cursor = page.next;
            }
            Err(Error::Gone { oldest }) => {
                assert!(oldest > cursor);
                cursor = oldest;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    writer.await.expect("writer");
    let removed = trimmer.await.expect("trimmer");
    let left = backend.trim_changes(START + 1).await.unwrap();
    assert_eq!(removed + left, WRITES as u64);
    let page = backend
        .changes(&t, ChangeCursor(WRITES as u64), limit(3))
        .await
        .unwrap();
    assert_eq!(page.head, ChangeCursor(WRITES as u64));
    assert!(seen <= WRITES as u64);
    drop(backend);
    scratch.drop_database().await;
}
