//! Faults on a real PostgreSQL server that the shared conformance suite cannot inject: the server
//! restarted while calls are in flight, a statement timeout, the reaper removing rows physically
//! (with a clock far ahead of everyone else's), and migrations run by several gateways at once.
//!
//! They need a server of their own, since they restart it: `P8FS_TEST_POSTGRES_FAULT_URL` and
//! `P8FS_TEST_POSTGRES_FAULT_RESTART` (a shell command that restarts that server and returns once
//! it accepts connections again). `scripts/test-all.sh` sets both for a second instance of
//! `scripts/services/postgres.sh` on its own port. Without them the tests fail: a missing server
//! is never a pass. They run one at a time (a process-wide lock here, a nextest test group in
//! `.config/nextest.toml`).

mod common;
use common::drop_scratch_database;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection;
use tokio::sync::Mutex;

use p8fs_backend_postgres::{PgBackend, PgOptions};
use p8fs_core::{
    ErrorKind, GraphStore, JsonObject, JsonValue, Key, KvStore, Label, Maintenance, ManualClock,
    NodeId, Rel, TenantId, Ttl, Weight,
};

/// Serialises the tests of this binary when they run as threads of one process.
static SERIAL: Mutex<()> = Mutex::const_new(());

const START: i64 = 1_700_000_000_000;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("set {name}: the PostgreSQL fault tests need a server of their own (see scripts/test-all.sh)")
    })
}

fn fault_url() -> String {
    env("P8FS_TEST_POSTGRES_FAULT_URL")
}

fn fresh_tenant(tag: &str) -> TenantId {
    use std::hash::BuildHasher;
    let n = std::collections::hash_map::RandomState::new().hash_one(tag);
    TenantId::new(format!("f{n:016x}")).expect("valid tenant")
}

async fn connect(clock: Arc<ManualClock>, options: PgOptions) -> PgBackend {
    PgBackend::connect(&fault_url(), clock, options)
        .await
        .expect("connect to P8FS_TEST_POSTGRES_FAULT_URL")
}

/// A plain connection of the test's own, to hold locks and look at rows directly.
async fn side_connection(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url)
        .await
        .expect("a side connection")
}

async fn restart_server() {
    let command = env("P8FS_TEST_POSTGRES_FAULT_RESTART");
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .status()
            .map(|status| (command, status))
    })
    .await
    .expect("the restart task")
    .expect("run the restart command");
    assert!(status.1.success(), "`{}` failed: {}", status.0, status.1);
}

fn value(v: serde_json::Value) -> JsonValue {
    JsonValue::new(v).expect("valid value")
}

fn key(s: &str) -> Key {
    Key::new(s).expect("key")
}

fn node(s: &str) -> NodeId {
    NodeId::new(s).expect("node id")
}

/// Retries `op` until it succeeds, for up to a minute (the server is coming back).
async fn eventually<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = p8fs_core::Result<T>>,
{
    let mut last = None;
    for _ in 0..240 {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{what}: {e:?}");
                last = Some(e);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what} never succeeded after the restart: {last:?}");
}

