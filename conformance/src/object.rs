//! Objects (DESIGN.md, "Objects (S3)"; the contract on `p8fs_core::ObjectStore`): buckets per
//! tenant, objects written through [`ObjectWriter`] in chunks and read back through
//! [`chunk_reads`], attributes, expiry, conditional writes (also under concurrency) and tenancy.
//! Listings are in `object/listing.rs`, multipart uploads in `object/multipart.rs`; what only the
//! reaper can show (freed and pending blobs) is in `crate::reaper`, which runs exclusive.

mod listing;
mod multipart;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use tokio::sync::Barrier;

pub use listing::*;
pub use multipart::*;

use p8fs_core::object::{
    CHUNK_BYTES, MAX_BUCKETS, MAX_PUT_BYTES, ObjectWriter, WrittenData, chunk_reads,
    list_objects_v2, md5_hex,
};
use p8fs_core::{
    BucketName, Clock, Error, ErrorKind, Limit, ObjectAttributes, ObjectKey, ObjectMeta,
    ObjectPrefix, ObjectStore, PartRecord, Precondition, Resource, Result, TenantId, Timestamp,
};

use crate::Harness;

// ---------------------------------------------------------------------------------------------
// Helpers shared by the object scenarios
// ---------------------------------------------------------------------------------------------

pub(crate) fn bucket(name: &str) -> BucketName {
    BucketName::new(name).expect("valid bucket name")
}

pub(crate) fn okey(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("valid object key")
}

pub(crate) fn oprefix(s: &str) -> ObjectPrefix {
    ObjectPrefix::new(s).expect("valid object prefix")
}

