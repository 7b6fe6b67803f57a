//! Every SQL statement of the TiDB backend, in TiDB's dialect, as named constants (the same names
//! as the PostgreSQL backend's `sql.rs` where the operation is the same).
//!
//! The statements run unchanged on TiDB and on the MariaDB stand-in used in tests (which gets
//! TiDB's `VEC_*` functions as stored functions). Only the DDL of the vector column differs; it
//! is chosen once, at migration time ([`EMBEDDING_TYPE_TIDB`], [`EMBEDDING_TYPE_STAND_IN`]).
//!
//! Conventions: "now" is always a bind parameter from the backend's `Clock`, never `NOW()`;
//! a row is visible while `expires_at IS NULL OR expires_at > now`. Keys and ids are
//! `VARBINARY`, so comparisons and `ORDER BY` use raw bytes with no padding or case folding.

// ---------------------------------------------------------------------------------------------
// Session and migrations
// ---------------------------------------------------------------------------------------------

/// Run on every new connection (the driver runs these in reverse order; they are independent).
/// `READ COMMITTED` keeps InnoDB from taking gap locks on absent rows, so racing creators of
/// one row meet on its unique key (one wins, the others get a duplicate and retry) instead of
/// deadlocking; TiDB supports it in its default pessimistic mode.
pub(crate) const SESSION_SETUP: &[&str] = &[
    "SET NAMES utf8mb4 COLLATE utf8mb4_bin",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ENGINE_SUBSTITUTION'",
];

/// MariaDB's per-session statement timeout, in seconds (`{seconds}` is replaced).
pub(crate) const SESSION_TIMEOUT_MARIADB: &str = "SET SESSION max_statement_time = {seconds}";
/// TiDB's and MySQL's per-session timeout for read-only statements, in milliseconds.
pub(crate) const SESSION_TIMEOUT_TIDB: &str = "SET SESSION max_execution_time = {millis}";

pub(crate) const SERVER_VERSION: &str = "SELECT VERSION()";
/// Fails when the server lacks TiDB's vector functions (a stand-in without the fixture).
pub(crate) const VECTOR_FUNCTIONS_PROBE: &str = "SELECT VEC_L2_DISTANCE('[0,3]', '[4,0]')";

/// A named lock held while migrations run, so two processes never apply them at once.
pub(crate) const MIGRATION_LOCK: &str = "SELECT GET_LOCK('p8fs_migrations', ?)";
pub(crate) const MIGRATION_UNLOCK: &str = "SELECT RELEASE_LOCK('p8fs_migrations')";
pub(crate) const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS p8fs_migrations (
    version INT NOT NULL PRIMARY KEY,
    description VARCHAR(200) NOT NULL,
    applied_at BIGINT NOT NULL
)";
pub(crate) const MIGRATIONS_APPLIED: &str = "SELECT version FROM p8fs_migrations ORDER BY version";
pub(crate) const MIGRATION_RECORD: &str =
    "INSERT INTO p8fs_migrations (version, description, applied_at) VALUES (?, ?, ?)";

/// The vector column on TiDB: its native type (any dimension; each collection checks its own).
pub(crate) const EMBEDDING_TYPE_TIDB: &str = "VECTOR";
/// The vector column on the stand-in: TiDB's text form `[1,2.5,-3]`.
pub(crate) const EMBEDDING_TYPE_STAND_IN: &str = "LONGTEXT CHARACTER SET ascii COLLATE ascii_bin";
/// The placeholder for the vector column type in [`MIGRATIONS`].
pub(crate) const EMBEDDING_TYPE_PLACEHOLDER: &str = "{embedding_type}";

/// One schema change: its version, a description, and its statements. Every statement is
/// idempotent (`IF NOT EXISTS`), so a migration interrupted half-way is simply run again.
pub(crate) struct Migration {
    pub(crate) version: i32,
    pub(crate) description: &'static str,
    pub(crate) statements: &'static [&'static str],
}

