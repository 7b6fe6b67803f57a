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
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
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
    },
    Migration {
        version: 2,
        description: "objects: buckets, objects, blob states, chunks, multipart uploads and parts",
        statements: &[
            "CREATE TABLE IF NOT EXISTS p8fs_buckets (
            tenant VARBINARY(63) NOT NULL,
            name VARBINARY(63) NOT NULL,
            id BIGINT UNSIGNED NOT NULL,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (tenant, name),
            UNIQUE KEY p8fs_buckets_id (id)
        )",
            "CREATE TABLE IF NOT EXISTS p8fs_deleted_buckets (
            id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
            tenant VARBINARY(63) NOT NULL,
            deleted_at BIGINT NOT NULL,
            KEY p8fs_deleted_buckets_at (deleted_at)
        )",
            "CREATE TABLE IF NOT EXISTS p8fs_objects (
            bucket BIGINT UNSIGNED NOT NULL,
            k VARBINARY(1024) NOT NULL,
            tenant VARBINARY(63) NOT NULL,
            size BIGINT UNSIGNED NOT NULL,
            etag VARBINARY(64) NOT NULL,
            last_modified BIGINT NOT NULL,
            expires_at BIGINT NULL,
            attributes MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
            segments MEDIUMBLOB NOT NULL,
            PRIMARY KEY (bucket, k),
            KEY p8fs_objects_expires (expires_at)
        )",
            "CREATE TABLE IF NOT EXISTS p8fs_blobs (
            tenant VARBINARY(63) NOT NULL,
            data BIGINT UNSIGNED NOT NULL,
            state TINYINT UNSIGNED NOT NULL,
            since BIGINT NOT NULL,
            PRIMARY KEY (tenant, data),
            KEY p8fs_blobs_due (state, since)
        )",
            "CREATE TABLE IF NOT EXISTS p8fs_chunks (
            tenant VARBINARY(63) NOT NULL,
            data BIGINT UNSIGNED NOT NULL,
            idx INT UNSIGNED NOT NULL,
            size INT UNSIGNED NOT NULL,
            bytes MEDIUMBLOB NOT NULL,
            PRIMARY KEY (tenant, data, idx)
        )",
            "CREATE TABLE IF NOT EXISTS p8fs_uploads (
            bucket BIGINT UNSIGNED NOT NULL,
            id BIGINT UNSIGNED NOT NULL,
            tenant VARBINARY(63) NOT NULL,
            k VARBINARY(1024) NOT NULL,
            initiated BIGINT NOT NULL,
            attributes MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
            expires_at BIGINT NULL,
            PRIMARY KEY (bucket, id),
            KEY p8fs_uploads_key (bucket, k, id),
            KEY p8fs_uploads_initiated (initiated)
        )",
            "CREATE TABLE IF NOT EXISTS p8fs_parts (
            upload BIGINT UNSIGNED NOT NULL,
            number INT UNSIGNED NOT NULL,
            data BIGINT UNSIGNED NOT NULL,
            size BIGINT UNSIGNED NOT NULL,
            etag VARBINARY(64) NOT NULL,
            checksums MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
            last_modified BIGINT NOT NULL,
            PRIMARY KEY (upload, number)
        )",
        ],
    },
    Migration {
        version: 3,
        description: "the change log: a head row per tenant and its changes",
        statements: &[
            "CREATE TABLE IF NOT EXISTS p8fs_change_heads (
            tenant VARBINARY(63) NOT NULL PRIMARY KEY,
            head BIGINT UNSIGNED NOT NULL,
            floor BIGINT UNSIGNED NOT NULL
        )",
            "CREATE TABLE IF NOT EXISTS p8fs_changes (
            tenant VARBINARY(63) NOT NULL,
            seq BIGINT UNSIGNED NOT NULL,
            committed_at BIGINT NOT NULL,
            kind VARCHAR(10) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
            op VARCHAR(6) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
            a VARBINARY(256) NOT NULL,
            b VARBINARY(128) NOT NULL,
            c VARBINARY(1024) NOT NULL,
            version BIGINT UNSIGNED NULL,
            PRIMARY KEY (tenant, seq)
        )",
        ],
    },
];

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
// The change log
// ---------------------------------------------------------------------------------------------
//
// `p8fs_change_heads` holds each tenant's newest cursor (`head`) and the last trimmed one
// (`floor`); `p8fs_changes` holds the changes, keyed by tenant and cursor (`seq`, since `CURSOR`
// is a reserved word). A write advances its tenant's head as its last statement before commit
// and inserts its changes under the new numbers: the head row stays locked until the commit, so
// cursors are handed out in commit order with no gaps, and a rollback takes its numbers back.

