//! RocksDB-specific behaviour the shared suite cannot see: what survives closing and reopening
//! the database, opening a database written before a column family existed, and the change log's
//! cursors under concurrent writers.

use std::sync::Arc;

use serde_json::json;

use p8fs_core::vector::{search, upsert};
use p8fs_core::{
    ChangeCursor, ChangeLog, ChangeOp, CollectionName, CollectionSpec, ErrorKind, Filter,
    GraphStore, JsonObject, JsonValue, Key, KvStore, Label, Limit, ManualClock, Metric, NodeId,
    RecordId, Rel, Subject, TenantId, Ttl, VectorStore, Weight,
};

use crate::{RocksBackend, RocksOptions};

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> RocksBackend {
    RocksBackend::open(dir, clock.clone(), RocksOptions::default()).expect("open")
}

#[tokio::test]
async fn acknowledged_writes_survive_reopen_and_versions_keep_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let tenant = TenantId::new("t").unwrap();
    let key = Key::new("k").unwrap();
    let first = {
        let db = open(dir.path(), &clock);
        db.put(
            &tenant,
            &key,
            &JsonValue::new(json!({"a": 1})).unwrap(),
            None,
        )
        .await
        .unwrap()
    };
    let db = open(dir.path(), &clock);
    let entry = db
        .get(&tenant, &key)
        .await
        .unwrap()
        .expect("record survives");
    assert_eq!(entry.value, json!({"a": 1}));
    assert_eq!(entry.version, first);
    assert!(db.delete(&tenant, &key).await.unwrap());
    drop(db);
    let db = open(dir.path(), &clock);
    let second = db
        .put(&tenant, &key, &JsonValue::new(json!(2)).unwrap(), None)
        .await
        .unwrap();
    assert!(
        second > first,
        "versions increase across restarts and re-creation"
    );
}

#[tokio::test]
async fn vector_collections_and_graph_reload() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let tenant = TenantId::new("t").unwrap();
    let name = CollectionName::new("c").unwrap();
    {
        let db = open(dir.path(), &clock);
        db.create_collection(&tenant, &CollectionSpec::new("c", 2, Metric::L2).unwrap())
            .await
            .unwrap();
        for (id, v) in [("a", [0.0, 0.0]), ("b", [1.0, 0.0]), ("c", [5.0, 5.0])] {
            upsert(
                &db,
                &tenant,
                &name,
                &RecordId::new(id).unwrap(),
                v.to_vec(),
                &JsonObject::empty(),
                None,
            )
            .await
            .unwrap();
        }
        db.put_node(
            &tenant,
            &NodeId::new("n").unwrap(),
            &Label::new("l").unwrap(),
            &JsonObject::empty(),
            None,
        )
        .await
        .unwrap();
    }
    let db = open(dir.path(), &clock);
    let hits = search(
        &db,
        &tenant,
        &name,
        vec![0.9, 0.0],
        Limit::new(2).unwrap(),
        &Filter::none(),
    )
    .await
    .unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["b", "a"]);
    assert!(
        db.get_node(&tenant, &NodeId::new("n").unwrap())
            .await
            .unwrap()
            .is_some()
    );
}

fn value(n: u64) -> JsonValue {
    JsonValue::new(json!(n)).unwrap()
}

fn key(name: &str) -> Key {
    Key::new(name).unwrap()
}

/// Every change of `tenant` after `after`, one small page at a time.
async fn all_changes(db: &RocksBackend, tenant: &TenantId, after: u64) -> Vec<p8fs_core::Change> {
    let mut out = Vec::new();
    let mut cursor = ChangeCursor(after);
    loop {
        let page = db
            .changes(tenant, cursor, Limit::new(3).unwrap())
            .await
            .unwrap();
        if page.changes.is_empty() {
            assert_eq!(page.next, page.head);
            return out;
        }
        cursor = page.next;
        out.extend(page.changes);
    }
}

