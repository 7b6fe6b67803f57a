//! Every SQL statement of the PostgreSQL backend, as named constants (the schema itself is in
//! `migrations/`). No other module holds SQL text.
//!
//! Conventions: `now` is always a bind parameter from the backend's clock, never `now()`; a
//! record is visible while `expires_at IS NULL OR expires_at > now`; JSON goes in as text cast to
//! `json` (exact) and is compared as `jsonb`; keys and ids order by raw bytes because their
//! columns are `COLLATE "C"`.

/// The advisory-lock class of key-value writes (`p8fs` in ASCII). The two-integer advisory lock
/// space does not overlap the one-bigint space sqlx's migrator uses.
macro_rules! kv_key_lock {
    () => {
        "pg_advisory_xact_lock(1882744435, hashtext($1 || '/' || $2))"
    };
}

// ---------------------------------------------------------------------------------------------
// The change log
// ---------------------------------------------------------------------------------------------
//
// A write appends its changes in the statement that writes (or, for writes of several statements,
// in the last statement before the commit), so they commit or roll back together. The statement
// defines a CTE `events` — `n` (1, 2, … in cursor order), `kind`, `op`, the subject parts `a`,
// `b`, `c`, and `version` — with one row per change, computed from what the write actually did
// (an empty `events` appends nothing and takes no lock), and ends with [`append_events`].

/// The last CTEs of a write that appends the rows of `events` for tenant `$tenant` at time `$at`
/// (both parameter names): the tenant's head row is incremented by the number of events (an
/// upsert, so the first change of a tenant creates it) and the events are inserted at the cursors
/// up to the new head. The head row stays locked until the transaction ends, so a concurrent
/// writer of the tenant takes its cursors only after this one committed or rolled back: cursors
/// are dense and follow commit order. The CTE `head` reads `events`, which reads what the write
/// returned, so the lock is taken after the write itself.
macro_rules! append_events {
    ($tenant:literal, $at:literal) => {
        concat!(
            "event_count AS MATERIALIZED (SELECT count(*) AS n FROM events), \
             head AS (INSERT INTO p8fs_change_heads AS h (tenant, head, floor) \
                 SELECT ",
            $tenant,
            ", n, 0 FROM event_count WHERE n > 0 \
                 ON CONFLICT (tenant) DO UPDATE SET head = h.head + EXCLUDED.head \
                 RETURNING h.head), \
             appended AS (INSERT INTO p8fs_changes (tenant, cursor, at, kind, op, a, b, c, version) \
                 SELECT ",
            $tenant,
            ", head.head - event_count.n + e.n, ",
            $at,
            ", e.kind, e.op, e.a, e.b, e.c, e.version \
                 FROM events e CROSS JOIN head CROSS JOIN event_count) "
        )
    };
}

/// The CTE `events` of a write that appends one change per row of `$from` (a `FROM …` clause,
/// usually the write's `RETURNING` rows, with its condition): kind and operation are names,
/// the subject parts and the version SQL expressions.
macro_rules! one_event {
    ($kind:literal, $op:literal, $a:literal, $b:literal, $c:literal, $version:literal, $from:literal) => {
        concat!(
            "events AS (SELECT 1::bigint AS n, '",
            $kind,
            "'::text AS kind, '",
            $op,
            "'::text AS op, ",
            $a,
            "::text AS a, ",
            $b,
            "::text AS b, ",
            $c,
            "::text AS c, ",
            $version,
            "::bigint AS version ",
            $from,
            "), "
        )
    };
}

/// Appends changes in a transaction of several statements, as its last statement: `$1 tenant,
/// $2 at, $3 kinds, $4 operations, $5 first, $6 second, $7 third subject parts (text[] each),
/// $8 versions (bigint[])`, one element per change, in cursor order.
pub(crate) const CHANGE_APPEND: &str = concat!(
    "WITH events AS (SELECT e.n, e.kind, e.op, e.a, e.b, e.c, e.version \
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[]) \
             WITH ORDINALITY AS e (kind, op, a, b, c, version, n)), ",
    append_events!("$1", "$2"),
    "SELECT count(*) FROM events"
);

/// `$1 tenant, $2 after, $3 limit` → one row per change after `$2` (at most `$3`, cursors
/// ascending: `floor, head, cursor, at, kind, op, a, b, c, version`), or one row whose change
/// columns are NULL when there is none; no row when the tenant has no log. One statement, so the
/// head, the floor and the changes are one snapshot: every change up to that head is in it.
pub(crate) const CHANGES_READ: &str = "SELECT h.floor, h.head, c.cursor, c.at, c.kind, c.op, \
         c.a, c.b, c.c, c.version \
     FROM p8fs_change_heads h \
     LEFT JOIN LATERAL (SELECT * FROM p8fs_changes \
         WHERE tenant = h.tenant AND cursor > $2 AND cursor <= h.head \
         ORDER BY cursor LIMIT $3) c ON true \
     WHERE h.tenant = $1 \
     ORDER BY c.cursor";

/// → `tenant, head` of every tenant with a log, tenants ascending by raw bytes.
pub(crate) const CHANGE_HEADS: &str = "SELECT tenant, head FROM p8fs_change_heads ORDER BY tenant";

/// `$1 before` → the tenants whose oldest kept change was written before `$1`: those
/// [`CHANGES_TRIM`] has work for.
pub(crate) const CHANGES_TRIMMABLE: &str = "SELECT h.tenant FROM p8fs_change_heads h \
     WHERE h.head > h.floor AND EXISTS (SELECT 1 FROM p8fs_changes c \
         WHERE c.tenant = h.tenant AND c.cursor = h.floor + 1 AND c.at < $1) \
     ORDER BY h.tenant";

/// `$1 tenant, $2 before, $3 batch size` → `removed` (how many changes were removed) and `more`
/// (the batch ended without reaching a change at or after `$2`, so the next batch may find more).
///
/// One batch of retention for one tenant: of the next `$3` kept changes, those before the first
/// written at or after `$2` are removed and the floor is raised to the last of them, in one
/// statement, so a reader sees the rows and the floor of one state. What remains is a suffix of
/// the log: only cursors up to the snapshot's head are considered, and a writer only adds cursors
/// above it. Concurrent trims of a tenant remove prefixes too, and the floor only goes up.
pub(crate) const CHANGES_TRIM: &str = "WITH h AS (SELECT floor FROM p8fs_change_heads \
         WHERE tenant = $1), \
     batch AS MATERIALIZED (SELECT c.cursor, c.at FROM p8fs_changes c, h \
         WHERE c.tenant = $1 AND c.cursor > h.floor ORDER BY c.cursor LIMIT $3), \
     stop AS MATERIALIZED (SELECT min(cursor) AS cursor FROM batch WHERE at >= $2), \
     cut AS MATERIALIZED (SELECT CASE WHEN (SELECT cursor FROM stop) IS NULL \
             THEN (SELECT max(cursor) FROM batch) ELSE (SELECT cursor FROM stop) - 1 END AS upto, \
         (SELECT cursor FROM stop) IS NULL AND (SELECT count(*) FROM batch) = $3 AS more), \
     gone AS (DELETE FROM p8fs_changes \
         WHERE tenant = $1 AND cursor > (SELECT floor FROM h) AND cursor <= (SELECT upto FROM cut) \
         RETURNING 1), \
     raised AS (UPDATE p8fs_change_heads SET floor = greatest(floor, (SELECT upto FROM cut)) \
         WHERE tenant = $1 AND (SELECT upto FROM cut) > floor) \
     SELECT (SELECT count(*) FROM gone) AS removed, more FROM cut";

// ---------------------------------------------------------------------------------------------
// Key-value
// ---------------------------------------------------------------------------------------------

/// `$1 tenant, $2 key, $3 now` → `value, version, expires_at` of the visible record.
pub(crate) const KV_GET: &str = "SELECT value, version, expires_at FROM p8fs_kv \
     WHERE tenant = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)";

