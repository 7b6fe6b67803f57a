//! The TiDB backend of p8fs: the production, scale-out store, spoken to over the MySQL protocol
//! with `mysql_async`.
//!
//! The SQL is TiDB's dialect and lives in [`sql`]; the same statements run on a MariaDB stand-in
//! that has TiDB's `VEC_*` functions installed as stored functions (the test fixture
//! `scripts/services/tidb-vector-functions.sql`). Only the DDL of the vector column differs,
//! chosen once from `SELECT VERSION()` when migrations run ([`schema::Dialect`]).
//!
//! - Time comes from the injected [`Clock`] as a bind parameter, never from the server.
//! - Multi-statement writes run in transactions at `READ COMMITTED` with row locks
//!   (`SELECT ... FOR UPDATE`); a transaction that loses a conflict (deadlock, lock wait
//!   timeout, TiDB write conflict, a duplicate key from a racing creator) is rolled back and run
//!   again from the start, up to [`TidbOptions::max_retries`] times (see [`transaction!`]).
//! - Every write appends its change to the tenant's change log in its own transaction, as its
//!   last step: a per-tenant head row, locked until the commit, hands out dense cursors in
//!   commit order (see `change.rs`).
//! - Driver errors are classified in one place, `error.rs`.
//! - Expired rows are invisible at once; [`Maintenance::purge_expired`] deletes them in batches
//!   (expired objects too, freeing their data blobs for [`p8fs_core::ObjectStore::reap_objects`]).
//!   On TiDB, [`TidbOptions::native_ttl_grace`] additionally enables TiDB's TTL jobs.
//! - Values (at most 1 MiB of JSON) and vectors (at most 4096 × f32 as text) stay far below
//!   TiDB's 6 MB entry limit, so no value is split; object bytes are rows of at most 1 MiB
//!   (`p8fs_core::object::CHUNK_BYTES`), one per statement, and no transaction grows with the
//!   size of an object or a bucket (see `object.rs`).

mod change;
mod error;
mod graph;
mod kv;
mod object;
mod schema;
mod sql;
mod vector;

use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

use p8fs_core::{Clock, Error, Maintenance, Result, Timestamp};

pub use schema::Dialect;

use crate::error::classify;

/// Rows deleted per statement by the reaper, so no purge becomes one huge transaction.
const PURGE_BATCH: u64 = 1000;

/// Tuning of the TiDB backend.
#[derive(Clone, Debug)]
pub struct TidbOptions {
    /// Connections the pool keeps open when idle.
    pub min_connections: usize,
    /// Most connections the pool opens.
    pub max_connections: usize,
    /// How long a call waits for a pooled connection (or to open one) before `Unavailable`.
    pub acquire_timeout: Duration,
    /// Server-side limit on each statement (`max_statement_time` on MariaDB,
    /// `max_execution_time` on TiDB, which applies it to reads); exceeding it is `Unavailable`.
    pub statement_timeout: Option<Duration>,
    /// How often a transaction that lost a conflict is run again before `Unavailable`.
    pub max_retries: u32,
    /// On TiDB, also let TiDB's TTL jobs delete rows this long after they expired (a grace
    /// period covering clock skew between the gateways and TiDB). `None` leaves physical
    /// removal to [`Maintenance::purge_expired`]. Leave it `None` when the clock is not the
    /// wall clock (tests), since TiDB's jobs use the server's clock. Ignored on a stand-in.
    pub native_ttl_grace: Option<Duration>,
    /// [`Maintenance::purge_expired`] removes only rows that expired at least this long before
    /// the clock's now. Every process sharing the database purges for all of them, so when their
    /// clocks disagree (skewed gateways; test cases each on their own manual clock) a reaper
    /// ahead of the others must not remove a row another still sees as visible.
    pub purge_grace: Duration,
}

impl Default for TidbOptions {
    fn default() -> Self {
        Self {
            min_connections: 1,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Some(Duration::from_secs(30)),
            max_retries: 30,
            native_ttl_grace: None,
            purge_grace: Duration::ZERO,
        }
    }
}

/// The TiDB backend.
pub struct TidbBackend {
    pool: Pool,
    clock: Arc<dyn Clock>,
    options: TidbOptions,
    dialect: Dialect,
    /// How often exact search had to widen its candidate window.
    search_counters: vector::SearchCounters,
}