/// Creates the tenant's head row or advances it by `n`, locking it until the transaction ends.
/// Params: tenant, n.
pub(crate) const CHANGE_HEAD_ADVANCE: &str =
    "INSERT INTO p8fs_change_heads (tenant, head, floor) VALUES (?, ?, 0)
    ON DUPLICATE KEY UPDATE head = head + VALUES(head)";
/// The head just advanced (the transaction reads its own write). Params: tenant.
pub(crate) const CHANGE_HEAD_GET: &str = "SELECT head FROM p8fs_change_heads WHERE tenant = ?";

/// Appends changes. Followed by `n` row tuples.
const CHANGES_INSERT_HEAD: &str =
    "INSERT INTO p8fs_changes (tenant, seq, committed_at, kind, op, a, b, c, version) VALUES ";
/// One row of [`CHANGES_INSERT_HEAD`]. Params: tenant, cursor, committed_at, kind, op, a, b, c,
/// version.
const CHANGES_INSERT_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";
/// Parameters per row of [`changes_insert`].
pub(crate) const CHANGES_INSERT_PARAMS: usize = 9;

/// Appends `n` changes. Params per change: see [`CHANGES_INSERT_ROW`].
pub(crate) fn changes_insert(n: usize) -> String {
    format!(
        "{CHANGES_INSERT_HEAD}{}",
        vec![CHANGES_INSERT_ROW; n].join(", ")
    )
}

/// The tenant's head and floor with its changes after a cursor, ascending, in one statement so
/// all of it comes from one snapshot: no row when the tenant has no log, one row with NULL
/// change columns when nothing follows the cursor. The page is a derived table so the server
/// walks the primary key from the cursor and stops after `limit` rows (a join sorted outside
/// would read every later change first). Params: tenant, after, limit, tenant.
pub(crate) const CHANGES_PAGE: &str =
    "SELECT h.head, h.floor, c.seq, c.committed_at, c.kind, c.op, c.a, c.b, c.c, c.version
    FROM p8fs_change_heads h
    LEFT JOIN (
        SELECT seq, committed_at, kind, op, a, b, c, version FROM p8fs_changes
        WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?
    ) c ON 1 = 1
    WHERE h.tenant = ?
    ORDER BY c.seq";
/// Every tenant with a log and its head, tenants ascending by raw bytes.
pub(crate) const CHANGE_HEADS: &str = "SELECT tenant, head FROM p8fs_change_heads ORDER BY tenant";
/// Tenants after one, ascending, whose oldest stored change is at or below the floor (left by
/// an interrupted trim) or was committed before a time: those a trim has work for, chosen by the
/// server in one statement rather than one round trip per tenant. Params: after, before, limit.
pub(crate) const CHANGE_TENANTS_TRIMMABLE: &str = "SELECT h.tenant FROM p8fs_change_heads h
    WHERE h.tenant > ? AND (
        SELECT c.seq <= h.floor OR c.committed_at < ? FROM p8fs_changes c
        WHERE c.tenant = h.tenant ORDER BY c.seq LIMIT 1
    )
    ORDER BY h.tenant LIMIT ?";
/// Locks the tenant's head row, so no write of the tenant commits a change while a trim decides.
/// Params: tenant.
pub(crate) const CHANGE_HEAD_LOCK: &str =
    "SELECT head, floor FROM p8fs_change_heads WHERE tenant = ? FOR UPDATE";