/// `$1 tenant, $2 key, $3 value (JSON text), $4 expires_at, $5 now` → `version`. Upserts, and
/// appends the `Put`.
///
/// The version comes from `nextval` evaluated after the key's advisory lock is held, and every
/// statement that assigns a version to a key holds that lock until it commits; so a version is
/// greater than every version the key had before, also across delete and re-creation (where no
/// row lock exists to order the writers).
pub(crate) const KV_PUT: &str = concat!(
    "WITH written AS (INSERT INTO p8fs_kv AS kv (tenant, key, value, version, expires_at) \
     SELECT $1, $2, $3::json, nextval('p8fs_version'), $4 \
     FROM (SELECT ",
    kv_key_lock!(),
    ") AS key_lock \
     ON CONFLICT (tenant, key) DO UPDATE \
     SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at \
     RETURNING version), ",
    one_event!("kv", "put", "''", "''", "$2", "version", "FROM written"),
    append_events!("$1", "$5"),
    "SELECT version FROM written"
);

/// `$1 tenant, $2 key, $3 value, $4 expires_at, $5 now` → `version`, or no row when a visible
/// record exists. An expired row is replaced; the conflict arbiter locks the row and the `WHERE`
/// is evaluated on its latest version, so of concurrent callers exactly one gets a row back. The
/// `Put` is appended when a row is.
pub(crate) const KV_PUT_IF_ABSENT: &str = concat!(
    "WITH written AS (INSERT INTO p8fs_kv AS kv (tenant, key, value, version, expires_at) \
     SELECT $1, $2, $3::json, nextval('p8fs_version'), $4 \
     FROM (SELECT ",
    kv_key_lock!(),
    ") AS key_lock \
     ON CONFLICT (tenant, key) DO UPDATE \
     SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at \
     WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= $5 \
     RETURNING version), ",
    one_event!("kv", "put", "''", "''", "$2", "version", "FROM written"),
    append_events!("$1", "$5"),
    "SELECT version FROM written"
);

/// `$1 tenant, $2 key, $3 now, $4 expected version, $5 value, $6 expires_at` →
/// `swapped` (the new version, or NULL) and `current` (the visible version in the statement's
/// snapshot, or NULL). The `UPDATE` locks the row and re-checks `version = $4` on its latest
/// version (PostgreSQL re-evaluates the condition after waiting for a concurrent writer), so of
/// concurrent callers with the same expected version exactly one swaps; that one appends its
/// `Put`.
pub(crate) const KV_COMPARE_AND_SWAP: &str = concat!(
    "WITH key_lock AS MATERIALIZED (SELECT ",
    kv_key_lock!(),
    " AS locked), \
     current_row AS (SELECT version FROM p8fs_kv \
         WHERE tenant = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)), \
     swapped AS (UPDATE p8fs_kv \
         SET value = $5::json, version = nextval('p8fs_version'), expires_at = $6 \
         FROM key_lock \
         WHERE tenant = $1 AND key = $2 AND version = $4 \
           AND (expires_at IS NULL OR expires_at > $3) \
         RETURNING p8fs_kv.version), ",
    one_event!("kv", "put", "''", "''", "$2", "version", "FROM swapped"),
    append_events!("$1", "$3"),
    "SELECT (SELECT version FROM swapped) AS swapped, (SELECT version FROM current_row) AS current"
);

/// `$1 tenant, $2 key, $3 now` → one row `visible` when a row existed; a visible one appends its
/// `Delete`.
pub(crate) const KV_DELETE: &str = concat!(
    "WITH gone AS (DELETE FROM p8fs_kv WHERE tenant = $1 AND key = $2 \
         RETURNING (expires_at IS NULL OR expires_at > $3) AS visible), ",
    one_event!(
        "kv",
        "delete",
        "''",
        "''",
        "$2",
        "NULL",
        "FROM gone WHERE visible"
    ),
    append_events!("$1", "$3"),
    "SELECT visible FROM gone"
);

/// `$1 tenant, $2 lower bound (the prefix), $3 upper bound (exclusive), $4 start after (exclusive,
/// '' for none), $5 now, $6 limit` → `key, value, version, expires_at`, keys ascending.
pub(crate) const KV_SCAN: &str = "SELECT key, value, version, expires_at FROM p8fs_kv \
     WHERE tenant = $1 AND key >= $2 AND key < $3 AND key > $4 \
       AND (expires_at IS NULL OR expires_at > $5) \
     ORDER BY key LIMIT $6";

/// `$1 tenant, $2 probe (jsonb), $3 start after, $4 now, $5 limit` → like [`KV_SCAN`], only
/// records whose value contains the probe (a superset of the contract's equality, see `kv.rs`).
pub(crate) const KV_FIND_CANDIDATES: &str = "SELECT key, value, version, expires_at FROM p8fs_kv \
     WHERE tenant = $1 AND value::jsonb @> $2 AND key > $3 \
       AND (expires_at IS NULL OR expires_at > $4) \
     ORDER BY key LIMIT $5";

/// `$1 now, $2 batch size` → number of expired rows removed. Re-checks expiry under the row lock.
pub(crate) const KV_PURGE: &str = "DELETE FROM p8fs_kv \
     WHERE (tenant, key) IN (SELECT tenant, key FROM p8fs_kv WHERE expires_at <= $1 LIMIT $2) \
       AND expires_at <= $1";

// ---------------------------------------------------------------------------------------------
// Vector collections and records
// ---------------------------------------------------------------------------------------------

/// `$1 tenant, $2 name, $3 dimension, $4 metric, $5 now` → `id` when created (and the `Put`
/// appended), no row when it exists.
pub(crate) const COLLECTION_CREATE: &str = concat!(
    "WITH created AS (INSERT INTO p8fs_collections (tenant, name, dimension, metric) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, name) DO NOTHING RETURNING id), ",
    one_event!(
        "collection",
        "put",
        "''",
        "''",
        "$2",
        "NULL",
        "FROM created"
    ),
    append_events!("$1", "$5"),
    "SELECT id FROM created"
);

/// `$1 tenant, $2 name` → `id, dimension, metric`.
pub(crate) const COLLECTION_GET: &str =
    "SELECT id, dimension, metric FROM p8fs_collections WHERE tenant = $1 AND name = $2";

/// `$1 tenant` → `name, dimension, metric`, names ascending.
pub(crate) const COLLECTION_LIST: &str =
    "SELECT name, dimension, metric FROM p8fs_collections WHERE tenant = $1 ORDER BY name";

/// `$1 tenant, $2 name, $3 now` → `id` of the dropped collection, whose `Delete` is appended;
/// its records go by cascade, without a change each.
pub(crate) const COLLECTION_DROP: &str = concat!(
    "WITH dropped AS (DELETE FROM p8fs_collections WHERE tenant = $1 AND name = $2 \
         RETURNING id), ",
    one_event!(
        "collection",
        "delete",
        "''",
        "''",
        "$2",
        "NULL",
        "FROM dropped"
    ),
    append_events!("$1", "$3"),
    "SELECT id FROM dropped"
);

/// `$1 tenant, $2 name, $3 id, $4 embedding, $5 norm, $6 extreme, $7 metadata, $8 expires_at,
/// $9 dimension, $10 metric, $11 now` → one row when written (and the `Put` appended); no row
/// when the collection is missing or has another dimension or metric.
pub(crate) const VECTOR_UPSERT: &str = concat!(
    "WITH written AS (INSERT INTO p8fs_vectors \
         (collection_id, id, embedding, norm, extreme, metadata, expires_at) \
     SELECT c.id, $3, $4, $5, $6, $7::json, $8 FROM p8fs_collections c \
     WHERE c.tenant = $1 AND c.name = $2 AND c.dimension = $9 AND c.metric = $10 \
     ON CONFLICT (collection_id, id) DO UPDATE \
     SET embedding = EXCLUDED.embedding, norm = EXCLUDED.norm, extreme = EXCLUDED.extreme, \
         metadata = EXCLUDED.metadata, expires_at = EXCLUDED.expires_at \
     RETURNING 1), ",
    one_event!("vector", "put", "''", "$2", "$3", "NULL", "FROM written"),
    append_events!("$1", "$11"),
    "SELECT 1 FROM written"
);

