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
// Key-value
// ---------------------------------------------------------------------------------------------

/// `$1 tenant, $2 key, $3 now` → `value, version, expires_at` of the visible record.
pub(crate) const KV_GET: &str = "SELECT value, version, expires_at FROM p8fs_kv \
     WHERE tenant = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)";

/// `$1 tenant, $2 key, $3 value (JSON text), $4 expires_at` → `version`. Upserts.
///
/// The version comes from `nextval` evaluated after the key's advisory lock is held, and every
/// statement that assigns a version to a key holds that lock until it commits; so a version is
/// greater than every version the key had before, also across delete and re-creation (where no
/// row lock exists to order the writers).
pub(crate) const KV_PUT: &str = concat!(
    "INSERT INTO p8fs_kv AS kv (tenant, key, value, version, expires_at) \
     SELECT $1, $2, $3::json, nextval('p8fs_version'), $4 \
     FROM (SELECT ",
    kv_key_lock!(),
    ") AS key_lock \
     ON CONFLICT (tenant, key) DO UPDATE \
     SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at \
     RETURNING version"
);

/// `$1 tenant, $2 key, $3 value, $4 expires_at, $5 now` → `version`, or no row when a visible
/// record exists. An expired row is replaced; the conflict arbiter locks the row and the `WHERE`
/// is evaluated on its latest version, so of concurrent callers exactly one gets a row back.
pub(crate) const KV_PUT_IF_ABSENT: &str = concat!(
    "INSERT INTO p8fs_kv AS kv (tenant, key, value, version, expires_at) \
     SELECT $1, $2, $3::json, nextval('p8fs_version'), $4 \
     FROM (SELECT ",
    kv_key_lock!(),
    ") AS key_lock \
     ON CONFLICT (tenant, key) DO UPDATE \
     SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at \
     WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= $5 \
     RETURNING version"
);

/// `$1 tenant, $2 key, $3 now, $4 expected version, $5 value, $6 expires_at` →
/// `swapped` (the new version, or NULL) and `current` (the visible version in the statement's
/// snapshot, or NULL). The `UPDATE` locks the row and re-checks `version = $4` on its latest
/// version (PostgreSQL re-evaluates the condition after waiting for a concurrent writer), so of
/// concurrent callers with the same expected version exactly one swaps.
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
         RETURNING p8fs_kv.version) \
     SELECT (SELECT version FROM swapped) AS swapped, (SELECT version FROM current_row) AS current"
);

/// `$1 tenant, $2 key, $3 now` → one row `visible` when a row existed.
pub(crate) const KV_DELETE: &str = "DELETE FROM p8fs_kv WHERE tenant = $1 AND key = $2 \
     RETURNING (expires_at IS NULL OR expires_at > $3)";

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

/// `$1 tenant, $2 name, $3 dimension, $4 metric` → `id` when created, no row when it exists.
pub(crate) const COLLECTION_CREATE: &str = "INSERT INTO p8fs_collections (tenant, name, dimension, metric) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, name) DO NOTHING RETURNING id";

/// `$1 tenant, $2 name` → `id, dimension, metric`.
pub(crate) const COLLECTION_GET: &str =
    "SELECT id, dimension, metric FROM p8fs_collections WHERE tenant = $1 AND name = $2";

/// `$1 tenant` → `name, dimension, metric`, names ascending.
pub(crate) const COLLECTION_LIST: &str =
    "SELECT name, dimension, metric FROM p8fs_collections WHERE tenant = $1 ORDER BY name";

/// `$1 tenant, $2 name` → `id` of the dropped collection; its records go by cascade.
pub(crate) const COLLECTION_DROP: &str =
    "DELETE FROM p8fs_collections WHERE tenant = $1 AND name = $2 RETURNING id";

/// `$1 tenant, $2 name, $3 id, $4 embedding, $5 norm, $6 extreme, $7 metadata, $8 expires_at,
/// $9 dimension, $10 metric` → one row when written; no row when the collection is missing or
/// has another dimension or metric.
pub(crate) const VECTOR_UPSERT: &str = "INSERT INTO p8fs_vectors \
         (collection_id, id, embedding, norm, extreme, metadata, expires_at) \
     SELECT c.id, $3, $4, $5, $6, $7::json, $8 FROM p8fs_collections c \
     WHERE c.tenant = $1 AND c.name = $2 AND c.dimension = $9 AND c.metric = $10 \
     ON CONFLICT (collection_id, id) DO UPDATE \
     SET embedding = EXCLUDED.embedding, norm = EXCLUDED.norm, extreme = EXCLUDED.extreme, \
         metadata = EXCLUDED.metadata, expires_at = EXCLUDED.expires_at \
     RETURNING 1";

/// `$1 tenant, $2 name, $3 id, $4 now` → no row when the collection is missing; otherwise one row
/// whose record columns are NULL when the record is absent or expired.
pub(crate) const VECTOR_GET: &str = "SELECT v.embedding, v.metadata, v.expires_at \
     FROM p8fs_collections c \
     LEFT JOIN p8fs_vectors v ON v.collection_id = c.id AND v.id = $3 \
         AND (v.expires_at IS NULL OR v.expires_at > $4) \
     WHERE c.tenant = $1 AND c.name = $2";