impl std::fmt::Debug for TidbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TidbBackend")
            .field("dialect", &self.dialect)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl TidbBackend {
    /// Connects to `url` (`mysql://user:password@host:port/database`), applies pending
    /// migrations, and returns a backend reading time from `clock`.
    pub async fn connect(url: &str, clock: Arc<dyn Clock>, options: TidbOptions) -> Result<Self> {
        let opts = Opts::from_url(url)
            .map_err(|e| Error::invalid("url", format!("not a MySQL URL: {e}")))?;
        let constraints =
            PoolConstraints::new(options.min_connections, options.max_connections.max(1))
                .ok_or_else(|| {
                    Error::invalid("max_connections", "must be at least min_connections")
                })?;

        // One plain connection to learn the dialect and migrate.
        let mut conn = timeout(options.acquire_timeout, Conn::new(opts.clone())).await?;
        let dialect = schema::detect(&mut conn).await?;
        schema::migrate(&mut conn, dialect, clock.now()).await?;
        if let (Dialect::Tidb, Some(grace)) = (dialect, options.native_ttl_grace) {
            schema::enable_native_ttl(&mut conn, grace).await?;
        }
        // A failed disconnect only leaks a socket the server will close.
        let _ = conn.disconnect().await;

        let mut setup: Vec<String> = sql::SESSION_SETUP.iter().map(|s| (*s).to_owned()).collect();
        if let Some(limit) = options.statement_timeout {
            setup.push(match dialect {
                Dialect::StandIn => sql::SESSION_TIMEOUT_MARIADB
                    .replace("{seconds}", &format!("{:.3}", limit.as_secs_f64())),
                Dialect::Tidb => {
                    sql::SESSION_TIMEOUT_TIDB.replace("{millis}", &limit.as_millis().to_string())
                }
            });
        }
        let pool_opts = PoolOpts::new()
            .with_constraints(constraints)
            // Transactions are always ended before a connection goes back (a dropped one is
            // rolled back by the driver), so no reset round trip per checkout is needed.
            .with_reset_connection(false);
        let pool = Pool::new(
            OptsBuilder::from_opts(opts)
                .pool_opts(pool_opts)
                .setup(setup),
        );
        Ok(Self {
            pool,
            clock,
            options,
            dialect,
            search_counters: vector::SearchCounters::default(),
        })
    }

    /// The server's dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes every pooled connection.
    pub async fn close(self) -> Result<()> {
        self.pool.disconnect().await.map_err(classify)
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A pooled connection, or `Unavailable` after [`TidbOptions::acquire_timeout`].
    async fn conn(&self) -> Result<Conn> {
        timeout(self.options.acquire_timeout, self.pool.get_conn()).await
    }

    /// Waits before running a transaction again: exponential with jitter, at most ~100 ms.
    async fn backoff(attempt: u32) {
        use std::hash::BuildHasher;
        let base = 2_u64.saturating_pow(attempt.min(6)).min(64);
        let jitter = std::collections::hash_map::RandomState::new().hash_one(attempt) % (base + 1);
        tokio::time::sleep(Duration::from_millis(base + jitter)).await;
    }

    /// Runs `DELETE ... LIMIT` with `now` until it deletes less than a batch; returns the count.
    async fn purge_batches(&self, statement: &str, now: Timestamp) -> Result<u64> {
        let mut removed = 0;
        let mut conn = self.conn().await?;
        loop {
            conn.exec_drop(statement, (now, PURGE_BATCH))
                .await
                .map_err(classify)?;
            let affected = conn.affected_rows();
            removed += affected;
            if affected < PURGE_BATCH {
                return Ok(removed);
            }
        }
    }
}

/// Awaits a driver future within `limit`; a timeout is `Unavailable`.
async fn timeout<T>(
    limit: Duration,
    future: impl std::future::Future<Output = mysql_async::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result.map_err(classify),
        Err(_) => Err(Error::unavailable(
            "timed out connecting to the database",
            None,
        )),
    }
}

/// A failure inside a transaction body: a driver error (which may be a retryable conflict) or a
/// decision of the operation itself (`NotFound`, `Conflict`, ...), which ends it.
#[derive(Debug)]
pub(crate) enum TxError {
    Db(mysql_async::Error),
    Core(Error),
}

impl From<mysql_async::Error> for TxError {
    fn from(e: mysql_async::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<Error> for TxError {
    fn from(e: Error) -> Self {
        TxError::Core(e)
    }
}

/// Runs `$body` (an expression using the transaction `$tx`, `.await` and `?` on both driver and
/// core errors) in a transaction and commits it. A conflict with a concurrent transaction
/// (`error::is_conflict`: deadlock, lock wait timeout, TiDB write conflict, a duplicate key from
/// a racing creator) rolls it back and runs the whole body again, so its reads are redone under
/// fresh locks; any other error rolls back and is returned. Dropping the driver's
/// `Transaction` without committing rolls it back before the connection is reused.
macro_rules! transaction {
    ($backend:expr, $tx:ident => $body:expr) => {{
        let backend: &$crate::TidbBackend = $backend;
        let mut attempt: u32 = 0;
        loop {
            let mut conn = backend.conn().await?;
            let outcome: ::std::result::Result<_, $crate::TxError> = async {
                let mut $tx = conn
                    .start_transaction(::mysql_async::TxOpts::default())
                    .await?;
                let value = $body;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match outcome {
                Ok(value) => break Ok(value),
                Err($crate::TxError::Core(e)) => break Err(e),
                Err($crate::TxError::Db(e))
                    if $crate::error::is_conflict(&e) && attempt < backend.options.max_retries =>
                {
                    drop(conn);
                    attempt += 1;
                    $crate::TidbBackend::backoff(attempt).await;
                }
                Err($crate::TxError::Db(e)) => break Err($crate::error::classify(e)),
            }
        }
    }};
}
pub(crate) use transaction;

#[async_trait::async_trait]
impl Maintenance for TidbBackend {
    async fn purge_expired(&self) -> Result<u64> {
        let grace = i64::try_from(self.options.purge_grace.as_millis()).unwrap_or(i64::MAX);
        let clock_now = self.now();
        let now = clock_now.saturating_sub(grace);
        let mut removed = self.purge_batches(sql::KV_PURGE, now).await?;
        removed += self.purge_batches(sql::VECTOR_PURGE, now).await?;
        removed += self.purge_graph(now).await?;
        // Expired objects' blobs are freed now, so reads begun before the expiry keep them for
        // the reaper's grace period.
        removed += self.purge_objects(now, clock_now).await?;
        Ok(removed)
    }
}
