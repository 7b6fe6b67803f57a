//! Multipart uploads: create, parts (replaced by number, listed in pages), uploads listed by key
//! then id, completion (the object appears only then, with the `md5(part md5s)-N` ETag, from the
//! parts the list names), part lists `core::object::plan_completion` refuses, conditions on
//! completion, and abort. Valid completions use one part of [`MIN_PART_BYTES`] and a small last
//! part, to keep the bytes written low.

use std::collections::BTreeMap;

use p8fs_core::object::{CompletionError, MIN_PART_BYTES, WrittenData, md5_hex, plan_completion};
use p8fs_core::{
    Clock, Error, ErrorKind, Limit, ObjectAttributes, ObjectMeta, ObjectPrefix, PartRecord,
    Precondition, Resource, UploadId, UploadInfo,
};

use super::{
    assert_kind, assert_not_found, bucket, bytes, get, keys_in, make_bucket, okey, oprefix,
    part_of, put, read_all, store, write_data,
};
use crate::Harness;
use crate::support::limit;

/// The MD5 hex digits of an ETag as bytes.
fn unhex(etag: &str) -> Vec<u8> {
    (0..etag.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&etag[i..i + 2], 16).expect("an ETag is hex"))
        .collect()
}

/// The multipart ETag, computed here independently of core: the MD5 of the parts' binary MD5s,
/// a dash, the number of parts.
fn multipart_etag(parts: &[&WrittenData]) -> String {
    let joined: Vec<u8> = parts.iter().flat_map(|p| unhex(&p.md5)).collect();
    format!("{}-{}", md5_hex(&joined), parts.len())
}

async fn create(h: &Harness, bucket_name: &str, key: &str) -> UploadInfo {
    store(h)
        .create_upload(
            &h.tenant,
            &bucket(bucket_name),
            &okey(key),
            &ObjectAttributes::default(),
            None,
        )
        .await
        .expect("create_upload succeeds")
}

/// Writes `content` and records it as part `number`.
async fn upload_part(
    h: &Harness,
    bucket_name: &str,
    upload: UploadId,
    number: u32,
    content: &[u8],
) -> (WrittenData, PartRecord) {
    let written = write_data(h, &h.tenant, content).await;
    let part = part_of(h, number, &written);
    store(h)
        .put_part(&h.tenant, &bucket(bucket_name), upload, &part)
        .await
        .expect("put_part succeeds");
    (written, part)
}

async fn parts(h: &Harness, bucket_name: &str, upload: UploadId) -> Vec<PartRecord> {
    store(h)
        .list_parts(&h.tenant, &bucket(bucket_name), upload, 0, Limit::MAX)
        .await
        .expect("list_parts succeeds")
}

