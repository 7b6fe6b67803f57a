//! Objects on a real PostgreSQL server, beyond what the shared scenarios can show: what a crash
//! between writing data and committing it leaves (nothing visible, and chunks the reaper removes),
//! a multi-chunk object read back through the chunk plan, key order by raw bytes with a listing
//! that starts at bytes that are not UTF-8, races of conditional writes and of writers against
//! `delete_bucket`, and the blobs an expired object frees when it is purged.
//!
//! The reaper works across tenants, so each test runs in a database of its own, made from the
//! server's template `p8fs_template` on the server of `P8FS_TEST_POSTGRES_URL` (a missing
//! variable fails the test) and dropped at the end.

mod common;
use common::drop_scratch_database;

use std::sync::Arc;

use sqlx::Connection;

use p8fs_backend_postgres::{PgBackend, PgOptions};
use p8fs_core::object::{CHUNK_BYTES, ObjectWriter, chunk_reads, md5_hex};
use p8fs_core::{
    BucketName, ErrorKind, Limit, Maintenance, ManualClock, ObjectAttributes, ObjectKey,
    ObjectMeta, ObjectPrefix, ObjectStore, Precondition, ReapPolicy, Resource, TenantId, Ttl,
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
        let database = format!("p8fs_objects_{tag}_{}", unique(tag));
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
        let backend = PgBackend::connect(
            &format!("{server}/{database}"),
            clock.clone(),
            PgOptions::default(),
        )
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

fn bucket(name: &str) -> BucketName {
    BucketName::new(name).expect("bucket")
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("key")
}

/// Bytes that differ from chunk to chunk, so a chunk read from the wrong place shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect()
}

/// Writes `body` as a pending blob and returns the metadata that commits it at `key`.
async fn write(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    key: &ObjectKey,
    body: &[u8],
    now: i64,
) -> ObjectMeta {
    let mut writer = ObjectWriter::begin(store, tenant, u64::MAX)
        .await
        .expect("begin data");
    // Uneven pieces, as a request body arrives.
    for piece in body.chunks(300_007) {
        writer.write(piece).await.expect("write");
    }
    let written = writer.finish().await.expect("finish");
    ObjectMeta {
        key: key.clone(),
        size: written.size,
        segments: vec![written.segment()],
        etag: written.md5,
        last_modified: now,
        expires_at: None,
        attributes: ObjectAttributes::default(),
    }
}

