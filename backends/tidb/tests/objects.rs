//! Objects on a real server, where the shared scenarios cannot reach: the rows a write racing a
//! bucket deletion leaves in the deleted bucket's id (invisible to the bucket created again, then
//! removed by the reaper), a multi-chunk object of full 1 MiB rows, and a multipart completion
//! and deletion naming more blobs than one statement does.
//!
//! The reaper works across all tenants with a clock far ahead of everyone else's, so these tests
//! use the fault tests' server of their own, `P8FS_TEST_TIDB_FAULT_URL` (see
//! `scripts/test-all.sh`), and run one at a time like them. Without it they fail: a missing
//! server is never a pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use tokio::sync::Mutex;

use p8fs_backend_tidb::{TidbBackend, TidbOptions};
use p8fs_core::object::{
    CHUNK_BYTES, MAX_PUT_BYTES, ObjectWriter, WrittenData, chunk_reads, md5_hex,
};
use p8fs_core::{
    BucketName, ErrorKind, Limit, ManualClock, ObjectAttributes, ObjectKey, ObjectMeta,
    ObjectPrefix, ObjectStore, PartRecord, Precondition, ReapPolicy, Resource, TenantId, UploadId,
};

/// Serialises the tests of this binary when they run as threads of one process.
static SERIAL: Mutex<()> = Mutex::const_new(());

const START: i64 = 1_700_000_000_000;
/// Far past anything any test on the server wrote.
const FAR_FUTURE: i64 = START + 10 * 365 * 24 * 3_600_000;

fn url() -> String {
    std::env::var("P8FS_TEST_TIDB_FAULT_URL").unwrap_or_else(|_| {
        panic!(
            "set P8FS_TEST_TIDB_FAULT_URL: the TiDB object tests reap across all tenants and need \
             a server of their own (see scripts/test-all.sh)"
        )
    })
}

fn fresh_tenant(tag: &str) -> TenantId {
    use std::hash::BuildHasher;
    let n = std::collections::hash_map::RandomState::new().hash_one(tag);
    TenantId::new(format!("o{n:016x}")).expect("valid tenant")
}

async fn connect(clock: Arc<ManualClock>) -> TidbBackend {
    TidbBackend::connect(&url(), clock, TidbOptions::default())
        .await
        .expect("connect to P8FS_TEST_TIDB_FAULT_URL")
}

/// Removes everything any earlier test left for the reaper, so counts are this test's own.
async fn clean_slate(backend: &TidbBackend) {
    backend
        .reap_objects(ReapPolicy {
            abandoned_before: FAR_FUTURE,
            freed_before: FAR_FUTURE,
        })
        .await
        .expect("reap what earlier tests left");
}