/// The object a completion of `requested` commits for `upload`, modified now.
async fn planned(
    h: &Harness,
    bucket_name: &str,
    upload: &UploadInfo,
    requested: &[(u32, String)],
) -> ObjectMeta {
    let stored = parts(h, bucket_name, upload.id).await;
    let plan = plan_completion(requested, &stored).expect("a valid part list");
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

pub async fn multipart_upload_completes(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "multi").await;
    let b = bucket("multi");
    let attributes = ObjectAttributes {
        content_type: Some("video/mp4".into()),
        metadata: BTreeMap::from([("camera".into(), "x100".into())]),
        ..ObjectAttributes::default()
    };
    let now = h.clock.now();
    let up = s
        .create_upload(t, &b, &okey("movie.mp4"), &attributes, None)
        .await
        .expect("create_upload");
    assert_eq!(
        (up.key.as_str(), up.initiated, &up.attributes, up.expires_at),
        ("movie.mp4", now, &attributes, None)
    );
    assert_eq!(
        s.upload(t, &b, up.id).await.expect("upload"),
        Some(up.clone())
    );

    let first = bytes(MIN_PART_BYTES as usize, 1);
    let last = bytes(1000, 2);
    let written1 = write_data(h, t, &first).await;
    let mut part1 = part_of(h, 1, &written1);
    part1.checksums = BTreeMap::from([("CRC32".into(), "AAAAAA==".into())]);
    s.put_part(t, &b, up.id, &part1).await.expect("put_part");
    h.advance(5);
    let (written2, part2) = upload_part(h, "multi", up.id, 2, &last).await;
    assert_eq!(
        parts(h, "multi", up.id).await,
        [part1.clone(), part2.clone()],
        "parts round-trip"
    );

    // Nothing is visible before completion.
    assert_eq!(get(h, t, "multi", "movie.mp4").await, None);
    assert!(keys_in(h, t, "multi").await.is_empty());

    h.advance(5);
    let requested = [
        (1, format!("\"{}\"", written1.md5)),
        (2, written2.md5.clone()),
    ];
    let meta = planned(h, "multi", &up, &requested).await;
    assert_eq!(meta.etag, multipart_etag(&[&written1, &written2]));
    assert_eq!(meta.size, (first.len() + last.len()) as u64);
    s.complete_upload(t, &b, up.id, &meta, &Precondition::None)
        .await
        .expect("complete_upload");
    assert_eq!(get(h, t, "multi", "movie.mp4").await, Some(meta.clone()));
    let mut whole = first.clone();
    whole.extend_from_slice(&last);
    assert_eq!(
        read_all(h, t, &meta).await,
        whole,
        "the parts' bytes in order"
    );
    assert_eq!(keys_in(h, t, "multi").await, ["movie.mp4"]);

    // The upload is gone.
    assert_eq!(s.upload(t, &b, up.id).await.expect("upload"), None);
    assert!(
        s.list_uploads(t, &b, &ObjectPrefix::all(), None, Limit::MAX)
            .await
            .expect("list_uploads")
            .is_empty()
    );
    let late = write_data(h, t, b"late").await;
    let u = Resource::Upload;
    assert_not_found(
        s.put_part(t, &b, up.id, &part_of(h, 3, &late)).await,
        u,
        "put_part after completion",
    );
    assert_not_found(
        s.list_parts(t, &b, up.id, 0, Limit::MAX).await,
        u,
        "list_parts after completion",
    );
    assert_not_found(
        s.complete_upload(t, &b, up.id, &meta, &Precondition::None)
            .await,
        u,
        "completing twice",
    );
    assert_not_found(
        s.abort_upload(t, &b, up.id).await,
        u,
        "aborting after completion",
    );
    assert_eq!(
        get(h, t, "multi", "movie.mp4").await,
        Some(meta),
        "still the completed object"
    );
}

pub async fn completion_uses_the_named_parts(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "multi").await;
    let b = bucket("multi");
    let up = create(h, "multi", "k").await;
    let big = bytes(MIN_PART_BYTES as usize, 7);

    // A part number written again replaces the part.
    upload_part(h, "multi", up.id, 1, b"too small and replaced").await;
    let (w1, p1) = upload_part(h, "multi", up.id, 1, &big).await;
    let (_, p2) = upload_part(h, "multi", up.id, 2, b"never used").await;
    let (w3, p3) = upload_part(h, "multi", up.id, 3, b"the end").await;
    assert_eq!(parts(h, "multi", up.id).await, [p1.clone(), p2, p3.clone()]);

    // A part cannot take a blob that is not pending.
    assert_not_found(
        s.put_part(
            t,
            &b,
            up.id,
            &PartRecord {
                number: 4,
                ..p1.clone()
            },
        )
        .await,
        Resource::Object,
        "a part taking another part's blob",
    );
    assert_eq!(parts(h, "multi", up.id).await.len(), 3, "no part 4");

    // A plan made before part 3 was replaced no longer matches the upload's parts.
    let stale = planned(h, "multi", &up, &[(1, w1.md5.clone()), (3, w3.md5.clone())]).await;
    let (w3b, _) = upload_part(h, "multi", up.id, 3, b"the real end").await;
    assert_not_found(
        s.complete_upload(t, &b, up.id, &stale, &Precondition::None)
            .await,
        Resource::Part,
        "completing with a replaced part's blob",
    );
    assert!(
        s.upload(t, &b, up.id).await.expect("upload").is_some(),
        "the upload is still there"
    );
    assert_eq!(get(h, t, "multi", "k").await, None, "nothing committed");

    let meta = planned(
        h,
        "multi",
        &up,
        &[(1, w1.md5.clone()), (3, w3b.md5.clone())],
    )
    .await;
    assert_eq!(meta.etag, multipart_etag(&[&w1, &w3b]));
    s.complete_upload(t, &b, up.id, &meta, &Precondition::None)
        .await
        .expect("complete_upload");
    let mut whole = big.clone();
    whole.extend_from_slice(b"the real end");
    assert_eq!(read_all(h, t, &meta).await, whole, "parts 1 and 3 only");
    assert_eq!(get(h, t, "multi", "k").await, Some(meta));
}