/// The schema, oldest first. JSON is stored as its exact text (`LONGTEXT`, binary collation)
/// rather than in a `JSON` column: MariaDB's `JSON` rejects documents nested deeper than 32
/// levels (the contract allows 64), and TiDB's binary JSON would re-print numbers, while the
/// contract returns values exactly as written (`1.0` stays `1.0`).
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "key-value, vector and graph tables; the version sequence",
    statements: &[
        "CREATE SEQUENCE IF NOT EXISTS p8fs_version_seq START WITH 1 INCREMENT BY 1 NOCACHE",
        "CREATE TABLE IF NOT EXISTS p8fs_kv (
            tenant VARBINARY(63) NOT NULL,
            k VARBINARY(1024) NOT NULL,
            value LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
            version BIGINT UNSIGNED NOT NULL,
            expires_at BIGINT NULL,
            PRIMARY KEY (tenant, k),
            KEY p8fs_kv_expires (expires_at)
        )",
        "CREATE TABLE IF NOT EXISTS p8fs_collections (
            tenant VARBINARY(63) NOT NULL,
            name VARBINARY(128) NOT NULL,
            dimension INT NOT NULL,
            metric VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
            PRIMARY KEY (tenant, name)
        )",
        "CREATE TABLE IF NOT EXISTS p8fs_vectors (
            tenant VARBINARY(63) NOT NULL,
            collection VARBINARY(128) NOT NULL,
            id VARBINARY(256) NOT NULL,
            embedding {embedding_type} NOT NULL,
            norm DOUBLE NOT NULL,
            metadata LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
            expires_at BIGINT NULL,
            PRIMARY KEY (tenant, collection, id),
            KEY p8fs_vectors_expires (expires_at)
        )",
        "CREATE TABLE IF NOT EXISTS p8fs_nodes (
            tenant VARBINARY(63) NOT NULL,
            id VARBINARY(256) NOT NULL,
            label VARBINARY(128) NOT NULL,
            properties LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
            expires_at BIGINT NULL,
            PRIMARY KEY (tenant, id),
            KEY p8fs_nodes_expires (expires_at)
        )",
        "CREATE TABLE IF NOT EXISTS p8fs_edges (
            tenant VARBINARY(63) NOT NULL,
            src VARBINARY(256) NOT NULL,
            rel VARBINARY(128) NOT NULL,
            dst VARBINARY(256) NOT NULL,
            weight DOUBLE NOT NULL,
            properties LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
            expires_at BIGINT NULL,
            PRIMARY KEY (tenant, src, rel, dst),
            KEY p8fs_edges_in (tenant, dst, rel, src),
            KEY p8fs_edges_expires (expires_at)
        )",
    ],
}];

/// Tables whose rows carry `expires_at`, for TiDB's TTL jobs.
pub(crate) const TTL_TABLES: &[&str] = &["p8fs_kv", "p8fs_vectors", "p8fs_nodes", "p8fs_edges"];
/// TiDB only (opt-in): a virtual `DATETIME` twin of `expires_at`, which TTL needs (`{table}` is
/// replaced). `NULL` (never expires) stays `NULL`, which TTL jobs skip.
pub(crate) const NATIVE_TTL_COLUMN: &str = "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS
    p8fs_expires_time DATETIME AS (DATE_ADD('1970-01-01 00:00:00', INTERVAL (expires_at DIV 1000) SECOND)) VIRTUAL";
/// TiDB only (opt-in): delete rows `{grace}` seconds after they expired.
pub(crate) const NATIVE_TTL_ENABLE: &str =
    "ALTER TABLE {table} TTL = `p8fs_expires_time` + INTERVAL {grace} SECOND TTL_ENABLE = 'ON'";

// ---------------------------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------------------------

/// The next store-wide version. A `NOCACHE` sequence hands out strictly increasing numbers
/// across the whole store (every TiDB node asks the same allocator) and is not rolled back.
pub(crate) const NEXT_VERSION: &str = "SELECT NEXTVAL(p8fs_version_seq)";

// ---------------------------------------------------------------------------------------------
// Key-value
// ---------------------------------------------------------------------------------------------

/// Params: tenant, key, now.
pub(crate) const KV_GET: &str = "SELECT value, version, expires_at FROM p8fs_kv
    WHERE tenant = ? AND k = ? AND (expires_at IS NULL OR expires_at > ?)";
/// Locks the row (visible or not) for a read-decide-write. Params: tenant, key.
pub(crate) const KV_LOCK: &str =
    "SELECT version, expires_at FROM p8fs_kv WHERE tenant = ? AND k = ? FOR UPDATE";
/// Creates a row; fails with a duplicate key when one exists. Params: tenant, key, value,
/// version, expires_at.
pub(crate) const KV_INSERT: &str =
    "INSERT INTO p8fs_kv (tenant, k, value, version, expires_at) VALUES (?, ?, ?, ?, ?)";
