//! The change log on a real server: what each write appends, that failed writes append nothing,
//! that concurrent writers of one tenant get dense cursors a concurrent reader sees once each and
//! in order, that concurrent removers of one edge log it once, and trimming with `Gone`.
//!
//! Trimming works across all tenants, so these tests use the fault tests' server of their own,
//! `P8FS_TEST_TIDB_FAULT_URL` (see `scripts/test-all.sh`), and run one at a time like them.
//! Without it they fail: a missing server is never a pass.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Mutex;

use p8fs_backend_tidb::{TidbBackend, TidbOptions};
use p8fs_core::object::{MAX_PUT_BYTES, ObjectWriter};
use p8fs_core::{
    BucketName, Change, ChangeCursor, ChangeKind, ChangeLog, ChangeOp, Clock, CollectionName,
    CollectionSpec, Embedding, ErrorKind, GraphStore, JsonObject, JsonValue, Key, KvStore, Label,
    Limit, ManualClock, Metric, NodeId, ObjectAttributes, ObjectKey, ObjectMeta, ObjectStore,
    Precondition, RecordId, Rel, Subject, TenantId, VectorStore, Version, Weight,
};

/// Serialises the tests of this binary when they run as threads of one process.
static SERIAL: Mutex<()> = Mutex::const_new(());

const START: i64 = 1_700_000_000_000;

fn url() -> String {
    std::env::var("P8FS_TEST_TIDB_FAULT_URL").unwrap_or_else(|_| {
        panic!(
            "set P8FS_TEST_TIDB_FAULT_URL: the TiDB change-log tests trim across all tenants and \
             need a server of their own (see scripts/test-all.sh)"
        )
    })
}

fn fresh_tenant(tag: &str) -> TenantId {
    use std::hash::BuildHasher;
    let n = std::collections::hash_map::RandomState::new().hash_one(tag);
    TenantId::new(format!("c{n:016x}")).expect("valid tenant")
}

async fn connect(clock: Arc<ManualClock>) -> TidbBackend {
    TidbBackend::connect(&url(), clock, TidbOptions::default())
        .await
        .expect("connect to P8FS_TEST_TIDB_FAULT_URL")
}

fn key(k: &str) -> Key {
    Key::new(k).expect("key")
}

fn value(v: serde_json::Value) -> JsonValue {
    JsonValue::new(v).expect("value")
}

fn object(v: serde_json::Value) -> JsonObject {
    JsonObject::new("properties", v).expect("object")
}

fn node(id: &str) -> NodeId {
    NodeId::new(id).expect("node id")
}

fn rel(r: &str) -> Rel {
    Rel::new(r).expect("rel")
}

fn edge(src: &str, r: &str, dst: &str) -> Subject {
    Subject::Edge {
        src: node(src),
        rel: rel(r),
        dst: node(dst),
    }
}

/// Every change of the tenant after `after`, read in pages of `page`.
async fn read_all(log: &dyn ChangeLog, tenant: &TenantId, after: u64, page: u64) -> Vec<Change> {
    let mut out = Vec::new();
    let mut cursor = ChangeCursor(after);
    loop {
        let got = log
            .changes(tenant, cursor, Limit::new(page).expect("limit"))
            .await
            .expect("changes");
        assert!(got.changes.len() as u64 <= page);
        out.extend(got.changes);
        cursor = got.next;
        if got.next == got.head {
            return out;
        }
    }
}