/// `n` bytes that differ from chunk to chunk and from seed to seed, so a chunk read from the
/// wrong place or the wrong blob shows.
pub(crate) fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n as u64)
        .map(|i| {
            ((i.wrapping_add(u64::from(seed) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56)
                as u8
        })
        .collect()
}

/// The backend as the object capability.
pub(crate) fn store(h: &Harness) -> &dyn ObjectStore {
    h.b()
}

pub(crate) async fn make_bucket(h: &Harness, tenant: &TenantId, name: &str) {
    store(h)
        .create_bucket(tenant, &bucket(name))
        .await
        .expect("create_bucket succeeds");
}

/// Writes `content` into a new pending blob through [`ObjectWriter`], in pieces of a size that
/// is not a divisor of the chunk size, so chunk boundaries fall inside pieces.
pub(crate) async fn write_data(h: &Harness, tenant: &TenantId, content: &[u8]) -> WrittenData {
    let mut writer = ObjectWriter::begin(store(h), tenant, MAX_PUT_BYTES)
        .await
        .expect("begin_data succeeds");
    for piece in content.chunks(333_333) {
        writer.write(piece).await.expect("write_chunk succeeds");
    }
    writer.finish().await.expect("the last chunk is stored")
}

/// The metadata of a single-PUT object of the blob `written`, modified now.
pub(crate) fn meta_of(
    h: &Harness,
    key: &str,
    written: &WrittenData,
    expires_at: Option<Timestamp>,
    attributes: ObjectAttributes,
) -> ObjectMeta {
    ObjectMeta {
        key: okey(key),
        size: written.size,
        etag: written.md5.clone(),
        last_modified: h.clock.now(),
        expires_at,
        attributes,
        segments: vec![written.segment()],
    }
}

/// Writes `content` and commits it at `key` under `condition`, with an optional expiry.
pub(crate) async fn put_with(
    h: &Harness,
    tenant: &TenantId,
    bucket_name: &str,
    key: &str,
    content: &[u8],
    expires_at: Option<Timestamp>,
    condition: &Precondition,
) -> Result<ObjectMeta> {
    let written = write_data(h, tenant, content).await;
    let meta = meta_of(h, key, &written, expires_at, ObjectAttributes::default());
    store(h)
        .put_object(tenant, &bucket(bucket_name), &meta, condition)
        .await?;
    Ok(meta)
}

/// Writes `content` and commits it at `key` unconditionally, forever.
pub(crate) async fn put(
    h: &Harness,
    tenant: &TenantId,
    bucket_name: &str,
    key: &str,
    content: &[u8],
) -> ObjectMeta {
    put_with(
        h,
        tenant,
        bucket_name,
        key,
        content,
        None,
        &Precondition::None,
    )
    .await
    .expect("put_object succeeds")
}

/// The visible object at `key`.
pub(crate) async fn get(
    h: &Harness,
    tenant: &TenantId,
    bucket_name: &str,
    key: &str,
) -> Option<ObjectMeta> {
    store(h)
        .object(tenant, &bucket(bucket_name), &okey(key))
        .await
        .expect("object succeeds")
}

/// Bytes `start..end` of an object, read chunk by chunk as a front-end serves a GET.
pub(crate) async fn read_range(
    h: &Harness,
    tenant: &TenantId,
    meta: &ObjectMeta,
    start: u64,
    end: u64,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for read in chunk_reads(&meta.segments, start, end) {
        let chunk = store(h).read_chunk(tenant, read.data, read.index).await?;
        let piece = chunk.get(read.start..read.end).ok_or_else(|| {
            Error::internal(
                format!(
                    "chunk {} of blob {:?} holds {} bytes, fewer than {}",
                    read.index,
                    read.data,
                    chunk.len(),
                    read.end
                ),
                None,
            )
        })?;
        out.extend_from_slice(piece);
    }
    Ok(out)
}

/// All bytes of an object.
pub(crate) async fn read_all(h: &Harness, tenant: &TenantId, meta: &ObjectMeta) -> Vec<u8> {
    read_range(h, tenant, meta, 0, meta.size)
        .await
        .expect("every chunk of a live object is readable")
}

/// Asserts that `result` is `NotFound` about `resource`.
pub(crate) fn assert_not_found<T: Debug>(result: Result<T>, resource: Resource, what: &str) {
    match result {
        Err(Error::NotFound { resource: r, .. }) if r == resource => {}
        other => panic!("{what}: expected NotFound({resource:?}), got {other:?}"),
    }
}

/// Asserts that `result` failed with `kind`.
pub(crate) fn assert_kind<T: Debug>(result: Result<T>, kind: ErrorKind, what: &str) {
    match result {
        Err(e) if e.kind() == kind => {}
        other => panic!("{what}: expected {kind:?}, got {other:?}"),
    }
}

/// Keys of the visible objects of a bucket, by `list_objects` in one page.
pub(crate) async fn keys_in(h: &Harness, tenant: &TenantId, bucket_name: &str) -> Vec<String> {
    store(h)
        .list_objects(
            tenant,
            &bucket(bucket_name),
            &ObjectPrefix::all(),
            b"",
            Limit::MAX,
        )
        .await
        .expect("list_objects succeeds")
        .into_iter()
        .map(|m| m.key.into_string())
        .collect()
}

/// A part record for the blob `written`, modified now.
pub(crate) fn part_of(h: &Harness, number: u32, written: &WrittenData) -> PartRecord {
    PartRecord {
        number,
        data: written.data,
        size: written.size,
        etag: written.md5.clone(),
        checksums: BTreeMap::new(),
        last_modified: h.clock.now(),
    }
}

fn names(buckets: &[p8fs_core::BucketInfo]) -> Vec<&str> {
    buckets.iter().map(|b| b.name.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Buckets
// ---------------------------------------------------------------------------------------------

pub async fn buckets_create_list_head_delete(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    assert!(s.list_buckets(t).await.expect("list").is_empty());
    let now = h.clock.now();
    for name in ["photos-2", "photos", "a.b-c", "0day", "photos.old"] {
        let info = s.create_bucket(t, &bucket(name)).await.expect("create");
        assert_eq!((info.name.as_str(), info.created_at), (name, h.clock.now()));
        h.advance(1);
    }
    let all = s.list_buckets(t).await.expect("list");
    assert_eq!(
        names(&all),
        ["0day", "a.b-c", "photos", "photos-2", "photos.old"],
        "names ascending by bytes"
    );
    let head = s
        .bucket(t, &bucket("photos"))
        .await
        .expect("bucket")
        .expect("photos exists");
    assert_eq!(
        head.created_at,
        now + 1,
        "created_at is the clock at creation"
    );
    assert_eq!(
        all.iter().find(|b| b.name.as_str() == "photos"),
        Some(&head),
        "list_buckets and bucket agree"
    );
    assert_eq!(s.bucket(t, &bucket("nope")).await.expect("bucket"), None);

    let again = s.create_bucket(t, &bucket("photos")).await;
    match again {
        Err(Error::AlreadyExists {
            resource: Resource::Bucket,
            ..
        }) => {}
        other => {
            panic!("creating an existing bucket: expected AlreadyExists(Bucket), got {other:?}")
        }
    }
    assert_eq!(
        s.bucket(t, &bucket("photos")).await.expect("bucket"),
        Some(head),
        "a failed create changes nothing"
    );

    s.delete_bucket(t, &bucket("photos")).await.expect("delete");
    assert_eq!(s.bucket(t, &bucket("photos")).await.expect("bucket"), None);
    assert_eq!(
        names(&s.list_buckets(t).await.expect("list")),
        ["0day", "a.b-c", "photos-2", "photos.old"]
    );
    assert_not_found(
        s.delete_bucket(t, &bucket("photos")).await,
        Resource::Bucket,
        "deleting a deleted bucket",
    );

    // Created again, the bucket is new and empty.
    h.advance(10);
    let info = s
        .create_bucket(t, &bucket("photos"))
        .await
        .expect("create again");
    assert_eq!(info.created_at, h.clock.now());
    assert!(keys_in(h, t, "photos").await.is_empty());
}

pub async fn missing_bucket_is_not_found_everywhere(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "real").await;
    let upload = s
        .create_upload(
            t,
            &bucket("real"),
            &okey("k"),
            &ObjectAttributes::default(),
            None,
        )
        .await
        .expect("create_upload");
    let written = write_data(h, t, b"pending").await;
    let meta = meta_of(h, "k", &written, None, ObjectAttributes::default());
    let part = part_of(h, 1, &written);
    let missing = bucket("missing");
    let (key, none, all) = (okey("k"), Precondition::None, ObjectPrefix::all());

    let b = Resource::Bucket;
    assert_not_found(s.delete_bucket(t, &missing).await, b, "delete_bucket");
    assert_not_found(
        s.put_object(t, &missing, &meta, &none).await,
        b,
        "put_object",
    );
    assert_not_found(s.object(t, &missing, &key).await, b, "object");
    assert_not_found(s.delete_object(t, &missing, &key).await, b, "delete_object");
    assert_not_found(
        s.list_objects(t, &missing, &all, b"", Limit::MAX).await,
        b,
        "list_objects",
    );
    for max_keys in [0, 1000] {
        assert_not_found(
            list_objects_v2(s, t, &missing, &all, Some("/"), b"", max_keys).await,
            b,
            "list_objects_v2",
        );
    }
    assert_not_found(
        s.create_upload(t, &missing, &key, &ObjectAttributes::default(), None)
            .await,
        b,
        "create_upload",
    );
    assert_not_found(s.upload(t, &missing, upload.id).await, b, "upload");
    assert_not_found(
        s.list_uploads(t, &missing, &all, None, Limit::MAX).await,
        b,
        "list_uploads",
    );
    assert_not_found(
        s.put_part(t, &missing, upload.id, &part).await,
        b,
        "put_part",
    );
    assert_not_found(
        s.list_parts(t, &missing, upload.id, 0, Limit::MAX).await,
        b,
        "list_parts",
    );
    assert_not_found(
        s.complete_upload(t, &missing, upload.id, &meta, &none)
            .await,
        b,
        "complete_upload",
    );
    assert_not_found(
        s.abort_upload(t, &missing, upload.id).await,
        b,
        "abort_upload",
    );

    // None of it touched the real bucket, its upload or the pending blob.
    assert_eq!(
        s.upload(t, &bucket("real"), upload.id)
            .await
            .expect("upload"),
        Some(upload.clone()),
        "the upload of the real bucket is untouched"
    );
    assert!(keys_in(h, t, "real").await.is_empty());
    s.put_object(t, &bucket("real"), &meta, &none)
        .await
        .expect("the blob is still pending and can be committed");
    assert_eq!(get(h, t, "real", "k").await, Some(meta));
    assert_eq!(
        s.bucket(t, &missing).await.expect("bucket"),
        None,
        "no call created the missing bucket"
    );
}

pub async fn delete_of_non_empty_bucket_conflicts(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "full").await;
    let meta = put(h, t, "full", "only", b"content").await;
    let before = s.bucket(t, &bucket("full")).await.expect("bucket");
    assert_kind(
        s.delete_bucket(t, &bucket("full")).await,
        ErrorKind::Conflict,
        "deleting a bucket holding an object",
    );
    assert_eq!(s.bucket(t, &bucket("full")).await.expect("bucket"), before);
    assert_eq!(get(h, t, "full", "only").await, Some(meta.clone()));
    assert_eq!(
        read_all(h, t, &meta).await,
        b"content",
        "the bytes are intact"
    );

    // An expired object does not keep its bucket alive.
    put_with(
        h,
        t,
        "full",
        "short",
        b"brief",
        Some(h.clock.now() + 50),
        &Precondition::None,
    )
    .await
    .expect("put");
    assert!(
        s.delete_object(t, &bucket("full"), &okey("only"))
            .await
            .expect("delete")
    );
    assert_kind(
        s.delete_bucket(t, &bucket("full")).await,
        ErrorKind::Conflict,
        "the object `short` is still visible",
    );
    h.advance(50);
    s.delete_bucket(t, &bucket("full"))
        .await
        .expect("a bucket holding only expired objects is empty");
    assert_eq!(s.bucket(t, &bucket("full")).await.expect("bucket"), None);
    make_bucket(h, t, "full").await;
    assert!(
        keys_in(h, t, "full").await.is_empty(),
        "nothing of the deleted bucket comes back"
    );
    assert_eq!(get(h, t, "full", "short").await, None);
}

pub async fn delete_bucket_aborts_its_uploads(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "uploads").await;
    make_bucket(h, t, "neighbour").await;
    let doomed = s
        .create_upload(
            t,
            &bucket("uploads"),
            &okey("big"),
            &ObjectAttributes::default(),
            None,
        )
        .await
        .expect("create_upload");
    let kept = s
        .create_upload(
            t,
            &bucket("neighbour"),
            &okey("big"),
            &ObjectAttributes::default(),
            None,
        )
        .await
        .expect("create_upload");
    let written = write_data(h, t, b"part one").await;
    s.put_part(t, &bucket("uploads"), doomed.id, &part_of(h, 1, &written))
        .await
        .expect("put_part");

    s.delete_bucket(t, &bucket("uploads"))
        .await
        .expect("a bucket with uploads but no objects is empty");
    make_bucket(h, t, "uploads").await;
    let ub = bucket("uploads");
    assert_eq!(s.upload(t, &ub, doomed.id).await.expect("upload"), None);
    assert!(
        s.list_uploads(t, &ub, &ObjectPrefix::all(), None, Limit::MAX)
            .await
            .expect("list_uploads")
            .is_empty()
    );
    let next = write_data(h, t, b"part two").await;
    assert_not_found(
        s.put_part(t, &ub, doomed.id, &part_of(h, 2, &next)).await,
        Resource::Upload,
        "put_part into an upload aborted with its bucket",
    );
    assert_not_found(
        s.list_parts(t, &ub, doomed.id, 0, Limit::MAX).await,
        Resource::Upload,
        "list_parts of an aborted upload",
    );
    assert_eq!(
        s.upload(t, &bucket("neighbour"), kept.id)
            .await
            .expect("upload"),
        Some(kept),
        "another bucket's upload is untouched"
    );
}

