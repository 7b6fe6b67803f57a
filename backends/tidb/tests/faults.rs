//! Faults on a real server that the shared conformance suite cannot inject: the server restarted
//! while calls are in flight, a statement timeout, and the reaper removing rows physically.
//!
//! They need a server of their own, since they restart it and purge with a clock far ahead of
//! everyone else's: `P8FS_TEST_TIDB_FAULT_URL` (a database with TiDB's vector functions) and
//! `P8FS_TEST_TIDB_FAULT_RESTART` (a shell command that restarts that server and returns once it
//! accepts connections again). `scripts/test-all.sh` sets both for a second MariaDB instance.
//! Without them the tests fail: a missing server is never a pass. They run one at a time (a
//! process-wide lock here, a nextest test group in `.config/nextest.toml`).

use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::json;
use tokio::sync::Mutex;

use p8fs_backend_tidb::{TidbBackend, TidbOptions};
use p8fs_core::{
    ErrorKind, GraphStore, JsonObject, JsonValue, Key, KvStore, Label, Maintenance, ManualClock,
    NodeId, Rel, TenantId, Ttl, Version, Weight,
};

/// Serialises the tests of this binary when they run as threads of one process.
static SERIAL: Mutex<()> = Mutex::const_new(());

const START: i64 = 1_700_000_000_000;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "set {name}: the TiDB fault tests need a server of their own (see scripts/test-all.sh)"
        )
    })
}

fn fresh_tenant(tag: &str) -> TenantId {
    use std::hash::BuildHasher;
    let n = std::collections::hash_map::RandomState::new().hash_one(tag);
    TenantId::new(format!("f{n:016x}")).expect("valid tenant")
}

async fn connect(clock: Arc<ManualClock>, options: TidbOptions) -> TidbBackend {
    TidbBackend::connect(&env("P8FS_TEST_TIDB_FAULT_URL"), clock, options)
        .await
        .expect("connect to P8FS_TEST_TIDB_FAULT_URL")
}

async fn restart_server() {
    let command = env("P8FS_TEST_TIDB_FAULT_RESTART");
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .status()
        .await
        .expect("run the restart command");
    assert!(status.success(), "`{command}` failed: {status}");
}

