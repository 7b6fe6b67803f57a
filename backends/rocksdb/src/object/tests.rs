//! Object behaviour the shared suite cannot see on RocksDB: what a crash leaves behind and how the
//! reaper reclaims it, what survives reopening, chunked round trips, and concurrent writers.

use std::sync::Arc;

use p8fs_core::object::{CHUNK_BYTES, ObjectWriter, chunk_reads};
use p8fs_core::{
    BucketName, ErrorKind, Limit, ManualClock, ObjectAttributes, ObjectKey, ObjectMeta,
    ObjectPrefix, ObjectStore, PartRecord, Precondition, ReapPolicy, Segment, TenantId,
};

use crate::{RocksBackend, RocksOptions};

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> RocksBackend {
    RocksBackend::open(dir, clock.clone(), RocksOptions::default()).expect("open")
}

fn names() -> (TenantId, BucketName) {
    (
        TenantId::new("t").unwrap(),
        BucketName::new("bucket").unwrap(),
    )
}

/// Bytes that differ from chunk to chunk and within one.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 997) as u8).collect()
}

/// Writes `bytes` as a pending blob and returns the object to commit at `key`.
async fn write(db: &RocksBackend, tenant: &TenantId, key: &str, bytes: &[u8]) -> ObjectMeta {
    let mut writer = ObjectWriter::begin(db, tenant, u64::MAX).await.unwrap();
    writer.write(bytes).await.unwrap();
    let written = writer.finish().await.unwrap();
    ObjectMeta {
        key: ObjectKey::new(key).unwrap(),
        size: written.size,
        etag: written.md5.clone(),
        last_modified: 1_000,
        expires_at: None,
        attributes: ObjectAttributes::default(),
        segments: vec![written.segment()],
    }
}

/// Reads bytes `start..end` of an object, chunk by chunk.
async fn read(
    db: &RocksBackend,
    tenant: &TenantId,
    meta: &ObjectMeta,
    start: u64,
    end: u64,
) -> Vec<u8> {
    let mut out = Vec::new();
    for r in chunk_reads(&meta.segments, start, end) {
        let chunk = db.read_chunk(tenant, r.data, r.index).await.unwrap();
        out.extend_from_slice(&chunk[r.start..r.end]);
    }
    out
}

fn reap_all(now: i64) -> ReapPolicy {
    ReapPolicy {
        abandoned_before: now,
        freed_before: now,
    }
}

#[tokio::test]
async fn a_crash_before_commit_leaves_nothing_visible_and_the_reaper_reclaims_the_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let (tenant, bucket) = names();
    let data = {
        let db = open(dir.path(), &clock);
        db.create_bucket(&tenant, &bucket).await.unwrap();
        let meta = write(&db, &tenant, "k", &pattern(3 * CHUNK_BYTES / 2)).await;
        meta.segments[0].data
        // The process ends here, before put_object.
    };
    let db = open(dir.path(), &clock);
    let key = ObjectKey::new("k").unwrap();
    assert_eq!(db.object(&tenant, &bucket, &key).await.unwrap(), None);
    let listed = db
        .list_objects(
            &tenant,
            &bucket,
            &ObjectPrefix::new("").unwrap(),
            b"",
            Limit::MAX,
        )
        .await
        .unwrap();
    assert!(listed.is_empty());
    assert_eq!(
        db.stored_bytes(&tenant).await.unwrap(),
        (3 * CHUNK_BYTES / 2) as u64
    );
    // Not yet abandoned: the reaper keeps it.
    assert_eq!(db.reap_objects(reap_all(1_000)).await.unwrap(), 0);
    assert_eq!(db.reap_objects(reap_all(1_001)).await.unwrap(), 1);
    assert_eq!(db.stored_bytes(&tenant).await.unwrap(), 0);
    let gone = db.read_chunk(&tenant, data, 0).await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound);
    // A reaped blob can neither be written nor committed.
    let err = db.write_chunk(&tenant, data, 2, b"late").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(db.stored_bytes(&tenant).await.unwrap(), 0);
}