pub async fn buckets_are_per_tenant(h: &Harness) {
    let (s, a, b) = (store(h), &h.tenant, &h.other);
    make_bucket(h, a, "shared-name").await;
    assert_eq!(
        s.bucket(b, &bucket("shared-name")).await.expect("bucket"),
        None
    );
    assert!(s.list_buckets(b).await.expect("list").is_empty());
    assert_not_found(
        s.object(b, &bucket("shared-name"), &okey("k")).await,
        Resource::Bucket,
        "another tenant's bucket is not found",
    );
    make_bucket(h, b, "shared-name").await;
    let mine = put(h, a, "shared-name", "k", b"tenant a").await;
    assert_eq!(get(h, b, "shared-name", "k").await, None);
    let theirs = put(h, b, "shared-name", "k", b"tenant b").await;
    assert_eq!(get(h, a, "shared-name", "k").await, Some(mine.clone()));
    assert_eq!(get(h, b, "shared-name", "k").await, Some(theirs.clone()));

    // Deleting one tenant's object and bucket leaves the other's.
    assert!(
        s.delete_object(b, &bucket("shared-name"), &okey("k"))
            .await
            .expect("delete")
    );
    s.delete_bucket(b, &bucket("shared-name"))
        .await
        .expect("delete");
    assert_eq!(get(h, a, "shared-name", "k").await, Some(mine.clone()));
    assert_eq!(read_all(h, a, &mine).await, b"tenant a");
    assert_eq!(
        names(&s.list_buckets(a).await.expect("list")),
        ["shared-name"]
    );
    assert!(s.list_buckets(b).await.expect("list").is_empty());
}