/// `n` bytes that differ from chunk to chunk.
fn content(n: usize, seed: u8) -> Vec<u8> {
    (0..n as u64)
        .map(|i| {
            ((i.wrapping_add(u64::from(seed) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56)
                as u8
        })
        .collect()
}

async fn write(store: &dyn ObjectStore, tenant: &TenantId, bytes: &[u8]) -> WrittenData {
    let mut writer = ObjectWriter::begin(store, tenant, MAX_PUT_BYTES)
        .await
        .expect("begin_data");
    writer.write(bytes).await.expect("write");
    writer.finish().await.expect("finish")
}

fn meta(key: &str, data: &[&WrittenData], etag: String, now: i64) -> ObjectMeta {
    ObjectMeta {
        key: ObjectKey::new(key).expect("key"),
        size: data.iter().map(|d| d.size).sum(),
        etag,
        last_modified: now,
        expires_at: None,
        attributes: ObjectAttributes::default(),
        segments: data.iter().map(|d| d.segment()).collect(),
    }
}

async fn read_all(store: &dyn ObjectStore, tenant: &TenantId, meta: &ObjectMeta) -> Vec<u8> {
    let mut out = Vec::with_capacity(meta.size as usize);
    for read in chunk_reads(&meta.segments, 0, meta.size) {
        let chunk = store
            .read_chunk(tenant, read.data, read.index)
            .await
            .expect("read_chunk");
        out.extend_from_slice(&chunk[read.start..read.end]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_chunks_round_trip_and_are_reaped_after_delete() {
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let backend = connect(clock.clone()).await;
    clean_slate(&backend).await;
    let (s, t): (&dyn ObjectStore, _) = (&backend, fresh_tenant("chunks"));
    let bucket = BucketName::new("big").expect("bucket");
    s.create_bucket(&t, &bucket).await.expect("create_bucket");

    // Five full 1 MiB rows and a short one.
    let bytes = content(5 * CHUNK_BYTES + 7, 1);
    let data = write(s, &t, &bytes).await;
    let m = meta("five", &[&data], data.md5.clone(), START);
    s.put_object(&t, &bucket, &m, &Precondition::IfAbsent)
        .await
        .expect("put_object");
    let got = s
        .object(&t, &bucket, &m.key)
        .await
        .expect("object")
        .expect("visible");
    assert_eq!(got, m);
    assert_eq!(read_all(s, &t, &got).await, bytes);
    assert_eq!(md5_hex(&bytes), got.etag);
    assert_eq!(
        s.stored_bytes(&t).await.expect("stored"),
        bytes.len() as u64
    );

    assert!(s.delete_object(&t, &bucket, &m.key).await.expect("delete"));
    assert_eq!(
        s.stored_bytes(&t).await.expect("stored"),
        bytes.len() as u64,
        "freed, not yet reaped"
    );
    clock.advance(1);
    let removed = s
        .reap_objects(ReapPolicy {
            abandoned_before: START,
            freed_before: clock.advance(1),
        })
        .await
        .expect("reap");
    assert_eq!(removed, 1, "one blob of six chunks");
    assert_eq!(s.stored_bytes(&t).await.expect("stored"), 0);
    let gone = s.read_chunk(&t, data.data, 0).await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_into_a_deleted_bucket_stay_invisible_and_are_reaped() {
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let backend = connect(clock.clone()).await;
    clean_slate(&backend).await;
    let (s, t): (&dyn ObjectStore, _) = (&backend, fresh_tenant("incarnation"));
    let bucket = BucketName::new("reborn").expect("bucket");
    s.create_bucket(&t, &bucket).await.expect("create_bucket");

    // The bucket's id, as a write that looked the bucket up just before its deletion holds it.
    let mut conn = mysql_async::Conn::from_url(url()).await.expect("connect");
    let old_id: u64 = conn
        .exec_first(
            "SELECT id FROM p8fs_buckets WHERE tenant = ? AND name = ?",
            (t.as_str(), bucket.as_str()),
        )
        .await
        .expect("bucket id")
        .expect("the bucket has an id");
    let upload = s
        .create_upload(
            &t,
            &bucket,
            &ObjectKey::new("pending-upload").expect("key"),
            &ObjectAttributes::default(),
            None,
        )
        .await
        .expect("create_upload");
    s.delete_bucket(&t, &bucket).await.expect("delete_bucket");
    assert!(
        s.upload(&t, &bucket, upload.id).await.is_err(),
        "the bucket is gone"
    );

    // That write commits after the deletion: its object and upload rows land in the old id.
    let late = write(s, &t, b"late bytes").await;
    conn.exec_drop(
        "DELETE FROM p8fs_blobs WHERE tenant = ? AND data = ?",
        (t.as_str(), late.data.0),
    )
    .await
    .expect("claim the blob as a commit does");
    conn.exec_drop(
        "INSERT INTO p8fs_objects (bucket, k, tenant, size, etag, last_modified, expires_at,
            attributes, segments) VALUES (?, 'late', ?, ?, ?, ?, NULL, '{}', ?)",
        (
            old_id,
            t.as_str(),
            late.size,
            late.md5.as_str(),
            START,
            [late.data.0.to_be_bytes(), late.size.to_be_bytes()].concat(),
        ),
    )
    .await
    .expect("the late object row");
    conn.exec_drop(
        "INSERT INTO p8fs_uploads (bucket, id, tenant, k, initiated, attributes, expires_at)
            VALUES (?, ?, ?, 'late-upload', ?, '{}', NULL)",
        (old_id, u64::MAX - 1, t.as_str(), clock.advance(1)),
    )
    .await
    .expect("the late upload row");
    conn.disconnect().await.expect("disconnect");

    // The bucket created again sees none of it.
    s.create_bucket(&t, &bucket).await.expect("create again");
    assert_eq!(
        s.object(&t, &bucket, &ObjectKey::new("late").expect("key"))
            .await
            .expect("object"),
        None
    );
    let listed = s
        .list_objects(
            &t,
            &bucket,
            &ObjectPrefix::new("").expect("prefix"),
            b"",
            Limit::MAX,
        )
        .await
        .expect("list_objects");
    assert!(listed.is_empty(), "{listed:?}");
    assert!(
        s.list_uploads(
            &t,
            &bucket,
            &ObjectPrefix::new("").expect("prefix"),
            None,
            Limit::MAX
        )
        .await
        .expect("list_uploads")
        .is_empty()
    );
    s.delete_bucket(&t, &bucket).await.expect("still empty");
    assert_eq!(s.stored_bytes(&t).await.expect("stored"), 10);

    // Before the deleted id is old enough, the reaper leaves it alone (the write may still be
    // committing); after, it removes the late object's blob and forgets the id.
    let now = clock.advance(1);
    assert_eq!(
        s.reap_objects(ReapPolicy {
            abandoned_before: START,
            freed_before: now,
        })
        .await
        .expect("reap"),
        0
    );
    assert_eq!(s.stored_bytes(&t).await.expect("stored"), 10);
    assert_eq!(
        s.reap_objects(ReapPolicy {
            abandoned_before: now,
            freed_before: now,
        })
        .await
        .expect("reap"),
        1
    );
    assert_eq!(s.stored_bytes(&t).await.expect("stored"), 0);
    let mut conn = mysql_async::Conn::from_url(url()).await.expect("connect");
    let left: Option<u64> = conn
        .exec_first(
            "SELECT (SELECT COUNT(*) FROM p8fs_objects WHERE bucket = ?)
                + (SELECT COUNT(*) FROM p8fs_uploads WHERE bucket = ?)
                + (SELECT COUNT(*) FROM p8fs_deleted_buckets WHERE id = ?)",
            (old_id, old_id, old_id),
        )
        .await
        .expect("count");
    assert_eq!(left, Some(0), "nothing of the deleted id remains");
    conn.disconnect().await.expect("disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_and_deletion_of_more_blobs_than_one_statement_names() {
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let backend = connect(clock.clone()).await;
    clean_slate(&backend).await;
    let (s, t): (&dyn ObjectStore, _) = (&backend, fresh_tenant("many-parts"));
    let bucket = BucketName::new("parts").expect("bucket");
    s.create_bucket(&t, &bucket).await.expect("create_bucket");
    let key = ObjectKey::new("assembled").expect("key");
    let upload = s
        .create_upload(&t, &bucket, &key, &ObjectAttributes::default(), None)
        .await
        .expect("create_upload");

    // 1,200 one-byte parts (the backend does not enforce the minimum part size; core's
    // plan_completion does), of which the object uses every one but the last 100.
    const PARTS: u32 = 1200;
    const USED: u32 = 1100;
    let mut written = Vec::new();
    for number in 1..=PARTS {
        let byte = [(number % 251) as u8];
        let data = write(s, &t, &byte).await;
        s.put_part(
            &t,
            &bucket,
            upload.id,
            &PartRecord {
                number,
                data: data.data,
                size: data.size,
                etag: data.md5.clone(),
                checksums: BTreeMap::new(),
                last_modified: START,
            },
        )
        .await
        .expect("put_part");
        written.push(data);
    }
    let parts = s
        .list_parts(&t, &bucket, upload.id, 1000, Limit::MAX)
        .await
        .expect("list_parts");
    assert_eq!(parts.len(), 200);
    assert_eq!(parts[0].number, 1001);

    let used: Vec<&WrittenData> = written.iter().take(USED as usize).collect();
    let m = meta("assembled", &used, format!("x-{USED}"), START);
    s.complete_upload(&t, &bucket, upload.id, &m, &Precondition::None)
        .await
        .expect("complete_upload");
    let got = s
        .object(&t, &bucket, &key)
        .await
        .expect("object")
        .expect("visible");
    assert_eq!(got.segments.len(), USED as usize);
    let expected: Vec<u8> = (1..=USED).map(|n| (n % 251) as u8).collect();
    assert_eq!(read_all(s, &t, &got).await, expected);
    let gone = s.upload(&t, &bucket, upload.id).await.expect("upload");
    assert_eq!(gone, None);
    let err = s
        .abort_upload(&t, &bucket, upload.id)
        .await
        .expect_err("completed");
    assert!(
        matches!(
            err,
            p8fs_core::Error::NotFound {
                resource: Resource::Upload,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        s.abort_upload(&t, &bucket, UploadId(1))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );

    // The unused parts were freed by the completion, the used ones by the deletion.
    let now = clock.advance(1);
    assert_eq!(
        s.reap_objects(ReapPolicy {
            abandoned_before: START,
            freed_before: now + 1,
        })
        .await
        .expect("reap"),
        u64::from(PARTS - USED)
    );
    assert_eq!(s.stored_bytes(&t).await.expect("stored"), u64::from(USED));
    assert!(s.delete_object(&t, &bucket, &key).await.expect("delete"));
    assert_eq!(
        s.reap_objects(ReapPolicy {
            abandoned_before: START,
            freed_before: now + 1,
        })
        .await
        .expect("reap"),
        u64::from(USED)
    );
    assert_eq!(s.stored_bytes(&t).await.expect("stored"), 0);
}