pub async fn invalid_part_lists_are_refused(h: &Harness) {
    make_bucket(h, &h.tenant, "multi").await;
    let up = create(h, "multi", "k").await;
    let (w1, _) = upload_part(h, "multi", up.id, 1, &bytes(MIN_PART_BYTES as usize, 3)).await;
    let (w2, _) = upload_part(h, "multi", up.id, 2, b"small").await;
    let (w3, _) = upload_part(h, "multi", up.id, 3, b"tiny").await;
    let stored = parts(h, "multi", up.id).await;
    let (e1, e2, e3) = (w1.md5.clone(), w2.md5.clone(), w3.md5.clone());
    let refused = |requested: Vec<(u32, String)>| plan_completion(&requested, &stored).err();

    assert_eq!(refused(vec![]), Some(CompletionError::NoParts));
    assert_eq!(
        refused(vec![(2, e2.clone()), (1, e1.clone())]),
        Some(CompletionError::InvalidPartOrder)
    );
    assert_eq!(
        refused(vec![(1, e1.clone()), (1, e1.clone())]),
        Some(CompletionError::InvalidPartOrder)
    );
    assert_eq!(
        refused(vec![(1, e1.clone()), (4, e3.clone())]),
        Some(CompletionError::InvalidPart { number: 4 })
    );
    assert_eq!(
        refused(vec![(1, e2.clone())]),
        Some(CompletionError::InvalidPart { number: 1 }),
        "another part's ETag"
    );
    assert_eq!(
        refused(vec![(2, e2.clone()), (3, e3.clone())]),
        Some(CompletionError::EntityTooSmall { number: 2 })
    );
    assert_eq!(
        refused(vec![(1, e1.clone()), (2, e2.clone()), (3, e3.clone())]),
        Some(CompletionError::EntityTooSmall { number: 2 })
    );
    assert_eq!(
        refused(vec![(3, e3.clone())]),
        None,
        "a single small part is the last part"
    );
    assert_eq!(
        refused(vec![(1, e1.clone()), (3, e3.clone())]),
        None,
        "parts may be skipped"
    );
    let error = Error::from(CompletionError::InvalidPart { number: 4 });
    assert_eq!(
        (error.kind(), error.field()),
        (ErrorKind::InvalidInput, Some("parts[4]"))
    );

    // Refused lists change nothing.
    assert_eq!(parts(h, "multi", up.id).await, stored);
    assert_eq!(get(h, &h.tenant, "multi", "k").await, None);
}

