//! Object operations of the differential tests: buckets, small objects at keys drawn from a tiny
//! alphabet with `/` (so prefixes, delimiters and common prefixes meet), conditional puts, ttls,
//! one-part multipart uploads completed (conditionally) or aborted, deletes, reads of the whole
//! bytes, and ListObjectsV2 walks with random prefix, delimiter, start-after and max-keys,
//! followed to their last page.
//!
//! Blob and upload ids differ between sides and are never compared; an object is compared by
//! everything else (key, size, ETag, last-modified, expiry, attributes, number of segments) and
//! by its bytes. The changes of bucket and object writes are compared with the rest of each
//! tenant's change log (`Case::compare_state`).

use std::collections::BTreeMap;

use proptest::prelude::*;

use p8fs_core::object::{
    MAX_PUT_BYTES, ObjectListing, ObjectWriter, chunk_reads, from_after, list_objects_v2,
    plan_completion,
};
use p8fs_core::{
    Backend, BucketName, ErrorKind, Limit, ObjectAttributes, ObjectKey, ObjectMeta, ObjectPrefix,
    ObjectStore, PartRecord, Precondition, TenantId, Timestamp,
};

use super::{MAX_PAGES, Op, Out, tenant};

/// Bucket names; tenant 0 and 1 both start with the first.
pub(super) const BUCKETS: &[&str] = &["bkt", "bkt-2"];
/// The characters keys are made of: `/` is the delimiter most listings use.
const KEY_CHARS: &[char] = &['a', 'b', '/', 'é'];
const PREFIXES: &[&str] = &["", "a", "a/", "b", "/", "é", "a/b"];
const DELIMITERS: &[Option<&str>] = &[
    None,
    Some("/"),
    Some("/"),
    Some("a/"),
    Some("//"),
    Some("é"),
];
/// Object sizes: empty, one byte, and a few more.
const SIZES: &[usize] = &[0, 1, 3, 17];

/// One object operation; `t` is the tenant (0 or 1), ttls are in milliseconds.
#[derive(Clone, Debug)]
pub(super) enum ObjOp {
    CreateBucket {
        t: usize,
        b: &'static str,
    },
    DeleteBucket {
        t: usize,
        b: &'static str,
    },
    Buckets {
        t: usize,
    },
    /// Writes `size` bytes made from `seed` and commits them at `key`.
    Put {
        t: usize,
        b: &'static str,
        key: String,
        size: usize,
        seed: u8,
        ttl: Option<i64>,
        if_absent: bool,
    },
    /// Creates an upload of `key`, writes `size` bytes made from `seed` as its one part, then
    /// completes it (if absent, with `if_absent`) or aborts it. A refused completion leaves the
    /// upload open, as S3 does.
    Multipart {
        t: usize,
        b: &'static str,
        key: String,
        size: usize,
        seed: u8,
        ttl: Option<i64>,
        if_absent: bool,
        complete: bool,
    },
    Delete {
        t: usize,
        b: &'static str,
        key: String,
    },
    /// The object's metadata and bytes.
    Get {
        t: usize,
        b: &'static str,
        key: String,
    },
    /// `list_objects_v2` followed through `next_from` to the last page.
    List {
        t: usize,
        b: &'static str,
        prefix: &'static str,
        delimiter: Option<&'static str>,
        start_after: Option<String>,
        max_keys: u32,
    },
}

impl ObjOp {
    pub(super) fn ttl(&self) -> Option<i64> {
        match self {
            ObjOp::Put { ttl, .. } | ObjOp::Multipart { ttl, .. } => *ttl,
            _ => None,
        }
    }
}

/// An object as both sides must agree on it: everything but its blob ids.
#[derive(Debug, PartialEq)]
pub(super) struct Obj {
    key: String,
    size: u64,
    etag: String,
    last_modified: Timestamp,
    expires_at: Option<Timestamp>,
    attributes: ObjectAttributes,
    segments: usize,
}

impl From<ObjectMeta> for Obj {
    fn from(meta: ObjectMeta) -> Self {
        Obj {
            key: meta.key.into_string(),
            size: meta.size,
            etag: meta.etag,
            last_modified: meta.last_modified,
            expires_at: meta.expires_at,
            attributes: meta.attributes,
            segments: meta.segments.len(),
        }
    }
}

/// One page of a listing, comparable across sides.
#[derive(Debug, PartialEq)]
pub(super) struct ListPage {
    objects: Vec<Obj>,
    common_prefixes: Vec<String>,
    next_from: Option<Vec<u8>>,
}