/// `$1 tenant, $2 name, $3 id, $4 now` → no row when the collection is missing; otherwise one row
/// whose record columns are NULL when the record is absent or expired.
pub(crate) const VECTOR_GET: &str = "SELECT v.embedding, v.metadata, v.expires_at \
     FROM p8fs_collections c \
     LEFT JOIN p8fs_vectors v ON v.collection_id = c.id AND v.id = $3 \
         AND (v.expires_at IS NULL OR v.expires_at > $4) \
     WHERE c.tenant = $1 AND c.name = $2";

/// `$1 tenant, $2 name, $3 id, $4 now` → `collection` (NULL when missing) and `deleted` (NULL when
/// no row was deleted, else whether it was visible); a visible record's `Delete` is appended.
pub(crate) const VECTOR_DELETE: &str = concat!(
    "WITH c AS (SELECT id FROM p8fs_collections WHERE tenant = $1 AND name = $2), \
     d AS (DELETE FROM p8fs_vectors v USING c WHERE v.collection_id = c.id AND v.id = $3 \
         RETURNING (v.expires_at IS NULL OR v.expires_at > $4) AS visible), ",
    one_event!(
        "vector",
        "delete",
        "''",
        "$2",
        "$3",
        "NULL",
        "FROM d WHERE visible"
    ),
    append_events!("$1", "$4"),
    "SELECT (SELECT id FROM c) AS collection, (SELECT visible FROM d) AS deleted"
);

/// `$1 collection id, $2 start after ('' for none), $3 now, $4 limit` → records, ids ascending.
pub(crate) const VECTOR_LIST: &str = "SELECT id, embedding, metadata, expires_at FROM p8fs_vectors \
     WHERE collection_id = $1 AND id > $2 AND (expires_at IS NULL OR expires_at > $3) \
     ORDER BY id LIMIT $4";

/// Candidate queries of an exact search. Each returns `id, embedding, metadata, expires_at, norm,
/// rank`, where `rank` is `distance - $5 * norm` with `distance` pgvector's (f32-accumulated)
/// distance; it is NULL for `extreme` records, which every query returns in full. With `$5 = 0`
/// (cosine, l2) the rank is the distance itself, so the top query is pgvector's plain
/// `ORDER BY embedding <=> $2 LIMIT n`; for dot it is a lower bound of the exact distance (see
/// `vector.rs`), and the distance is `rank + $5 * norm`.
///
/// Parameters: `$1 collection id, $2 query, $3 now, $4 limit or threshold, $5 rank coefficient,
/// $6 filter probe (jsonb; only in the `_FILTERED` forms)`.
///
/// The `_TOP` forms take the `$4` lowest ranks; the sort carries only `id` and the rank (so
/// PostgreSQL can run it in parallel workers like the plain query), and the chosen rows are
/// fetched by primary key afterwards, through `id = ANY (ARRAY(…))` so that the planner looks
/// them up in the index instead of scanning the collection again. The `_WITHIN` forms take every
/// row whose rank is at most `$4`.
macro_rules! vector_candidates {
    (top, $distance:literal, $filter:literal) => {
        concat!(
            "WITH top AS MATERIALIZED (SELECT id, ",
            $distance,
            " - $5 * norm AS rank FROM p8fs_vectors \
             WHERE collection_id = $1 AND NOT extreme AND (expires_at IS NULL OR expires_at > $3)",
            $filter,
            " ORDER BY rank LIMIT $4) \
             SELECT v.id, v.embedding, v.metadata, v.expires_at, v.norm, top.rank \
             FROM p8fs_vectors v JOIN top ON top.id = v.id \
             WHERE v.collection_id = $1 AND v.id = ANY (ARRAY(SELECT id FROM top)) \
             UNION ALL ",
            vector_candidates!(extreme, $filter)
        )
    };
    (within, $distance:literal, $filter:literal) => {
        concat!(
            "SELECT id, embedding, metadata, expires_at, norm, ",
            $distance,
            " - $5 * norm AS rank FROM p8fs_vectors \
             WHERE collection_id = $1 AND NOT extreme AND (expires_at IS NULL OR expires_at > $3)",
            $filter,
            " AND ",
            $distance,
            " - $5 * norm <= $4 \
             UNION ALL ",
            vector_candidates!(extreme, $filter)
        )
    };
    (extreme, $filter:literal) => {
        concat!(
            "SELECT id, embedding, metadata, expires_at, norm, NULL::float8 \
             FROM p8fs_vectors \
             WHERE collection_id = $1 AND extreme AND (expires_at IS NULL OR expires_at > $3)",
            $filter
        )
    };
}

pub(crate) const VECTOR_TOP_COSINE: &str = vector_candidates!(top, "(embedding <=> $2)", "");
pub(crate) const VECTOR_TOP_L2: &str = vector_candidates!(top, "(embedding <-> $2)", "");
pub(crate) const VECTOR_TOP_DOT: &str = vector_candidates!(top, "(embedding <#> $2)", "");
pub(crate) const VECTOR_TOP_COSINE_FILTERED: &str =
    vector_candidates!(top, "(embedding <=> $2)", " AND metadata_index @> $6");
pub(crate) const VECTOR_TOP_L2_FILTERED: &str =
    vector_candidates!(top, "(embedding <-> $2)", " AND metadata_index @> $6");
pub(crate) const VECTOR_TOP_DOT_FILTERED: &str =
    vector_candidates!(top, "(embedding <#> $2)", " AND metadata_index @> $6");
pub(crate) const VECTOR_WITHIN_COSINE: &str = vector_candidates!(within, "(embedding <=> $2)", "");
pub(crate) const VECTOR_WITHIN_L2: &str = vector_candidates!(within, "(embedding <-> $2)", "");
pub(crate) const VECTOR_WITHIN_DOT: &str = vector_candidates!(within, "(embedding <#> $2)", "");
pub(crate) const VECTOR_WITHIN_COSINE_FILTERED: &str =
    vector_candidates!(within, "(embedding <=> $2)", " AND metadata_index @> $6");
pub(crate) const VECTOR_WITHIN_L2_FILTERED: &str =
    vector_candidates!(within, "(embedding <-> $2)", " AND metadata_index @> $6");
pub(crate) const VECTOR_WITHIN_DOT_FILTERED: &str =
    vector_candidates!(within, "(embedding <#> $2)", " AND metadata_index @> $6");

/// `$1 collection id, $2 now, $3 filter probe` → every visible record matching the probe, with
/// a NULL rank: the candidates when the query itself is extreme.
pub(crate) const VECTOR_ALL: &str = "SELECT id, embedding, metadata, expires_at, norm, \
         NULL::float8 FROM p8fs_vectors \
     WHERE collection_id = $1 AND (expires_at IS NULL OR expires_at > $2) \
       AND metadata_index @> $3";

/// `$1 now, $2 batch size` → expired vector records removed.
pub(crate) const VECTOR_PURGE: &str = "DELETE FROM p8fs_vectors \
     WHERE (collection_id, id) IN (SELECT collection_id, id FROM p8fs_vectors \
         WHERE expires_at <= $1 LIMIT $2) \
       AND expires_at <= $1";

/// `$1 index name` → whether the approximate-search index exists, is built and is valid (a
/// concurrent build that failed leaves an invalid one behind).
pub(crate) const HNSW_INDEX_READY: &str = "SELECT COALESCE((SELECT indisvalid AND indisready \
     FROM pg_index WHERE indexrelid = to_regclass($1)), false)";

/// `$1 collection id, $2 n` → how many records the collection holds, counting at most `n`.
pub(crate) const VECTOR_COUNT_UP_TO: &str = "SELECT count(*) FROM \
     (SELECT 1 FROM p8fs_vectors WHERE collection_id = $1 LIMIT $2) AS capped";

/// `$1 index name` → whether the approximate-search index exists.
pub(crate) const HNSW_INDEX_EXISTS: &str = "SELECT to_regclass($1) IS NOT NULL";