pub async fn list_parts_pages(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "multi").await;
    let b = bucket("multi");
    let up = create(h, "multi", "k").await;
    let mut records = BTreeMap::new();
    for number in [3u32, 1, 5, 10_000, 2, 4] {
        h.advance(1);
        let (_, part) = upload_part(
            h,
            "multi",
            up.id,
            number,
            &bytes(number as usize % 97, number as u8),
        )
        .await;
        records.insert(number, part);
    }
    let all: Vec<PartRecord> = records.values().cloned().collect();
    assert_eq!(parts(h, "multi", up.id).await, all, "ascending by number");
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = s
            .list_parts(t, &b, up.id, after, limit(2))
            .await
            .expect("list_parts");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = last.number;
        pages.push(page.iter().map(|p| p.number).collect::<Vec<_>>());
        assert!(pages.len() <= 4, "the walk ends");
    }
    assert_eq!(pages, [vec![1, 2], vec![3, 4], vec![5, 10_000]]);
    assert!(
        s.list_parts(t, &b, up.id, 10_000, Limit::MAX)
            .await
            .expect("list_parts")
            .is_empty()
    );
    assert_eq!(
        s.list_parts(t, &b, up.id, 4, limit(1))
            .await
            .expect("list_parts"),
        [records[&5].clone()]
    );
    // Another upload's parts are its own.
    let other = create(h, "multi", "k").await;
    assert!(parts(h, "multi", other.id).await.is_empty());
}

pub async fn list_uploads_by_key_then_id(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "multi").await;
    make_bucket(h, t, "elsewhere").await;
    let b = bucket("multi");
    let mut created = Vec::new();
    for key in [
        "b",
        "a",
        "a/x",
        "a",
        "c",
        "ab",
        "a",
        "\u{10000}",
        "\u{ffff}",
    ] {
        created.push(create(h, "multi", key).await);
        h.advance(1);
    }
    create(h, "elsewhere", "a").await;
    let b = &b;
    let mut expected = created.clone();
    expected.sort_by(|x, y| (x.key.as_bytes(), x.id).cmp(&(y.key.as_bytes(), y.id)));
    let listed = |prefix: &'static str, after: Option<(String, UploadId)>, n: u64| async move {
        let key = after.as_ref().map(|(k, id)| (okey(k), *id));
        s.list_uploads(
            t,
            b,
            &oprefix(prefix),
            key.as_ref().map(|(k, id)| (k, *id)),
            limit(n),
        )
        .await
        .expect("list_uploads succeeds")
    };
    assert_eq!(
        listed("", None, 1000).await,
        expected,
        "by key bytes, then id"
    );
    let under_a: Vec<UploadInfo> = expected
        .iter()
        .filter(|u| u.key.as_str().starts_with('a'))
        .cloned()
        .collect();
    assert_eq!(under_a.len(), 5);
    assert_eq!(listed("a", None, 1000).await, under_a);
    assert_eq!(
        listed("a/", None, 1000)
            .await
            .iter()
            .map(|u| u.key.as_str())
            .collect::<Vec<_>>(),
        ["a/x"]
    );

    // Pages of two, each after the last (key, id) of the one before.
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = listed("", after.clone(), 2).await;
        let Some(last) = page.last() else { break };
        after = Some((last.key.as_str().to_owned(), last.id));
        walked.extend(page);
        assert!(walked.len() <= expected.len(), "the walk ends");
    }
    assert_eq!(walked, expected);

    // `after` is strict on (key, id): the other uploads of the same key follow.
    let first_a = &under_a[0];
    assert_eq!(
        listed("a", Some(("a".into(), first_a.id)), 1000).await,
        under_a[1..].to_vec()
    );
    assert_eq!(
        listed("", Some(("aa".into(), UploadId(0))), 1)
            .await
            .iter()
            .map(|u| u.key.as_str())
            .collect::<Vec<_>>(),
        ["ab"],
        "after a key with no upload"
    );
}