/// Replaces a locked row. Params: value, version, expires_at, tenant, key.
pub(crate) const KV_UPDATE: &str =
    "UPDATE p8fs_kv SET value = ?, version = ?, expires_at = ? WHERE tenant = ? AND k = ?";
/// Deletes the visible row. Params: tenant, key, now.
pub(crate) const KV_DELETE: &str = "DELETE FROM p8fs_kv
    WHERE tenant = ? AND k = ? AND (expires_at IS NULL OR expires_at > ?)";
/// Visible rows in `[low, high)` after `start_after`, keys ascending. Params: tenant, low,
/// high, start_after, now, limit.
pub(crate) const KV_SCAN_PAGE: &str = "SELECT k, value, version, expires_at FROM p8fs_kv
    WHERE tenant = ? AND k >= ? AND k < ? AND k > ? AND (expires_at IS NULL OR expires_at > ?)
    ORDER BY k LIMIT ?";
/// As [`KV_SCAN_PAGE`] over the whole tenant, keeping only rows that may hold a string at a
/// path: a superset of the contract's equality (the collation may fold case, and a non-string
/// prints as its text), plus every row the server cannot parse as JSON (MariaDB stops at 32
/// levels of nesting), so no match is ever left out. Params: tenant, start_after, now, path,
/// string, limit.
pub(crate) const KV_FIND_STRING_PAGE: &str = "SELECT k, value, version, expires_at FROM p8fs_kv
    WHERE tenant = ? AND k > ? AND (expires_at IS NULL OR expires_at > ?)
      AND (JSON_VALID(value) = 0 OR JSON_UNQUOTE(JSON_EXTRACT(value, ?)) = ?)
    ORDER BY k LIMIT ?";
/// Params: now, batch size.
pub(crate) const KV_PURGE: &str = "DELETE FROM p8fs_kv WHERE expires_at <= ? LIMIT ?";

// ---------------------------------------------------------------------------------------------
// Vectors
// ---------------------------------------------------------------------------------------------

/// Params: tenant, name.
pub(crate) const COLLECTION_GET: &str =
    "SELECT dimension, metric FROM p8fs_collections WHERE tenant = ? AND name = ?";
/// Params: tenant, name.
pub(crate) const COLLECTION_LOCK: &str =
    "SELECT dimension, metric FROM p8fs_collections WHERE tenant = ? AND name = ? FOR UPDATE";
/// Params: tenant, name, dimension, metric.
pub(crate) const COLLECTION_INSERT: &str =
    "INSERT INTO p8fs_collections (tenant, name, dimension, metric) VALUES (?, ?, ?, ?)";
/// Params: tenant.
pub(crate) const COLLECTION_LIST: &str =
    "SELECT name, dimension, metric FROM p8fs_collections WHERE tenant = ? ORDER BY name";
/// Params: tenant, name.
pub(crate) const COLLECTION_DELETE: &str =
    "DELETE FROM p8fs_collections WHERE tenant = ? AND name = ?";
/// Params: tenant, collection.
pub(crate) const VECTORS_DELETE_ALL: &str =
    "DELETE FROM p8fs_vectors WHERE tenant = ? AND collection = ?";
/// The collection's spec with the smallest and largest norm of its visible records (both NULL
/// when it has none), for the rounding bound of a search. Params: now, tenant, name.
pub(crate) const COLLECTION_NORMS: &str = "SELECT c.dimension, c.metric, MIN(v.norm), MAX(v.norm)
    FROM p8fs_collections c
    LEFT JOIN p8fs_vectors v ON v.tenant = c.tenant AND v.collection = c.name
        AND (v.expires_at IS NULL OR v.expires_at > ?)
    WHERE c.tenant = ? AND c.name = ?
    GROUP BY c.dimension, c.metric";
/// Params: tenant, collection, id, embedding text, norm, metadata, expires_at.
pub(crate) const VECTOR_UPSERT: &str = "INSERT INTO p8fs_vectors
    (tenant, collection, id, embedding, norm, metadata, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON DUPLICATE KEY UPDATE embedding = VALUES(embedding), norm = VALUES(norm),
        metadata = VALUES(metadata), expires_at = VALUES(expires_at)";
/// Params: tenant, collection, id, now.
pub(crate) const VECTOR_GET: &str =
    "SELECT id, CAST(embedding AS CHAR), metadata, expires_at FROM p8fs_vectors
    WHERE tenant = ? AND collection = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)";
/// Params: tenant, collection, id, now.
pub(crate) const VECTOR_DELETE: &str = "DELETE FROM p8fs_vectors
    WHERE tenant = ? AND collection = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)";