/// The approximate-search index of one collection: a partial HNSW index over the embedding cast
/// to the collection's dimension. `{index}`, `{dimension}`, `{ops}` and `{collection}` are
/// replaced by [`crate::vector`] with integers and fixed names only.
pub(crate) const HNSW_INDEX_CREATE: &str = "CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} \
     ON p8fs_vectors USING hnsw ((embedding::vector({dimension})) {ops}) \
     WHERE collection_id = {collection}";

/// Session settings for building an approximate-search index: no statement timeout (a build
/// takes minutes on large collections) and more memory, so the graph is built in memory.
pub(crate) const HNSW_BUILD_SETTINGS: &str =
    "SET statement_timeout = 0; SET maintenance_work_mem = '512MB'";

/// Restores the session's settings after a build.
pub(crate) const HNSW_BUILD_RESET: &str = "RESET statement_timeout; RESET maintenance_work_mem";

/// Drops an approximate-search index (`{index}` as above).
pub(crate) const HNSW_INDEX_DROP: &str = "DROP INDEX CONCURRENTLY IF EXISTS {index}";

/// `$1 ef_search` → sets `hnsw.ef_search` for the current transaction.
pub(crate) const HNSW_SET_EF_SEARCH: &str = "SELECT set_config('hnsw.ef_search', $1, true), \
     set_config('hnsw.iterative_scan', 'relaxed_order', true)";

/// An approximate search through the HNSW index (placeholders as in [`HNSW_INDEX_CREATE`], plus
/// `{operator}`): `$1 query, $2 now, $3 limit` → `id, embedding, metadata, expires_at`. The
/// collection id is a literal so that the planner can match the partial index.
pub(crate) const HNSW_SEARCH: &str = "SELECT id, embedding, metadata, expires_at FROM p8fs_vectors \
     WHERE collection_id = {collection} AND (expires_at IS NULL OR expires_at > $2) \
     ORDER BY embedding::vector({dimension}) {operator} $1 LIMIT $3";

// ---------------------------------------------------------------------------------------------
// Graph
// ---------------------------------------------------------------------------------------------

/// `$1 tenant, $2 id, $3 label, $4 properties, $5 expires_at, $6 now` → one row (and the `Put`
/// appended) unless an expired row exists (then the caller takes the slow path that also removes
/// its edges).
pub(crate) const NODE_UPSERT_UNLESS_EXPIRED: &str = concat!(
    "WITH written AS (INSERT INTO p8fs_nodes AS n (tenant, id, label, properties, expires_at) \
     VALUES ($1, $2, $3, $4::json, $5) \
     ON CONFLICT (tenant, id) DO UPDATE \
     SET label = EXCLUDED.label, properties = EXCLUDED.properties, expires_at = EXCLUDED.expires_at \
     WHERE n.expires_at IS NULL OR n.expires_at > $6 \
     RETURNING 1), ",
    one_event!("node", "put", "''", "''", "$2", "NULL", "FROM written"),
    append_events!("$1", "$6"),
    "SELECT 1 FROM written"
);

/// `$1 tenant, $2 id, $3 now` → `visible` of the node row, locked for update.
pub(crate) const NODE_LOCK: &str = "SELECT (expires_at IS NULL OR expires_at > $3) FROM p8fs_nodes \
     WHERE tenant = $1 AND id = $2 FOR UPDATE";

/// `$1 tenant, $2 node id` → removes every edge touching the node.
pub(crate) const NODE_DELETE_EDGES: &str =
    "DELETE FROM p8fs_edges WHERE tenant = $1 AND (src = $2 OR dst = $2)";

/// `$1 tenant, $2 id, $3 label, $4 properties, $5 expires_at, $6 now` → upserts unconditionally
/// and appends the `Put`; the last statement of `put_node`'s slow path.
pub(crate) const NODE_UPSERT: &str = concat!(
    "WITH written AS (INSERT INTO p8fs_nodes (tenant, id, label, properties, expires_at) \
     VALUES ($1, $2, $3, $4::json, $5) \
     ON CONFLICT (tenant, id) DO UPDATE \
     SET label = EXCLUDED.label, properties = EXCLUDED.properties, expires_at = EXCLUDED.expires_at \
     RETURNING 1), ",
    one_event!("node", "put", "''", "''", "$2", "NULL", "FROM written"),
    append_events!("$1", "$6"),
    "SELECT 1 FROM written"
);

/// `$1 tenant, $2 id, $3 now` → `label, properties, expires_at` of the visible node.
pub(crate) const NODE_GET: &str = "SELECT label, properties, expires_at FROM p8fs_nodes \
     WHERE tenant = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > $3)";

/// `$1 tenant, $2 ids (text[]), $3 now` → `id, label, properties, expires_at` of the visible
/// nodes among the ids, ascending by id (`COLLATE "C"`: raw bytes). The visibility of
/// [`NODE_GET`].
pub(crate) const NODES_GET: &str = "SELECT id, label, properties, expires_at FROM p8fs_nodes \
     WHERE tenant = $1 AND id = ANY($2) AND (expires_at IS NULL OR expires_at > $3) \
     ORDER BY id";

/// `$1 tenant, $2 id` → deletes the node row; its edges go by cascade. For a node that is not
/// visible, locked by [`NODE_LOCK`]: nothing it removes was visible, so nothing is appended.
pub(crate) const NODE_DELETE_INVISIBLE: &str =
    "DELETE FROM p8fs_nodes WHERE tenant = $1 AND id = $2";

/// `$1 tenant, $2 id, $3 now` → deletes a visible node, locked by [`NODE_LOCK`], and its edges,
/// and appends the node's `Delete` followed by one edge `Delete` per visible edge (both endpoints
/// visible, the edge not expired), edges ordered by (src, rel, dst) as raw bytes. The node lock
/// keeps `put_edge` from adding edges to it, and this statement runs after the lock was taken, so
/// its snapshot holds every edge the node has: the cascade finds none left. An edge that a
/// concurrent `delete_edge` or `delete_node` (of the other endpoint) deleted first is not
/// returned here, so its `Delete` is appended once. The edges are locked in key order, so two
/// such deletions of neighbouring nodes cannot deadlock on them.
pub(crate) const NODE_DELETE_VISIBLE: &str = concat!(
    "WITH edges_gone AS (DELETE FROM p8fs_edges \
         WHERE (tenant, src, rel, dst) IN (SELECT tenant, src, rel, dst FROM p8fs_edges \
             WHERE tenant = $1 AND (src = $2 OR dst = $2) ORDER BY src, rel, dst FOR UPDATE) \
         RETURNING src, rel, dst, expires_at), \
     node_gone AS (DELETE FROM p8fs_nodes WHERE tenant = $1 AND id = $2 \
         RETURNING (expires_at IS NULL OR expires_at > $3) AS visible), \
     events AS (SELECT 1::bigint AS n, 'node'::text AS kind, 'delete'::text AS op, \
             ''::text AS a, ''::text AS b, $2::text AS c, NULL::bigint AS version \
         FROM node_gone WHERE visible \
         UNION ALL \
         SELECT 1 + row_number() OVER (ORDER BY g.src, g.rel, g.dst), 'edge', 'delete', \
             g.src, g.rel, g.dst, NULL \
         FROM edges_gone g \
         WHERE (SELECT visible FROM node_gone) \
           AND (g.expires_at IS NULL OR g.expires_at > $3) \
           AND EXISTS (SELECT 1 FROM p8fs_nodes o WHERE o.tenant = $1 \
               AND o.id = CASE WHEN g.src = $2 THEN g.dst ELSE g.src END \
               AND (o.expires_at IS NULL OR o.expires_at > $3))), ",
    append_events!("$1", "$3"),
    "SELECT visible FROM node_gone"
);

/// `$1 tenant, $2 start after ('' for none), $3 now, $4 limit` → visible nodes, ids ascending.
pub(crate) const NODE_LIST: &str = "SELECT id, label, properties, expires_at FROM p8fs_nodes \
     WHERE tenant = $1 AND id > $2 AND (expires_at IS NULL OR expires_at > $3) \
     ORDER BY id LIMIT $4";