#[tokio::test]
async fn change_log_head_and_floor_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let tenant = TenantId::new("t").unwrap();
    // A tenant whose id extends the first one's must keep its own log.
    let other = TenantId::new("tt").unwrap();
    {
        let db = open(dir.path(), &clock);
        db.put(&tenant, &key("a"), &value(1), None).await.unwrap();
        db.put(&tenant, &key("b"), &value(2), None).await.unwrap();
        assert!(db.delete(&tenant, &key("a")).await.unwrap());
        db.put(&other, &key("a"), &value(3), None).await.unwrap();
        clock.advance(1_000);
        db.put(&tenant, &key("c"), &value(4), None).await.unwrap();
        assert_eq!(db.trim_changes(2_000).await.unwrap(), 4);
        assert_eq!(db.trim_changes(2_000).await.unwrap(), 0);
    }
    let db = open(dir.path(), &clock);
    let gone = db
        .changes(&tenant, ChangeCursor(2), Limit::new(10).unwrap())
        .await
        .unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::Gone);
    let page = db
        .changes(&tenant, ChangeCursor(3), Limit::new(10).unwrap())
        .await
        .unwrap();
    assert_eq!(page.head, ChangeCursor(4));
    assert_eq!(page.next, ChangeCursor(4));
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.changes[0].subject, Subject::Kv { key: key("c") });
    assert_eq!(page.changes[0].at, 2_000);
    let beyond = db
        .changes(&tenant, ChangeCursor(5), Limit::new(10).unwrap())
        .await
        .unwrap_err();
    assert_eq!(beyond.kind(), ErrorKind::InvalidInput);

    // Cursors continue at head + 1; trimming everything keeps the head and the floor.
    db.put(&tenant, &key("d"), &value(5), None).await.unwrap();
    assert_eq!(
        db.change_heads().await.unwrap(),
        [
            (tenant.clone(), ChangeCursor(5)),
            (other.clone(), ChangeCursor(1))
        ]
    );
    clock.advance(1_000);
    assert_eq!(db.trim_changes(i64::MAX).await.unwrap(), 2);
    drop(db);
    let db = open(dir.path(), &clock);
    assert_eq!(
        db.change_heads().await.unwrap(),
        [
            (tenant.clone(), ChangeCursor(5)),
            (other.clone(), ChangeCursor(1))
        ]
    );
    let page = db
        .changes(&tenant, ChangeCursor(5), Limit::new(10).unwrap())
        .await
        .unwrap();
    assert!(page.changes.is_empty());
    assert_eq!(page.head, ChangeCursor(5));
    let version = db.put(&tenant, &key("e"), &value(6), None).await.unwrap();
    let changes = all_changes(&db, &tenant, 5).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].cursor, ChangeCursor(6));
    assert_eq!(changes[0].version, Some(version));
}

#[tokio::test]
async fn a_database_without_the_change_log_families_opens_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The column families of a database written before the change log existed.
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let old = crate::schema::ALL_CFS
            .iter()
            .filter(|name| !name.starts_with("change"));
        let db = rocksdb::DB::open_cf(&options, dir.path(), old).unwrap();
        let cf = db.cf_handle(crate::schema::CF_KV).unwrap();
        db.put_cf(cf, b"t\0old", {
            let mut raw = 1u64.to_be_bytes().to_vec();
            raw.extend_from_slice(&i64::MAX.to_be_bytes());
            raw.extend_from_slice(b"1");
            raw
        })
        .unwrap();
    }
    let clock = Arc::new(ManualClock::new(1_000));
    let db = open(dir.path(), &clock);
    let tenant = TenantId::new("t").unwrap();
    assert!(db.get(&tenant, &key("old")).await.unwrap().is_some());
    assert!(db.change_heads().await.unwrap().is_empty());
    assert!(db.delete(&tenant, &key("old")).await.unwrap());
    let changes = all_changes(&db, &tenant, 0).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].op, ChangeOp::Delete);
    assert_eq!(changes[0].cursor, ChangeCursor(1));
}