pub async fn buckets_hold_their_own_objects(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    // Bucket names that are prefixes of each other, and keys that make the same bytes when
    // appended to them ("logs" + "2/a" = "logs2" + "/a").
    let buckets = ["logs", "logs2", "logs-2", "logs.2"];
    for name in buckets {
        make_bucket(h, t, name).await;
    }
    let mut written = BTreeMap::new();
    for (name, key) in [
        ("logs", "2/a"),
        ("logs", "-2"),
        ("logs", "k"),
        ("logs2", "/a"),
        ("logs2", "k"),
        ("logs-2", "k"),
    ] {
        let content = format!("{name}:{key}");
        written.insert((name, key), put(h, t, name, key, content.as_bytes()).await);
    }
    assert_eq!(keys_in(h, t, "logs").await, ["-2", "2/a", "k"]);
    assert_eq!(keys_in(h, t, "logs2").await, ["/a", "k"]);
    assert_eq!(keys_in(h, t, "logs-2").await, ["k"]);
    assert!(keys_in(h, t, "logs.2").await.is_empty());
    for ((name, key), meta) in &written {
        let stored = get(h, t, name, key).await.expect("visible");
        assert_eq!(&stored, meta, "{name}/{key}");
        assert_eq!(
            read_all(h, t, &stored).await,
            format!("{name}:{key}").as_bytes()
        );
    }
    assert_eq!(get(h, t, "logs.2", "k").await, None);
    let v2 = list_objects_v2(s, t, &bucket("logs"), &oprefix(""), Some("/"), b"", 1000)
        .await
        .expect("list_objects_v2");
    assert_eq!(v2.common_prefixes, ["2/"]);

    // Uploads too belong to their bucket.
    let up = s
        .create_upload(
            t,
            &bucket("logs2"),
            &okey("k"),
            &ObjectAttributes::default(),
            None,
        )
        .await
        .expect("create_upload");
    assert_eq!(
        s.upload(t, &bucket("logs"), up.id).await.expect("upload"),
        None
    );
    assert!(
        s.list_uploads(t, &bucket("logs"), &ObjectPrefix::all(), None, Limit::MAX)
            .await
            .expect("list_uploads")
            .is_empty()
    );
    assert_not_found(
        s.abort_upload(t, &bucket("logs"), up.id).await,
        Resource::Upload,
        "aborting an upload through another bucket",
    );

    // Deleting an object or a bucket touches that bucket only.
    assert!(
        s.delete_object(t, &bucket("logs2"), &okey("k"))
            .await
            .expect("delete")
    );
    assert_eq!(
        get(h, t, "logs", "k").await.as_ref(),
        written.get(&("logs", "k"))
    );
    assert_eq!(
        get(h, t, "logs-2", "k").await.as_ref(),
        written.get(&("logs-2", "k"))
    );
    assert!(
        s.delete_object(t, &bucket("logs2"), &okey("/a"))
            .await
            .expect("delete")
    );
    s.delete_bucket(t, &bucket("logs2"))
        .await
        .expect("delete_bucket");
    assert_eq!(keys_in(h, t, "logs").await, ["-2", "2/a", "k"]);
    assert_eq!(
        names(&s.list_buckets(t).await.expect("list")),
        ["logs", "logs-2", "logs.2"]
    );
}

pub async fn bucket_count_is_limited(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    let name = |i: usize| format!("b{i:04}");
    for i in 0..MAX_BUCKETS {
        s.create_bucket(t, &bucket(&name(i)))
            .await
            .unwrap_or_else(|e| panic!("bucket {i} of {MAX_BUCKETS}: {e}"));
    }
    let over = s.create_bucket(t, &bucket("one-too-many")).await;
    match over {
        Err(e) if e.field() == Some("bucket") => {}
        other => panic!("bucket {MAX_BUCKETS} + 1: expected InvalidInput(bucket), got {other:?}"),
    }
    assert_eq!(
        s.bucket(t, &bucket("one-too-many")).await.expect("bucket"),
        None
    );
    let all = s.list_buckets(t).await.expect("list");
    assert_eq!(all.len(), MAX_BUCKETS, "list_buckets returns them all");
    let expected: Vec<String> = (0..MAX_BUCKETS).map(name).collect();
    assert_eq!(names(&all), expected, "names ascending");

    // The limit is per tenant, and a deletion makes room.
    make_bucket(h, &h.other, "one-too-many").await;
    s.delete_bucket(t, &bucket(&name(500)))
        .await
        .expect("delete");
    make_bucket(h, t, "one-too-many").await;
    assert_kind(
        s.create_bucket(t, &bucket(&name(500))).await,
        ErrorKind::InvalidInput,
        "at the limit again",
    );
}

// ---------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------