/// `$1 tenant, $2 src, $3 rel, $4 dst, $5 weight, $6 properties, $7 expires_at, $8 now` →
/// `found` (the visible endpoints, locked) and `written` (1 when the edge was upserted).
///
/// The endpoint rows are locked `FOR KEY SHARE` before they are checked, so a concurrent
/// `delete_node` (which deletes the row) or the slow path of `put_node` (which locks it for
/// update) either finishes first, and the check sees its result, or waits for this statement; an
/// edge is therefore never written next to a deleted node or into an older incarnation of one.
/// A written edge appends its `Put`.
pub(crate) const EDGE_PUT: &str = concat!(
    "WITH endpoints AS (SELECT id FROM p8fs_nodes \
         WHERE tenant = $1 AND id IN ($2, $4) AND (expires_at IS NULL OR expires_at > $8) \
         FOR KEY SHARE), \
     written AS (INSERT INTO p8fs_edges (tenant, src, rel, dst, weight, properties, expires_at) \
         SELECT $1, $2, $3, $4, $5, $6::json, $7 \
         WHERE (SELECT count(*) FROM endpoints) = CASE WHEN $2 = $4 THEN 1 ELSE 2 END \
         ON CONFLICT (tenant, src, rel, dst) DO UPDATE \
         SET weight = EXCLUDED.weight, properties = EXCLUDED.properties, \
             expires_at = EXCLUDED.expires_at \
         RETURNING 1), ",
    one_event!("edge", "put", "$2", "$3", "$4", "NULL", "FROM written"),
    append_events!("$1", "$8"),
    "SELECT ARRAY(SELECT id FROM endpoints) AS found, (SELECT count(*) FROM written) AS written"
);

/// `$1 tenant, $2 src, $3 rel, $4 dst, $5 now` → `weight, properties, expires_at` of the edge
/// when it and both endpoints are visible.
pub(crate) const EDGE_GET: &str = "SELECT e.weight, e.properties, e.expires_at FROM p8fs_edges e \
     JOIN p8fs_nodes s ON s.tenant = e.tenant AND s.id = e.src \
     JOIN p8fs_nodes d ON d.tenant = e.tenant AND d.id = e.dst \
     WHERE e.tenant = $1 AND e.src = $2 AND e.rel = $3 AND e.dst = $4 \
       AND (e.expires_at IS NULL OR e.expires_at > $5) \
       AND (s.expires_at IS NULL OR s.expires_at > $5) \
       AND (d.expires_at IS NULL OR d.expires_at > $5)";

/// `$1 tenant, $2 src, $3 rel, $4 dst, $5 now` → `visible` when a row was deleted; a visible
/// edge's `Delete` is appended. An edge a concurrent `delete_node` removed first is not deleted
/// here (the row is gone once this statement gets its lock), so its `Delete` is appended once.
pub(crate) const EDGE_DELETE: &str = concat!(
    "WITH gone AS (DELETE FROM p8fs_edges \
         WHERE tenant = $1 AND src = $2 AND rel = $3 AND dst = $4 RETURNING expires_at), \
     result AS MATERIALIZED (SELECT (g.expires_at IS NULL OR g.expires_at > $5) \
       AND EXISTS (SELECT 1 FROM p8fs_nodes WHERE tenant = $1 AND id = $2 \
           AND (expires_at IS NULL OR expires_at > $5)) \
       AND EXISTS (SELECT 1 FROM p8fs_nodes WHERE tenant = $1 AND id = $4 \
           AND (expires_at IS NULL OR expires_at > $5)) AS visible \
     FROM gone g), ",
    one_event!(
        "edge",
        "delete",
        "$2",
        "$3",
        "$4",
        "NULL",
        "FROM result WHERE visible"
    ),
    append_events!("$1", "$5"),
    "SELECT visible FROM result"
);

/// The traversal primitive: visible edges (both endpoints visible) touching the nodes `$2`
/// (text[]) in one direction, with relations in `$3` (text[]; empty for all), at `$4 now`.
/// One query per call, whatever the number of nodes.
macro_rules! edges_of {
    ($touch:literal) => {
        concat!(
            "SELECT e.src, e.rel, e.dst, e.weight, e.properties, e.expires_at FROM p8fs_edges e \
             JOIN p8fs_nodes s ON s.tenant = e.tenant AND s.id = e.src \
             JOIN p8fs_nodes d ON d.tenant = e.tenant AND d.id = e.dst \
             WHERE e.tenant = $1 AND (",
            $touch,
            ") AND (cardinality($3::text[]) = 0 OR e.rel = ANY($3)) \
               AND (e.expires_at IS NULL OR e.expires_at > $4) \
               AND (s.expires_at IS NULL OR s.expires_at > $4) \
               AND (d.expires_at IS NULL OR d.expires_at > $4)"
        )
    };
}

pub(crate) const EDGES_OUT: &str = edges_of!("e.src = ANY($2)");
pub(crate) const EDGES_IN: &str = edges_of!("e.dst = ANY($2)");
pub(crate) const EDGES_BOTH: &str = edges_of!("e.src = ANY($2) OR e.dst = ANY($2)");

/// `$1 now, $2 batch size` → edges of expired nodes removed. Run before [`NODE_PURGE`], so that
/// the purge counts them (the cascade would remove them uncounted). No edge can be added to an
/// expired node meanwhile (`put_edge` needs visible endpoints), and a node written again since
/// is no longer expired, so its new edges are not selected.
pub(crate) const NODE_PURGE_EDGES: &str = "DELETE FROM p8fs_edges \
     WHERE (tenant, src, rel, dst) IN ( \
         SELECT e.tenant, e.src, e.rel, e.dst FROM p8fs_nodes n \
             JOIN p8fs_edges e ON e.tenant = n.tenant AND e.src = n.id \
             WHERE n.expires_at <= $1 \
         UNION \
         SELECT e.tenant, e.src, e.rel, e.dst FROM p8fs_nodes n \
             JOIN p8fs_edges e ON e.tenant = n.tenant AND e.dst = n.id \
             WHERE n.expires_at <= $1 \
         LIMIT $2)";

/// `$1 now, $2 batch size` → expired nodes removed (after [`NODE_PURGE_EDGES`], so the cascade
/// finds no edges left).
pub(crate) const NODE_PURGE: &str = "DELETE FROM p8fs_nodes \
     WHERE (tenant, id) IN (SELECT tenant, id FROM p8fs_nodes WHERE expires_at <= $1 LIMIT $2) \
       AND expires_at <= $1";

/// `$1 now, $2 batch size` → expired edges removed.
pub(crate) const EDGE_PURGE: &str = "DELETE FROM p8fs_edges \
     WHERE (tenant, src, rel, dst) IN (SELECT tenant, src, rel, dst FROM p8fs_edges \
         WHERE expires_at <= $1 LIMIT $2) \
       AND expires_at <= $1";

// ---------------------------------------------------------------------------------------------
// Objects: buckets, objects, multipart uploads, data blobs and their chunks
// ---------------------------------------------------------------------------------------------
//
// Lock order, the same for every writer, so writers never deadlock each other: the bucket row
// (`FOR KEY SHARE` by writers of objects and uploads, `FOR UPDATE` by `delete_bucket`), then
// upload rows, then blob state rows, then object and part rows.

/// `$1 tenant` → takes the transaction-scoped lock that serialises the creation of the tenant's
/// buckets, so that counting them and adding one are atomic. Class `p8bk` in ASCII.
pub(crate) const BUCKET_CREATE_LOCK: &str =
    "SELECT pg_advisory_xact_lock(1882743403, hashtext($1))";