#[tokio::test]
async fn a_five_mib_object_round_trips_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let (tenant, bucket) = names();
    let bytes = pattern(5 * CHUNK_BYTES + 12_345);
    let meta = {
        let db = open(dir.path(), &clock);
        db.create_bucket(&tenant, &bucket).await.unwrap();
        let meta = write(&db, &tenant, "big/object", &bytes).await;
        db.put_object(&tenant, &bucket, &meta, &Precondition::IfAbsent)
            .await
            .unwrap();
        meta
    };
    let db = open(dir.path(), &clock);
    let stored = db
        .object(&tenant, &bucket, &meta.key)
        .await
        .unwrap()
        .expect("committed object survives");
    assert_eq!(stored, meta);
    assert_eq!(stored.etag, p8fs_core::object::md5_hex(&bytes));
    assert_eq!(read(&db, &tenant, &stored, 0, u64::MAX).await, bytes);
    // A range across a chunk boundary.
    let (start, end) = (CHUNK_BYTES as u64 - 10, 2 * CHUNK_BYTES as u64 + 10);
    assert_eq!(
        read(&db, &tenant, &stored, start, end).await,
        bytes[start as usize..end as usize]
    );
    assert_eq!(db.stored_bytes(&tenant).await.unwrap(), bytes.len() as u64);
    // Committed blobs are never reaped.
    assert_eq!(db.reap_objects(reap_all(i64::MAX)).await.unwrap(), 0);
    assert_eq!(read(&db, &tenant, &stored, 0, 5).await, bytes[..5]);
}

#[tokio::test]
async fn replaced_and_expired_objects_keep_their_bytes_for_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let (tenant, bucket) = names();
    let db = open(dir.path(), &clock);
    db.create_bucket(&tenant, &bucket).await.unwrap();
    let first = write(&db, &tenant, "k", b"first").await;
    db.put_object(&tenant, &bucket, &first, &Precondition::None)
        .await
        .unwrap();
    let second = write(&db, &tenant, "k", b"second!").await;
    db.put_object(
        &tenant,
        &bucket,
        &second,
        &Precondition::IfEtag(first.etag.clone()),
    )
    .await
    .unwrap();
    // A reader that began with the first object still reads it.
    assert_eq!(read(&db, &tenant, &first, 0, u64::MAX).await, b"first");
    assert_eq!(db.stored_bytes(&tenant).await.unwrap(), 12);
    clock.set(2_000);
    // Freed at 1,000: kept while the grace period says so, removed after.
    assert_eq!(
        db.reap_objects(ReapPolicy {
            abandoned_before: 2_000,
            freed_before: 1_000,
        })
        .await
        .unwrap(),
        0
    );
    assert_eq!(db.reap_objects(reap_all(1_001)).await.unwrap(), 1);
    assert_eq!(db.stored_bytes(&tenant).await.unwrap(), 7);

    // An expiring object: invisible once expired, its record purged and its blob freed.
    let mut expiring = write(&db, &tenant, "e", b"short-lived").await;
    expiring.expires_at = Some(3_000);
    db.put_object(&tenant, &bucket, &expiring, &Precondition::None)
        .await
        .unwrap();
    clock.set(3_000);
    assert_eq!(
        db.object(&tenant, &bucket, &expiring.key).await.unwrap(),
        None
    );
    // An expired object does not block a conditional create, and its blob is freed.
    let again = write(&db, &tenant, "e", b"again").await;
    db.put_object(&tenant, &bucket, &again, &Precondition::IfAbsent)
        .await
        .unwrap();
    assert_eq!(db.reap_objects(reap_all(3_001)).await.unwrap(), 1);
    assert_eq!(db.stored_bytes(&tenant).await.unwrap(), 12);
    let mut expiring = write(&db, &tenant, "x", b"gone").await;
    expiring.expires_at = Some(4_000);
    db.put_object(&tenant, &bucket, &expiring, &Precondition::None)
        .await
        .unwrap();
    clock.set(4_000);
    assert_eq!(p8fs_core::Maintenance::purge_expired(&db).await.unwrap(), 1);
    assert_eq!(db.reap_objects(reap_all(4_001)).await.unwrap(), 1);
    assert_eq!(db.stored_bytes(&tenant).await.unwrap(), 12);
}

