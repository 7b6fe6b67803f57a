//! Encryption at rest: the cost of the sealing layer (`p8fs_core::sealed`) on RocksDB, plain
//! against sealed in the same run, each on its own fresh store, rounds interleaved:
//! - key-value puts/s and gets/s of a small JSON value (a note of about 200 bytes with a few
//!   fields), one thread;
//! - 64 MiB object PUT (through `ObjectWriter` and `put_object`) and GET (every chunk read back
//!   in order), MiB/s.
//!
//! `cargo bench --workspace --bench sealed`; `P8FS_BENCH_KV_OPS` (default 20000) and
//! `P8FS_BENCH_ROUNDS` (default 5) scale it. Each figure is the median of the rounds.

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::sync::Arc;
use std::time::Instant;

use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
use p8fs_conformance::support::{key, value};
use p8fs_core::object::{MAX_PUT_BYTES, ObjectWriter};
use p8fs_core::sealed::{MasterKey, MasterKeys, Sealed};
use p8fs_core::{Backend, BucketName, ObjectKey, ObjectMeta, Precondition, SystemClock, TenantId};
use serde_json::json;

const OBJECT_BYTES: usize = 64 * 1024 * 1024;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Store {
    backend: Arc<dyn Backend>,
    _dir: tempfile::TempDir,
}

async fn store(sealed: bool) -> Store {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner: Arc<dyn Backend> = Arc::new(
        RocksBackend::open(dir.path(), Arc::new(SystemClock), RocksOptions::default())
            .expect("open rocksdb"),
    );
    let backend: Arc<dyn Backend> = if sealed {
        let keys = MasterKeys::new(MasterKey::generate().expect("key"), []);
        Arc::new(Sealed::open(inner, keys, None).await.expect("sealed"))
    } else {
        inner
    };
    Store { backend, _dir: dir }
}

/// (puts/s, gets/s)
async fn kv_round(b: &dyn Backend, ops: usize) -> (f64, f64) {
    let tenant = TenantId::new("bench").expect("tenant");
    let keys: Vec<_> = (0..ops).map(|i| key(&format!("notes/{i:08}"))).collect();
    let start = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        let v = value(json!({
            "kind": "note",
            "n": i,
            "tags": ["work", "draft"],
            "text": "remember to water the plants on the balcony before the trip, and ask the neighbour to check the mail every other day",
        }));
        b.put(&tenant, k, &v, None).await.expect("put");
    }
    let puts = ops as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for k in &keys {
        let got = b.get(&tenant, k).await.expect("get");
        assert!(got.is_some());
    }
    let gets = ops as f64 / start.elapsed().as_secs_f64();
    (puts, gets)
}

/// (PUT MiB/s, GET MiB/s) of one 64 MiB object.
async fn object_round(b: &dyn Backend, round: usize, body: &[u8]) -> (f64, f64) {
    let tenant = TenantId::new("bench").expect("tenant");
    let bucket = BucketName::new("bench").expect("bucket");
    if b.bucket(&tenant, &bucket).await.expect("bucket").is_none() {
        b.create_bucket(&tenant, &bucket).await.expect("create");
    }
    let mib = body.len() as f64 / (1024.0 * 1024.0);
    let start = Instant::now();
    let mut writer = ObjectWriter::begin(b, &tenant, MAX_PUT_BYTES)
        .await
        .expect("begin");
    for piece in body.chunks(256 * 1024) {
        writer.write(piece).await.expect("write");
    }
    let written = writer.finish().await.expect("finish");
    let meta = ObjectMeta {
        key: ObjectKey::new(format!("big/{round}")).expect("key"),
        size: written.size,
        etag: written.md5.clone(),
        last_modified: 0,
        expires_at: None,
        attributes: Default::default(),
        segments: vec![written.segment()],
    };
    b.put_object(&tenant, &bucket, &meta, &Precondition::None)
        .await
        .expect("put_object");
    let put = mib / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let stored = b
        .object(&tenant, &bucket, &meta.key)
        .await
        .expect("object")
        .expect("visible");
    let mut read = 0usize;
    for segment in &stored.segments {
        let chunks = segment.size.div_ceil(p8fs_core::object::CHUNK_BYTES as u64);
        for index in 0..chunks {
            read += b
                .read_chunk(&tenant, segment.data, index as u32)
                .await
                .expect("chunk")
                .len();
        }
    }
    assert_eq!(read, body.len());
    let get = mib / start.elapsed().as_secs_f64();
    (put, get)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn report(what: &str, unit: &str, plain: Vec<f64>, sealed: Vec<f64>) {
    let (p, s) = (median(plain), median(sealed));
    println!(
        "{what:<12} plain {p:>12.0} {unit}   sealed {s:>12.0} {unit}   sealed/plain {:.3} ({:+.1}%)",
        s / p,
        (s / p - 1.0) * 100.0
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ops = env_or("P8FS_BENCH_KV_OPS", 20_000);
    let rounds = env_or("P8FS_BENCH_ROUNDS", 5);
    runtime.block_on(async {
        let plain = store(false).await;
        let sealed = store(true).await;
        let body: Vec<u8> = (0..OBJECT_BYTES)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let (mut kv_plain, mut kv_sealed) = (Vec::new(), Vec::new());
        let (mut obj_plain, mut obj_sealed) = (Vec::new(), Vec::new());
        // A warm-up round of each, not counted.
        kv_round(plain.backend.as_ref(), ops / 10).await;
        kv_round(sealed.backend.as_ref(), ops / 10).await;
        for round in 0..rounds {
            kv_plain.push(kv_round(plain.backend.as_ref(), ops).await);
            kv_sealed.push(kv_round(sealed.backend.as_ref(), ops).await);
            obj_plain.push(object_round(plain.backend.as_ref(), round, &body).await);
            obj_sealed.push(object_round(sealed.backend.as_ref(), round, &body).await);
        }
        println!("RocksDB, {ops} kv operations and one 64 MiB object per round, median of {rounds} rounds");
        report(
            "kv put",
            "ops/s",
            kv_plain.iter().map(|r| r.0).collect(),
            kv_sealed.iter().map(|r| r.0).collect(),
        );
        report(
            "kv get",
            "ops/s",
            kv_plain.iter().map(|r| r.1).collect(),
            kv_sealed.iter().map(|r| r.1).collect(),
        );
        report(
            "object PUT",
            "MiB/s",
            obj_plain.iter().map(|r| r.0).collect(),
            obj_sealed.iter().map(|r| r.0).collect(),
        );
        report(
            "object GET",
            "MiB/s",
            obj_plain.iter().map(|r| r.1).collect(),
            obj_sealed.iter().map(|r| r.1).collect(),
        );
    });
}