/// `$1 tenant, $2 name, $3 created_at (now), $4 most buckets` → `existing` (the tenant has the
/// bucket), `count` (the tenant's buckets) and `created` (the bucket was added, and its `Put`
/// appended). Run under [`BUCKET_CREATE_LOCK`], so the count cannot change meanwhile.
pub(crate) const BUCKET_CREATE: &str = concat!(
    "WITH existing AS (SELECT created_at FROM p8fs_buckets WHERE tenant = $1 AND name = $2), \
     counted AS (SELECT count(*) AS n FROM p8fs_buckets WHERE tenant = $1), \
     created AS (INSERT INTO p8fs_buckets (tenant, name, created_at) SELECT $1, $2, $3 \
         WHERE NOT EXISTS (SELECT 1 FROM existing) AND (SELECT n FROM counted) < $4 \
         ON CONFLICT (tenant, name) DO NOTHING RETURNING 1), ",
    one_event!("bucket", "put", "''", "''", "$2", "NULL", "FROM created"),
    append_events!("$1", "$3"),
    "SELECT EXISTS (SELECT 1 FROM existing) AS existing, (SELECT n FROM counted) AS count, \
         EXISTS (SELECT 1 FROM created) AS created"
);

/// `$1 tenant, $2 name` → `created_at`.
pub(crate) const BUCKET_GET: &str =
    "SELECT created_at FROM p8fs_buckets WHERE tenant = $1 AND name = $2";

/// `$1 tenant` → `name, created_at`, names ascending.
pub(crate) const BUCKET_LIST: &str =
    "SELECT name, created_at FROM p8fs_buckets WHERE tenant = $1 ORDER BY name";

/// `$1 tenant, $2 name` → one row when the bucket exists, which is then locked `FOR UPDATE`: no
/// object or upload can be written into it until the transaction ends.
pub(crate) const BUCKET_LOCK: &str =
    "SELECT 1 FROM p8fs_buckets WHERE tenant = $1 AND name = $2 FOR UPDATE";

/// `$1 tenant, $2 name` → one row when the bucket exists, locked `FOR KEY SHARE` (against
/// `delete_bucket`).
pub(crate) const BUCKET_SHARE: &str =
    "SELECT 1 FROM p8fs_buckets WHERE tenant = $1 AND name = $2 FOR KEY SHARE";

/// `$1 tenant, $2 name, $3 now` → `occupied` (a visible object is in the bucket) and the ids of
/// its uploads, which are locked `FOR UPDATE` (so no part is written into them any more). Run
/// after [`BUCKET_LOCK`], in a snapshot that sees every object committed into the bucket.
pub(crate) const BUCKET_CHECK_EMPTY: &str = "SELECT EXISTS (SELECT 1 FROM p8fs_objects \
         WHERE tenant = $1 AND bucket = $2 AND (expires_at IS NULL OR expires_at > $3)) AS occupied, \
     ARRAY(SELECT id FROM p8fs_uploads WHERE tenant = $1 AND bucket = $2 FOR UPDATE) AS uploads";

/// `$1 tenant, $2 name, $3 now` → removes the bucket with its expired objects and its uploads and
/// parts, freeing their blobs at now, and appends the bucket's `Delete` (only; nothing else it
/// removes was visible). Run after [`BUCKET_CHECK_EMPTY`] found no visible object (none can
/// appear while the bucket is locked); a visible object left over makes the foreign key fail
/// rather than vanish with the bucket.
pub(crate) const BUCKET_DELETE: &str = concat!(
    "WITH parts AS (DELETE FROM p8fs_parts \
         WHERE tenant = $1 AND bucket = $2 RETURNING data_id), \
     parts_freed AS (INSERT INTO p8fs_blobs (tenant, data_id, state, since) \
         SELECT DISTINCT $1, data_id, 'freed', $3 FROM parts), \
     uploads AS (DELETE FROM p8fs_uploads WHERE tenant = $1 AND bucket = $2), \
     objects AS (DELETE FROM p8fs_objects WHERE tenant = $1 AND bucket = $2 \
         AND expires_at IS NOT NULL AND expires_at <= $3 RETURNING segment_data), \
     objects_freed AS (INSERT INTO p8fs_blobs (tenant, data_id, state, since) \
         SELECT DISTINCT $1, unnest(segment_data), 'freed', $3 FROM objects), \
     gone AS (DELETE FROM p8fs_buckets WHERE tenant = $1 AND name = $2 RETURNING 1), ",
    one_event!("bucket", "delete", "''", "''", "$2", "NULL", "FROM gone"),
    append_events!("$1", "$3"),
    "SELECT count(*) FROM gone"
);

/// `$1 tenant, $2 now` → `data_id` of a new pending blob, from the store's sequence.
pub(crate) const BLOB_BEGIN: &str = "INSERT INTO p8fs_blobs (tenant, data_id, state, since) \
     VALUES ($1, nextval('p8fs_version'), 'pending', $2) RETURNING data_id";

/// `$1 tenant, $2 data id, $3 index, $4 bytes` → one row when stored (the blob is pending).
///
/// The blob's state row is locked `FOR SHARE` until the chunk commits, so a commit that claims
/// the blob or a discard or reap that frees it either happens first (and the chunk is refused) or
/// waits for the chunk (and then sees it): no chunk is ever stored for a blob that is no longer
/// pending.
pub(crate) const CHUNK_WRITE: &str = "INSERT INTO p8fs_chunks (tenant, data_id, idx, bytes) \
     SELECT tenant, data_id, $3, $4 FROM p8fs_blobs \
     WHERE tenant = $1 AND data_id = $2 AND state = 'pending' FOR SHARE \
     ON CONFLICT (tenant, data_id, idx) DO UPDATE SET bytes = EXCLUDED.bytes \
     RETURNING 1";

/// `$1 tenant, $2 data id, $3 index` → `bytes`.
pub(crate) const CHUNK_READ: &str =
    "SELECT bytes FROM p8fs_chunks WHERE tenant = $1 AND data_id = $2 AND idx = $3";

/// `$1 tenant` → the bytes of every chunk of the tenant (`length` reads the stored size, it does
/// not fetch the bytes).
pub(crate) const CHUNK_STORED_BYTES: &str =
    "SELECT coalesce(sum(length(bytes)), 0)::bigint FROM p8fs_chunks WHERE tenant = $1";

/// `$1 tenant, $2 data id, $3 since` → one row when the blob was pending; it is freed as of
/// `since`. Waits for chunks being written to it (see [`CHUNK_WRITE`]).
pub(crate) const BLOB_DISCARD: &str = "UPDATE p8fs_blobs SET state = 'freed', since = $3 \
     WHERE tenant = $1 AND data_id = $2 AND state = 'pending' RETURNING 1";

/// `$1 begun before, $2 freed as of, $3 batch size` → pending blobs begun before `$1` become
/// freed as of `$2`; the number of blobs.
pub(crate) const BLOB_ABANDON: &str = "UPDATE p8fs_blobs SET state = 'freed', since = $2 \
     WHERE (tenant, data_id) IN (SELECT tenant, data_id FROM p8fs_blobs \
         WHERE state = 'pending' AND since < $1 LIMIT $3) \
       AND state = 'pending' AND since < $1";

/// `$1 freed before, $2 batch size` → `tenant, data_id` of freed blobs the reaper removes.
pub(crate) const BLOB_FREED: &str = "SELECT tenant, data_id FROM p8fs_blobs \
     WHERE state = 'freed' AND since < $1 LIMIT $2";

/// `$1 tenants (text[]), $2 data ids (bigint[]), $3 batch size` → removes up to `$3` chunks of
/// those (freed) blobs.
pub(crate) const BLOB_REMOVE_CHUNKS: &str = "DELETE FROM p8fs_chunks \
     WHERE (tenant, data_id, idx) IN (SELECT c.tenant, c.data_id, c.idx \
         FROM unnest($1::text[], $2::bigint[]) AS b (tenant, data_id) \
         JOIN p8fs_chunks c ON c.tenant = b.tenant AND c.data_id = b.data_id LIMIT $3)";

/// `$1 tenants (text[]), $2 data ids (bigint[])` → removes the state rows of those freed blobs
/// (after [`BLOB_REMOVE_CHUNKS`] removed their chunks; nothing writes a freed blob).
pub(crate) const BLOB_REMOVE: &str = "DELETE FROM p8fs_blobs \
     WHERE (tenant, data_id) IN (SELECT * FROM unnest($1::text[], $2::bigint[])) \
       AND state = 'freed'";