/// The changes as `(cursor, op, subject, version)`, for comparing.
fn summary(changes: &[Change]) -> Vec<(u64, ChangeOp, Subject, Option<Version>)> {
    changes
        .iter()
        .map(|c| (c.cursor.0, c.op, c.subject.clone(), c.version))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_append_their_changes_and_failures_append_nothing() {
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let b = connect(clock.clone()).await;
    let t = fresh_tenant("writes");

    // A tenant that never wrote has an empty log at cursor 0.
    let empty = b
        .changes(&t, ChangeCursor(0), Limit::new(10).expect("limit"))
        .await
        .expect("empty log");
    assert!(empty.changes.is_empty());
    assert_eq!((empty.next, empty.head), (ChangeCursor(0), ChangeCursor(0)));
    let beyond = b
        .changes(&t, ChangeCursor(1), Limit::new(10).expect("limit"))
        .await
        .unwrap_err();
    assert_eq!(beyond.kind(), ErrorKind::InvalidInput);
    assert!(format!("{beyond}").contains("after"), "{beyond}");

    let mut expected: Vec<(ChangeOp, Subject, Option<Version>)> = Vec::new();
    let put = |s: Subject, v: Option<Version>| (ChangeOp::Put, s, v);
    let del = |s: Subject| (ChangeOp::Delete, s, None);

    // Key-value.
    let k = key("k");
    let v1 = b.put(&t, &k, &value(json!(1)), None).await.expect("put");
    expected.push(put(Subject::Kv { key: k.clone() }, Some(v1)));
    let taken = b.put_if_absent(&t, &k, &value(json!(2)), None).await;
    assert_eq!(taken.unwrap_err().kind(), ErrorKind::AlreadyExists);
    let stale = b
        .compare_and_swap(&t, &k, Version(v1.0 + 1_000_000), &value(json!(3)), None)
        .await;
    assert_eq!(stale.unwrap_err().kind(), ErrorKind::Conflict);
    let v2 = b
        .compare_and_swap(&t, &k, v1, &value(json!(4)), None)
        .await
        .expect("cas");
    expected.push(put(Subject::Kv { key: k.clone() }, Some(v2)));
    let other = key("other");
    let v3 = b
        .put_if_absent(&t, &other, &value(json!(5)), None)
        .await
        .expect("put_if_absent");
    expected.push(put(Subject::Kv { key: other.clone() }, Some(v3)));
    assert!(b.delete(&t, &k).await.expect("delete"));
    expected.push(del(Subject::Kv { key: k.clone() }));
    assert!(!b.delete(&t, &k).await.expect("delete again"));
    let missing_cas = b.compare_and_swap(&t, &k, v2, &value(json!(6)), None).await;
    assert_eq!(missing_cas.unwrap_err().kind(), ErrorKind::NotFound);

    // Vectors.
    let name = CollectionName::new("docs").expect("name");
    let spec = CollectionSpec::new("docs", 2, Metric::L2).expect("spec");
    assert!(b.create_collection(&t, &spec).await.expect("create"));
    expected.push(put(Subject::Collection { name: name.clone() }, None));
    assert!(!b.create_collection(&t, &spec).await.expect("create again"));
    let clash = CollectionSpec::new("docs", 3, Metric::L2).expect("spec");
    assert_eq!(
        b.create_collection(&t, &clash).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    let id = RecordId::new("r1").expect("id");
    let vector = Embedding::new("vector", &spec, vec![1.0, 2.0]).expect("vector");
    b.upsert_vector(&t, &name, &id, &vector, &object(json!({})), None)
        .await
        .expect("upsert");
    expected.push(put(
        Subject::Vector {
            collection: name.clone(),
            id: id.clone(),
        },
        None,
    ));
    assert!(
        b.delete_vector(&t, &name, &id)
            .await
            .expect("delete_vector")
    );
    expected.push(del(Subject::Vector {
        collection: name.clone(),
        id: id.clone(),
    }));
    assert!(!b.delete_vector(&t, &name, &id).await.expect("again"));
    b.upsert_vector(&t, &name, &id, &vector, &object(json!({})), None)
        .await
        .expect("upsert again");
    expected.push(put(
        Subject::Vector {
            collection: name.clone(),
            id: id.clone(),
        },
        None,
    ));
    assert!(b.drop_collection(&t, &name).await.expect("drop"));
    expected.push(del(Subject::Collection { name: name.clone() }));
    assert!(!b.drop_collection(&t, &name).await.expect("drop again"));
    let nowhere = b
        .upsert_vector(&t, &name, &id, &vector, &object(json!({})), None)
        .await;
    assert_eq!(nowhere.unwrap_err().kind(), ErrorKind::NotFound);

    // Graph: a node's delete logs the node, then its visible edges; an expired edge is not.
    let label = Label::new("thing").expect("label");
    for id in ["a", "b", "c"] {
        b.put_node(&t, &node(id), &label, &object(json!({})), None)
            .await
            .expect("put_node");
        expected.push(put(Subject::Node { id: node(id) }, None));
    }
    let w = Weight::new(1.0).expect("weight");
    for (src, r, dst) in [("b", "x", "a"), ("a", "y", "a"), ("a", "x", "b")] {
        b.put_edge(
            &t,
            &node(src),
            &rel(r),
            &node(dst),
            w,
            &object(json!({})),
            None,
        )
        .await
        .expect("put_edge");
        expected.push(put(edge(src, r, dst), None));
    }
    let ttl = p8fs_core::Ttl::from_millis(10).expect("ttl");
    b.put_edge(
        &t,
        &node("c"),
        &rel("x"),
        &node("a"),
        w,
        &object(json!({})),
        Some(ttl),
    )
    .await
    .expect("put_edge with a ttl");
    expected.push(put(edge("c", "x", "a"), None));
    clock.advance(20);
    let dangling = b
        .put_edge(
            &t,
            &node("a"),
            &rel("x"),
            &node("zz"),
            w,
            &object(json!({})),
            None,
        )
        .await;
    assert_eq!(dangling.unwrap_err().kind(), ErrorKind::NotFound);
    assert!(b.delete_node(&t, &node("a")).await.expect("delete_node"));
    expected.push(del(Subject::Node { id: node("a") }));
    for (src, r, dst) in [("a", "x", "b"), ("a", "y", "a"), ("b", "x", "a")] {
        expected.push(del(edge(src, r, dst)));
    }
    assert!(!b.delete_node(&t, &node("a")).await.expect("again"));
    b.put_edge(
        &t,
        &node("b"),
        &rel("x"),
        &node("c"),
        w,
        &object(json!({})),
        None,
    )
    .await
    .expect("put_edge");
    expected.push(put(edge("b", "x", "c"), None));
    assert!(
        b.delete_edge(&t, &node("b"), &rel("x"), &node("c"))
            .await
            .expect("delete_edge")
    );
    expected.push(del(edge("b", "x", "c")));
    assert!(
        !b.delete_edge(&t, &node("b"), &rel("x"), &node("c"))
            .await
            .expect("again")
    );

    // Objects: blobs and a failed precondition append nothing.
    let bucket = BucketName::new("bkt").expect("bucket");
    b.create_bucket(&t, &bucket).await.expect("create_bucket");
    expected.push(put(
        Subject::Bucket {
            name: bucket.clone(),
        },
        None,
    ));
    let mut writer = ObjectWriter::begin(&b, &t, MAX_PUT_BYTES)
        .await
        .expect("begin");
    writer.write(b"hello").await.expect("write");
    let data = writer.finish().await.expect("finish");
    let okey = ObjectKey::new("o").expect("key");
    let meta = ObjectMeta {
        key: okey.clone(),
        size: data.size,
        etag: data.md5.clone(),
        last_modified: clock.now(),
        expires_at: None,
        attributes: ObjectAttributes::default(),
        segments: vec![data.segment()],
    };
    let wrong = Precondition::IfEtag("nope".to_owned());
    assert_eq!(
        b.put_object(&t, &bucket, &meta, &wrong)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    b.put_object(&t, &bucket, &meta, &Precondition::IfAbsent)
        .await
        .expect("put_object");
    let object_subject = Subject::Object {
        bucket: bucket.clone(),
        key: okey.clone(),
    };
    expected.push(put(object_subject.clone(), None));
    assert!(b.delete_object(&t, &bucket, &okey).await.expect("delete"));
    expected.push(del(object_subject));
    assert!(!b.delete_object(&t, &bucket, &okey).await.expect("again"));
    b.delete_bucket(&t, &bucket).await.expect("delete_bucket");
    expected.push(del(Subject::Bucket {
        name: bucket.clone(),
    }));

    let got = read_all(&b, &t, 0, 4).await;
    let want: Vec<_> = expected
        .into_iter()
        .enumerate()
        .map(|(i, (op, s, v))| (i as u64 + 1, op, s, v))
        .collect();
    assert_eq!(summary(&got), want);
    assert!(got.iter().all(|c| c.at >= START));
    assert_eq!(
        got.last().map(|c| c.subject.kind()),
        Some(ChangeKind::Bucket)
    );
    let heads = b.change_heads().await.expect("change_heads");
    assert!(heads.contains(&(t.clone(), ChangeCursor(want.len() as u64))));
    assert!(
        heads.windows(2).all(|w| w[0].0.as_str() < w[1].0.as_str()),
        "tenants ascending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_get_dense_cursors_a_concurrent_reader_sees_once_in_order() {
    const WRITERS: u64 = 8;
    const WRITES: u64 = 40;
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let b = Arc::new(connect(clock).await);
    let t = fresh_tenant("concurrent");

    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (b, t) = (b.clone(), t.clone());
        writers.spawn(async move {
            for i in 0..WRITES {
                // Every writer also contends for one shared key, and fails a CAS now and then.
                let own = key(&format!("w{w}-{i}"));
                b.put(&t, &own, &value(json!(i)), None).await.expect("put");
                if i % 5 == 0 {
                    let stale = b
                        .compare_and_swap(&t, &own, Version(0), &value(json!(0)), None)
                        .await;
                    assert_eq!(stale.unwrap_err().kind(), ErrorKind::Conflict);
                }
            }
        });
    }
    let total = WRITERS * WRITES;
    let reader = {
        let (b, t) = (b.clone(), t.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = ChangeCursor(0);
            while cursor.0 < total {
                let page = b
                    .changes(&t, cursor, Limit::new(7).expect("limit"))
                    .await
                    .expect("changes");
                assert!(page.head >= page.next);
                for change in &page.changes {
                    seen.push(change.cursor.0);
                }
                cursor = page.next;
                if page.changes.is_empty() {
                    tokio::task::yield_now().await;
                }
            }
            seen
        })
    };
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    let seen = reader.await.expect("reader");
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    let all = read_all(&*b, &t, 0, 1000).await;
    assert_eq!(all.len() as u64, total);
    let mut subjects: Vec<_> = all.iter().map(|c| c.subject.clone()).collect();
    subjects.sort_by_key(|s| s.parts().map(str::to_owned));
    subjects.dedup();
    assert_eq!(subjects.len() as u64, total, "each write logged once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_removers_of_an_edge_log_it_once() {
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let b = Arc::new(connect(clock).await);
    let t = fresh_tenant("removers");
    let label = Label::new("n").expect("label");
    let w = Weight::new(1.0).expect("weight");
    for round in 0..20 {
        let (a, c) = (node(&format!("a{round}")), node(&format!("c{round}")));
        for id in [&a, &c] {
            b.put_node(&t, id, &label, &object(json!({})), None)
                .await
                .expect("put_node");
        }
        b.put_edge(&t, &a, &rel("r"), &c, w, &object(json!({})), None)
            .await
            .expect("put_edge");
        let before = b
            .changes(&t, ChangeCursor(0), Limit::new(1).expect("limit"))
            .await
            .expect("head")
            .head;
        let mut removers = tokio::task::JoinSet::new();
        for which in 0..3 {
            let (b, t, a, c) = (b.clone(), t.clone(), a.clone(), c.clone());
            removers.spawn(async move {
                match which {
                    0 => b.delete_node(&t, &a).await.expect("delete_node a"),
                    1 => b.delete_node(&t, &c).await.expect("delete_node c"),
                    _ => b
                        .delete_edge(&t, &a, &rel("r"), &c)
                        .await
                        .expect("delete_edge"),
                }
            });
        }
        while let Some(done) = removers.join_next().await {
            done.expect("remover");
        }
        let logged = read_all(&*b, &t, before.0, 100).await;
        let edge_deletes = logged
            .iter()
            .filter(|c| c.subject.kind() == ChangeKind::Edge)
            .count();
        assert_eq!(edge_deletes, 1, "round {round}: {logged:?}");
        let node_deletes = logged
            .iter()
            .filter(|c| c.subject.kind() == ChangeKind::Node)
            .count();
        assert_eq!(node_deletes, 2, "round {round}: {logged:?}");
        assert!(logged.iter().all(|c| c.op == ChangeOp::Delete));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_removes_a_prefix_and_older_cursors_are_gone() {
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let b = connect(clock.clone()).await;
    let t = fresh_tenant("trim");
    let limit = Limit::new(100).expect("limit");

    for i in 0..3 {
        b.put(&t, &key(&format!("old{i}")), &value(json!(i)), None)
            .await
            .expect("put");
    }
    let cutoff = clock.advance(1_000);
    for i in 0..2 {
        b.put(&t, &key(&format!("new{i}")), &value(json!(i)), None)
            .await
            .expect("put");
    }
    // Other tenants on this server may lose old changes too: at least ours go.
    let removed = b.trim_changes(cutoff).await.expect("trim");
    assert!(removed >= 3, "removed {removed}");
    assert_eq!(b.trim_changes(cutoff).await.expect("trim again"), 0);

    let gone = b.changes(&t, ChangeCursor(0), limit).await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::Gone);
    assert!(matches!(gone, p8fs_core::Error::Gone { oldest } if oldest == ChangeCursor(3)));
    let rest = b.changes(&t, ChangeCursor(3), limit).await.expect("rest");
    assert_eq!(
        rest.changes.iter().map(|c| c.cursor.0).collect::<Vec<_>>(),
        [4, 5]
    );
    assert_eq!((rest.next, rest.head), (ChangeCursor(5), ChangeCursor(5)));

    // Trimming everything keeps the head; cursors go on from it.
    let later = clock.advance(1_000);
    assert!(b.trim_changes(later).await.expect("trim all") >= 2);
    let caught_up = b
        .changes(&t, ChangeCursor(5), limit)
        .await
        .expect("at head");
    assert!(caught_up.changes.is_empty());
    assert_eq!(
        (caught_up.next, caught_up.head),
        (ChangeCursor(5), ChangeCursor(5))
    );
    let gone = b.changes(&t, ChangeCursor(4), limit).await.unwrap_err();
    assert!(matches!(gone, p8fs_core::Error::Gone { oldest } if oldest == ChangeCursor(5)));
    let beyond = b.changes(&t, ChangeCursor(6), limit).await.unwrap_err();
    assert_eq!(beyond.kind(), ErrorKind::InvalidInput);
    let heads = b.change_heads().await.expect("heads");
    assert!(heads.contains(&(t.clone(), ChangeCursor(5))));
    b.put(&t, &key("after"), &value(json!(0)), None)
        .await
        .expect("put");
    let next = b.changes(&t, ChangeCursor(5), limit).await.expect("next");
    assert_eq!(
        next.changes.iter().map(|c| c.cursor.0).collect::<Vec<_>>(),
        [6]
    );

    // A change committed before the cutoff but after a newer one stays: what remains is a suffix.
    let t2 = fresh_tenant("suffix");
    let new_time = clock.advance(1_000);
    b.put(&t2, &key("x"), &value(json!(1)), None)
        .await
        .expect("put");
    clock.set(new_time - 500);
    b.put(&t2, &key("y"), &value(json!(2)), None)
        .await
        .expect("put");
    clock.set(new_time + 10);
    b.trim_changes(new_time).await.expect("trim");
    let kept = read_all(&b, &t2, 0, 10).await;
    assert_eq!(kept.iter().map(|c| c.cursor.0).collect::<Vec<_>>(), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_object_put_racing_its_buckets_deletion_is_logged_only_if_it_won() {
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let b = Arc::new(connect(clock.clone()).await);
    let t = fresh_tenant("bucket-race");
    let mut outcomes = [0_u32; 2];
    for round in 0..30 {
        let bucket = BucketName::new(format!("race{round}")).expect("bucket");
        b.create_bucket(&t, &bucket).await.expect("create_bucket");
        let mut writer = ObjectWriter::begin(&*b, &t, MAX_PUT_BYTES)
            .await
            .expect("begin");
        writer.write(b"racing").await.expect("write");
        let data = writer.finish().await.expect("finish");
        let okey = ObjectKey::new("o").expect("key");
        let meta = ObjectMeta {
            key: okey.clone(),
            size: data.size,
            etag: data.md5.clone(),
            last_modified: clock.now(),
            expires_at: None,
            attributes: ObjectAttributes::default(),
            segments: vec![data.segment()],
        };
        let head = b
            .changes(&t, ChangeCursor(0), Limit::new(1).expect("limit"))
            .await
            .expect("head")
            .head;
        let put = {
            let (b, t, bucket) = (b.clone(), t.clone(), bucket.clone());
            tokio::spawn(async move { b.put_object(&t, &bucket, &meta, &Precondition::None).await })
        };
        let deleted = b.delete_bucket(&t, &bucket).await;
        let put = put.await.expect("put task");
        let logged = read_all(&*b, &t, head.0, 10).await;
        let logged: Vec<_> = logged.iter().map(|c| (c.op, c.subject.clone())).collect();
        match (&put, &deleted) {
            (Ok(()), Err(e)) => {
                assert_eq!(e.kind(), ErrorKind::Conflict, "round {round}");
                assert_eq!(
                    logged,
                    [(
                        ChangeOp::Put,
                        Subject::Object {
                            bucket: bucket.clone(),
                            key: okey.clone()
                        }
                    )],
                    "round {round}"
                );
                outcomes[0] += 1;
            }
            (Err(e), Ok(())) => {
                assert_eq!(e.kind(), ErrorKind::NotFound, "round {round}");
                assert_eq!(
                    logged,
                    [(
                        ChangeOp::Delete,
                        Subject::Bucket {
                            name: bucket.clone()
                        }
                    )],
                    "round {round}"
                );
                outcomes[1] += 1;
            }
            other => panic!("round {round}: exactly one may succeed: {other:?}"),
        }
    }
    eprintln!(
        "object put won {} times, bucket delete {}",
        outcomes[0], outcomes[1]
    );
}

/// A change missing after the cursor while later ones are visible: the reader gets the changes
/// before the gap, waits briefly for the missing one (InnoDB can show a later commit of a tenant a
/// moment before an earlier one), and reports damage when it never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_waited_for_briefly_and_then_is_damage() {
    use mysql_async::prelude::Queryable;
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let b = Arc::new(connect(clock).await);
    let t = fresh_tenant("gap");
    for i in 0..4 {
        b.put(&t, &key(&format!("k{i}")), &value(json!(i)), None)
            .await
            .expect("put");
    }
    let limit = Limit::new(10).expect("limit");
    let mut conn = mysql_async::Conn::from_url(url()).await.expect("connect");
    let hide =
        "UPDATE p8fs_changes SET tenant = CONCAT(tenant, '-hidden') WHERE tenant = ? AND seq = 3";
    let show = "UPDATE p8fs_changes SET tenant = ? WHERE tenant = CONCAT(?, '-hidden') AND seq = 3";
    conn.exec_drop(hide, (t.as_str(),)).await.expect("hide");

    let before = b.changes(&t, ChangeCursor(0), limit).await.expect("prefix");
    let cursors: Vec<u64> = before.changes.iter().map(|c| c.cursor.0).collect();
    assert_eq!(cursors, [1, 2]);
    assert_eq!(
        (before.next, before.head),
        (ChangeCursor(2), ChangeCursor(4))
    );

    // The missing change appears while the reader waits for it.
    let reader = {
        let (b, t) = (b.clone(), t.clone());
        tokio::spawn(async move { b.changes(&t, ChangeCursor(2), limit).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    conn.exec_drop(show, (t.as_str(), t.as_str()))
        .await
        .expect("show");
    let filled = reader.await.expect("reader").expect("filled");
    let cursors: Vec<u64> = filled.changes.iter().map(|c| c.cursor.0).collect();
    assert_eq!(cursors, [3, 4]);

    // One that never appears is damage, not an empty page a reader would wait on forever.
    conn.exec_drop(hide, (t.as_str(),))
        .await
        .expect("hide again");
    let damaged = b.changes(&t, ChangeCursor(2), limit).await.unwrap_err();
    assert_eq!(damaged.kind(), ErrorKind::Internal);
    conn.exec_drop(show, (t.as_str(), t.as_str()))
        .await
        .expect("restore");
}