/// The first change after the floor committed at or after a time: where trimming stops.
/// Params: tenant, floor, before.
pub(crate) const CHANGES_FIRST_KEPT: &str = "SELECT seq FROM p8fs_changes
    WHERE tenant = ? AND seq > ? AND committed_at >= ? ORDER BY seq LIMIT 1";
/// Raises a locked head row's floor. Params: floor, tenant.
pub(crate) const CHANGE_FLOOR_RAISE: &str =
    "UPDATE p8fs_change_heads SET floor = ? WHERE tenant = ?";
/// Deletes some changes at or below the floor, which no reader reads any more.
/// Params: tenant, floor, batch size.
pub(crate) const CHANGES_DELETE_TRIMMED: &str =
    "DELETE FROM p8fs_changes WHERE tenant = ? AND seq <= ? LIMIT ?";

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
/// The visible nodes among `n` ids, ascending by id; the visibility of [`NODE_GET`].
/// Params: tenant, the `n` ids, now.
pub(crate) fn nodes_get(n: usize) -> String {
    format!(
        "SELECT id, label, properties, expires_at FROM p8fs_nodes \
         WHERE tenant = ? AND id IN ({}) AND (expires_at IS NULL OR expires_at > ?) ORDER BY id",
        placeholders(n)
    )
}
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
/// Locks the edge's row (visible or not). Params: tenant, src, rel, dst.
pub(crate) const EDGE_LOCK: &str = "SELECT 1 FROM p8fs_edges
    WHERE tenant = ? AND src = ? AND rel = ? AND dst = ? FOR UPDATE";
/// Locks every edge leaving a node. Params: tenant, id.
pub(crate) const EDGES_LOCK_FROM: &str =
    "SELECT 1 FROM p8fs_edges WHERE tenant = ? AND src = ? FOR UPDATE";
/// Locks every edge entering a node (through `p8fs_edges_in`). Params: tenant, id.
pub(crate) const EDGES_LOCK_TO: &str =
    "SELECT 1 FROM p8fs_edges WHERE tenant = ? AND dst = ? FOR UPDATE";
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

// ---------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------
//
// A bucket has an id from the version sequence, never reused: objects and uploads belong to
// that id, so a bucket deleted and created again never sees what its earlier incarnation held.
// `p8fs_blobs.state` is 1 for a pending blob (begun, not yet committed) and 2 for a freed one
// (its object or part was replaced, deleted, expired or aborted); a blob of a committed object
// or a stored part has no row there.

/// Params: tenant, name.
pub(crate) const BUCKET_GET: &str =
    "SELECT id, created_at FROM p8fs_buckets WHERE tenant = ? AND name = ?";
/// Params: tenant, name.
pub(crate) const BUCKET_LOCK: &str =
    "SELECT id FROM p8fs_buckets WHERE tenant = ? AND name = ? FOR UPDATE";
/// Locks every bucket of a tenant, so creators count them one at a time. Params: tenant.
pub(crate) const BUCKETS_LOCK_TENANT: &str =
    "SELECT name FROM p8fs_buckets WHERE tenant = ? FOR UPDATE";
/// Params: tenant, name, id, created_at.
pub(crate) const BUCKET_INSERT: &str =
    "INSERT INTO p8fs_buckets (tenant, name, id, created_at) VALUES (?, ?, ?, ?)";
/// Params: tenant.
pub(crate) const BUCKET_LIST: &str =
    "SELECT name, created_at FROM p8fs_buckets WHERE tenant = ? ORDER BY name";
/// Params: tenant, name.
pub(crate) const BUCKET_DELETE: &str = "DELETE FROM p8fs_buckets WHERE tenant = ? AND name = ?";
/// One visible object of the bucket, if any. Params: bucket id, now.
pub(crate) const BUCKET_HAS_VISIBLE: &str = "SELECT 1 FROM p8fs_objects
    WHERE bucket = ? AND (expires_at IS NULL OR expires_at > ?) LIMIT 1";