/// Commits an object: `$1 tenant, $2 bucket, $3 key (bytea), $4 size, $5 etag, $6 last_modified,
/// $7 expires_at, $8 attributes (JSON text), $9 segment data ids, $10 segment sizes, $11 now,
/// $12 condition (0 none, 1 absent, 2 ETag), $13 the ETag of condition 2, $14 claim (the
/// segments' blobs must be pending, and stop being so), $15 append the object's `Put` when
/// written, $16 the key as text` → `bucket` (it exists), `data` (every blob was pending, or no
/// claim), `condition` (it held) and `written`.
///
/// One statement: the bucket row is locked `FOR KEY SHARE` (against `delete_bucket`), the blobs'
/// pending rows and the object row at the key `FOR UPDATE` (a row changed by a concurrent writer
/// is read in its latest version once that commits). The object is upserted only if every check
/// holds and the row the conflict arbiter finds is the row that was checked (same `version`): when
/// a concurrent writer inserted the key after this statement's snapshot, nothing is written and
/// `written` is false with every check true, and the caller runs the statement again (it then
/// sees that row). So a condition is always evaluated against the object it replaces, and of
/// concurrent `IfAbsent` writers exactly one succeeds. In the same statement, and only when the
/// object was written, the claimed blobs lose their pending rows and the replaced object's blobs
/// (visible or expired) are freed at now. A completion passes `$15` false and appends the `Put`
/// itself, as its last statement.
pub(crate) const OBJECT_COMMIT: &str = concat!(
    "WITH bucket AS MATERIALIZED (SELECT 1 FROM p8fs_buckets \
         WHERE tenant = $1 AND name = $2 FOR KEY SHARE), \
     old AS MATERIALIZED (SELECT version, etag, segment_data, \
             (expires_at IS NULL OR expires_at > $11) AS visible \
         FROM p8fs_objects \
         WHERE EXISTS (SELECT 1 FROM bucket) AND tenant = $1 AND bucket = $2 AND key = $3 \
         FOR UPDATE), \
     pending AS MATERIALIZED (SELECT data_id FROM p8fs_blobs \
         WHERE $14 AND tenant = $1 AND data_id = ANY ($9) AND state = 'pending' FOR UPDATE), \
     checks AS MATERIALIZED (SELECT EXISTS (SELECT 1 FROM bucket) AS bucket, \
         (NOT $14 OR (SELECT count(*) FROM pending) \
             = (SELECT count(DISTINCT d) FROM unnest($9::bigint[]) AS d)) AS data, \
         CASE $12 WHEN 0 THEN true \
             WHEN 1 THEN NOT coalesce((SELECT visible FROM old), false) \
             ELSE coalesce((SELECT visible AND etag = $13 FROM old), false) END AS condition), \
     written AS (INSERT INTO p8fs_objects AS o (tenant, bucket, key, version, size, etag, \
             last_modified, expires_at, attributes, segment_data, segment_sizes) \
         SELECT $1, $2, $3, nextval('p8fs_version'), $4, $5, $6, $7, $8::json, $9, $10 \
         FROM checks WHERE bucket AND data AND condition \
         ON CONFLICT (tenant, bucket, key) DO UPDATE \
         SET version = EXCLUDED.version, size = EXCLUDED.size, etag = EXCLUDED.etag, \
             last_modified = EXCLUDED.last_modified, expires_at = EXCLUDED.expires_at, \
             attributes = EXCLUDED.attributes, segment_data = EXCLUDED.segment_data, \
             segment_sizes = EXCLUDED.segment_sizes \
         WHERE o.version = (SELECT version FROM old) \
         RETURNING 1), \
     claimed AS (DELETE FROM p8fs_blobs \
         WHERE tenant = $1 AND data_id IN (SELECT data_id FROM pending) \
           AND EXISTS (SELECT 1 FROM written)), \
     freed AS (INSERT INTO p8fs_blobs (tenant, data_id, state, since) \
         SELECT DISTINCT $1, unnest(segment_data), 'freed', $11 FROM old \
         WHERE EXISTS (SELECT 1 FROM written)), ",
    one_event!(
        "object",
        "put",
        "''",
        "$2",
        "$16",
        "NULL",
        "FROM written WHERE $15"
    ),
    append_events!("$1", "$11"),
    "SELECT bucket, data, condition, EXISTS (SELECT 1 FROM written) AS written FROM checks"
);

/// The columns of an object row, in the order `object.rs` decodes them.
macro_rules! object_columns {
    ($alias:literal) => {
        concat!(
            $alias,
            ".key, ",
            $alias,
            ".size, ",
            $alias,
            ".etag, ",
            $alias,
            ".last_modified, ",
            $alias,
            ".expires_at, ",
            $alias,
            ".attributes, ",
            $alias,
            ".segment_data, ",
            $alias,
            ".segment_sizes"
        )
    };
}

/// `$1 tenant, $2 bucket, $3 key, $4 now` → no row when the bucket is missing; otherwise one row
/// whose columns ([`object_columns`]) are NULL when no visible object is at the key.
pub(crate) const OBJECT_GET: &str = concat!(
    "SELECT ",
    object_columns!("o"),
    " FROM p8fs_buckets b \
     LEFT JOIN p8fs_objects o ON o.tenant = b.tenant AND o.bucket = b.name AND o.key = $3 \
         AND (o.expires_at IS NULL OR o.expires_at > $4) \
     WHERE b.tenant = $1 AND b.name = $2"
);

/// `$1 tenant, $2 bucket, $3 key, $4 now, $5 the key as text` → `bucket` (it exists) and
/// `visible` (a visible object was deleted, and its `Delete` appended). The deleted object's
/// blobs (visible or expired) are freed at now; a row changed by a concurrent writer is deleted
/// in its latest version, whose blobs are the ones freed.
pub(crate) const OBJECT_DELETE: &str = concat!(
    "WITH bucket AS (SELECT 1 FROM p8fs_buckets WHERE tenant = $1 AND name = $2), \
     gone AS (DELETE FROM p8fs_objects WHERE tenant = $1 AND bucket = $2 AND key = $3 \
         RETURNING expires_at, segment_data), \
     freed AS (INSERT INTO p8fs_blobs (tenant, data_id, state, since) \
         SELECT DISTINCT $1, unnest(segment_data), 'freed', $4 FROM gone), ",
    one_event!(
        "object",
        "delete",
        "''",
        "$2",
        "$5",
        "NULL",
        "FROM gone WHERE expires_at IS NULL OR expires_at > $4"
    ),
    append_events!("$1", "$4"),
    "SELECT EXISTS (SELECT 1 FROM bucket) AS bucket, \
         coalesce((SELECT expires_at IS NULL OR expires_at > $4 FROM gone), false) AS visible"
);

/// `$1 tenant, $2 bucket, $3 from (bytea, inclusive), $4 upper bound (bytea, exclusive), $5 now,
/// $6 limit` → no row when the bucket is missing; otherwise the visible objects in
/// `[$3, $4)` by raw key bytes ([`object_columns`]), or one row of NULLs when there are none.
pub(crate) const OBJECT_LIST: &str = concat!(
    "SELECT ",
    object_columns!("o"),
    " FROM p8fs_buckets b \
     LEFT JOIN LATERAL (SELECT * FROM p8fs_objects \
         WHERE tenant = b.tenant AND bucket = b.name AND key >= $3 AND key < $4 \
           AND (expires_at IS NULL OR expires_at > $5) \
         ORDER BY key LIMIT $6) o ON true \
     WHERE b.tenant = $1 AND b.name = $2 \
     ORDER BY o.key"
);

/// `$1 expired at or before, $2 batch size, $3 now` → `removed`: expired objects removed, their
/// blobs freed at now. Re-checks expiry under the row lock (a key written again meanwhile stays).
pub(crate) const OBJECT_PURGE: &str = "WITH gone AS (DELETE FROM p8fs_objects \
         WHERE (tenant, bucket, key) IN (SELECT tenant, bucket, key FROM p8fs_objects \
             WHERE expires_at <= $1 LIMIT $2) \
           AND expires_at <= $1 \
         RETURNING tenant, segment_data), \
     freed AS (INSERT INTO p8fs_blobs (tenant, data_id, state, since) \
         SELECT DISTINCT tenant, unnest(segment_data), 'freed', $3 FROM gone) \
     SELECT count(*) AS removed FROM gone";