#[tokio::test]
async fn an_abandoned_upload_is_reaped_with_its_parts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let (tenant, bucket) = names();
    let db = open(dir.path(), &clock);
    db.create_bucket(&tenant, &bucket).await.unwrap();
    let key = ObjectKey::new("multi").unwrap();
    let upload = db
        .create_upload(&tenant, &bucket, &key, &ObjectAttributes::default(), None)
        .await
        .unwrap();
    for number in 1..=3u32 {
        let blob = write(&db, &tenant, "multi", &pattern(1000 * number as usize)).await;
        let part = PartRecord {
            number,
            data: blob.segments[0].data,
            size: blob.size,
            etag: blob.etag,
            checksums: Default::default(),
            last_modified: 1_000,
        };
        db.put_part(&tenant, &bucket, upload.id, &part)
            .await
            .unwrap();
    }
    assert_eq!(db.stored_bytes(&tenant).await.unwrap(), 6_000);
    clock.set(5_000);
    assert_eq!(db.reap_objects(reap_all(1_000)).await.unwrap(), 0);
    assert_eq!(db.reap_objects(reap_all(1_001)).await.unwrap(), 3);
    assert_eq!(db.stored_bytes(&tenant).await.unwrap(), 0);
    assert_eq!(db.upload(&tenant, &bucket, upload.id).await.unwrap(), None);
    let err = db
        .list_parts(&tenant, &bucket, upload.id, 0, Limit::MAX)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn listing_compares_raw_bytes_from_any_byte_string() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let (tenant, bucket) = names();
    let db = open(dir.path(), &clock);
    db.create_bucket(&tenant, &bucket).await.unwrap();
    for key in ["a", "a/b", "a\u{7f}", "é", "z"] {
        let meta = write(&db, &tenant, key, key.as_bytes()).await;
        db.put_object(&tenant, &bucket, &meta, &Precondition::None)
            .await
            .unwrap();
    }
    let list = |prefix: &'static str, from: &'static [u8]| {
        let (db, tenant, bucket) = (&db, &tenant, &bucket);
        async move {
            db.list_objects(
                tenant,
                bucket,
                &ObjectPrefix::new(prefix).unwrap(),
                from,
                Limit::MAX,
            )
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key.into_string())
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(list("", b"").await, ["a", "a/b", "a\u{7f}", "z", "é"]);
    // `from` is inclusive and need not be UTF-8: 0xC3 sorts before "é" (0xC3 0xA9).
    assert_eq!(list("", b"\xC3").await, ["é"]);
    assert_eq!(list("", b"a\0").await, ["a/b", "a\u{7f}", "z", "é"]);
    assert_eq!(list("a", b"a/b").await, ["a/b", "a\u{7f}"]);
    assert_eq!(list("a/", b"").await, ["a/b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conditional_creates_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let (tenant, bucket) = names();
    let db = Arc::new(open(dir.path(), &clock));
    db.create_bucket(&tenant, &bucket).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (db, tenant, bucket) = (db.clone(), tenant.clone(), bucket.clone());
        tasks.push(tokio::spawn(async move {
            let meta = write(&db, &tenant, "once", format!("writer {i}").as_bytes()).await;
            db.put_object(&tenant, &bucket, &meta, &Precondition::IfAbsent)
                .await
                .map(|()| meta.segments[0].data)
                .map_err(|e| e.kind())
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(data) => winners.push(data),
            Err(kind) => assert_eq!(kind, ErrorKind::Conflict),
        }
    }
    assert_eq!(winners.len(), 1);
    let stored = db
        .object(&tenant, &bucket, &ObjectKey::new("once").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.segments,
        [Segment {
            data: winners[0],
            size: stored.size
        }]
    );
    // The losers' blobs are still pending: the reaper removes them, not the winner's.
    assert_eq!(db.reap_objects(reap_all(1_001)).await.unwrap(), 15);
    assert_eq!(db.stored_bytes(&tenant).await.unwrap(), stored.size);
}
