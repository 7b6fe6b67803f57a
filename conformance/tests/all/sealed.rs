//! The encryption layer (`p8fs_core::sealed`) on real stores: a known secret written through it
//! appears nowhere in RocksDB's files or the SQL servers' rows, a row copied to another tenant
//! fails to open with an error saying so, master-key rotation under concurrent writes loses
//! nothing, and a store written before encryption is read and migrated on write.

use std::path::Path;
use std::sync::Arc;

use p8fs_backend_postgres::{PgBackend, PgOptions};
use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
use p8fs_backend_tidb::{TidbBackend, TidbOptions};
use p8fs_conformance::support::{
    collection, fresh_tenant, key, limit, object, operand, path, value,
};
use p8fs_core::object::{ObjectWriter, list_objects_v2};
use p8fs_core::sealed::{KEYRING_TENANT, MasterKey, MasterKeys, Sealed, SealedSince};
use p8fs_core::{
    Backend, BucketName, ChangeLog, Clock, CollectionSpec, ErrorKind, Filter, KvStore, Label,
    Maintenance, ManualClock, Metric, NodeId, ObjectAttributes, ObjectKey, ObjectMeta,
    ObjectPrefix, ObjectStore, Precondition, ReapPolicy, Rel, TenantId, Weight, kv, vector,
};
use serde_json::json;

fn master(byte: u8) -> MasterKey {
    MasterKey::from_bytes([byte; 32])
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(p8fs_conformance::START))
}

fn rocks(dir: &Path) -> Arc<dyn Backend> {
    Arc::new(RocksBackend::open(dir, clock(), RocksOptions::default()).expect("open rocksdb"))
}

async fn sealed(inner: Arc<dyn Backend>, keys: MasterKeys) -> Sealed {
    Sealed::open(inner, keys, None).await.expect("open sealed")
}

/// Writes `secret` into every kind of record of `tenant`: a key-value value (beside a
/// filterable field), vector metadata, node and edge properties, object bytes, object and
/// upload metadata.
async fn write_secret(b: &dyn Backend, tenant: &TenantId, secret: &str) {
    b.put(
        tenant,
        &key("note"),
        &value(json!({"kind": "note", "text": secret})),
        None,
    )
    .await
    .expect("kv put");
    let spec = CollectionSpec::new("notes", 3, Metric::Cosine).expect("spec");
    b.create_collection(tenant, &spec)
        .await
        .expect("collection");
    vector::upsert(
        b,
        tenant,
        &collection("notes"),
        &p8fs_core::RecordId::new("r1").expect("id"),
        vec![0.1, 0.2, 0.3],
        &object(json!({"text": secret, "tag": "a"})),
        None,
    )
    .await
    .expect("upsert");
    let (n1, n2) = (
        NodeId::new("n1").expect("valid"),
        NodeId::new("n2").expect("valid"),
    );
    let label = Label::new("memory").expect("valid");
    b.put_node(tenant, &n1, &label, &object(json!({"text": secret})), None)
        .await
        .expect("node");
    b.put_node(tenant, &n2, &label, &object(json!({})), None)
        .await
        .expect("node");
    b.put_edge(
        tenant,
        &n1,
        &Rel::new("cites").expect("valid"),
        &n2,
        Weight::ONE,
        &object(json!({"why": secret})),
        None,
    )
    .await
    .expect("edge");
    let bucket = BucketName::new("vault").expect("valid");
    b.create_bucket(tenant, &bucket).await.expect("bucket");
    let mut writer = ObjectWriter::begin(b, tenant, u64::MAX)
        .await
        .expect("begin");
    writer
        .write(format!("the file says {secret}").as_bytes())
        .await
        .expect("write");
    let written = writer.finish().await.expect("finish");
    let attributes = ObjectAttributes {
        content_type: Some("text/plain".to_owned()),
        metadata: [("note".to_owned(), secret.to_owned())].into(),
        ..ObjectAttributes::default()
    };
    let meta = ObjectMeta {
        key: ObjectKey::new("file.txt").expect("valid"),
        size: written.size,
        etag: written.md5.clone(),
        last_modified: p8fs_conformance::START,
        expires_at: None,
        attributes: attributes.clone(),
        segments: vec![written.segment()],
    };
    b.put_object(tenant, &bucket, &meta, &Precondition::None)
        .await
        .expect("put_object");
    b.create_upload(
        tenant,
        &bucket,
        &ObjectKey::new("big.bin").expect("valid"),
        &attributes,
        None,
    )
    .await
    .expect("create_upload");
}