fn value(v: serde_json::Value) -> JsonValue {
    JsonValue::new(v).expect("valid value")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_run_is_unavailable_then_recovers_with_nothing_half_written() {
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let backend = Arc::new(connect(clock, TidbOptions::default()).await);
    let tenant = fresh_tenant("restart");
    const WORKERS: usize = 8;
    for w in 0..WORKERS {
        let key = Key::new(format!("counter/{w}")).expect("key");
        backend
            .put(&tenant, &key, &value(json!(0)), None)
            .await
            .expect("seed counter");
    }

    // Each worker increments its counter with compare-and-swap until told to stop, counting the
    // increments acknowledged and those whose outcome is unknown (Unavailable).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (backend, tenant, stop) = (backend.clone(), tenant.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let key = Key::new(format!("counter/{w}")).expect("key");
            let (mut acked, mut unknown, mut unavailable) = (0_i64, 0_i64, 0_u32);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let current = match backend.get(&tenant, &key).await {
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
                    .compare_and_swap(&tenant, &key, current.version, &value(json!(n + 1)), None)
                    .await
                {
                    Ok(_) => acked += 1,
                    Err(e) if e.kind() == ErrorKind::Unavailable => {
                        unknown += 1;
                        unavailable += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => {
                        panic!("compare_and_swap in flight failed with {e:?}, not Unavailable")
                    }
                }
            }
            (acked, unknown, unavailable)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    restart_server().await;
    // Later calls succeed (the pool replaces its dead connections).
    let probe = Key::new("probe").expect("key");
    let one = value(json!(1));
    eventually("put after the restart", || {
        backend.put(&tenant, &probe, &one, None)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);

    let mut saw_unavailable = false;
    for (w, worker) in workers.into_iter().enumerate() {
        let (acked, unknown, unavailable) = worker.await.expect("worker");
        saw_unavailable |= unavailable > 0;
        let key = Key::new(format!("counter/{w}")).expect("key");
        let entry = backend
            .get(&tenant, &key)
            .await
            .expect("get")
            .expect("counter");
        let n = entry.value.as_i64().expect("a number");
        // Every acknowledged increment is there; an unknown one may or may not be; nothing else.
        assert!(
            (acked..=acked + unknown).contains(&n),
            "counter {w} is {n}, with {acked} increments acknowledged and {unknown} unknown"
        );
    }
    assert!(
        saw_unavailable,
        "the restart was not seen by any call in flight"
    );
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
    let options = TidbOptions {
        statement_timeout: Some(Duration::from_secs(1)),
        ..TidbOptions::default()
    };
    let backend = connect(clock, options).await;
    let tenant = fresh_tenant("timeout");
    let key = Key::new("held").expect("key");
    let v1 = backend
        .put(&tenant, &key, &value(json!(1)), None)
        .await
        .expect("put");

    // Another session holds the row's lock, so the backend's locking read waits past its limit.
    let mut holder = mysql_async::Conn::new(
        mysql_async::Opts::from_url(&env("P8FS_TEST_TIDB_FAULT_URL")).expect("url"),
    )
    .await
    .expect("connect");
    holder.query_drop("START TRANSACTION").await.expect("begin");
    holder
        .exec_drop(
            "SELECT version FROM p8fs_kv WHERE tenant = ? AND k = ? FOR UPDATE",
            (tenant.as_str().as_bytes(), key.as_str().as_bytes()),
        )
        .await
        .expect("lock the row");
    let started = std::time::Instant::now();
    let error = backend
        .compare_and_swap(&tenant, &key, v1, &value(json!(2)), None)
        .await
        .expect_err("the locked row cannot be swapped in time");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    holder.query_drop("ROLLBACK").await.expect("rollback");
    drop(holder);

    // Nothing was written, and the next call succeeds.
    let entry = backend
        .get(&tenant, &key)
        .await
        .expect("get")
        .expect("visible");
    assert_eq!((entry.value, entry.version), (json!(1), v1));
    let v2 = backend
        .compare_and_swap(&tenant, &key, v1, &value(json!(2)), None)
        .await
        .expect("swap once the lock is gone");
    assert!(v2 > v1);
}

/// Rows of `tenant` in a table, counted directly (physical removal is invisible to the API).
async fn count(conn: &mut mysql_async::Conn, tenant: &TenantId, sql: &str) -> i64 {
    let n: Option<i64> = conn
        .exec_first(sql, (tenant.as_str().as_bytes(),))
        .await
        .expect("count");
    n.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaper_removes_expired_rows_and_keeps_visible_ones() {
    let _serial = SERIAL.lock().await;
    let clock = Arc::new(ManualClock::new(START));
    let backend = connect(clock.clone(), TidbOptions::default()).await;
    let tenant = fresh_tenant("reaper");
    let ttl = Some(Ttl::from_millis(1000).expect("ttl"));
    let (gone, kept) = (
        Key::new("gone").expect("key"),
        Key::new("kept").expect("key"),
    );
    backend
        .put(&tenant, &gone, &value(json!("x")), ttl)
        .await
        .expect("put");
    backend
        .put(&tenant, &kept, &value(json!("y")), None)
        .await
        .expect("put");
    let label = Label::new("l").expect("label");
    let (a, b) = (NodeId::new("a").expect("id"), NodeId::new("b").expect("id"));
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
        removed >= 3,
        "the key, the node and its edge are removed ({removed})"
    );

    let mut conn = mysql_async::Conn::new(
        mysql_async::Opts::from_url(&env("P8FS_TEST_TIDB_FAULT_URL")).expect("url"),
    )
    .await
    .expect("connect");
    assert_eq!(
        count(
            &mut conn,
            &tenant,
            "SELECT COUNT(*) FROM p8fs_kv WHERE tenant = ?"
        )
        .await,
        1,
        "only `kept` remains"
    );
    assert_eq!(
        count(
            &mut conn,
            &tenant,
            "SELECT COUNT(*) FROM p8fs_nodes WHERE tenant = ?"
        )
        .await,
        1,
        "only `b` remains"
    );
    assert_eq!(
        count(
            &mut conn,
            &tenant,
            "SELECT COUNT(*) FROM p8fs_edges WHERE tenant = ?"
        )
        .await,
        0,
        "the edge went with `a`"
    );
    let entry = backend
        .get(&tenant, &kept)
        .await
        .expect("get")
        .expect("kept is visible");
    assert_eq!(entry.value, json!("y"));
    assert!(entry.version > Version(0));
    assert!(backend.get_node(&tenant, &b).await.expect("get").is_some());
}