/// `$1 tenant, $2 bucket, $3 key (bytea), $4 initiated, $5 attributes (JSON text),
/// $6 expires_at` → `id` of the new upload, from the store's sequence. A missing bucket fails the
/// foreign key (`NotFound(Bucket)`, see `error.rs`).
pub(crate) const UPLOAD_CREATE: &str = "INSERT INTO p8fs_uploads \
         (tenant, bucket, id, key, initiated, attributes, expires_at) \
     VALUES ($1, $2, nextval('p8fs_version'), $3, $4, $5::json, $6) RETURNING id";

/// The columns of an upload row, in the order `object.rs` decodes them.
macro_rules! upload_columns {
    ($alias:literal) => {
        concat!(
            $alias,
            ".id, ",
            $alias,
            ".key, ",
            $alias,
            ".initiated, ",
            $alias,
            ".attributes, ",
            $alias,
            ".expires_at"
        )
    };
}

/// `$1 tenant, $2 bucket, $3 upload id` → no row when the bucket is missing; otherwise one row
/// whose columns ([`upload_columns`]) are NULL when the upload is gone.
pub(crate) const UPLOAD_GET: &str = concat!(
    "SELECT ",
    upload_columns!("u"),
    " FROM p8fs_buckets b \
     LEFT JOIN p8fs_uploads u ON u.tenant = b.tenant AND u.bucket = b.name AND u.id = $3 \
     WHERE b.tenant = $1 AND b.name = $2"
);

/// `$1 tenant, $2 bucket, $3 lower bound (bytea, inclusive), $4 upper bound (bytea, exclusive),
/// $5 after key (bytea), $6 after id, $7 limit` → no row when the bucket is missing; otherwise
/// the uploads in `[$3, $4)` strictly after `($5, $6)`, by key bytes then id
/// ([`upload_columns`]), or one row of NULLs when there are none.
pub(crate) const UPLOAD_LIST: &str = concat!(
    "SELECT ",
    upload_columns!("u"),
    " FROM p8fs_buckets b \
     LEFT JOIN LATERAL (SELECT * FROM p8fs_uploads \
         WHERE tenant = b.tenant AND bucket = b.name AND key >= $3 AND key < $4 \
           AND (key, id) > ($5, $6) \
         ORDER BY key, id LIMIT $7) u ON true \
     WHERE b.tenant = $1 AND b.name = $2 \
     ORDER BY u.key, u.id"
);

/// `$1 tenant, $2 bucket, $3 upload id` → `key` of the upload, whose row is then locked
/// `FOR UPDATE`: no part is written into it until the transaction ends.
pub(crate) const UPLOAD_LOCK: &str = "SELECT key FROM p8fs_uploads \
     WHERE tenant = $1 AND bucket = $2 AND id = $3 FOR UPDATE";

/// `$1 tenant, $2 bucket, $3 upload id, $4 data ids (bigint[])` → how many of those blobs are
/// the data of a part of the upload. Run after [`UPLOAD_LOCK`], so the parts cannot change.
pub(crate) const UPLOAD_PARTS_HOLDING: &str = "SELECT count(*) FROM p8fs_parts \
     WHERE tenant = $1 AND bucket = $2 AND upload_id = $3 AND data_id = ANY ($4)";

/// `$1 tenant, $2 bucket, $3 upload id, $4 since, $5 data ids kept (bigint[])` → removes the
/// upload and its parts; the parts' blobs not kept (used by the completed object) are freed as
/// of `since`. Run after [`UPLOAD_LOCK`].
pub(crate) const UPLOAD_REMOVE: &str = "WITH parts AS (DELETE FROM p8fs_parts \
         WHERE tenant = $1 AND bucket = $2 AND upload_id = $3 RETURNING data_id), \
     freed AS (INSERT INTO p8fs_blobs (tenant, data_id, state, since) \
         SELECT DISTINCT $1, data_id, 'freed', $4 FROM parts WHERE data_id <> ALL ($5)) \
     DELETE FROM p8fs_uploads WHERE tenant = $1 AND bucket = $2 AND id = $3";

/// `$1 initiated before, $2 batch size` → `tenant, bucket, id` of uploads the reaper aborts.
pub(crate) const UPLOAD_ABANDONED: &str = "SELECT tenant, bucket, id FROM p8fs_uploads \
     WHERE initiated < $1 LIMIT $2";

/// Records a part: `$1 tenant, $2 bucket, $3 upload id, $4 number, $5 data id, $6 size, $7 etag,
/// $8 checksums (JSON text), $9 last_modified, $10 now` → `bucket` (it exists), `upload` (it
/// exists), `data` (the blob was pending) and `written`.
///
/// As [`OBJECT_COMMIT`]: the upload row is locked `FOR KEY SHARE` (against completion and
/// abort), the blob's pending row and the part row `FOR UPDATE`; the part is upserted only over
/// the row that was checked, else `written` is false with every check true and the caller runs
/// the statement again. When written, the blob stops being pending and the blob of the part it
/// replaced is freed at now.
pub(crate) const PART_PUT: &str = "WITH upload AS MATERIALIZED (SELECT 1 FROM p8fs_uploads \
         WHERE tenant = $1 AND bucket = $2 AND id = $3 FOR KEY SHARE), \
     pending AS MATERIALIZED (SELECT data_id FROM p8fs_blobs \
         WHERE tenant = $1 AND data_id = $5 AND state = 'pending' FOR UPDATE), \
     old AS MATERIALIZED (SELECT data_id FROM p8fs_parts \
         WHERE EXISTS (SELECT 1 FROM upload) AND tenant = $1 AND bucket = $2 \
           AND upload_id = $3 AND number = $4 FOR UPDATE), \
     checks AS MATERIALIZED (SELECT EXISTS (SELECT 1 FROM upload) AS upload, \
         EXISTS (SELECT 1 FROM pending) AS data, (SELECT data_id FROM old) AS old_data), \
     written AS (INSERT INTO p8fs_parts AS p (tenant, bucket, upload_id, number, data_id, size, \
             etag, checksums, last_modified) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8::json, $9 FROM checks WHERE upload AND data \
         ON CONFLICT (tenant, bucket, upload_id, number) DO UPDATE \
         SET data_id = EXCLUDED.data_id, size = EXCLUDED.size, etag = EXCLUDED.etag, \
             checksums = EXCLUDED.checksums, last_modified = EXCLUDED.last_modified \
         WHERE p.data_id = (SELECT old_data FROM checks) \
         RETURNING 1), \
     claimed AS (DELETE FROM p8fs_blobs \
         WHERE tenant = $1 AND data_id IN (SELECT data_id FROM pending) \
           AND EXISTS (SELECT 1 FROM written)), \
     freed AS (INSERT INTO p8fs_blobs (tenant, data_id, state, since) \
         SELECT $1, data_id, 'freed', $10 FROM old WHERE EXISTS (SELECT 1 FROM written)) \
     SELECT EXISTS (SELECT 1 FROM p8fs_buckets WHERE tenant = $1 AND name = $2) AS bucket, \
         upload, data, EXISTS (SELECT 1 FROM written) AS written FROM checks";

/// `$1 tenant, $2 bucket, $3 upload id, $4 after number, $5 limit` → no row when the upload is
/// gone; otherwise its parts numbered above `$4`, ascending (`number, data_id, size, etag,
/// checksums, last_modified`), or one row of NULLs when there are none.
pub(crate) const PART_LIST: &str = "SELECT p.number, p.data_id, p.size, p.etag, p.checksums, \
         p.last_modified FROM p8fs_uploads u \
     LEFT JOIN LATERAL (SELECT * FROM p8fs_parts \
         WHERE tenant = u.tenant AND bucket = u.bucket AND upload_id = u.id AND number > $4 \
         ORDER BY number LIMIT $5) p ON true \
     WHERE u.tenant = $1 AND u.bucket = $2 AND u.id = $3 \
     ORDER BY p.number";