/// Reads back what [`write_secret`] wrote, through the layer.
async fn read_secret(b: &dyn Backend, tenant: &TenantId, secret: &str) {
    let entry = b
        .get(tenant, &key("note"))
        .await
        .expect("get")
        .expect("some");
    assert_eq!(entry.value, json!({"kind": "note", "text": secret}));
    let found = kv::find_by_field(
        b,
        tenant,
        &path("kind"),
        &operand(json!("note")),
        None,
        limit(10),
    )
    .await
    .expect("find");
    assert_eq!(found.items.len(), 1, "find-by-field on a sealed value");
    let filter = Filter::new([("tag".to_owned(), json!("a"))]).expect("valid");
    let hits = vector::search(
        b,
        tenant,
        &collection("notes"),
        vec![0.1, 0.2, 0.3],
        limit(5),
        &filter,
    )
    .await
    .expect("search");
    assert_eq!(hits.len(), 1, "filtered search on sealed metadata");
    assert_eq!(hits[0].metadata["text"], json!(secret));
    let node = b
        .get_node(tenant, &NodeId::new("n1").expect("valid"))
        .await
        .expect("node")
        .expect("some");
    assert_eq!(node.properties["text"], json!(secret));
    let bucket = BucketName::new("vault").expect("valid");
    let listing = list_objects_v2(b, tenant, &bucket, &ObjectPrefix::all(), None, b"", 10)
        .await
        .expect("list");
    assert_eq!(listing.objects.len(), 1);
    let meta = &listing.objects[0];
    assert_eq!(meta.attributes.metadata["note"], secret);
    let bytes = b
        .read_chunk(tenant, meta.segments[0].data, 0)
        .await
        .expect("chunk");
    assert_eq!(bytes, format!("the file says {secret}").as_bytes());
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir`, read whole.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if contains(&std::fs::read(&path).expect("read"), needle) {
            found.push(path.display().to_string());
        }
    }
    found
}

fn secret_string() -> String {
    format!("opal-secret-{}", fresh_tenant())
}

#[tokio::test]
async fn secret_absent_from_rocksdb_files() {
    let secret = secret_string();
    let tenant = fresh_tenant();
    let dir = tempfile::tempdir().unwrap();
    {
        let inner = rocks(dir.path());
        let b = sealed(inner, MasterKeys::new(master(1), [])).await;
        assert_eq!(b.sealed_since(), SealedSince::Creation);
        write_secret(&b, &tenant, &secret).await;
        read_secret(&b, &tenant, &secret).await;
    }
    assert_eq!(
        files_containing(dir.path(), secret.as_bytes()),
        Vec::<String>::new(),
        "the secret is in no file of the store"
    );
    // The same writes without the layer leave it in the files: the scan can see it.
    let plain = tempfile::tempdir().unwrap();
    {
        let inner = rocks(plain.path());
        write_secret(inner.as_ref(), &tenant, &secret).await;
    }
    assert!(!files_containing(plain.path(), secret.as_bytes()).is_empty());
}

#[tokio::test]
async fn row_copied_to_another_tenant_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let inner = rocks(dir.path());
    let b = sealed(inner.clone(), MasterKeys::new(master(1), [])).await;
    let (alice, mallory) = (fresh_tenant(), fresh_tenant());
    b.put(&alice, &key("diary"), &value(json!("dear diary")), None)
        .await
        .unwrap();
    b.put(&mallory, &key("own"), &value(json!(1)), None)
        .await
        .unwrap();
    let raw = inner.get(&alice, &key("diary")).await.unwrap().unwrap();
    inner
        .put(&mallory, &key("diary"), &value(raw.value.clone()), None)
        .await
        .unwrap();
    let err = b.get(&mallory, &key("diary")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(
        err.to_string().contains("another tenant"),
        "the error says why: {err}"
    );
    // Moved to another key of the same tenant, it does not open either.
    inner
        .put(&alice, &key("moved"), &value(raw.value), None)
        .await
        .unwrap();
    let err = b.get(&alice, &key("moved")).await.unwrap_err();
    assert!(err.to_string().contains("does not decrypt"), "{err}");
    assert_eq!(
        b.get(&alice, &key("diary")).await.unwrap().unwrap().value,
        json!("dear diary")
    );
    // Nobody reaches the keyring through the layer.
    let keyring = TenantId::new(KEYRING_TENANT).unwrap();
    let err = b.get(&keyring, &key("store")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        b.change_heads()
            .await
            .unwrap()
            .iter()
            .all(|(t, _)| t != &keyring)
    );
}

#[tokio::test]
async fn master_rotation_under_concurrent_writes_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inner = rocks(dir.path());
    let old = MasterKeys::new(master(1), []);
    let b = Arc::new(sealed(inner.clone(), old).await);
    let tenants: Vec<TenantId> = (0..16).map(|_| fresh_tenant()).collect();
    let mut writers = Vec::new();
    for (w, tenant) in tenants.iter().enumerate() {
        let (b, tenant) = (b.clone(), tenant.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..200 {
                b.put(
                    &tenant,
                    &key(&format!("k{i}")),
                    &value(json!({"w": w, "i": i})),
                    None,
                )
                .await
                .expect("a write during rotation");
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    tokio::task::yield_now().await;
    let rotated = b
        .rotate_master(MasterKeys::new(master(2), [master(1)]))
        .await
        .expect("rotate");
    for writer in writers {
        writer.await.expect("writer");
    }
    // Keys made by writers after the scan are already under the new master (this layer
    // switched first); a second pass finds nothing left to re-wrap.
    let again = b.rewrap_data_keys().await.expect("rewrap");
    assert_eq!(
        again.rewrapped, 0,
        "first pass {rotated:?}, second {again:?}"
    );
    // A fresh layer holding only the new master reads everything.
    let fresh = sealed(inner, MasterKeys::new(master(2), [])).await;
    for (w, tenant) in tenants.iter().enumerate() {
        for i in 0..200 {
            let entry = fresh
                .get(tenant, &key(&format!("k{i}")))
                .await
                .expect("readable with the new master")
                .expect("present");
            assert_eq!(entry.value, json!({"w": w, "i": i}));
        }
    }
}

#[tokio::test]
async fn store_written_before_is_read_and_migrated_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let inner = rocks(dir.path());
    let tenant = fresh_tenant();
    let secret = secret_string();
    write_secret(inner.as_ref(), &tenant, &secret).await;
    let b = sealed(inner.clone(), MasterKeys::new(master(1), [])).await;
    assert_eq!(b.sealed_since(), SealedSince::Upgrade);
    read_secret(&b, &tenant, &secret).await;
    // A record written now is sealed, and both kinds answer find-by-field.
    b.put(
        &tenant,
        &key("new"),
        &value(json!({"kind": "note", "text": "sealed"})),
        None,
    )
    .await
    .unwrap();
    let raw = inner.get(&tenant, &key("new")).await.unwrap().unwrap();
    assert!(!raw.value.to_string().contains("sealed\""), "{}", raw.value);
    let found = kv::find_by_field(
        &b,
        &tenant,
        &path("kind"),
        &operand(json!("note")),
        None,
        limit(10),
    )
    .await
    .unwrap();
    assert_eq!(
        found
            .items
            .iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>(),
        ["new", "note"]
    );
    // Rewriting the old record seals it.
    b.put(&tenant, &key("note"), &value(json!({"kind": "note"})), None)
        .await
        .unwrap();
    let raw = inner.get(&tenant, &key("note")).await.unwrap().unwrap();
    assert!(raw.value.get("s").is_some(), "{}", raw.value);
    // The next start sees the marker, not the data.
    let again = sealed(inner, MasterKeys::new(master(1), [])).await;
    assert_eq!(again.sealed_since(), SealedSince::Upgrade);
}

/// A store written before encryption, resealed: every kind of record holding `secret`, one
/// with an expiry, and a multipart upload in progress are written without the layer; the first
/// reseal rewrites all but the upload, which keeps the tenant unfinished until it is gone; the
/// next finishes it, and one after that skips it. Freed blobs are then reaped and the store
/// compacted, so nothing of the plaintext is left for a scan of the raw store to find.
async fn reseal_store_written_before(inner: Arc<dyn Backend>, clock: &ManualClock) -> Sealed {
    let (tenant, secret) = (fresh_tenant(), secret_string());
    write_secret(inner.as_ref(), &tenant, &secret).await;
    inner
        .put(
            &tenant,
            &key("brief"),
            &value(json!({"text": secret})),
            p8fs_conformance::support::ttl(3_600_000),
        )
        .await
        .expect("put with a ttl");
    let b = sealed(inner.clone(), MasterKeys::new(master(1), [])).await;
    assert_eq!(b.sealed_since(), SealedSince::Upgrade);

    let first = b.reseal(&tenant, clock).await.expect("reseal");
    // Two records, a vector, two nodes, an edge, an object (of one chunk).
    assert_eq!(
        (first.examined, first.rewritten, first.chunks),
        (7, 7, 1),
        "{first:?}"
    );
    assert_eq!(first.uploads_pending, 1, "{first:?}");
    assert!(!first.complete && !first.skipped && first.overwritten.is_empty());
    read_secret(&b, &tenant, &secret).await;
    let brief = b
        .get(&tenant, &key("brief"))
        .await
        .expect("get")
        .expect("present");
    assert_eq!(brief.value, json!({"text": secret}));
    assert_eq!(
        brief.expires_at,
        Some(clock.now() + 3_600_000),
        "the expiry is kept"
    );
    let raw = inner
        .get(&tenant, &key("note"))
        .await
        .expect("get")
        .expect("present");
    assert!(raw.value.get("s").is_some(), "sealed: {}", raw.value);

    // The upload in progress goes; the next run finishes the tenant, the one after skips it.
    let bucket = BucketName::new("vault").expect("valid");
    for upload in b
        .list_uploads(&tenant, &bucket, &ObjectPrefix::all(), None, limit(10))
        .await
        .expect("uploads")
    {
        b.abort_upload(&tenant, &bucket, upload.id)
            .await
            .expect("abort");
    }
    let second = b.reseal(&tenant, clock).await.expect("reseal again");
    assert_eq!((second.examined, second.rewritten), (7, 0), "{second:?}");
    assert!(second.complete && second.uploads_pending == 0, "{second:?}");
    let third = b.reseal(&tenant, clock).await.expect("reseal once more");
    assert!(
        third.skipped && third.complete && third.examined == 0,
        "{third:?}"
    );
    assert!(
        b.reseal_tenants()
            .await
            .expect("tenants")
            .contains(&(tenant.clone(), true))
    );
    read_secret(&b, &tenant, &secret).await;

    // What the rewrites replaced leaves the store.
    let now = clock.now();
    b.reap_objects(ReapPolicy {
        abandoned_before: now + 1,
        freed_before: now + 1,
    })
    .await
    .expect("reap");
    b.compact_storage().await.expect("compact");
    b
}

#[tokio::test]
async fn reseal_leaves_no_plaintext_in_rocksdb_files() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let inner: Arc<dyn Backend> = Arc::new(
        RocksBackend::open(dir.path(), clock.clone(), RocksOptions::default()).expect("open"),
    );
    drop(reseal_store_written_before(inner, &clock).await);
    assert_eq!(
        files_containing(dir.path(), b"opal-secret-"),
        Vec::<String>::new(),
        "no plaintext is left in the store's files"
    );
}

/// As [`reseal_leaves_no_plaintext_in_rocksdb_files`], on a fresh database of `server`: no row
/// holds the secret after the reseal.
async fn reseal_leaves_no_plaintext_in_rows(server: SqlServer) {
    let clock = clock();
    let inner = server.backend(clock.clone()).await;
    drop(reseal_store_written_before(inner, &clock).await);
    assert_eq!(
        server.rows_containing(None, "opal-secret-").await,
        Vec::<String>::new(),
        "no row holds plaintext"
    );
}

#[tokio::test]
async fn reseal_leaves_no_plaintext_in_postgres_rows() {
    reseal_leaves_no_plaintext_in_rows(SqlServer::fresh_postgres("reseal")).await;
}

#[tokio::test]
async fn reseal_leaves_no_plaintext_in_tidb_rows() {
    reseal_leaves_no_plaintext_in_rows(SqlServer::fresh_tidb("reseal")).await;
}

#[tokio::test]
async fn retired_master_keys_are_dropped_once_no_data_key_needs_them() {
    let dir = tempfile::tempdir().unwrap();
    let inner = rocks(dir.path());
    let (a, c, d) = (fresh_tenant(), fresh_tenant(), fresh_tenant());
    let first = sealed(inner.clone(), MasterKeys::new(master(1), [])).await;
    first
        .put(&a, &key("k"), &value(json!("a")), None)
        .await
        .unwrap();
    // A process whose current key no other has.
    let stranger = sealed(inner.clone(), MasterKeys::new(master(3), [])).await;
    stranger
        .put(&c, &key("k"), &value(json!("c")), None)
        .await
        .unwrap();

    // Refused while a data key is wrapped by a key this layer cannot re-wrap: nothing persisted.
    let rotated = sealed(inner.clone(), MasterKeys::new(master(2), [master(1)])).await;
    let persisted = std::sync::atomic::AtomicBool::new(false);
    let err = rotated
        .prune_masters(|_| async {
            persisted.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not configured"), "{err}");
    assert!(!persisted.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(
        rotated.get(&a, &key("k")).await.unwrap().unwrap().value,
        json!("a")
    );

    // With every key, it re-wraps, persists the current key alone, and re-wraps what a process
    // still wrapping with a retired key made meanwhile.
    let all = sealed(
        inner.clone(),
        MasterKeys::new(master(2), [master(1), master(3)]),
    )
    .await;
    let (late, late_tenant) = (&first, &d);
    let pruned = all
        .prune_masters(|current| async move {
            assert_eq!(current.all().len(), 1, "the current key alone is persisted");
            assert_eq!(current.current().id(), master(2).id());
            // Meanwhile a process still running with the old key makes a data key.
            late.put(late_tenant, &key("k"), &value(json!("d")), None)
                .await?;
            Ok(())
        })
        .await
        .expect("prune");
    assert_eq!(pruned.current, master(2).id());
    let mut dropped = pruned.dropped.clone();
    dropped.sort();
    let mut expected = vec![master(1).id().to_owned(), master(3).id().to_owned()];
    expected.sort();
    assert_eq!(dropped, expected);
    let again = all
        .prune_masters(|_| async { Ok(()) })
        .await
        .expect("prune again");
    assert!(
        again.dropped.is_empty() && again.rewrapped == 0,
        "{again:?}"
    );

    // Only the current key is needed now.
    let fresh = sealed(inner, MasterKeys::new(master(2), [])).await;
    for (tenant, expected) in [(&a, "a"), (&c, "c"), (&d, "d")] {
        let entry = fresh.get(tenant, &key("k")).await.unwrap().unwrap();
        assert_eq!(entry.value, json!(expected));
    }
}

/// A SQL server of the suites, whose rows a test reads as a dump of it would show them.
enum SqlServer {
    Postgres(String),
    Tidb(String),
}

impl SqlServer {
    /// The suites' PostgreSQL database.
    fn postgres() -> Self {
        Self::Postgres(crate::harness::postgres_url())
    }

    /// The suites' TiDB (or MariaDB stand-in) database.
    fn tidb() -> Self {
        Self::Tidb(crate::harness::tidb_url())
    }

    /// A new PostgreSQL database of its own (`P8FS_TEST_POSTGRES_CREATEDB`).
    fn fresh_postgres(purpose: &str) -> Self {
        Self::Postgres(createdb("P8FS_TEST_POSTGRES_CREATEDB", purpose))
    }

    /// A new TiDB (or MariaDB stand-in) database of its own (`P8FS_TEST_TIDB_CREATEDB`).
    fn fresh_tidb(purpose: &str) -> Self {
        Self::Tidb(createdb("P8FS_TEST_TIDB_CREATEDB", purpose))
    }

    /// The backend over this database.
    async fn backend(&self, clock: Arc<ManualClock>) -> Arc<dyn Backend> {
        match self {
            Self::Postgres(url) => Arc::new(
                PgBackend::connect(url, clock, PgOptions::default())
                    .await
                    .expect("connect"),
            ),
            Self::Tidb(url) => Arc::new(
                TidbBackend::connect(url, clock, TidbOptions::default())
                    .await
                    .expect("connect"),
            ),
        }
    }

    /// The tables with a row holding `needle`, with their counts: rows of `tenant` where the
    /// table says whose a row is, every row elsewhere (and everywhere when `tenant` is `None`).
    async fn rows_containing(&self, tenant: Option<&TenantId>, needle: &str) -> Vec<String> {
        match self {
            Self::Postgres(url) => postgres_rows_containing(url, tenant, needle).await,
            Self::Tidb(url) => mysql_rows_containing(url, tenant, needle).await,
        }
    }
}

/// A known secret written through the layer is in no row of the server; written without it,
/// the same scan finds it.
async fn secret_absent_from_rows(server: SqlServer) {
    let inner = server.backend(clock()).await;
    let b = sealed(
        inner.clone(),
        MasterKeys::new(crate::harness::test_master_key(), []),
    )
    .await;
    let (tenant, secret) = (fresh_tenant(), secret_string());
    write_secret(&b, &tenant, &secret).await;
    read_secret(&b, &tenant, &secret).await;
    assert_eq!(
        server.rows_containing(Some(&tenant), &secret).await,
        Vec::<String>::new()
    );
    let plain = fresh_tenant();
    write_secret(inner.as_ref(), &plain, &format!("{secret}-plain")).await;
    assert!(
        !server
            .rows_containing(Some(&plain), &format!("{secret}-plain"))
            .await
            .is_empty(),
        "the scan sees what is written without the layer"
    );
}

#[tokio::test]
async fn secret_absent_from_postgres_rows() {
    secret_absent_from_rows(SqlServer::postgres()).await;
}

#[tokio::test]
async fn secret_absent_from_tidb_rows() {
    secret_absent_from_rows(SqlServer::tidb()).await;
}

/// A new database made by the command in the environment variable `variable`, which prints its
/// URL.
fn createdb(variable: &str, purpose: &str) -> String {
    let command = std::env::var(variable).unwrap_or_else(|_| {
        panic!("set {variable} (see scripts/services): this test needs a database of its own")
    });
    let name = format!("{purpose}_{}", fresh_tenant().as_str().replace('-', "_"));
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command} {name}"))
        .output()
        .expect("run the createdb command");
    assert!(
        output.status.success(),
        "{command} {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("a URL")
        .trim()
        .to_owned()
}

/// Every row of every table of the test database that holds `needle` (as text, or as bytea
/// hex), with PostgreSQL.
async fn postgres_rows_containing(
    url: &str,
    tenant: Option<&TenantId>,
    needle: &str,
) -> Vec<String> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let tables: Vec<String> = sqlx::query(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables")
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    assert!(tables.len() > 5, "the schema's tables: {tables:?}");
    let with_tenant = columns_named_tenant_pg(&mut conn).await;
    let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
    let mut found = Vec::new();
    for table in tables {
        // Rows of the writing tenant where the table says whose a row is; every row elsewhere.
        let scope = if with_tenant.contains(&table) {
            "($3 = '' OR r.tenant = $3) AND"
        } else {
            "$3::text IS NOT NULL AND"
        };
        let sql = format!(
            "SELECT count(*) FROM \"{table}\" r WHERE {scope} (strpos(r::text, $1) > 0 \
             OR strpos(r::text, $2) > 0)"
        );
        let n: i64 = sqlx::query(&sql)
            .bind(needle)
            .bind(&hex)
            .bind(tenant.map_or("", TenantId::as_str))
            .fetch_one(&mut conn)
            .await
            .expect("scan")
            .get(0);
        if n > 0 {
            found.push(format!("{table}: {n}"));
        }
    }
    found
}

async fn columns_named_tenant_pg(conn: &mut sqlx::PgConnection) -> Vec<String> {
    use sqlx::Row;
    sqlx::query(
        "SELECT table_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND column_name = 'tenant'",
    )
    .fetch_all(conn)
    .await
    .expect("columns")
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect()
}

/// Every table of the test database (MariaDB or TiDB) with a row holding `needle`, from every
/// column's bytes.
async fn mysql_rows_containing(url: &str, tenant: Option<&TenantId>, needle: &str) -> Vec<String> {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::from_url(url).await.expect("connect");
    let tables: Vec<String> = conn
        .query(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'",
        )
        .await
        .expect("tables");
    assert!(tables.len() > 5, "the schema's tables: {tables:?}");
    let with_tenant: Vec<String> = conn
        .query(
            "SELECT table_name FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND column_name = 'tenant'",
        )
        .await
        .expect("columns");
    let mut found = Vec::new();
    for table in tables {
        // Rows of the writing tenant where the table says whose a row is; every row elsewhere.
        let rows: Vec<mysql_async::Row> = if let Some(tenant) = tenant
            && with_tenant.contains(&table)
        {
            conn.exec(
                format!("SELECT * FROM `{table}` WHERE tenant = ?"),
                (tenant.as_str(),),
            )
            .await
        } else {
            conn.query(format!("SELECT * FROM `{table}`")).await
        }
        .expect("scan");
        let n = rows
            .iter()
            .filter(|row| {
                (0..row.len()).any(|i| match row.as_ref(i) {
                    Some(mysql_async::Value::Bytes(bytes)) => contains(bytes, needle.as_bytes()),
                    _ => false,
                })
            })
            .count();
        if n > 0 {
            found.push(format!("{table}: {n}"));
        }
    }
    found
}