/// The result of an object operation.
#[derive(Debug, PartialEq)]
pub(super) enum ObjOut {
    Buckets(Vec<(String, Timestamp)>),
    Object(Option<(Obj, Vec<u8>)>),
    Pages(Vec<ListPage>),
    /// A bucket's every visible object, and the tenant's stored bytes.
    Contents(Vec<Obj>),
    StoredBytes(u64),
}

fn key_text() -> BoxedStrategy<String> {
    prop::collection::vec(prop::sample::select(KEY_CHARS), 1..=4)
        .prop_map(|chars| chars.into_iter().collect())
        .boxed()
}

fn bucket_name() -> BoxedStrategy<&'static str> {
    prop_oneof![4 => Just(BUCKETS[0]), 1 => Just(BUCKETS[1])].boxed()
}

pub(super) fn obj_op(ttl: BoxedStrategy<Option<i64>>) -> BoxedStrategy<ObjOp> {
    let multipart = (
        tenant(),
        bucket_name(),
        key_text(),
        prop::sample::select(SIZES),
        any::<u8>(),
        ttl.clone(),
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.8),
    )
        .prop_map(
            |(t, b, key, size, seed, ttl, if_absent, complete)| ObjOp::Multipart {
                t,
                b,
                key,
                size,
                seed,
                ttl,
                if_absent,
                complete,
            },
        );
    let put = (
        tenant(),
        bucket_name(),
        key_text(),
        prop::sample::select(SIZES),
        any::<u8>(),
        ttl,
        prop::bool::weighted(0.25),
    )
        .prop_map(|(t, b, key, size, seed, ttl, if_absent)| ObjOp::Put {
            t,
            b,
            key,
            size,
            seed,
            ttl,
            if_absent,
        });
    let list = (
        tenant(),
        bucket_name(),
        prop::sample::select(PREFIXES),
        prop::sample::select(DELIMITERS),
        prop::option::weighted(0.3, key_text()),
        prop::sample::select(&[0u32, 1, 2, 3, 1000][..]),
    )
        .prop_map(
            |(t, b, prefix, delimiter, start_after, max_keys)| ObjOp::List {
                t,
                b,
                prefix,
                delimiter,
                start_after,
                max_keys,
            },
        );
    prop_oneof![
        2 => (tenant(), bucket_name()).prop_map(|(t, b)| ObjOp::CreateBucket { t, b }),
        1 => (tenant(), bucket_name()).prop_map(|(t, b)| ObjOp::DeleteBucket { t, b }),
        1 => tenant().prop_map(|t| ObjOp::Buckets { t }),
        10 => put,
        2 => multipart,
        3 => (tenant(), bucket_name(), key_text()).prop_map(|(t, b, key)| ObjOp::Delete { t, b, key }),
        3 => (tenant(), bucket_name(), key_text()).prop_map(|(t, b, key)| ObjOp::Get { t, b, key }),
        6 => list,
    ]
    .boxed()
}

/// Creates the first bucket in both tenants and puts a few objects in tenant 0's.
pub(super) fn seed_objects() -> BoxedStrategy<Vec<Op>> {
    let puts = prop::collection::vec(
        (key_text(), prop::sample::select(SIZES), any::<u8>()),
        0..=8,
    );
    puts.prop_map(|puts| {
        let mut ops: Vec<Op> = (0..2)
            .map(|t| Op::Object(ObjOp::CreateBucket { t, b: BUCKETS[0] }))
            .collect();
        ops.extend(puts.into_iter().map(|(key, size, seed)| {
            Op::Object(ObjOp::Put {
                t: 0,
                b: BUCKETS[0],
                key,
                size,
                seed,
                ttl: None,
                if_absent: false,
            })
        }));
        ops
    })
    .boxed()
}

fn bucket(name: &str) -> BucketName {
    BucketName::new(name).expect("valid bucket name")
}

fn okey(key: &str) -> ObjectKey {
    ObjectKey::new(key).expect("valid object key")
}

fn failed(e: p8fs_core::Error) -> Out {
    Out::Failed(e.kind())
}

/// The bytes of an object of `size` made from `seed`.
fn content(size: usize, seed: u8) -> Vec<u8> {
    (0..size).map(|i| seed.wrapping_add(i as u8 * 37)).collect()
}