#[tokio::test]
async fn deleting_a_node_logs_it_then_its_visible_edges() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let db = open(dir.path(), &clock);
    let tenant = TenantId::new("t").unwrap();
    let node = |id: &str| NodeId::new(id).unwrap();
    let (label, rel, props) = (
        Label::new("l").unwrap(),
        Rel::new("r").unwrap(),
        JsonObject::empty(),
    );
    let weight = Weight::new(1.0).unwrap();
    for id in ["a", "b", "c"] {
        db.put_node(&tenant, &node(id), &label, &props, None)
            .await
            .unwrap();
    }
    let short = Some(Ttl::from_millis(500).unwrap());
    db.put_node(&tenant, &node("d"), &label, &props, short)
        .await
        .unwrap();
    for (src, dst, ttl) in [
        ("c", "a", None),
        ("a", "b", None),
        ("a", "a", None),
        ("a", "c", short),
        ("a", "d", None),
    ] {
        db.put_edge(&tenant, &node(src), &rel, &node(dst), weight, &props, ttl)
            .await
            .unwrap();
    }
    clock.advance(1_000);
    // `d` expired: putting it again removes its old edge without a change.
    db.put_node(&tenant, &node("d"), &label, &props, None)
        .await
        .unwrap();
    let head = all_changes(&db, &tenant, 0).await.len() as u64;
    assert_eq!(head, 10);
    assert!(db.delete_node(&tenant, &node("a")).await.unwrap());
    let changes = all_changes(&db, &tenant, head).await;
    let subjects: Vec<(ChangeOp, Subject)> =
        changes.into_iter().map(|c| (c.op, c.subject)).collect();
    let edge = |src: &str, dst: &str| Subject::Edge {
        src: node(src),
        rel: rel.clone(),
        dst: node(dst),
    };
    assert_eq!(
        subjects,
        [
            (ChangeOp::Delete, Subject::Node { id: node("a") }),
            (ChangeOp::Delete, edge("a", "a")),
            (ChangeOp::Delete, edge("a", "b")),
            (ChangeOp::Delete, edge("c", "a")),
        ]
    );
    // Nothing visible is left to remove: no change.
    assert!(!db.delete_node(&tenant, &node("a")).await.unwrap());
    assert!(
        !db.delete_edge(&tenant, &node("c"), &rel, &node("a"))
            .await
            .unwrap()
    );
    assert!(all_changes(&db, &tenant, head + 4).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_get_dense_cursors_in_commit_order() {
    const WRITERS: u64 = 4;
    const EACH: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let db = Arc::new(open(dir.path(), &clock));
    let tenant = TenantId::new("t").unwrap();
    let total = WRITERS * EACH;
    let reader = {
        let (db, tenant) = (db.clone(), tenant.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = ChangeCursor(0);
            while (seen.len() as u64) < total {
                let page = db
                    .changes(&tenant, cursor, Limit::new(7).unwrap())
                    .await
                    .unwrap();
                assert!(page.next <= page.head);
                for change in &page.changes {
                    seen.push(change.clone());
                }
                cursor = page.next;
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (db, tenant) = (db.clone(), tenant.clone());
            tokio::spawn(async move {
                for i in 0..EACH {
                    let k = key(&format!("w{w}-{}", i % 50));
                    db.put(&tenant, &k, &value(i), None).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let seen = reader.await.unwrap();
    let cursors: Vec<u64> = seen.iter().map(|c| c.cursor.0).collect();
    assert_eq!(cursors, (1..=total).collect::<Vec<_>>());
    // Per key, versions rise along the cursors: the log is in commit order.
    let mut last = std::collections::HashMap::new();
    for change in &seen {
        let version = change.version.unwrap();
        if let Some(previous) = last.insert(change.subject.clone(), version) {
            assert!(previous < version);
        }
    }
    assert_eq!(
        db.change_heads().await.unwrap(),
        [(tenant, ChangeCursor(total))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_racing_a_trim_see_whole_pages_or_gone() {
    const WRITERS: u64 = 2;
    const EACH: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let db = Arc::new(open(dir.path(), &clock));
    let tenant = TenantId::new("t").unwrap();
    let total = WRITERS * EACH;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trimmer = {
        let (db, clock, done) = (db.clone(), clock.clone(), done.clone());
        tokio::spawn(async move {
            let mut removed = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let now = clock.advance(1);
                removed += db.trim_changes(now).await.unwrap();
                tokio::task::yield_now().await;
            }
            removed
        })
    };
    let reader = {
        let (db, tenant) = (db.clone(), tenant.clone());
        tokio::spawn(async move {
            let (mut cursor, mut read, mut gone) = (ChangeCursor(0), 0u64, 0u64);
            while cursor.0 < total {
                match db.changes(&tenant, cursor, Limit::new(5).unwrap()).await {
                    Ok(page) => {
                        for (i, change) in page.changes.iter().enumerate() {
                            assert_eq!(change.cursor.0, cursor.0 + 1 + i as u64);
                        }
                        read += page.changes.len() as u64;
                        cursor = page.next;
                    }
                    Err(p8fs_core::Error::Gone { oldest }) => {
                        assert!(oldest > cursor);
                        gone += 1;
                        cursor = oldest;
                    }
                    Err(other) => panic!("unexpected error {other}"),
                }
                tokio::task::yield_now().await;
            }
            (read, gone)
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (db, tenant) = (db.clone(), tenant.clone());
            tokio::spawn(async move {
                for i in 0..EACH {
                    db.put(&tenant, &key(&format!("w{w}-{i}")), &value(i), None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let (read, _gone) = reader.await.unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut removed = trimmer.await.unwrap();
    clock.advance(1);
    removed += db.trim_changes(clock.advance(0)).await.unwrap();
    // Every change was read or trimmed, and the trims removed each one once.
    assert!(read <= total);
    assert_eq!(removed, total);
    assert_eq!(
        db.change_heads().await.unwrap(),
        [(tenant.clone(), ChangeCursor(total))]
    );
    let page = db
        .changes(&tenant, ChangeCursor(total), Limit::new(5).unwrap())
        .await
        .unwrap();
    assert!(page.changes.is_empty());
}

/// A collection large enough for the parallel int8 scan and the blocking pool, kept in sync
/// through overwrites, deletes, expiry, a purge and a reopen: every search equals core's ranking
/// of every visible record (the brute-force answer), filtered and not, under each metric.
#[tokio::test]
async fn large_collections_search_exactly_through_writes_expiry_and_reopen() {
    use p8fs_core::Maintenance;

    let (rows, dim) = (6_000_usize, 384_usize);
    let mut seed = 0x853c_49e6_748f_ea9b_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 2_000_001) as f32 / 1_000_000.0 - 1.0
    };
    let centres: Vec<Vec<f32>> = (0..12)
        .map(|_| (0..dim).map(|_| next()).collect())
        .collect();
    let mut point = |i: usize| -> Vec<f32> {
        let spread = if i.is_multiple_of(11) { 1e-3 } else { 0.2 };
        centres[i % centres.len()]
            .iter()
            .map(|c| c + spread * next())
            .collect()
    };
    for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000));
        let tenant = TenantId::new("t").unwrap();
        let name = CollectionName::new("c").unwrap();
        let db = open(dir.path(), &clock);
        db.create_collection(
            &tenant,
            &CollectionSpec::new("c", dim as u64, metric).unwrap(),
        )
        .await
        .unwrap();
        // The records that should be visible, by id.
        let mut expected = Expected::new();
        let mut expiring = Vec::new();
        let put = |i: usize, v: Vec<f32>, ttl: Option<Ttl>| {
            let db = &db;
            let (tenant, name) = (&tenant, &name);
            async move {
                let id = format!("r{i:05}");
                let metadata = JsonObject::new("metadata", json!({"g": i % 3})).unwrap();
                upsert(
                    db,
                    tenant,
                    name,
                    &RecordId::new(&id).unwrap(),
                    v.clone(),
                    &metadata,
                    ttl,
                )
                .await
                .unwrap();
                (id, (v, metadata))
            }
        };
        for i in 0..rows {
            let ttl = (i.is_multiple_of(13)).then(|| Ttl::from_millis(60_000).unwrap());
            let (id, record) = put(i, point(i), ttl).await;
            if ttl.is_some() {
                expiring.push(id.clone());
            }
            expected.insert(id, record);
        }
        // Overwrites (some with exact duplicates of other rows), then deletes.
        for i in (0..rows).step_by(7) {
            let v = if i.is_multiple_of(2) {
                point(i)
            } else {
                expected[&format!("r{:05}", i / 2)].0.clone()
            };
            let (id, record) = put(i, v, None).await;
            expiring.retain(|e| *e != id);
            expected.insert(id, record);
        }
        for i in (3..rows).step_by(5) {
            let id = format!("r{i:05}");
            db.delete_vector(&tenant, &name, &RecordId::new(&id).unwrap())
                .await
                .unwrap();
            expected.remove(&id);
            expiring.retain(|e| *e != id);
        }
        let queries: Vec<Vec<f32>> = (0..4).map(|q| point(q * 101)).collect();
        let spec = CollectionSpec::new("c", dim as u64, metric).unwrap();
        let check = Check {
            tenant: &tenant,
            name: &name,
            spec: &spec,
            queries: &queries,
        };
        check.run(&db, &expected).await;
        // Expiry hides the ttl records before the purge removes them, and after it.
        clock.advance(61_000);
        for id in &expiring {
            expected.remove(id);
        }
        check.run(&db, &expected).await;
        assert_eq!(db.purge_expired().await.unwrap(), expiring.len() as u64);
        check.run(&db, &expected).await;
        drop(db);
        let db = open(dir.path(), &clock);
        check.run(&db, &expected).await;
    }
}

/// The records a test expects to be visible, by id: vector and metadata.
type Expected = std::collections::BTreeMap<String, (Vec<f32>, JsonObject)>;

/// Searches a collection and compares each answer with core's ranking of the expected records.
struct Check<'a> {
    tenant: &'a TenantId,
    name: &'a CollectionName,
    spec: &'a CollectionSpec,
    queries: &'a [Vec<f32>],
}

impl Check<'_> {
    async fn run(&self, db: &RocksBackend, expected: &Expected) {
        use p8fs_core::vector::{VectorRecord, rank};

        let records: Vec<VectorRecord> = expected
            .iter()
            .map(|(id, (v, metadata))| VectorRecord {
                id: RecordId::new(id).unwrap(),
                vector: v.clone(),
                metadata: metadata.get().clone(),
                expires_at: None,
            })
            .collect();
        for (q, values) in self.queries.iter().enumerate() {
            let filter = if q.is_multiple_of(2) {
                Filter::none()
            } else {
                Filter::new([("g".to_string(), json!(1))]).unwrap()
            };
            let k = Limit::new([1, 10, 100, 1000][q % 4]).unwrap();
            let hits = search(db, self.tenant, self.name, values.clone(), k, &filter)
                .await
                .unwrap();
            let query = p8fs_core::Embedding::new("q", self.spec, values.clone()).unwrap();
            let brute = rank(&query, records.clone(), k, &filter).unwrap();
            assert_eq!(hits.len(), brute.len().min(k.get()));
            assert_eq!(hits, brute, "{}: query {q}", self.spec.metric);
        }
    }
}

mod approximate;
