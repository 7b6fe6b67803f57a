-- The p8fs schema, version 1. Applied by PgBackend::connect through sqlx's migrator, which holds
-- a PostgreSQL advisory lock while it runs, so two gateways starting at once apply it once.
--
-- Conventions:
-- - every text column that is compared or ordered is COLLATE "C": keys and ids order by raw
--   UTF-8 bytes, as the contract says, whatever the database's default collation;
-- - expires_at is milliseconds since the Unix epoch, NULL meaning forever; the backend compares it
--   with "now" from its injected clock, passed as a bind parameter, never with now();
-- - JSON documents are stored as `json`, which keeps the exact text the backend wrote (`jsonb`
--   would turn 1e16 into an integer and lose the distinction between 1.0 and 1 on the way back);
--   `jsonb` appears only where it is indexed or compared, as a derived value.

-- pgvector. Creating it needs a superuser unless it exists already (the test script creates it).
CREATE EXTENSION IF NOT EXISTS vector;

-- Record versions: one sequence for the whole store, so versions increase for its whole life,
-- across delete, expiry and re-creation of a key.
CREATE SEQUENCE p8fs_version AS bigint;

CREATE TABLE p8fs_kv (
    tenant text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value json NOT NULL,
    version bigint NOT NULL,
    expires_at bigint,
    PRIMARY KEY (tenant, key)
);
-- find_by_field candidates: containment (`value::jsonb @> probe`) through a GIN index.
CREATE INDEX p8fs_kv_value ON p8fs_kv USING gin ((value::jsonb) jsonb_path_ops);
CREATE INDEX p8fs_kv_expiry ON p8fs_kv (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE p8fs_collections (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    dimension integer NOT NULL CHECK (dimension BETWEEN 1 AND 16000),
    metric text COLLATE "C" NOT NULL CHECK (metric IN ('cosine', 'l2', 'dot')),
    UNIQUE (tenant, name)
);

CREATE TABLE p8fs_vectors (
    collection_id bigint NOT NULL REFERENCES p8fs_collections (id) ON DELETE CASCADE,
    id text COLLATE "C" NOT NULL,
    embedding vector NOT NULL,
    -- The Euclidean norm, computed in f64 by the backend; bounds pgvector's f32 rounding.
    norm double precision NOT NULL,
    -- True when the norm is outside the range where the rounding bound is proven; such records
    -- are always search candidates and are scored only in core.
    extreme boolean NOT NULL,
    metadata json NOT NULL,
    metadata_index jsonb GENERATED ALWAYS AS (metadata::jsonb) STORED,
    expires_at bigint,
    PRIMARY KEY (collection_id, id)
);
CREATE INDEX p8fs_vectors_extreme ON p8fs_vectors (collection_id) WHERE extreme;
CREATE INDEX p8fs_vectors_expiry ON p8fs_vectors (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE p8fs_nodes (
    tenant text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    label text COLLATE "C" NOT NULL,
    properties json NOT NULL,
    expires_at bigint,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX p8fs_nodes_expiry ON p8fs_nodes (expires_at) WHERE expires_at IS NOT NULL;

-- An edge row needs both node rows (the foreign keys); deleting a node row deletes its edges in
-- the same statement. Visibility (ttl of the edge and of both endpoints) is decided by queries.
CREATE TABLE p8fs_edges (
    tenant text COLLATE "C" NOT NULL,
    src text COLLATE "C" NOT NULL,
    rel text COLLATE "C" NOT NULL,
    dst text COLLATE "C" NOT NULL,
    weight double precision NOT NULL CHECK (weight > 0),
    properties json NOT NULL,
    expires_at bigint,
    PRIMARY KEY (tenant, src, rel, dst),
    FOREIGN KEY (tenant, src) REFERENCES p8fs_nodes (tenant, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant, dst) REFERENCES p8fs_nodes (tenant, id) ON DELETE CASCADE
);
CREATE INDEX p8fs_edges_in ON p8fs_edges (tenant, dst, rel, src);
CREATE INDEX p8fs_edges_expiry ON p8fs_edges (expires_at) WHERE expires_at IS NOT NULL;