async fn read_all(store: &dyn ObjectStore, tenant: &TenantId, meta: &ObjectMeta) -> Vec<u8> {
    let mut out = Vec::new();
    for read in chunk_reads(&meta.segments, 0, meta.size) {
        let chunk = store
            .read_chunk(tenant, read.data, read.index)
            .await
            .expect("read chunk");
        out.extend_from_slice(&chunk[read.start..read.end]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_written_but_never_committed_is_invisible_and_reaped() {
    let scratch = Scratch::new("crash").await;
    let store: &dyn ObjectStore = &scratch.backend;
    let t = tenant("crash");
    let b = bucket("photos");
    store.create_bucket(&t, &b).await.expect("create bucket");
    // A writer that stops after two full chunks and part of a third: the process died before
    // put_object.
    let mut writer = ObjectWriter::begin(store, &t, u64::MAX)
        .await
        .expect("begin");
    let data = writer.data();
    writer
        .write(&pattern(2 * CHUNK_BYTES + 10))
        .await
        .expect("write");
    drop(writer);
    assert_eq!(
        store.stored_bytes(&t).await.expect("stored"),
        2 * CHUNK_BYTES as u64
    );
    assert!(
        store
            .object(&t, &b, &key("k"))
            .await
            .expect("get")
            .is_none()
    );
    let listed = store
        .list_objects(&t, &b, &ObjectPrefix::all(), b"", Limit::MAX)
        .await
        .expect("list");
    assert!(listed.is_empty());

    // Not yet abandoned: the reaper leaves it.
    let young = ReapPolicy {
        abandoned_before: START,
        freed_before: START,
    };
    assert_eq!(store.reap_objects(young).await.expect("reap"), 0);
    assert_eq!(
        store.stored_bytes(&t).await.expect("stored"),
        2 * CHUNK_BYTES as u64
    );

    scratch.clock.advance(3_600_000);
    let abandoned = ReapPolicy {
        abandoned_before: START + 1,
        freed_before: START + 1,
    };
    assert_eq!(store.reap_objects(abandoned).await.expect("reap"), 1);
    assert_eq!(store.stored_bytes(&t).await.expect("stored"), 0);
    // The blob is gone: no chunk can be written to it or read from it, nothing commits it.
    let err = store
        .write_chunk(&t, data, 2, b"late")
        .await
        .expect_err("reaped");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = store.read_chunk(&t, data, 0).await.expect_err("reaped");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(store.stored_bytes(&t).await.expect("stored"), 0);
    assert_eq!(store.reap_objects(abandoned).await.expect("reap"), 0);
    scratch.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_mib_object_round_trips_chunk_by_chunk() {
    let scratch = Scratch::new("large").await;
    let store: &dyn ObjectStore = &scratch.backend;
    let t = tenant("large");
    let b = bucket("videos");
    store.create_bucket(&t, &b).await.expect("create bucket");
    let body = pattern(5 * CHUNK_BYTES + 12_345);
    let meta = write(store, &t, &key("clip.bin"), &body, START).await;
    assert_eq!(meta.etag, md5_hex(&body));
    store
        .put_object(&t, &b, &meta, &Precondition::IfAbsent)
        .await
        .expect("put");
    let stored = store
        .object(&t, &b, &key("clip.bin"))
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(stored, meta);
    assert_eq!(read_all(store, &t, &stored).await, body);
    // A range across a chunk boundary.
    let (start, end) = (CHUNK_BYTES as u64 - 5, CHUNK_BYTES as u64 + 7);
    let mut range = Vec::new();
    for read in chunk_reads(&stored.segments, start, end) {
        let chunk = store
            .read_chunk(&t, read.data, read.index)
            .await
            .expect("read");
        range.extend_from_slice(&chunk[read.start..read.end]);
    }
    assert_eq!(range, body[start as usize..end as usize]);
    assert_eq!(
        store.stored_bytes(&t).await.expect("stored"),
        body.len() as u64
    );

    // Replaced: the old blob is freed, kept through the grace period, then reaped.
    scratch.clock.advance(1000);
    let small = write(store, &t, &key("clip.bin"), b"short", START + 1000).await;
    store
        .put_object(&t, &b, &small, &Precondition::IfEtag(meta.etag.clone()))
        .await
        .expect("replace");
    assert_eq!(read_all(store, &t, &meta).await, body, "grace period");
    let grace = ReapPolicy {
        abandoned_before: START,
        freed_before: START + 1000,
    };
    assert_eq!(store.reap_objects(grace).await.expect("reap"), 0);
    let past = ReapPolicy {
        abandoned_before: START,
        freed_before: START + 1001,
    };
    assert_eq!(store.reap_objects(past).await.expect("reap"), 1);
    assert_eq!(store.stored_bytes(&t).await.expect("stored"), 5);
    scratch.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_order_by_raw_bytes_and_listings_start_at_any_bytes() {
    let scratch = Scratch::new("order").await;
    let store: &dyn ObjectStore = &scratch.backend;
    let t = tenant("order");
    let b = bucket("keys");
    store.create_bucket(&t, &b).await.expect("create bucket");
    // Byte order, which no linguistic collation gives: upper case before lower case, U+007F
    // before U+00E9, U+E000 before U+10000 (UTF-16 order would put the latter first).
    let keys = [
        "B",
        "a",
        "a\u{7f}",
        "a\u{e9}",
        "a\u{e000}",
        "a\u{10000}",
        "b%",
        "b_",
    ];
    for k in keys.iter().rev() {
        let meta = write(store, &t, &key(k), k.as_bytes(), START).await;
        store
            .put_object(&t, &b, &meta, &Precondition::None)
            .await
            .expect("put");
    }
    let names = |objects: Vec<ObjectMeta>| {
        objects
            .into_iter()
            .map(|o| o.key.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    let all = store
        .list_objects(&t, &b, &ObjectPrefix::all(), b"", Limit::MAX)
        .await
        .expect("list");
    assert_eq!(names(all), keys);
    // From bytes that are not UTF-8: 0xC3 0xFF sorts after "a\u{e9}" (0xC3 0xA9), before U+E000.
    let from = [b'a', 0xC3, 0xFF];
    let tail = store
        .list_objects(&t, &b, &ObjectPrefix::all(), &from, Limit::MAX)
        .await
        .expect("list");
    assert_eq!(names(tail), ["a\u{e000}", "a\u{10000}", "b%", "b_"]);
    // Prefixes are bytes, not LIKE patterns.
    let prefix = ObjectPrefix::new("b_").expect("prefix");
    let under = store
        .list_objects(&t, &b, &prefix, b"", Limit::MAX)
        .await
        .expect("list");
    assert_eq!(names(under), ["b_"]);
    let prefix = ObjectPrefix::new("a").expect("prefix");
    let page = store
        .list_objects(&t, &b, &prefix, b"a\x7f", Limit::new(2).expect("limit"))
        .await
        .expect("list");
    assert_eq!(names(page), ["a\u{7f}", "a\u{e9}"]);
    scratch.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_agree_with_one_another() {
    let scratch = Scratch::new("races").await;
    let backend = Arc::new(scratch.backend.clone());
    let t = tenant("races");
    let b = bucket("contended");
    backend.create_bucket(&t, &b).await.expect("create bucket");

    // Conditional creates of one key: exactly one wins, the others find it there; every loser's
    // blob is still pending (nothing claimed it), so its writer can discard it.
    for round in 0..5 {
        let k = key(&format!("once/{round}"));
        let mut tasks = Vec::new();
        for writer in 0..8u8 {
            let backend = backend.clone();
            let (t, b, k) = (t.clone(), b.clone(), k.clone());
            tasks.push(tokio::spawn(async move {
                let meta = write(&*backend, &t, &k, &[writer; 100], START).await;
                let outcome = backend
                    .put_object(&t, &b, &meta, &Precondition::IfAbsent)
                    .await;
                if outcome.is_err() {
                    backend
                        .discard_data(&t, meta.segments[0].data)
                        .await
                        .expect("discard");
                }
                outcome.map(|()| meta.etag)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.expect("task") {
                Ok(etag) => winners.push(etag),
                Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        let stored = backend.object(&t, &b, &k).await.expect("get").expect("put");
        assert_eq!(stored.etag, winners[0]);
    }
    // Only the winners' bytes remain: the losers' blobs were discarded at once.
    assert_eq!(backend.stored_bytes(&t).await.expect("stored"), 5 * 100);

    // Unconditional writers of one key: every one succeeds, the last commit stays, and the
    // blobs of every replaced object are freed (none leaks, none is freed twice).
    let k = key("last");
    let mut tasks = Vec::new();
    for writer in 0..8u8 {
        let backend = backend.clone();
        let (t, b, k) = (t.clone(), b.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            let meta = write(&*backend, &t, &k, &[writer; 10], START).await;
            backend.put_object(&t, &b, &meta, &Precondition::None).await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("put");
    }
    let everything = ReapPolicy {
        abandoned_before: START,
        freed_before: START + 1,
    };
    assert_eq!(
        backend.reap_objects(everything).await.expect("reap"),
        7,
        "the seven replaced objects' blobs"
    );
    assert_eq!(
        backend.stored_bytes(&t).await.expect("stored"),
        5 * 100 + 10
    );

    // A writer racing delete_bucket: either the object lands first and the delete is refused,
    // or the bucket goes first and the write finds no bucket; never both.
    for round in 0..10 {
        let b = bucket(&format!("doomed-{round}"));
        backend.create_bucket(&t, &b).await.expect("create bucket");
        let meta = write(&*backend, &t, &key("k"), b"x", START).await;
        let (put, deleted) = tokio::join!(
            backend.put_object(&t, &b, &meta, &Precondition::None),
            backend.delete_bucket(&t, &b)
        );
        match (put, deleted) {
            (Ok(()), Err(e)) => {
                assert_eq!(e.kind(), ErrorKind::Conflict, "{e:?}");
                assert!(
                    backend
                        .object(&t, &b, &key("k"))
                        .await
                        .expect("get")
                        .is_some()
                );
            }
            (Err(e), Ok(())) => {
                assert!(
                    matches!(
                        e,
                        p8fs_core::Error::NotFound {
                            resource: Resource::Bucket,
                            ..
                        }
                    ),
                    "{e:?}"
                );
                assert!(backend.bucket(&t, &b).await.expect("bucket").is_none());
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
    drop(backend);
    scratch.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_an_expired_object_frees_its_blobs_for_the_reaper() {
    let scratch = Scratch::new("purge").await;
    let store: &dyn ObjectStore = &scratch.backend;
    let t = tenant("purge");
    let b = bucket("temporary");
    store.create_bucket(&t, &b).await.expect("create bucket");
    let ttl = Ttl::from_millis(1000).expect("ttl");
    let mut meta = write(store, &t, &key("brief"), &pattern(3000), START).await;
    meta.expires_at = Some(ttl.expires_at(START));
    store
        .put_object(&t, &b, &meta, &Precondition::None)
        .await
        .expect("put");
    let everything = ReapPolicy {
        abandoned_before: START,
        freed_before: i64::MAX,
    };
    // Expired but not purged: invisible, and its blob is still owned by the record.
    scratch.clock.advance(1000);
    assert!(
        store
            .object(&t, &b, &key("brief"))
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(store.reap_objects(everything).await.expect("reap"), 0);
    assert_eq!(store.stored_bytes(&t).await.expect("stored"), 3000);
    // An expired object does not keep its bucket.
    assert_eq!(
        scratch.backend.purge_expired().await.expect("purge"),
        1,
        "the object record"
    );
    assert_eq!(store.reap_objects(everything).await.expect("reap"), 1);
    assert_eq!(store.stored_bytes(&t).await.expect("stored"), 0);
    store.delete_bucket(&t, &b).await.expect("delete bucket");
    scratch.drop_database().await;
}