/// Params: tenant, collection, start_after, now, limit.
pub(crate) const VECTOR_LIST_PAGE: &str =
    "SELECT id, CAST(embedding AS CHAR), metadata, expires_at FROM p8fs_vectors
    WHERE tenant = ? AND collection = ? AND id > ? AND (expires_at IS NULL OR expires_at > ?)
    ORDER BY id LIMIT ?";
/// Params: now, batch size.
pub(crate) const VECTOR_PURGE: &str = "DELETE FROM p8fs_vectors WHERE expires_at <= ? LIMIT ?";

/// The nearest visible records by the server's (approximate) distance, ties by id; core
/// rescores them. One statement per metric, since a function name cannot be a parameter.
/// Params: query text, tenant, collection, now, limit.
pub(crate) const VECTOR_SEARCH_COSINE: &str =
    "SELECT id, CAST(embedding AS CHAR), metadata, expires_at,
        VEC_COSINE_DISTANCE(embedding, ?) AS distance
    FROM p8fs_vectors
    WHERE tenant = ? AND collection = ? AND (expires_at IS NULL OR expires_at > ?)
    ORDER BY distance, id LIMIT ?";
/// As [`VECTOR_SEARCH_COSINE`] with the Euclidean distance.
pub(crate) const VECTOR_SEARCH_L2: &str =
    "SELECT id, CAST(embedding AS CHAR), metadata, expires_at,
        VEC_L2_DISTANCE(embedding, ?) AS distance
    FROM p8fs_vectors
    WHERE tenant = ? AND collection = ? AND (expires_at IS NULL OR expires_at > ?)
    ORDER BY distance, id LIMIT ?";
/// As [`VECTOR_SEARCH_COSINE`] with the negative inner product.
pub(crate) const VECTOR_SEARCH_DOT: &str =
    "SELECT id, CAST(embedding AS CHAR), metadata, expires_at,
        VEC_NEGATIVE_INNER_PRODUCT(embedding, ?) AS distance
    FROM p8fs_vectors
    WHERE tenant = ? AND collection = ? AND (expires_at IS NULL OR expires_at > ?)
    ORDER BY distance, id LIMIT ?";

// ---------------------------------------------------------------------------------------------
// Graph
// ---------------------------------------------------------------------------------------------

/// Params: tenant, id, now.
pub(crate) const NODE_GET: &str = "SELECT label, properties, expires_at FROM p8fs_nodes
    WHERE tenant = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)";
/// Params: tenant, id.
pub(crate) const NODE_LOCK: &str =
    "SELECT expires_at FROM p8fs_nodes WHERE tenant = ? AND id = ? FOR UPDATE";
/// Locks both endpoints of an edge (in key order, the order every writer locks nodes in).
/// Params: tenant, src, dst.
pub(crate) const NODES_LOCK_PAIR: &str = "SELECT id, expires_at FROM p8fs_nodes
    WHERE tenant = ? AND id IN (?, ?) ORDER BY id FOR UPDATE";
/// Params: tenant, id, label, properties, expires_at.
pub(crate) const NODE_INSERT: &str =
    "INSERT INTO p8fs_nodes (tenant, id, label, properties, expires_at) VALUES (?, ?, ?, ?, ?)";
/// Params: label, properties, expires_at, tenant, id.
pub(crate) const NODE_UPDATE: &str =
    "UPDATE p8fs_nodes SET label = ?, properties = ?, expires_at = ? WHERE tenant = ? AND id = ?";
/// Params: tenant, id.
pub(crate) const NODE_DELETE: &str = "DELETE FROM p8fs_nodes WHERE tenant = ? AND id = ?";
/// Params: tenant, start_after, now, limit.
pub(crate) const NODE_LIST_PAGE: &str = "SELECT id, label, properties, expires_at FROM p8fs_nodes
    WHERE tenant = ? AND id > ? AND (expires_at IS NULL OR expires_at > ?)
    ORDER BY id LIMIT ?";
/// Expired nodes, for the reaper. Params: now, batch size.
pub(crate) const NODE_EXPIRED: &str =
    "SELECT tenant, id FROM p8fs_nodes WHERE expires_at <= ? LIMIT ?";
/// Deletes a node that is still expired. Params: tenant, id, now.
pub(crate) const NODE_DELETE_EXPIRED: &str =
    "DELETE FROM p8fs_nodes WHERE tenant = ? AND id = ? AND expires_at <= ?";