pub async fn objects_round_trip_at_chunk_sizes(h: &Harness) {
    let t = &h.tenant;
    make_bucket(h, t, "sizes").await;
    let c = CHUNK_BYTES;
    let cases: [(usize, Vec<usize>); 5] = [
        (0, vec![]),
        (1, vec![1]),
        (c - 1, vec![c - 1]),
        (c, vec![c]),
        (2 * c + c / 2, vec![c, c, c / 2]),
    ];
    let (mut total, mut chunks) = (0u64, 0u64);
    for (i, (size, chunk_sizes)) in cases.iter().enumerate() {
        let content = bytes(*size, i as u8);
        let key = format!("size/{size}");
        let meta = put(h, t, "sizes", &key, &content).await;
        total += *size as u64;
        chunks += chunk_sizes.len() as u64;
        assert_eq!(meta.size, *size as u64);
        assert_eq!(
            meta.etag,
            md5_hex(&content),
            "{key}: the ETag is the MD5 in hex"
        );
        let stored = get(h, t, "sizes", &key).await.expect("visible");
        assert_eq!(stored, meta, "{key}: object() returns what was committed");
        assert_eq!(read_all(h, t, &stored).await, content, "{key}: the bytes");
        // Every chunk but the last is CHUNK_BYTES long.
        let data = stored.segments[0].data;
        for (index, expected) in chunk_sizes.iter().enumerate() {
            let chunk = store(h)
                .read_chunk(t, data, index as u32)
                .await
                .expect("read_chunk");
            assert_eq!(chunk.len(), *expected, "{key}: chunk {index}");
        }
    }
    assert_eq!(
        md5_hex(b""),
        "d41d8cd98f00b204e9800998ecf8427e",
        "the MD5 of nothing"
    );
    let one = put(h, t, "sizes", "a", b"a").await;
    assert_eq!(
        one.etag, "0cc175b9c0f1b6a831c399e269772661",
        "the MD5 of \"a\""
    );
    total += 1;
    chunks += 1;
    assert_eq!(
        store(h).stored_bytes(t).await.expect("stored_bytes"),
        h.stored(total, chunks),
        "stored_bytes counts every chunk's bytes"
    );

    // Ranges across chunk boundaries, as a ranged GET reads them.
    let size = 2 * c + c / 2;
    let content = bytes(size, 4);
    let meta = get(h, t, "sizes", &format!("size/{size}"))
        .await
        .expect("visible");
    for (start, end) in [
        (0, 1),
        (c - 3, c + 3),
        (c, 2 * c),
        (5, 2 * c + 7),
        (size - 1, size),
        (2 * c + 1, size + 100),
    ] {
        let got = read_range(h, t, &meta, start as u64, end as u64)
            .await
            .expect("read_range");
        assert_eq!(got, content[start..end.min(size)], "bytes {start}..{end}");
    }
}

pub async fn attributes_round_trip(h: &Harness) {
    let t = &h.tenant;
    make_bucket(h, t, "attrs").await;
    let attributes = ObjectAttributes {
        content_type: Some("text/plain; charset=utf-8".into()),
        headers: BTreeMap::from([
            ("cache-control".into(), "no-cache, max-age=0".into()),
            (
                "content-disposition".into(),
                "attachment; filename=\"résumé.txt\"".into(),
            ),
            ("content-language".into(), "fr-CH".into()),
        ]),
        metadata: BTreeMap::from([
            ("author".into(), "Zoë 🦀".into()),
            ("empty".into(), String::new()),
            ("spaces".into(), "  padded  ".into()),
        ]),
        checksums: BTreeMap::from([
            ("CRC32".into(), "NSRBwg==".into()),
            (
                "SHA256".into(),
                "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=".into(),
            ),
        ]),
    };
    attributes.validate().expect("valid attributes");
    h.advance(1234);
    let at = h.clock.now();
    let written = write_data(h, t, b"hello world").await;
    let expires = h.clock.now() + 3_600_000;
    let meta = meta_of(h, "doc.txt", &written, Some(expires), attributes.clone());
    store(h)
        .put_object(t, &bucket("attrs"), &meta, &Precondition::None)
        .await
        .expect("put_object");
    h.advance(500);
    let stored = get(h, t, "attrs", "doc.txt").await.expect("visible");
    assert_eq!(stored, meta, "every field round-trips exactly");
    assert_eq!(
        stored.last_modified, at,
        "last_modified is the clock at the put"
    );
    assert_eq!(stored.expires_at, Some(expires));
    assert_eq!(stored.attributes, attributes);

    // A replacement carries its own attributes only.
    let written = write_data(h, t, b"plain").await;
    let bare = meta_of(h, "doc.txt", &written, None, ObjectAttributes::default());
    store(h)
        .put_object(t, &bucket("attrs"), &bare, &Precondition::None)
        .await
        .expect("put_object");
    assert_eq!(get(h, t, "attrs", "doc.txt").await, Some(bare));
}