/// Remembers a deleted bucket's id until the reaper has emptied it for good. Params: id,
/// tenant, deleted_at.
pub(crate) const DELETED_BUCKET_INSERT: &str =
    "INSERT INTO p8fs_deleted_buckets (id, tenant, deleted_at) VALUES (?, ?, ?)";
/// Params: deleted before, batch size.
pub(crate) const DELETED_BUCKETS_DUE: &str = "SELECT id, tenant, deleted_at
    FROM p8fs_deleted_buckets WHERE deleted_at < ? ORDER BY deleted_at LIMIT ?";
/// Params: id.
pub(crate) const DELETED_BUCKET_DELETE: &str = "DELETE FROM p8fs_deleted_buckets WHERE id = ?";

/// Registers a pending blob. Params: tenant, data id, now.
pub(crate) const BLOB_BEGIN: &str =
    "INSERT INTO p8fs_blobs (tenant, data, state, since) VALUES (?, ?, 1, ?)";
/// Locks a blob's row if it is pending. Params: tenant, data id.
pub(crate) const BLOB_LOCK_PENDING: &str =
    "SELECT 1 FROM p8fs_blobs WHERE tenant = ? AND data = ? AND state = 1 FOR UPDATE";
/// Frees a pending blob (discarded). Params: now, tenant, data id.
pub(crate) const BLOB_FREE_PENDING: &str =
    "UPDATE p8fs_blobs SET state = 2, since = ? WHERE tenant = ? AND data = ? AND state = 1";
/// Frees a blob still pending since before a time (abandoned). Params: tenant, data id, before.
pub(crate) const BLOB_FREE_ABANDONED: &str = "UPDATE p8fs_blobs SET state = 2
    WHERE tenant = ? AND data = ? AND state = 1 AND since < ?";
/// Removes a freed blob's row, once its chunks are gone. Params: tenant, data id.
pub(crate) const BLOB_DELETE_FREED: &str =
    "DELETE FROM p8fs_blobs WHERE tenant = ? AND data = ? AND state = 2";
/// Pending blobs begun before a time, for the reaper. Params: before, batch size.
pub(crate) const BLOBS_PENDING_DUE: &str =
    "SELECT tenant, data FROM p8fs_blobs WHERE state = 1 AND since < ? LIMIT ?";
/// Freed blobs freed before a time, for the reaper. Params: before, batch size.
pub(crate) const BLOBS_FREED_DUE: &str =
    "SELECT tenant, data FROM p8fs_blobs WHERE state = 2 AND since < ? LIMIT ?";

/// Clears the pending mark of blobs (their object or part commits); the caller checks that
/// every one was pending. Followed by `n` placeholders and `)`. Params: tenant, the data ids.
const BLOBS_CLAIM_HEAD: &str =
    "DELETE FROM p8fs_blobs WHERE tenant = ? AND state = 1 AND data IN (";

/// [`BLOBS_CLAIM_HEAD`] for `n` data ids.
pub(crate) fn blobs_claim(n: usize) -> String {
    format!("{BLOBS_CLAIM_HEAD}{})", placeholders(n))
}

/// Marks blobs freed (a row per blob). Followed by `n` row tuples and the clause below.
const BLOBS_FREE_HEAD: &str = "INSERT INTO p8fs_blobs (tenant, data, state, since) VALUES ";
/// One row of [`BLOBS_FREE_HEAD`]. Params: tenant, data id, since.
const BLOBS_FREE_ROW: &str = "(?, ?, 2, ?)";
/// A blob already marked keeps a single row, now freed.
const BLOBS_FREE_TAIL: &str = " ON DUPLICATE KEY UPDATE state = 2, since = VALUES(since)";

/// Marks `n` blobs freed. Params per blob: tenant, data id, since.
pub(crate) fn blobs_free(n: usize) -> String {
    format!(
        "{BLOBS_FREE_HEAD}{}{BLOBS_FREE_TAIL}",
        vec![BLOBS_FREE_ROW; n].join(", ")
    )
}