/// Params: tenant, id.
pub(crate) const EDGES_DELETE_FROM: &str = "DELETE FROM p8fs_edges WHERE tenant = ? AND src = ?";
/// Params: tenant, id.
pub(crate) const EDGES_DELETE_TO: &str = "DELETE FROM p8fs_edges WHERE tenant = ? AND dst = ?";
/// Params: tenant, src, rel, dst, weight, properties, expires_at.
pub(crate) const EDGE_UPSERT: &str = "INSERT INTO p8fs_edges
    (tenant, src, rel, dst, weight, properties, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON DUPLICATE KEY UPDATE weight = VALUES(weight), properties = VALUES(properties),
        expires_at = VALUES(expires_at)";
/// The edge if it and both endpoints are visible. Params: tenant, src, rel, dst, now, now, now.
pub(crate) const EDGE_GET: &str = "SELECT e.weight, e.properties, e.expires_at
    FROM p8fs_edges e
    JOIN p8fs_nodes s ON s.tenant = e.tenant AND s.id = e.src
    JOIN p8fs_nodes d ON d.tenant = e.tenant AND d.id = e.dst
    WHERE e.tenant = ? AND e.src = ? AND e.rel = ? AND e.dst = ?
      AND (e.expires_at IS NULL OR e.expires_at > ?)
      AND (s.expires_at IS NULL OR s.expires_at > ?)
      AND (d.expires_at IS NULL OR d.expires_at > ?)";
/// Params: tenant, src, rel, dst.
pub(crate) const EDGE_DELETE: &str =
    "DELETE FROM p8fs_edges WHERE tenant = ? AND src = ? AND rel = ? AND dst = ?";
/// Params: now, batch size.
pub(crate) const EDGE_PURGE: &str = "DELETE FROM p8fs_edges WHERE expires_at <= ? LIMIT ?";

/// The columns and joins shared by both halves of [`edges_of`].
const EDGES_OF_SELECT: &str = "SELECT e.src, e.rel, e.dst, e.weight, e.properties, e.expires_at
    FROM p8fs_edges e
    JOIN p8fs_nodes s ON s.tenant = e.tenant AND s.id = e.src
    JOIN p8fs_nodes d ON d.tenant = e.tenant AND d.id = e.dst
    WHERE e.tenant = ?
      AND (e.expires_at IS NULL OR e.expires_at > ?)
      AND (s.expires_at IS NULL OR s.expires_at > ?)
      AND (d.expires_at IS NULL OR d.expires_at > ?)";

/// Which half of an `edges_of` query: edges leaving the nodes, or entering them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum EdgeSide {
    Out,
    In,
}

/// One statement for `edges_of`: `n_nodes` placeholders for the node set and `n_rels` for the
/// relation filter (none: every relation). With both sides, the `In` half leaves out edges whose
/// source is in the set, which the `Out` half already returns, so each edge appears once.
/// Params per half, in order: tenant, now, now, now, the nodes, the relations, and for the `In`
/// half of a two-sided query the nodes again.
pub(crate) fn edges_of(sides: &[EdgeSide], n_nodes: usize, n_rels: usize) -> String {
    let nodes = placeholders(n_nodes);
    let rels = placeholders(n_rels);
    let both = sides.len() > 1;
    let halves: Vec<String> = sides
        .iter()
        .map(|side| {
            let mut half = String::from(EDGES_OF_SELECT);
            match side {
                EdgeSide::Out => half.push_str(&format!(" AND e.src IN ({nodes})")),
                EdgeSide::In => {
                    half.push_str(&format!(" AND e.dst IN ({nodes})"));
                    if both {
                        half.push_str(&format!(" AND e.src NOT IN ({nodes})"));
                    }
                }
            }
            if n_rels > 0 {
                half.push_str(&format!(" AND e.rel IN ({rels})"));
            }
            half
        })
        .collect();
    halves.join(" UNION ALL ")
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_of_has_one_placeholder_per_parameter() {
        let sql = edges_of(&[EdgeSide::Out, EdgeSide::In], 3, 2);
        // Out: 4 + 3 + 2; In: 4 + 3 + 2 + 3.
        assert_eq!(sql.matches('?').count(), 9 + 12);
        assert_eq!(sql.matches("UNION ALL").count(), 1);
        let sql = edges_of(&[EdgeSide::In], 1, 0);
        assert_eq!(sql.matches('?').count(), 5);
        assert!(!sql.contains("NOT IN"));
    }
}