/// `$1 tenant, $2 name, $3 id, $4 now` → `collection` (NULL when missing) and `deleted` (NULL when
/// no row was deleted, else whether it was visible).
pub(crate) const VECTOR_DELETE: &str = "WITH c AS (SELECT id FROM p8fs_collections \
         WHERE tenant = $1 AND name = $2), \
     d AS (DELETE FROM p8fs_vectors v USING c WHERE v.collection_id = c.id AND v.id = $3 \
         RETURNING (v.expires_at IS NULL OR v.expires_at > $4) AS visible) \
     SELECT (SELECT id FROM c) AS collection, (SELECT visible FROM d) AS deleted";

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

/// `$1 tenant, $2 id, $3 label, $4 properties, $5 expires_at, $6 now` → one row unless an
/// expired row exists (then the caller takes the slow path that also removes its edges).
pub(crate) const NODE_UPSERT_UNLESS_EXPIRED: &str = "INSERT INTO p8fs_nodes AS n \
         (tenant, id, label, properties, expires_at) \
     VALUES ($1, $2, $3, $4::json, $5) \
     ON CONFLICT (tenant, id) DO UPDATE \
     SET label = EXCLUDED.label, properties = EXCLUDED.properties, expires_at = EXCLUDED.expires_at \
     WHERE n.expires_at IS NULL OR n.expires_at > $6 \
     RETURNING 1";

/// `$1 tenant, $2 id, $3 now` → `visible` of the node row, locked for update.
pub(crate) const NODE_LOCK: &str = "SELECT (expires_at IS NULL OR expires_at > $3) FROM p8fs_nodes \
     WHERE tenant = $1 AND id = $2 FOR UPDATE";

/// `$1 tenant, $2 node id` → removes every edge touching the node.
pub(crate) const NODE_DELETE_EDGES: &str =
    "DELETE FROM p8fs_edges WHERE tenant = $1 AND (src = $2 OR dst = $2)";

/// `$1 tenant, $2 id, $3 label, $4 properties, $5 expires_at` → upserts unconditionally.
pub(crate) const NODE_UPSERT: &str = "INSERT INTO p8fs_nodes (tenant, id, label, properties, expires_at) \
     VALUES ($1, $2, $3, $4::json, $5) \
     ON CONFLICT (tenant, id) DO UPDATE \
     SET label = EXCLUDED.label, properties = EXCLUDED.properties, expires_at = EXCLUDED.expires_at";

/// `$1 tenant, $2 id, $3 now` → `label, properties, expires_at` of the visible node.
pub(crate) const NODE_GET: &str = "SELECT label, properties, expires_at FROM p8fs_nodes \
     WHERE tenant = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > $3)";

/// `$1 tenant, $2 id, $3 now` → `visible` when a row was deleted; edges go by cascade.
pub(crate) const NODE_DELETE: &str = "DELETE FROM p8fs_nodes WHERE tenant = $1 AND id = $2 \
     RETURNING (expires_at IS NULL OR expires_at > $3)";

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
pub(crate) const EDGE_PUT: &str = "WITH endpoints AS (SELECT id FROM p8fs_nodes \
         WHERE tenant = $1 AND id IN ($2, $4) AND (expires_at IS NULL OR expires_at > $8) \
         FOR KEY SHARE), \
     written AS (INSERT INTO p8fs_edges (tenant, src, rel, dst, weight, properties, expires_at) \
         SELECT $1, $2, $3, $4, $5, $6::json, $7 \
         WHERE (SELECT count(*) FROM endpoints) = CASE WHEN $2 = $4 THEN 1 ELSE 2 END \
         ON CONFLICT (tenant, src, rel, dst) DO UPDATE \
         SET weight = EXCLUDED.weight, properties = EXCLUDED.properties, \
             expires_at = EXCLUDED.expires_at \
         RETURNING 1) \
     SELECT ARRAY(SELECT id FROM endpoints) AS found, (SELECT count(*) FROM written) AS written";

/// `$1 tenant, $2 src, $3 rel, $4 dst, $5 now` → `weight, properties, expires_at` of the edge
/// when it and both endpoints are visible.
pub(crate) const EDGE_GET: &str = "SELECT e.weight, e.properties, e.expires_at FROM p8fs_edges e \
     JOIN p8fs_nodes s ON s.tenant = e.tenant AND s.id = e.src \
     JOIN p8fs_nodes d ON d.tenant = e.tenant AND d.id = e.dst \
     WHERE e.tenant = $1 AND e.src = $2 AND e.rel = $3 AND e.dst = $4 \
       AND (e.expires_at IS NULL OR e.expires_at > $5) \
       AND (s.expires_at IS NULL OR s.expires_at > $5) \
       AND (d.expires_at IS NULL OR d.expires_at > $5)";

/// `$1 tenant, $2 src, $3 rel, $4 dst, $5 now` → `visible` when a row was deleted.
pub(crate) const EDGE_DELETE: &str = "WITH gone AS (DELETE FROM p8fs_edges \
         WHERE tenant = $1 AND src = $2 AND rel = $3 AND dst = $4 RETURNING expires_at) \
     SELECT (g.expires_at IS NULL OR g.expires_at > $5) \
       AND EXISTS (SELECT 1 FROM p8fs_nodes WHERE tenant = $1 AND id = $2 \
           AND (expires_at IS NULL OR expires_at > $5)) \
       AND EXISTS (SELECT 1 FROM p8fs_nodes WHERE tenant = $1 AND id = $4 \
           AND (expires_at IS NULL OR expires_at > $5)) \
     FROM gone g";

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
