//! The object reaper (`ObjectStore::reap_objects`): what a crash or an abandoned upload leaves
//! behind, and what a replacement, a deletion, a completion or an abort frees, stays readable
//! and counted in `stored_bytes` until a reap whose policy reaches it, then is gone, chunks
//! included; the count a reap returns is the number of blobs it removed.
//!
//! `reap_objects` works across all tenants, so these scenarios run in
//! [`crate::Purging::Exclusive`] mode, like the purges: on a shared SQL server only one of them
//! runs at a time, its clock runs before [`crate::START`] (so its policies never reach what a
//! shared case wrote), and [`clean_slate`] first reaps what earlier exclusive cases left.

use p8fs_core::object::{CHUNK_BYTES, MAX_PUT_BYTES, MIN_PART_BYTES, ObjectWriter};
use p8fs_core::{
    Clock, Limit, ObjectAttributes, ObjectPrefix, Precondition, ReapPolicy, Resource, Timestamp,
};

use crate::object::{
    assert_not_found, bucket, bytes, get, keys_in, make_bucket, meta_of, okey, part_of, put,
    put_with, read_all, store, write_data,
};
use crate::{Harness, START};

/// Reaps, at a time before [`START`], whatever earlier exclusive cases left on a shared server.
pub(crate) async fn clean_slate(h: &Harness) {
    store(h)
        .reap_objects(policy(START - 1, START - 1))
        .await
        .expect("reap what earlier exclusive cases left");
}

fn policy(abandoned_before: Timestamp, freed_before: Timestamp) -> ReapPolicy {
    ReapPolicy {
        abandoned_before,
        freed_before,
    }
}

async fn reap(h: &Harness, abandoned_before: Timestamp, freed_before: Timestamp) -> u64 {
    store(h)
        .reap_objects(policy(abandoned_before, freed_before))
        .await
        .expect("reap_objects succeeds")
}

async fn stored(h: &Harness) -> u64 {
    store(h)
        .stored_bytes(&h.tenant)
        .await
        .expect("stored_bytes succeeds")
}

pub async fn uncommitted_blob_is_invisible_until_reaped(h: &Harness) {
    clean_slate(h).await;
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "crash").await;
    let begun = h.clock.now();
    let kept = put(h, t, "crash", "kept", b"committed").await;

    // A writer that never commits, as a crash leaves it.
    let content = bytes(CHUNK_BYTES + CHUNK_BYTES / 2, 9);
    let mut writer = ObjectWriter::begin(s, t, MAX_PUT_BYTES)
        .await
        .expect("begin_data");
    writer.write(&content).await.expect("write");
    let orphan = writer.finish().await.expect("finish");
    assert_eq!(
        keys_in(h, t, "crash").await,
        ["kept"],
        "nothing of it is visible"
    );
    assert_eq!(
        stored(h).await,
        h.stored((content.len() + b"committed".len()) as u64, 3),
        "its chunks are stored"
    );

    h.advance(100);
    assert_eq!(reap(h, begun, begun).await, 0, "begun at the cutoff: kept");
    assert_eq!(
        s.read_chunk(t, orphan.data, 1)
            .await
            .expect("read_chunk")
            .len(),
        CHUNK_BYTES / 2
    );
    assert_eq!(
        reap(h, begun + 1, begun + 1).await,
        1,
        "begun before the cutoff: removed"
    );
    for index in 0..2 {
        assert_not_found(
            s.read_chunk(t, orphan.data, index).await,
            Resource::Object,
            "a reaped chunk",
        );
    }
    assert_not_found(
        s.write_chunk(t, orphan.data, 2, b"late").await,
        Resource::Object,
        "writing into a reaped blob",
    );
    assert_not_found(
        s.put_object(
            t,
            &bucket("crash"),
            &meta_of(h, "late", &orphan, None, ObjectAttributes::default()),
            &Precondition::None,
        )
        .await,
        Resource::Object,
        "committing a reaped blob",
    );
    assert_eq!(
        stored(h).await,
        h.stored(b"committed".len() as u64, 1),
        "back to the committed bytes"
    );
    assert_eq!(
        read_all(h, t, &kept).await,
        b"committed",
        "a committed blob is never reaped"
    );
    assert_eq!(
        reap(h, h.clock.now() + 1, h.clock.now() + 1).await,
        0,
        "nothing else to reap"
    );
    assert_eq!(read_all(h, t, &kept).await, b"committed");
}