/// Stores or replaces a chunk. Params: tenant, data id, index, size, bytes.
pub(crate) const CHUNK_UPSERT: &str = "INSERT INTO p8fs_chunks (tenant, data, idx, size, bytes)
    VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE size = VALUES(size), bytes = VALUES(bytes)";
/// Params: tenant, data id, index.
pub(crate) const CHUNK_GET: &str =
    "SELECT bytes FROM p8fs_chunks WHERE tenant = ? AND data = ? AND idx = ?";
/// Deletes some of a blob's chunks. Params: tenant, data id, batch size.
pub(crate) const CHUNKS_DELETE_SOME: &str =
    "DELETE FROM p8fs_chunks WHERE tenant = ? AND data = ? LIMIT ?";
/// Params: tenant.
pub(crate) const STORED_BYTES: &str =
    "SELECT CAST(COALESCE(SUM(size), 0) AS UNSIGNED) FROM p8fs_chunks WHERE tenant = ?";

/// The bucket's id and the visible object at a key (its columns NULL when there is none); no
/// row when the tenant has no such bucket. Params: key, now, tenant, bucket name.
pub(crate) const OBJECT_GET: &str =
    "SELECT b.id, o.size, o.etag, o.last_modified, o.expires_at, o.attributes, o.segments
    FROM p8fs_buckets b
    LEFT JOIN p8fs_objects o ON o.bucket = b.id AND o.k = ?
        AND (o.expires_at IS NULL OR o.expires_at > ?)
    WHERE b.tenant = ? AND b.name = ?";
/// Locks the object's row (visible or not). Params: bucket id, key.
pub(crate) const OBJECT_LOCK: &str =
    "SELECT etag, expires_at, segments FROM p8fs_objects WHERE bucket = ? AND k = ? FOR UPDATE";
/// Params: bucket id, key, tenant, size, etag, last_modified, expires_at, attributes, segments.
pub(crate) const OBJECT_INSERT: &str = "INSERT INTO p8fs_objects
    (bucket, k, tenant, size, etag, last_modified, expires_at, attributes, segments)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
/// Replaces a locked row. Params: size, etag, last_modified, expires_at, attributes, segments,
/// bucket id, key.
pub(crate) const OBJECT_UPDATE: &str = "UPDATE p8fs_objects SET size = ?, etag = ?,
    last_modified = ?, expires_at = ?, attributes = ?, segments = ? WHERE bucket = ? AND k = ?";
/// Params: bucket id, key.
pub(crate) const OBJECT_DELETE: &str = "DELETE FROM p8fs_objects WHERE bucket = ? AND k = ?";
/// Visible objects of a bucket with keys in `[low, high)` and `>= from`, keys ascending.
/// Params: tenant, bucket name, low, high, from, now, limit.
pub(crate) const OBJECT_LIST_PAGE: &str =
    "SELECT o.k, o.size, o.etag, o.last_modified, o.expires_at, o.attributes, o.segments
    FROM p8fs_buckets b
    JOIN p8fs_objects o ON o.bucket = b.id
    WHERE b.tenant = ? AND b.name = ? AND o.k >= ? AND o.k < ? AND o.k >= ?
      AND (o.expires_at IS NULL OR o.expires_at > ?)
    ORDER BY o.k LIMIT ?";
/// Locks some expired objects, for purge. Params: now, batch size.
pub(crate) const OBJECTS_EXPIRED_LOCK: &str = "SELECT bucket, k, tenant, segments
    FROM p8fs_objects WHERE expires_at <= ? LIMIT ? FOR UPDATE";
/// Locks some objects of a deleted bucket. Params: bucket id, batch size.
pub(crate) const OBJECTS_OF_BUCKET_LOCK: &str =
    "SELECT k, tenant, segments FROM p8fs_objects WHERE bucket = ? LIMIT ? FOR UPDATE";

/// Params: bucket id, upload id, tenant, key, initiated, attributes, expires_at.
pub(crate) const UPLOAD_INSERT: &str = "INSERT INTO p8fs_uploads
    (bucket, id, tenant, k, initiated, attributes, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)";