async fn read(
    b: &dyn ObjectStore,
    tenant: &TenantId,
    meta: &ObjectMeta,
) -> p8fs_core::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for read in chunk_reads(&meta.segments, 0, meta.size) {
        let chunk = b.read_chunk(tenant, read.data, read.index).await?;
        let piece = chunk.get(read.start..read.end).ok_or_else(|| {
            p8fs_core::Error::internal("a chunk is shorter than its object says", None)
        })?;
        bytes.extend_from_slice(piece);
    }
    Ok(bytes)
}

/// Writes `bytes` and commits them as the object `meta` describes (its size, ETag and segments
/// are the blob's).
async fn put(
    b: &dyn Backend,
    tenant: &TenantId,
    bucket_name: &str,
    bytes: &[u8],
    mut meta: ObjectMeta,
    condition: &Precondition,
) -> p8fs_core::Result<()> {
    let store: &dyn ObjectStore = b;
    let mut writer = ObjectWriter::begin(store, tenant, MAX_PUT_BYTES).await?;
    writer.write(bytes).await?;
    let written = writer.finish().await?;
    meta.size = written.size;
    meta.etag = written.md5.clone();
    meta.segments = vec![written.segment()];
    let result = store
        .put_object(tenant, &bucket(bucket_name), &meta, condition)
        .await;
    if result.is_err() {
        // What a front-end does with the blob of a refused write.
        store.discard_data(tenant, written.data).await?;
    }
    result
}

/// Runs [`ObjOp::Multipart`]: an upload with one part of `bytes`, completed under `condition`
/// or aborted.
#[allow(clippy::too_many_arguments)]
async fn multipart(
    b: &dyn Backend,
    tenant: &TenantId,
    bucket_name: &str,
    key: &str,
    bytes: &[u8],
    expires_at: Option<Timestamp>,
    condition: &Precondition,
    complete: bool,
    now: Timestamp,
) -> p8fs_core::Result<()> {
    let store: &dyn ObjectStore = b;
    let name = bucket(bucket_name);
    let upload = store
        .create_upload(
            tenant,
            &name,
            &okey(key),
            &ObjectAttributes::default(),
            expires_at,
        )
        .await?;
    let mut writer = ObjectWriter::begin(store, tenant, MAX_PUT_BYTES).await?;
    writer.write(bytes).await?;
    let written = writer.finish().await?;
    let part = PartRecord {
        number: 1,
        data: written.data,
        size: written.size,
        etag: written.md5.clone(),
        checksums: BTreeMap::new(),
        last_modified: now,
    };
    store.put_part(tenant, &name, upload.id, &part).await?;
    if !complete {
        return store.abort_upload(tenant, &name, upload.id).await;
    }
    let plan = plan_completion(&[(1, part.etag.clone())], std::slice::from_ref(&part))
        .map_err(|e| p8fs_core::Error::internal(format!("plan_completion: {e:?}"), None))?;
    let meta = ObjectMeta {
        key: upload.key,
        size: plan.size,
        etag: plan.etag,
        last_modified: now,
        expires_at: upload.expires_at,
        attributes: upload.attributes,
        segments: plan.segments,
    };
    store
        .complete_upload(tenant, &name, upload.id, &meta, condition)
        .await
}