pub async fn freed_blobs_outlive_their_object_until_reaped(h: &Harness) {
    clean_slate(h).await;
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "free").await;
    let start = h.clock.now();
    let v1 = put(h, t, "free", "k", b"version one").await;
    h.advance(10);
    let replaced_at = h.clock.now();
    let v2 = put(h, t, "free", "k", b"version two!").await;
    h.advance(10);
    let deleted_at = h.clock.now();
    assert!(
        s.delete_object(t, &bucket("free"), &okey("k"))
            .await
            .expect("delete")
    );
    // An expired object replaced: its blob is freed by the replacement.
    let short = put_with(
        h,
        t,
        "free",
        "short",
        b"brief",
        Some(deleted_at + 5),
        &Precondition::None,
    )
    .await
    .expect("put");
    h.advance(5);
    let over_expired_at = h.clock.now();
    let fresh = put_with(
        h,
        t,
        "free",
        "short",
        b"fresh",
        None,
        &Precondition::IfAbsent,
    )
    .await
    .expect("put over an expired object");
    h.advance(10);
    let total = (b"version one".len() + b"version two!".len() + 5 + 5) as u64;
    assert_eq!(
        stored(h).await,
        h.stored(total, 4),
        "freed blobs still count"
    );

    assert_eq!(
        reap(h, start, replaced_at).await,
        0,
        "freed at the cutoff: kept"
    );
    assert_eq!(
        read_all(h, t, &v1).await,
        b"version one",
        "a replaced object stays readable"
    );
    assert_eq!(
        read_all(h, t, &v2).await,
        b"version two!",
        "a deleted object stays readable"
    );
    assert_eq!(
        reap(h, start, replaced_at + 1).await,
        1,
        "the replaced version"
    );
    assert_not_found(
        s.read_chunk(t, v1.segments[0].data, 0).await,
        Resource::Object,
        "the reaped replaced version",
    );
    assert_eq!(read_all(h, t, &v2).await, b"version two!");
    assert_eq!(
        reap(h, start, deleted_at + 1).await,
        1,
        "the deleted version"
    );
    assert_not_found(
        s.read_chunk(t, v2.segments[0].data, 0).await,
        Resource::Object,
        "the reaped deleted version",
    );
    assert_eq!(
        read_all(h, t, &short).await,
        b"brief",
        "freed at {over_expired_at}"
    );
    assert_eq!(
        reap(h, start, over_expired_at + 1).await,
        1,
        "the expired object replaced"
    );
    assert_not_found(
        s.read_chunk(t, short.segments[0].data, 0).await,
        Resource::Object,
        "the reaped expired object",
    );
    assert_eq!(
        stored(h).await,
        h.stored(5, 1),
        "only the live object's bytes"
    );
    assert_eq!(get(h, t, "free", "short").await, Some(fresh.clone()));
    assert_eq!(read_all(h, t, &fresh).await, b"fresh");

    // A discarded blob goes at once, without a reap.
    let pending = write_data(h, t, b"discard me").await;
    assert_eq!(stored(h).await, h.stored(15, 2));
    s.discard_data(t, pending.data).await.expect("discard_data");
    assert_eq!(stored(h).await, h.stored(5, 1));
    assert_not_found(
        s.read_chunk(t, pending.data, 0).await,
        Resource::Object,
        "a discarded chunk",
    );
    assert_eq!(
        reap(h, h.clock.now() + 1, h.clock.now() + 1).await,
        0,
        "nothing left to reap"
    );
}