/// The bucket's id and the upload (its columns NULL when there is none); no row when the
/// tenant has no such bucket. Params: upload id, tenant, bucket name.
pub(crate) const UPLOAD_GET: &str = "SELECT b.id, u.k, u.initiated, u.attributes, u.expires_at
    FROM p8fs_buckets b
    LEFT JOIN p8fs_uploads u ON u.bucket = b.id AND u.id = ?
    WHERE b.tenant = ? AND b.name = ?";
/// Locks an upload's row. Params: bucket id, upload id.
pub(crate) const UPLOAD_LOCK: &str =
    "SELECT tenant FROM p8fs_uploads WHERE bucket = ? AND id = ? FOR UPDATE";
/// Params: bucket id, upload id.
pub(crate) const UPLOAD_DELETE: &str = "DELETE FROM p8fs_uploads WHERE bucket = ? AND id = ?";
/// Uploads with keys in `[low, high)` after `(key, id)`, ordered by key then id.
/// Params: bucket id, low, high, after key, after key, after id, limit.
pub(crate) const UPLOAD_LIST_PAGE: &str =
    "SELECT id, k, initiated, attributes, expires_at FROM p8fs_uploads
    WHERE bucket = ? AND k >= ? AND k < ? AND (k > ? OR (k = ? AND id > ?))
    ORDER BY k, id LIMIT ?";
/// Some uploads of a deleted bucket. Params: bucket id, batch size.
pub(crate) const UPLOADS_OF_BUCKET: &str = "SELECT id FROM p8fs_uploads WHERE bucket = ? LIMIT ?";
/// Uploads begun before a time, for the reaper. Params: before, batch size.
pub(crate) const UPLOADS_DUE: &str =
    "SELECT bucket, id FROM p8fs_uploads WHERE initiated < ? LIMIT ?";

/// Every part's number and blob. Params: upload id.
pub(crate) const PARTS_DATA: &str =
    "SELECT number, data FROM p8fs_parts WHERE upload = ? ORDER BY number";
/// The blob of a part. Params: upload id, number.
pub(crate) const PART_DATA: &str = "SELECT data FROM p8fs_parts WHERE upload = ? AND number = ?";
/// Params: upload id, number, data id, size, etag, checksums, last_modified.
pub(crate) const PART_UPSERT: &str = "INSERT INTO p8fs_parts
    (upload, number, data, size, etag, checksums, last_modified) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON DUPLICATE KEY UPDATE data = VALUES(data), size = VALUES(size), etag = VALUES(etag),
        checksums = VALUES(checksums), last_modified = VALUES(last_modified)";
/// Params: upload id.
pub(crate) const PARTS_DELETE: &str = "DELETE FROM p8fs_parts WHERE upload = ?";
/// Parts numbered above `after`, ascending. Params: upload id, after, limit.
pub(crate) const PART_LIST_PAGE: &str =
    "SELECT number, data, size, etag, checksums, last_modified FROM p8fs_parts
    WHERE upload = ? AND number > ? ORDER BY number LIMIT ?";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_has_one_placeholder_per_parameter() {
        assert_eq!(nodes_get(3).matches('?').count(), 1 + 3 + 1);
        assert_eq!(nodes_get(1).matches('?').count(), 1 + 1 + 1);
    }

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

    #[test]
    fn change_inserts_have_one_placeholder_per_parameter() {
        assert_eq!(
            changes_insert(3).matches('?').count(),
            3 * CHANGES_INSERT_PARAMS
        );
        assert_eq!(
            CHANGES_INSERT_ROW.matches('?').count(),
            CHANGES_INSERT_PARAMS
        );
    }

    #[test]
    fn blob_statements_have_one_placeholder_per_parameter() {
        assert_eq!(blobs_claim(3).matches('?').count(), 1 + 3);
        assert!(blobs_claim(1).ends_with("IN (?)"));
        let free = blobs_free(2);
        assert_eq!(free.matches('?').count(), 2 * 3);
        assert!(free.contains("(?, ?, 2, ?), (?, ?, 2, ?) ON DUPLICATE KEY"));
    }
}