pub async fn abort_ends_an_upload(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "multi").await;
    let b = bucket("multi");
    let up = create(h, "multi", "k").await;
    let sibling = create(h, "multi", "k").await;
    let (w1, _) = upload_part(h, "multi", up.id, 1, b"one").await;
    upload_part(h, "multi", sibling.id, 1, b"sibling").await;
    let meta = planned(h, "multi", &up, &[(1, w1.md5.clone())]).await;

    s.abort_upload(t, &b, up.id).await.expect("abort_upload");
    let u = Resource::Upload;
    assert_eq!(s.upload(t, &b, up.id).await.expect("upload"), None);
    assert_not_found(s.abort_upload(t, &b, up.id).await, u, "aborting twice");
    assert_not_found(
        s.list_parts(t, &b, up.id, 0, Limit::MAX).await,
        u,
        "list_parts",
    );
    let more = write_data(h, t, b"more").await;
    assert_not_found(
        s.put_part(t, &b, up.id, &part_of(h, 2, &more)).await,
        u,
        "put_part",
    );
    assert_not_found(
        s.complete_upload(t, &b, up.id, &meta, &Precondition::None)
            .await,
        u,
        "completing an aborted upload",
    );
    assert_eq!(get(h, t, "multi", "k").await, None, "no object");
    assert_eq!(
        s.list_uploads(t, &b, &ObjectPrefix::all(), None, Limit::MAX)
            .await
            .expect("list_uploads"),
        std::slice::from_ref(&sibling),
        "the other upload of the key remains"
    );
    assert_eq!(parts(h, "multi", sibling.id).await.len(), 1);
    assert_not_found(
        s.abort_upload(t, &b, UploadId(u64::MAX - 3)).await,
        u,
        "aborting an upload never begun",
    );
    assert_eq!(
        s.upload(t, &b, UploadId(u64::MAX - 3))
            .await
            .expect("upload"),
        None
    );
}

pub async fn completion_checks_its_condition(h: &Harness) {
    let (s, t) = (store(h), &h.tenant);
    make_bucket(h, t, "multi").await;
    let b = bucket("multi");
    let existing = put(h, t, "multi", "k", b"single put").await;
    let up = create(h, "multi", "k").await;
    let (w1, _) = upload_part(h, "multi", up.id, 1, b"multipart body").await;
    let meta = planned(h, "multi", &up, &[(1, w1.md5.clone())]).await;

    assert_kind(
        s.complete_upload(t, &b, up.id, &meta, &Precondition::IfAbsent)
            .await,
        ErrorKind::Conflict,
        "If-None-Match: * over a visible object",
    );
    assert_kind(
        s.complete_upload(t, &b, up.id, &meta, &Precondition::IfEtag(md5_hex(b"nope")))
            .await,
        ErrorKind::Conflict,
        "If-Match with another ETag",
    );
    assert_eq!(
        get(h, t, "multi", "k").await,
        Some(existing.clone()),
        "unchanged"
    );
    assert_eq!(read_all(h, t, &existing).await, b"single put");
    assert_eq!(
        s.upload(t, &b, up.id).await.expect("upload"),
        Some(up.clone()),
        "the upload remains"
    );
    assert_eq!(parts(h, "multi", up.id).await.len(), 1, "with its part");

    s.complete_upload(
        t,
        &b,
        up.id,
        &meta,
        &Precondition::IfEtag(existing.etag.clone()),
    )
    .await
    .expect("If-Match with the current ETag");
    let stored = get(h, t, "multi", "k").await.expect("visible");
    assert_eq!(stored, meta);
    assert!(
        stored.etag.ends_with("-1"),
        "a multipart ETag: {}",
        stored.etag
    );
    assert_eq!(read_all(h, t, &stored).await, b"multipart body");

    // The expiry an upload was created with is the completed object's.
    let expires = h.clock.now() + 100;
    let up = s
        .create_upload(
            t,
            &b,
            &okey("fleeting"),
            &ObjectAttributes::default(),
            Some(expires),
        )
        .await
        .expect("create_upload");
    assert_eq!(up.expires_at, Some(expires));
    let (w, _) = upload_part(h, "multi", up.id, 1, b"brief").await;
    let meta = planned(h, "multi", &up, &[(1, w.md5.clone())]).await;
    s.complete_upload(t, &b, up.id, &meta, &Precondition::IfAbsent)
        .await
        .expect("If-None-Match: * on a new key");
    assert_eq!(
        get(h, t, "multi", "fleeting")
            .await
            .and_then(|m| m.expires_at),
        Some(expires)
    );
    h.advance(100);
    assert_eq!(
        get(h, t, "multi", "fleeting").await,
        None,
        "expired with the upload's expiry"
    );
    assert_eq!(keys_in(h, t, "multi").await, ["k"]);
}