pub async fn replace_and_delete(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "rdb").await;
    let first = put(h, t, "rdb", "k", b"first").await;
    h.advance(10);
    let second = put(h, t, "rdb", "k", b"second version").await;
    assert_eq!(
        get(h, t, "rdb", "k").await,
        Some(second.clone()),
        "the replacement"
    );
    assert_eq!(keys_in(h, t, "rdb").await, ["k"], "one object per key");
    assert_eq!(read_all(h, t, &second).await, b"second version");
    // A read that began before the replacement still finishes with the old bytes.
    assert_eq!(
        read_all(h, t, &first).await,
        b"first",
        "a replaced object's chunks stay readable until reaped"
    );

    assert!(
        s.delete_object(t, &bucket("rdb"), &okey("k"))
            .await
            .expect("delete")
    );
    assert!(
        !s.delete_object(t, &bucket("rdb"), &okey("k"))
            .await
            .expect("delete"),
        "a second delete finds nothing"
    );
    assert!(
        !s.delete_object(t, &bucket("rdb"), &okey("never"))
            .await
            .expect("delete"),
        "deleting a key never written finds nothing"
    );
    assert_eq!(get(h, t, "rdb", "k").await, None);
    assert!(keys_in(h, t, "rdb").await.is_empty());
    assert_eq!(
        read_all(h, t, &second).await,
        b"second version",
        "a deleted object's chunks stay readable until reaped"
    );

    // Written again, the key is a new object.
    let third = put(h, t, "rdb", "k", b"third").await;
    assert_eq!(get(h, t, "rdb", "k").await, Some(third));
}

pub async fn only_pending_blobs_can_be_committed(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "blobs").await;
    let committed = put(h, t, "blobs", "owner", b"taken").await;
    let reused = ObjectMeta {
        key: okey("thief"),
        ..committed.clone()
    };
    assert_not_found(
        s.put_object(t, &bucket("blobs"), &reused, &Precondition::None)
            .await,
        Resource::Object,
        "committing a blob another object holds",
    );
    assert_eq!(get(h, t, "blobs", "thief").await, None, "nothing committed");

    let discarded = write_data(h, t, b"abandoned").await;
    s.discard_data(t, discarded.data)
        .await
        .expect("discard_data");
    let meta = meta_of(h, "gone", &discarded, None, ObjectAttributes::default());
    assert_not_found(
        s.put_object(t, &bucket("blobs"), &meta, &Precondition::None)
            .await,
        Resource::Object,
        "committing a discarded blob",
    );
    assert_not_found(
        s.write_chunk(t, discarded.data, 0, b"more").await,
        Resource::Object,
        "writing into a discarded blob",
    );
    assert_not_found(
        s.write_chunk(t, committed.segments[0].data, 0, b"overwrite")
            .await,
        Resource::Object,
        "writing into a committed blob",
    );
    assert_eq!(
        read_all(h, t, &committed).await,
        b"taken",
        "a committed blob is unchanged"
    );
    s.discard_data(t, committed.segments[0].data)
        .await
        .expect("discarding a committed blob leaves it alone");
    assert_eq!(read_all(h, t, &committed).await, b"taken");
    assert_eq!(keys_in(h, t, "blobs").await, ["owner"]);
    assert_eq!(
        s.stored_bytes(t).await.expect("stored_bytes"),
        h.stored(5, 1),
        "the discarded blob's bytes are gone"
    );
}

pub async fn expired_objects_are_invisible(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "exp").await;
    let now = h.clock.now();
    let short = put_with(
        h,
        t,
        "exp",
        "short",
        b"soon gone",
        Some(now + 100),
        &Precondition::None,
    )
    .await
    .expect("put");
    put(h, t, "exp", "stays", b"forever").await;
    let all = ObjectPrefix::all();
    let exp = bucket("exp");
    let listed = |max_keys| list_objects_v2(s, t, &exp, &all, None, b"", max_keys);

    h.advance(99);
    assert_eq!(
        get(h, t, "exp", "short").await,
        Some(short.clone()),
        "visible before expires_at"
    );
    assert_eq!(keys_in(h, t, "exp").await, ["short", "stays"]);
    h.advance(1);
    assert_eq!(
        get(h, t, "exp", "short").await,
        None,
        "invisible at exactly expires_at"
    );
    assert_eq!(
        keys_in(h, t, "exp").await,
        ["stays"],
        "list_objects skips it"
    );
    let page = listed(1).await.expect("list_objects_v2");
    assert_eq!(
        page.objects
            .iter()
            .map(|m| m.key.as_str())
            .collect::<Vec<_>>(),
        ["stays"]
    );
    assert_eq!(
        page.next_from, None,
        "an expired object does not make a page truncated"
    );
    assert_kind(
        s.put_object(
            t,
            &bucket("exp"),
            &meta_of(
                h,
                "short",
                &write_data(h, t, b"x").await,
                None,
                ObjectAttributes::default(),
            ),
            &Precondition::IfEtag(short.etag.clone()),
        )
        .await,
        ErrorKind::Conflict,
        "If-Match against an expired object",
    );
    assert!(
        !s.delete_object(t, &bucket("exp"), &okey("short"))
            .await
            .expect("delete"),
        "deleting an expired object reports that none was visible"
    );
    let again = put_with(
        h,
        t,
        "exp",
        "short",
        b"again",
        None,
        &Precondition::IfAbsent,
    )
    .await
    .expect("If-None-Match: * succeeds over an expired object");
    assert_eq!(get(h, t, "exp", "short").await, Some(again));

    // Expired without a delete: If-None-Match succeeds over it too.
    let gone = put_with(
        h,
        t,
        "exp",
        "other",
        b"o",
        Some(h.clock.now() + 1),
        &Precondition::None,
    )
    .await
    .expect("put");
    h.advance(1);
    assert_eq!(get(h, t, "exp", "other").await, None);
    let fresh = put_with(
        h,
        t,
        "exp",
        "other",
        b"fresh",
        None,
        &Precondition::IfAbsent,
    )
    .await
    .expect("If-None-Match: * over an expired object");
    assert_ne!(fresh.segments, gone.segments);
    assert_eq!(get(h, t, "exp", "other").await, Some(fresh));
    assert_eq!(keys_in(h, t, "exp").await, ["other", "short", "stays"]);
}