/// Runs one object operation on one side whose clock reads `now`.
pub(super) async fn run_object(
    b: &dyn Backend,
    tenants: &[TenantId; 2],
    op: &ObjOp,
    now: Timestamp,
) -> Out {
    let obj = |o| Out::Object(o);
    match op {
        ObjOp::CreateBucket { t, b: name } => {
            match b.create_bucket(&tenants[*t], &bucket(name)).await {
                Ok(info) => obj(ObjOut::Buckets(vec![(
                    info.name.into_string(),
                    info.created_at,
                )])),
                Err(e) => failed(e),
            }
        }
        ObjOp::DeleteBucket { t, b: name } => {
            match b.delete_bucket(&tenants[*t], &bucket(name)).await {
                Ok(()) => Out::Done,
                Err(e) => failed(e),
            }
        }
        ObjOp::Buckets { t } => buckets(b, &tenants[*t]).await,
        ObjOp::Put {
            t,
            b: name,
            key,
            size,
            seed,
            ttl,
            if_absent,
        } => {
            let condition = if *if_absent {
                Precondition::IfAbsent
            } else {
                Precondition::None
            };
            let meta = ObjectMeta {
                key: okey(key),
                size: 0,
                etag: String::new(),
                last_modified: now,
                expires_at: ttl.map(|ttl| now + ttl),
                attributes: ObjectAttributes::default(),
                segments: Vec::new(),
            };
            let bytes = content(*size, *seed);
            match put(b, &tenants[*t], name, &bytes, meta, &condition).await {
                Ok(()) => Out::Done,
                Err(e) => failed(e),
            }
        }
        ObjOp::Multipart {
            t,
            b: name,
            key,
            size,
            seed,
            ttl,
            if_absent,
            complete,
        } => {
            let condition = if *if_absent {
                Precondition::IfAbsent
            } else {
                Precondition::None
            };
            let bytes = content(*size, *seed);
            let expires_at = ttl.map(|ttl| now + ttl);
            match multipart(
                b,
                &tenants[*t],
                name,
                key,
                &bytes,
                expires_at,
                &condition,
                *complete,
                now,
            )
            .await
            {
                Ok(()) => Out::Done,
                Err(e) => failed(e),
            }
        }
        ObjOp::Delete { t, b: name, key } => {
            match b
                .delete_object(&tenants[*t], &bucket(name), &okey(key))
                .await
            {
                Ok(existed) => Out::Flag(existed),
                Err(e) => failed(e),
            }
        }
        ObjOp::Get { t, b: name, key } => {
            let tenant = &tenants[*t];
            match b.object(tenant, &bucket(name), &okey(key)).await {
                Ok(None) => obj(ObjOut::Object(None)),
                Ok(Some(meta)) => match read(b, tenant, &meta).await {
                    Ok(bytes) => obj(ObjOut::Object(Some((meta.into(), bytes)))),
                    Err(e) => failed(e),
                },
                Err(e) => failed(e),
            }
        }
        ObjOp::List {
            t,
            b: name,
            prefix,
            delimiter,
            start_after,
            max_keys,
        } => {
            let from = start_after.as_deref().map(from_after).unwrap_or_default();
            walk(b, &tenants[*t], name, prefix, *delimiter, from, *max_keys).await
        }
    }
}

async fn buckets(b: &dyn Backend, tenant: &TenantId) -> Out {
    match b.list_buckets(tenant).await {
        Ok(list) => Out::Object(ObjOut::Buckets(
            list.into_iter()
                .map(|info| (info.name.into_string(), info.created_at))
                .collect(),
        )),
        Err(e) => failed(e),
    }
}

async fn walk(
    b: &dyn Backend,
    tenant: &TenantId,
    bucket_name: &str,
    prefix: &str,
    delimiter: Option<&str>,
    mut from: Vec<u8>,
    max_keys: u32,
) -> Out {
    let prefix = ObjectPrefix::new(prefix).expect("valid prefix");
    let mut pages = Vec::new();
    loop {
        let page = match list_objects_v2(
            b,
            tenant,
            &bucket(bucket_name),
            &prefix,
            delimiter,
            &from,
            max_keys,
        )
        .await
        {
            Ok(page) => page,
            Err(e) => return failed(e),
        };
        let ObjectListing {
            objects,
            common_prefixes,
            next_from,
        } = page;
        pages.push(ListPage {
            objects: objects.into_iter().map(Obj::from).collect(),
            common_prefixes,
            next_from: next_from.clone(),
        });
        match next_from {
            Some(next) if pages.len() < MAX_PAGES => from = next,
            // A walk that does not end shows as a difference in its pages or as this error.
            Some(_) => return Out::Failed(ErrorKind::Internal),
            None => return Out::Object(ObjOut::Pages(pages)),
        }
    }
}

/// The visible object state of a tenant: its buckets, every visible object of each bucket of
/// [`BUCKETS`] (or the error for a missing one) and its stored bytes.
pub(super) async fn state(b: &dyn Backend, tenant: &TenantId) -> Vec<Out> {
    let mut parts = vec![buckets(b, tenant).await];
    for name in BUCKETS {
        parts.push(
            match b
                .list_objects(tenant, &bucket(name), &ObjectPrefix::all(), b"", Limit::MAX)
                .await
            {
                Ok(all) => Out::Object(ObjOut::Contents(all.into_iter().map(Obj::from).collect())),
                Err(e) => failed(e),
            },
        );
    }
    parts.push(match b.stored_bytes(tenant).await {
        Ok(n) => Out::Object(ObjOut::StoredBytes(n)),
        Err(e) => failed(e),
    });
    parts
}