pub async fn abandoned_uploads_are_reaped_with_their_parts(h: &Harness) {
    clean_slate(h).await;
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "multi").await;
    let b = bucket("multi");
    let attributes = ObjectAttributes::default();
    let initiated = h.clock.now();
    let old = s
        .create_upload(t, &b, &okey("old"), &attributes, None)
        .await
        .expect("create_upload");
    let p1 = write_data(h, t, b"part one").await;
    s.put_part(t, &b, old.id, &part_of(h, 1, &p1))
        .await
        .expect("put_part");
    let p2 = write_data(h, t, b"part two").await;
    s.put_part(t, &b, old.id, &part_of(h, 2, &p2))
        .await
        .expect("put_part");
    h.advance(10);
    let replaced_at = h.clock.now();
    let p2b = write_data(h, t, b"part two again").await;
    s.put_part(t, &b, old.id, &part_of(h, 2, &p2b))
        .await
        .expect("put_part");
    h.advance(10);
    let recent = s
        .create_upload(t, &b, &okey("recent"), &attributes, None)
        .await
        .expect("create_upload");
    let q1 = write_data(h, t, b"recent part").await;
    s.put_part(t, &b, recent.id, &part_of(h, 1, &q1))
        .await
        .expect("put_part");
    h.advance(10);

    assert_eq!(
        reap(h, initiated, initiated).await,
        0,
        "initiated at the cutoff: kept"
    );
    assert!(s.upload(t, &b, old.id).await.expect("upload").is_some());
    assert_eq!(
        reap(h, initiated + 1, initiated).await,
        2,
        "the old upload with the blobs of its two parts"
    );
    assert_eq!(s.upload(t, &b, old.id).await.expect("upload"), None);
    assert_not_found(
        s.list_parts(t, &b, old.id, 0, Limit::MAX).await,
        Resource::Upload,
        "the parts of a reaped upload",
    );
    for data in [p1.data, p2b.data] {
        assert_not_found(
            s.read_chunk(t, data, 0).await,
            Resource::Object,
            "a reaped part",
        );
    }
    assert_eq!(
        s.read_chunk(t, p2.data, 0)
            .await
            .expect("freed, not yet reaped"),
        b"part two"
    );
    assert_eq!(
        reap(h, initiated + 1, replaced_at + 1).await,
        1,
        "the replaced part"
    );
    assert_not_found(
        s.read_chunk(t, p2.data, 0).await,
        Resource::Object,
        "the replaced part",
    );
    assert_eq!(
        s.list_uploads(t, &b, &ObjectPrefix::all(), None, Limit::MAX)
            .await
            .expect("list_uploads"),
        std::slice::from_ref(&recent),
        "the recent upload remains"
    );
    assert_eq!(stored(h).await, h.stored(b"recent part".len() as u64, 1));

    // The recent upload still completes.
    let stored_parts = s
        .list_parts(t, &b, recent.id, 0, Limit::MAX)
        .await
        .expect("list_parts");
    let plan = p8fs_core::object::plan_completion(&[(1, q1.md5.clone())], &stored_parts)
        .expect("a valid part list");
    let meta = p8fs_core::ObjectMeta {
        key: okey("recent"),
        size: plan.size,
        etag: plan.etag,
        last_modified: h.clock.now(),
        expires_at: None,
        attributes,
        segments: plan.segments,
    };
    s.complete_upload(t, &b, recent.id, &meta, &Precondition::None)
        .await
        .expect("complete_upload");
    assert_eq!(read_all(h, t, &meta).await, b"recent part");
}