pub async fn conditional_puts(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "cond").await;
    let b = bucket("cond");
    let first = put_with(h, t, "cond", "k", b"one", None, &Precondition::IfAbsent)
        .await
        .expect("If-None-Match: * on a new key");

    // A failed condition changes nothing, and its blob stays pending.
    let loser = write_data(h, t, b"two").await;
    let loser_meta = meta_of(h, "k", &loser, None, ObjectAttributes::default());
    assert_kind(
        s.put_object(t, &b, &loser_meta, &Precondition::IfAbsent)
            .await,
        ErrorKind::Conflict,
        "If-None-Match: * over a visible object",
    );
    assert_kind(
        s.put_object(t, &b, &loser_meta, &Precondition::IfEtag(md5_hex(b"other")))
            .await,
        ErrorKind::Conflict,
        "If-Match with another ETag",
    );
    assert_kind(
        s.put_object(
            t,
            &b,
            &ObjectMeta {
                key: okey("absent"),
                ..loser_meta.clone()
            },
            &Precondition::IfEtag(first.etag.clone()),
        )
        .await,
        ErrorKind::Conflict,
        "If-Match on a key with no object",
    );
    assert_eq!(
        get(h, t, "cond", "k").await,
        Some(first.clone()),
        "unchanged"
    );
    assert_eq!(get(h, t, "cond", "absent").await, None, "nothing created");
    assert_eq!(read_all(h, t, &first).await, b"one");

    // The same blob, still pending, commits when the condition holds.
    s.put_object(
        t,
        &b,
        &loser_meta,
        &Precondition::IfEtag(first.etag.clone()),
    )
    .await
    .expect("If-Match with the current ETag");
    assert_eq!(get(h, t, "cond", "k").await, Some(loser_meta.clone()));
    let third = write_data(h, t, b"three").await;
    s.put_object(
        t,
        &b,
        &meta_of(h, "k", &third, None, ObjectAttributes::default()),
        &Precondition::IfEtag(first.etag.clone()),
    )
    .await
    .expect_err("If-Match with the replaced object's ETag");
    s.put_object(
        t,
        &b,
        &meta_of(h, "k", &third, None, ObjectAttributes::default()),
        &Precondition::None,
    )
    .await
    .expect("an unconditional put replaces");
    assert_eq!(
        read_all(h, t, &get(h, t, "cond", "k").await.expect("visible")).await,
        b"three"
    );
}

/// How many writers race in [`if_absent_has_exactly_one_winner`].
const RACERS: usize = 8;

pub async fn if_absent_has_exactly_one_winner(h: &Harness) {
    let t = &h.tenant;
    make_bucket(h, t, "race").await;
    for round in 0..3u8 {
        let key = format!("k{round}");
        let mut metas = Vec::new();
        for i in 0..RACERS {
            let written = write_data(h, t, &bytes(10 + i, round)).await;
            metas.push(meta_of(
                h,
                &key,
                &written,
                None,
                ObjectAttributes::default(),
            ));
        }
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = Vec::new();
        for meta in metas.clone() {
            let (b, tenant, barrier) = (h.backend.clone(), t.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                b.put_object(&tenant, &bucket("race"), &meta, &Precondition::IfAbsent)
                    .await
            }));
        }
        let mut winners = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.expect("racer task") {
                Ok(()) => winners.push(i),
                Err(e) => assert_eq!(
                    e.kind(),
                    ErrorKind::Conflict,
                    "round {round}: a losing If-None-Match put is a conflict: {e}"
                ),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one winner: {winners:?}"
        );
        let winner = &metas[winners[0]];
        assert_eq!(get(h, t, "race", &key).await.as_ref(), Some(winner));
        assert_eq!(read_all(h, t, winner).await, bytes(10 + winners[0], round));
        // The losers' blobs were never committed: they can be discarded.
        for (i, meta) in metas.iter().enumerate() {
            if i != winners[0] {
                store(h)
                    .discard_data(t, meta.segments[0].data)
                    .await
                    .expect("discard_data");
            }
        }
    }
}

