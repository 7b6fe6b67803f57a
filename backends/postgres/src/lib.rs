//! The PostgreSQL backend of p8fs (sqlx + pgvector), for development and single-node
//! production; gateways over it are stateless, so several can share one database.
//!
//! - Schema: versioned migrations embedded from `migrations/`, applied by [`PgBackend::connect`]
//!   under sqlx's advisory lock (see [`schema`]).
//! - Time: every statement compares expiry with "now" read from the injected [`Clock`] and passed
//!   as a bind parameter; the database's clock is never used.
//! - SQL: every statement is a named constant in `sql.rs`; atomicity is documented where each
//!   write happens (`kv.rs`, `graph.rs`, `object.rs`).
//! - Errors: driver errors are classified in `error.rs` only; connection loss, timeouts and
//!   serialization failures are `Unavailable` (retryable).
//! - Vectors: exact search takes candidates from pgvector with a rigorous bound on its f32
//!   rounding and leaves scoring to core (`vector.rs`); [`PgBackend::search_approximate`] uses a
//!   per-collection HNSW index.
//! - Objects: chunked data blobs, multipart uploads and the reaper (`object.rs`); object keys
//!   are `bytea`, so listings order by raw bytes.
//! - Changes: every write appends its change to its tenant's log in the statement that writes (or
//!   as the last statement of its transaction), taking cursors from a per-tenant head row locked
//!   until the commit, so cursors are dense and in commit order (`change.rs`).
//! - Expired records are invisible at once and removed in batches by
//!   [`p8fs_core::Maintenance::purge_expired`] (an expired object's blobs are freed then, for
//!   [`p8fs_core::ObjectStore::reap_objects`] to remove).

mod change;
mod error;
mod graph;
mod kv;
mod object;
mod schema;
mod sql;
mod vector;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use p8fs_core::{Clock, Error, Result, Timestamp};

use crate::error::classify;

/// Connections idle at least this long are pinged before they are reused.
const PING_IDLE_AFTER: Duration = Duration::from_millis(500);

/// Rows a purge statement removes at a time, so the reaper never holds many row locks.
const PURGE_BATCH: i64 = 1000;

/// Connection settings of the PostgreSQL backend.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long a call waits for a free connection before failing with `Unavailable`.
    pub acquire_timeout: Duration,
    /// The server cancels a statement running longer than this (`statement_timeout`); the call
    /// fails with `Unavailable`.
    pub statement_timeout: Duration,
    /// [`p8fs_core::Maintenance::purge_expired`] removes only records that expired at least this
    /// long before the clock's now. Every gateway sharing the database purges for all of them,
    /// so when their clocks disagree (skewed hosts; test cases each on their own manual clock) a
    /// reaper ahead of the others must not remove a record another still sees as visible.
    pub purge_grace: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            purge_grace: Duration::ZERO,
        }
    }
}

/// The PostgreSQL backend: a connection pool and a clock.
#[derive(Clone)]
pub struct PgBackend {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    purge_grace: i64,
    /// How often exact search took each path, shared with [`PgBackend::with_clock`] copies.
    search_counters: Arc<vector::SearchCounters>,
    /// Collections whose approximate-search index this process asked for.
    approximate_requested: Arc<parking_lot::Mutex<std::collections::HashSet<i64>>>,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PgBackend {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// applies the schema migrations that are missing, and returns a backend reading time from
    /// `clock`. The pool opens connections on demand. `InvalidInput` (field `url`) for a
    /// malformed URL, `Unavailable` when the server cannot be reached.
    pub async fn connect(url: &str, clock: Arc<dyn Clock>, options: PgOptions) -> Result<Self> {
        let connect_options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::invalid("url", format!("is not a PostgreSQL URL: {e}")))?
            .application_name("p8fs")
            .statement_cache_capacity(256)
            .options([
                (
                    "statement_timeout",
                    options.statement_timeout.as_millis().to_string(),
                ),
                ("idle_in_transaction_session_timeout", "60000".to_owned()),
            ]);
        schema::migrate(&connect_options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            // A connection idle for a while is pinged before reuse, so the pool finds the ones a
            // server restart broke and calls after the restart succeed instead of failing once
            // per stale connection; a busy connection is reused without the extra round trip.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE_AFTER {
                        sqlx::Connection::ping(connection).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(connect_options);
        Ok(Self {
            pool,
            clock,
            purge_grace: i64::try_from(options.purge_grace.as_millis()).unwrap_or(i64::MAX),
            search_counters: Arc::default(),
            approximate_requested: Arc::default(),
        })
    }

    /// Another backend on the same connection pool, reading time from `clock`.
    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> Self {
        Self {
            pool: self.pool.clone(),
            clock,
            purge_grace: self.purge_grace,
            search_counters: Arc::clone(&self.search_counters),
            approximate_requested: Arc::clone(&self.approximate_requested),
        }
    }

    /// Closes the pool: waits for connections in use to be returned and closes them all.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Runs a purge statement (`$1 now, $2 batch size`) until a batch removes fewer rows than
    /// the batch size.
    async fn purge_batches(&self, statement: &'static str, now: Timestamp) -> Result<u64> {
        let mut removed = 0;
        loop {
            let done = sqlx::query(statement)
                .bind(now)
                .bind(PURGE_BATCH)
                .execute(&self.pool)
                .await
                .map_err(classify)?
                .rows_affected();
            removed += done;
            if done < PURGE_BATCH as u64 {
                return Ok(removed);
            }
        }
    }
}

#[async_trait::async_trait]
impl p8fs_core::Maintenance for PgBackend {
    async fn purge_expired(&self) -> Result<u64> {
        // Records that expired at or before this instant are removed.
        let now = self.now().saturating_sub(self.purge_grace);
        let mut removed = self.purge_batches(sql::KV_PURGE, now).await?;
        removed += self.purge_vectors(now).await?;
        removed += self.purge_graph(now).await?;
        removed += self.purge_objects(now).await?;
        Ok(removed)
    }
}