pub async fn ended_uploads_and_buckets_free_their_blobs(h: &Harness) {
    clean_slate(h).await;
    let (s, t) = (store(h), &h.tenant);
    let start = h.clock.now();
    make_bucket(h, t, "multi").await;
    make_bucket(h, t, "gone").await;
    let b = bucket("multi");
    let attributes = ObjectAttributes::default();

    // Completed with parts 1 and 3: part 2 is freed.
    let done = s
        .create_upload(t, &b, &okey("done"), &attributes, None)
        .await
        .expect("create_upload");
    let big = bytes(MIN_PART_BYTES as usize, 5);
    let w1 = write_data(h, t, &big).await;
    let w2 = write_data(h, t, b"unused").await;
    let w3 = write_data(h, t, b"end").await;
    for (number, w) in [(1, &w1), (2, &w2), (3, &w3)] {
        s.put_part(t, &b, done.id, &part_of(h, number, w))
            .await
            .expect("put_part");
    }
    let stored_parts = s
        .list_parts(t, &b, done.id, 0, Limit::MAX)
        .await
        .expect("list_parts");
    let plan = p8fs_core::object::plan_completion(
        &[(1, w1.md5.clone()), (3, w3.md5.clone())],
        &stored_parts,
    )
    .expect("a valid part list");
    let meta = p8fs_core::ObjectMeta {
        key: okey("done"),
        size: plan.size,
        etag: plan.etag,
        last_modified: h.clock.now(),
        expires_at: None,
        attributes: attributes.clone(),
        segments: plan.segments,
    };
    h.advance(10);
    let completed_at = h.clock.now();
    s.complete_upload(t, &b, done.id, &meta, &Precondition::None)
        .await
        .expect("complete_upload");

    // Aborted: both parts are freed.
    let aborted = s
        .create_upload(t, &b, &okey("aborted"), &attributes, None)
        .await
        .expect("create_upload");
    let a1 = write_data(h, t, b"a1").await;
    let a2 = write_data(h, t, b"a2").await;
    s.put_part(t, &b, aborted.id, &part_of(h, 1, &a1))
        .await
        .expect("put_part");
    s.put_part(t, &b, aborted.id, &part_of(h, 2, &a2))
        .await
        .expect("put_part");
    h.advance(10);
    let aborted_at = h.clock.now();
    s.abort_upload(t, &b, aborted.id)
        .await
        .expect("abort_upload");

    // A bucket deleted with an upload and an expired object in it: both are freed.
    let gone = bucket("gone");
    let in_gone = s
        .create_upload(t, &gone, &okey("u"), &attributes, None)
        .await
        .expect("create_upload");
    let g1 = write_data(h, t, b"g1").await;
    s.put_part(t, &gone, in_gone.id, &part_of(h, 1, &g1))
        .await
        .expect("put_part");
    let expired = put_with(
        h,
        t,
        "gone",
        "x",
        b"expired",
        Some(h.clock.now() + 1),
        &Precondition::None,
    )
    .await
    .expect("put");
    h.advance(10);
    let deleted_at = h.clock.now();
    s.delete_bucket(t, &gone).await.expect("delete_bucket");
    h.advance(10);

    assert_eq!(
        reap(h, start, completed_at).await,
        0,
        "nothing freed before the completion"
    );
    assert_eq!(
        s.read_chunk(t, w2.data, 0)
            .await
            .expect("freed, not reaped"),
        b"unused"
    );
    assert_eq!(reap(h, start, completed_at + 1).await, 1, "the unused part");
    assert_not_found(
        s.read_chunk(t, w2.data, 0).await,
        Resource::Object,
        "the unused part",
    );
    assert_eq!(
        reap(h, start, aborted_at + 1).await,
        2,
        "the aborted upload's parts"
    );
    for data in [a1.data, a2.data] {
        assert_not_found(
            s.read_chunk(t, data, 0).await,
            Resource::Object,
            "an aborted part",
        );
    }
    assert_eq!(
        read_all(h, t, &expired).await,
        b"expired",
        "freed with its bucket, not reaped"
    );
    assert_eq!(
        reap(h, start, deleted_at + 1).await,
        2,
        "the deleted bucket's part and object"
    );
    assert_not_found(
        s.read_chunk(t, g1.data, 0).await,
        Resource::Object,
        "a part of a deleted bucket",
    );
    assert_not_found(
        s.read_chunk(t, expired.segments[0].data, 0).await,
        Resource::Object,
        "an object of a deleted bucket",
    );

    let mut whole = big.clone();
    whole.extend_from_slice(b"end");
    assert_eq!(get(h, t, "multi", "done").await, Some(meta.clone()));
    assert_eq!(
        read_all(h, t, &meta).await,
        whole,
        "the completed object is whole"
    );
    assert_eq!(stored(h).await, h.stored(whole.len() as u64, 6));
}