/// Rows of `tenant` in a table, counted directly (physical removal is invisible to the API).
async fn count(conn: &mut sqlx::PgConnection, table: &str, tenant: &TenantId) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE tenant = $1"))
        .bind(tenant.as_str())
        .fetch_one(conn)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_run_is_unavailable_then_recovers_with_nothing_half_written() {
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let backend = Arc::new(connect(clock, PgOptions::default()).await);
    let tenant = fresh_tenant("restart");
    const WORKERS: usize = 6;
    for w in 0..WORKERS {
        backend
            .put(
                &tenant,
                &key(&format!("counter/{w}")),
                &value(json!(0)),
                None,
            )
            .await
            .expect("seed counter");
    }

    // A call certainly in flight at the restart: a write waiting for a row lock that a side
    // connection holds.
    let blocked_key = key("blocked");
    backend
        .put(&tenant, &blocked_key, &value(json!("before")), None)
        .await
        .expect("seed");
    let mut holder = side_connection(&fault_url()).await;
    sqlx::query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query("SELECT 1 FROM p8fs_kv WHERE tenant = $1 AND key = $2 FOR UPDATE")
        .bind(tenant.as_str())
        .bind(blocked_key.as_str())
        .execute(&mut holder)
        .await
        .expect("lock the row");
    let blocked = {
        let (backend, tenant, blocked_key) = (backend.clone(), tenant.clone(), blocked_key.clone());
        tokio::spawn(async move {
            backend
                .put(&tenant, &blocked_key, &value(json!("after")), None)
                .await
        })
    };

    // Workers increment counters with compare-and-swap and grow a chain of nodes and edges
    // until told to stop, counting what was acknowledged and what ended Unavailable (unknown).
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (backend, tenant, stop) = (backend.clone(), tenant.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let counter = key(&format!("counter/{w}"));
            let label = Label::new("l").expect("label");
            let rel = Rel::new("next").expect("rel");
            let (mut acked, mut unknown, mut unavailable) = (0_i64, 0_i64, 0_u32);
            let mut chain: Vec<NodeId> = Vec::new();
            let mut step = 0;
            while !stop.load(Ordering::SeqCst) {
                step += 1;
                let current = match backend.get(&tenant, &counter).await {
                    Ok(entry) => entry.expect("the counter exists"),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Unavailable, "a read in flight: {e:?}");
                        unavailable += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let n = current.value.as_i64().expect("a number");
                match backend
                    .compare_and_swap(
                        &tenant,
                        &counter,
                        current.version,
                        &value(json!(n + 1)),
                        None,
                    )
                    .await
                {
                    Ok(_) => acked += 1,
                    Err(e) if e.kind() == ErrorKind::Unavailable => {
                        unknown += 1;
                        unavailable += 1;
                    }
                    Err(e) => {
                        panic!("compare_and_swap in flight failed with {e:?}, not Unavailable")
                    }
                }
                let id = node(&format!("w{w}/n{step:05}"));
                let props = JsonObject::new("properties", json!({"step": step})).expect("props");
                match backend.put_node(&tenant, &id, &label, &props, None).await {
                    Ok(()) => {
                        if let Some(previous) = chain.last() {
                            match backend
                                .put_edge(
                                    &tenant,
                                    previous,
                                    &rel,
                                    &id,
                                    Weight::ONE,
                                    &JsonObject::empty(),
                                    None,
                                )
                                .await
                            {
                                Ok(()) => {}
                                Err(e) if e.kind() == ErrorKind::Unavailable => unavailable += 1,
                                Err(e) => panic!("put_edge in flight failed with {e:?}"),
                            }
                        }
                        chain.push(id);
                    }
                    Err(e) if e.kind() == ErrorKind::Unavailable => unavailable += 1,
                    Err(e) => panic!("put_node in flight failed with {e:?}"),
                }
            }
            (acked, unknown, unavailable, chain)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    restart_server().await;
    drop(holder);

    let blocked = blocked.await.expect("the blocked call");
    let error = blocked.expect_err("a write in flight during the restart cannot succeed");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error:?}");

    // Later calls succeed: the pool finds its broken connections and opens new ones.
    let probe = key("probe");
    let one = value(json!(1));
    eventually("put after the restart", || {
        backend.put(&tenant, &probe, &one, None)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);

    let mut saw_unavailable = false;
    for (w, worker) in workers.into_iter().enumerate() {
        let (acked, unknown, unavailable, chain) = worker.await.expect("worker");
        saw_unavailable |= unavailable > 0;
        let entry = backend
            .get(&tenant, &key(&format!("counter/{w}")))
            .await
            .expect("get")
            .expect("counter");
        let n = entry.value.as_i64().expect("a number");
        // Every acknowledged increment is there; an unknown one may or may not be; nothing else.
        assert!(
            (acked..=acked + unknown).contains(&n),
            "counter {w} is {n}, with {acked} increments acknowledged and {unknown} unknown"
        );
        // Every acknowledged node is there, whole.
        for id in &chain {
            let found = backend
                .get_node(&tenant, id)
                .await
                .expect("get_node")
                .expect("acknowledged node");
            assert!(
                found
                    .properties
                    .get("step")
                    .is_some_and(serde_json::Value::is_i64),
                "{found:?}"
            );
        }
    }
    assert!(
        saw_unavailable,
        "the restart was not seen by any call in flight"
    );

    // The write in flight left the old value whole; no edge lacks a node (the foreign keys).
    let entry = backend
        .get(&tenant, &blocked_key)
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(entry.value, json!("before"));
    let mut conn = side_connection(&fault_url()).await;
    let dangling: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM p8fs_edges e WHERE e.tenant = $1 \
         AND (NOT EXISTS (SELECT 1 FROM p8fs_nodes n WHERE n.tenant = e.tenant AND n.id = e.src) \
           OR NOT EXISTS (SELECT 1 FROM p8fs_nodes n WHERE n.tenant = e.tenant AND n.id = e.dst))",
    )
    .bind(tenant.as_str())
    .fetch_one(&mut conn)
    .await
    .expect("count dangling edges");
    assert_eq!(dangling, 0);
    // Versions keep increasing after the restart.
    let first = backend
        .put(&tenant, &probe, &value(json!(2)), None)
        .await
        .expect("put");
    let second = backend
        .put(&tenant, &probe, &value(json!(3)), None)
        .await
        .expect("put");
    assert!(second > first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_is_unavailable() {
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let options = PgOptions {
        statement_timeout: Duration::from_millis(500),
        ..PgOptions::default()
    };
    let backend = connect(clock, options).await;
    let tenant = fresh_tenant("timeout");
    let held = key("held");
    let v1 = backend
        .put(&tenant, &held, &value(json!(1)), None)
        .await
        .expect("put");

    // Another session holds the row's lock, so the backend's write waits past its limit.
    let mut holder = side_connection(&fault_url()).await;
    sqlx::query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query("SELECT 1 FROM p8fs_kv WHERE tenant = $1 AND key = $2 FOR UPDATE")
        .bind(tenant.as_str())
        .bind(held.as_str())
        .execute(&mut holder)
        .await
        .expect("lock the row");
    let started = Instant::now();
    let error = backend
        .compare_and_swap(&tenant, &held, v1, &value(json!(2)), None)
        .await
        .expect_err("the locked row cannot be swapped in time");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let error = backend
        .put(&tenant, &held, &value(json!(3)), None)
        .await
        .expect_err("the locked row cannot be written in time");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error:?}");
    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("rollback");
    drop(holder);

    // Nothing was written, and the next call succeeds.
    let entry = backend
        .get(&tenant, &held)
        .await
        .expect("get")
        .expect("visible");
    assert_eq!((entry.value, entry.version), (json!(1), v1));
    let v2 = backend
        .compare_and_swap(&tenant, &held, v1, &value(json!(2)), None)
        .await
        .expect("swap once the lock is gone");
    assert!(v2 > v1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaper_removes_expired_rows_in_batches_and_keeps_visible_ones() {
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let backend = connect(clock.clone(), PgOptions::default()).await;
    let tenant = fresh_tenant("reaper");
    let ttl = Some(Ttl::from_millis(1000).expect("ttl"));
    // More expired keys than one purge batch holds.
    for i in 0..1500 {
        backend
            .put(
                &tenant,
                &key(&format!("gone/{i:04}")),
                &value(json!(i)),
                ttl,
            )
            .await
            .expect("put");
    }
    let kept = key("kept");
    backend
        .put(&tenant, &kept, &value(json!("y")), None)
        .await
        .expect("put");
    let label = Label::new("l").expect("label");
    let (a, b) = (node("a"), node("b"));
    backend
        .put_node(&tenant, &a, &label, &JsonObject::empty(), ttl)
        .await
        .expect("node");
    backend
        .put_node(&tenant, &b, &label, &JsonObject::empty(), None)
        .await
        .expect("node");
    let rel = Rel::new("r").expect("rel");
    backend
        .put_edge(
            &tenant,
            &b,
            &rel,
            &a,
            Weight::ONE,
            &JsonObject::empty(),
            None,
        )
        .await
        .expect("edge");

    clock.advance(1000);
    let removed = backend.purge_expired().await.expect("purge");
    assert!(
        removed >= 1501,
        "the keys and the node are removed ({removed})"
    );

    let mut conn = side_connection(&fault_url()).await;
    assert_eq!(
        count(&mut conn, "p8fs_kv", &tenant).await,
        1,
        "only `kept` remains"
    );
    assert_eq!(
        count(&mut conn, "p8fs_nodes", &tenant).await,
        1,
        "only `b` remains"
    );
    assert_eq!(
        count(&mut conn, "p8fs_edges", &tenant).await,
        0,
        "the edge went with `a`"
    );
    let entry = backend
        .get(&tenant, &kept)
        .await
        .expect("get")
        .expect("kept is visible");
    assert_eq!(entry.value, json!("y"));
    assert!(backend.get_node(&tenant, &b).await.expect("get").is_some());
    // A key re-created after the purge still gets a greater version than anything before.
    let again = backend
        .put(&tenant, &key("gone/0000"), &value(json!(0)), None)
        .await
        .expect("put");
    let kept_version = backend
        .get(&tenant, &kept)
        .await
        .expect("get")
        .expect("kept")
        .version;
    assert!(again > kept_version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_when_gateways_start_together() {
    let _serial = SERIAL.lock().await;
    // A fresh database from the template that has only the vector extension.
    let database = format!("p8fs_migrate_{}", fresh_tenant("migrate").as_str());
    let base = fault_url();
    let (server, _) = base.rsplit_once('/').expect("a URL with a database");
    let mut admin = side_connection(&base).await;
    sqlx::raw_sql(&format!(
        "CREATE DATABASE {database} TEMPLATE p8fs_template"
    ))
    .execute(&mut admin)
    .await
    .expect("create a database from p8fs_template");
    let url = format!("{server}/{database}");

    let starts = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let clock = Arc::new(ManualClock::new(START));
            PgBackend::connect(&url, clock, PgOptions::default()).await
        })
    });
    let backends: Vec<PgBackend> = futures::future::join_all(starts)
        .await
        .into_iter()
        .map(|joined| joined.expect("task").expect("every gateway starts"))
        .collect();
    let mut conn = side_connection(&url).await;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .expect("count migrations");
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("the migrations directory")
        .count();
    assert_eq!(
        applied as usize, migrations,
        "each schema migration ran once"
    );
    // Starting again is a no-op, and the store works.
    let again = PgBackend::connect(
        &url,
        Arc::new(ManualClock::new(START)),
        PgOptions::default(),
    )
    .await
    .expect("reconnect");
    let tenant = fresh_tenant("migrated");
    again
        .put(&tenant, &key("k"), &value(json!(1)), None)
        .await
        .expect("put");
    for backend in backends.iter().chain([&again]) {
        backend.close().await;
    }
    drop(conn);
    drop_scratch_database(&mut admin, &database).await;
}