pub async fn if_absent_has_one_winner_among_puts_and_completions(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "race").await;
    let b = bucket("race");
    for round in 0..2u8 {
        let key = format!("k{round}");
        // Half the racers put, half complete an upload of one part.
        let mut racers = Vec::new();
        for i in 0..RACERS {
            let content = bytes(20 + i, round);
            let written = write_data(h, t, &content).await;
            if i % 2 == 0 {
                let meta = meta_of(h, &key, &written, None, ObjectAttributes::default());
                racers.push((None, meta, content));
            } else {
                let up = s
                    .create_upload(t, &b, &okey(&key), &ObjectAttributes::default(), None)
                    .await
                    .expect("create_upload");
                s.put_part(t, &b, up.id, &part_of(h, 1, &written))
                    .await
                    .expect("put_part");
                let stored = s
                    .list_parts(t, &b, up.id, 0, Limit::MAX)
                    .await
                    .expect("list_parts");
                let plan = p8fs_core::object::plan_completion(&[(1, written.md5.clone())], &stored)
                    .expect("a valid part list");
                let meta = ObjectMeta {
                    key: okey(&key),
                    size: plan.size,
                    etag: plan.etag,
                    last_modified: h.clock.now(),
                    expires_at: None,
                    attributes: ObjectAttributes::default(),
                    segments: plan.segments,
                };
                racers.push((Some(up.id), meta, content));
            }
        }
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = Vec::new();
        for (upload, meta, _) in racers.clone() {
            let (backend, tenant, barrier) = (h.backend.clone(), t.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let b = bucket("race");
                barrier.wait().await;
                match upload {
                    None => {
                        backend
                            .put_object(&tenant, &b, &meta, &Precondition::IfAbsent)
                            .await
                    }
                    Some(id) => {
                        backend
                            .complete_upload(&tenant, &b, id, &meta, &Precondition::IfAbsent)
                            .await
                    }
                }
            }));
        }
        let mut winners = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.expect("racer task") {
                Ok(()) => winners.push(i),
                Err(e) => assert_eq!(
                    e.kind(),
                    ErrorKind::Conflict,
                    "round {round}: a losing If-None-Match write is a conflict: {e}"
                ),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one winner: {winners:?}"
        );
        let (_, winner, content) = &racers[winners[0]];
        assert_eq!(get(h, t, "race", &key).await.as_ref(), Some(winner));
        assert_eq!(&read_all(h, t, winner).await, content);
        // The losing completions left their uploads in place.
        for (i, (upload, _, _)) in racers.iter().enumerate() {
            if let Some(id) = upload {
                let left = s.upload(t, &b, *id).await.expect("upload");
                assert_eq!(
                    left.is_some(),
                    i != winners[0],
                    "round {round}: upload of racer {i}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tenancy
// ---------------------------------------------------------------------------------------------

pub async fn objects_invisible_across_tenants(h: &Harness) {
    let (s, a, b) = (store(h), &h.tenant, &h.other);
    make_bucket(h, a, "vault").await;
    let secret = put(h, a, "vault", "secret", b"tenant a's bytes").await;
    let upload = s
        .create_upload(
            a,
            &bucket("vault"),
            &okey("big"),
            &ObjectAttributes::default(),
            None,
        )
        .await
        .expect("create_upload");
    let pending = write_data(h, a, b"pending in a").await;

    assert!(s.list_buckets(b).await.expect("list").is_empty());
    assert_eq!(s.bucket(b, &bucket("vault")).await.expect("bucket"), None);
    assert_eq!(s.stored_bytes(b).await.expect("stored_bytes"), 0);

    // The same bucket name in B is another bucket, empty.
    make_bucket(h, b, "vault").await;
    let vb = bucket("vault");
    assert_eq!(get(h, b, "vault", "secret").await, None);
    assert!(keys_in(h, b, "vault").await.is_empty());
    let listing = list_objects_v2(s, b, &vb, &ObjectPrefix::all(), Some("/"), b"", 1000)
        .await
        .expect("list_objects_v2");
    assert!(listing.objects.is_empty() && listing.common_prefixes.is_empty());
    assert_eq!(s.upload(b, &vb, upload.id).await.expect("upload"), None);
    assert!(
        s.list_uploads(b, &vb, &ObjectPrefix::all(), None, Limit::MAX)
            .await
            .expect("list_uploads")
            .is_empty()
    );
    assert!(
        !s.delete_object(b, &vb, &okey("secret"))
            .await
            .expect("delete")
    );

    // Blob ids do not cross tenants.
    let data = secret.segments[0].data;
    assert_not_found(
        s.read_chunk(b, data, 0).await,
        Resource::Object,
        "reading another tenant's chunk",
    );
    assert_not_found(
        s.read_chunk(b, pending.data, 0).await,
        Resource::Object,
        "reading another tenant's pending chunk",
    );
    assert_not_found(
        s.write_chunk(b, pending.data, 0, b"injected").await,
        Resource::Object,
        "writing into another tenant's pending blob",
    );
    assert_not_found(
        s.put_object(
            b,
            &vb,
            &meta_of(h, "stolen", &pending, None, ObjectAttributes::default()),
            &Precondition::None,
        )
        .await,
        Resource::Object,
        "committing another tenant's pending blob",
    );
    let own = s
        .create_upload(b, &vb, &okey("big"), &ObjectAttributes::default(), None)
        .await
        .expect("create_upload");
    assert_not_found(
        s.put_part(b, &vb, own.id, &part_of(h, 1, &pending)).await,
        Resource::Object,
        "taking another tenant's pending blob as a part",
    );
    assert_not_found(
        s.put_part(
            b,
            &vb,
            upload.id,
            &part_of(h, 1, &write_data(h, b, b"x").await),
        )
        .await,
        Resource::Upload,
        "a part for another tenant's upload",
    );
    assert_not_found(
        s.abort_upload(b, &vb, upload.id).await,
        Resource::Upload,
        "aborting another tenant's upload",
    );
    s.discard_data(b, pending.data)
        .await
        .expect("discarding another tenant's blob does nothing");

    // A's things are intact: its object, its upload, and its pending blob, still committable.
    assert_eq!(get(h, a, "vault", "secret").await, Some(secret.clone()));
    assert_eq!(read_all(h, a, &secret).await, b"tenant a's bytes");
    assert_eq!(
        s.upload(a, &bucket("vault"), upload.id)
            .await
            .expect("upload"),
        Some(upload)
    );
    let committed = meta_of(h, "later", &pending, None, ObjectAttributes::default());
    s.put_object(a, &bucket("vault"), &committed, &Precondition::None)
        .await
        .expect("A's pending blob is untouched");
    assert_eq!(read_all(h, a, &committed).await, b"pending in a");
    assert_eq!(
        s.stored_bytes(a).await.expect("stored_bytes"),
        h.stored(
            (b"tenant a's bytes".len() + b"pending in a".len()) as u64,
            2
        )
    );
    assert_eq!(
        s.stored_bytes(b).await.expect("stored_bytes"),
        h.stored(1, 1),
        "B's one-byte blob, still pending"
    );
}
