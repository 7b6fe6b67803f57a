-- Objects (S3 semantics), version 2 of the schema: buckets, object records, multipart uploads and
-- their parts, the states of data blobs, and the chunks holding the bytes.
--
-- An object's bytes are data blobs (one per single PUT or upload part), each stored as chunks of at
-- most 1 MiB. A blob is written while `pending`, becomes owned by an object or a part when that is
-- committed (it then has no row in p8fs_blobs), and is `freed` when its owner is replaced, deleted,
-- expired or aborted; the reaper removes pending blobs that were abandoned and freed blobs after a
-- grace period, chunks first.
--
-- Object keys are `bytea` (the key's UTF-8 bytes), so they order and compare by raw bytes and a
-- listing can start at any byte string, UTF-8 or not. Data ids and upload ids come from the
-- p8fs_version sequence, so they are unique for the life of the store.

CREATE TABLE p8fs_buckets (
    tenant text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- Writers of objects lock their bucket row `FOR KEY SHARE` (the foreign key does too), and
-- delete_bucket locks it `FOR UPDATE`, so no object is committed into a bucket being deleted.
CREATE TABLE p8fs_objects (
    tenant text COLLATE "C" NOT NULL,
    bucket text COLLATE "C" NOT NULL,
    key bytea NOT NULL,
    -- From p8fs_version at each write: a conditional write replaces only the row it checked.
    version bigint NOT NULL,
    size bigint NOT NULL,
    etag text COLLATE "C" NOT NULL,
    last_modified bigint NOT NULL,
    expires_at bigint,
    attributes json NOT NULL,
    -- The segments: data ids and sizes, in order.
    segment_data bigint[] NOT NULL,
    segment_sizes bigint[] NOT NULL,
    PRIMARY KEY (tenant, bucket, key),
    FOREIGN KEY (tenant, bucket) REFERENCES p8fs_buckets (tenant, name)
);
CREATE INDEX p8fs_objects_expiry ON p8fs_objects (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE p8fs_uploads (
    tenant text COLLATE "C" NOT NULL,
    bucket text COLLATE "C" NOT NULL,
    id bigint NOT NULL,
    key bytea NOT NULL,
    initiated bigint NOT NULL,
    attributes json NOT NULL,
    -- The expiry the completed object will carry.
    expires_at bigint,
    PRIMARY KEY (tenant, bucket, id),
    FOREIGN KEY (tenant, bucket) REFERENCES p8fs_buckets (tenant, name)
);
CREATE INDEX p8fs_uploads_key ON p8fs_uploads (tenant, bucket, key, id);
CREATE INDEX p8fs_uploads_initiated ON p8fs_uploads (initiated);

-- Writers of parts lock their upload row `FOR KEY SHARE`; completing or aborting an upload locks it
-- `FOR UPDATE` before it removes the parts.
CREATE TABLE p8fs_parts (
    tenant text COLLATE "C" NOT NULL,
    bucket text COLLATE "C" NOT NULL,
    upload_id bigint NOT NULL,
    number integer NOT NULL CHECK (number BETWEEN 1 AND 10000),
    data_id bigint NOT NULL,
    size bigint NOT NULL,
    etag text COLLATE "C" NOT NULL,
    checksums json NOT NULL,
    last_modified bigint NOT NULL,
    PRIMARY KEY (tenant, bucket, upload_id, number),
    FOREIGN KEY (tenant, bucket, upload_id) REFERENCES p8fs_uploads (tenant, bucket, id)
);

-- Blobs that no object or part owns: `pending` since begin_data, or `freed` since their owner went.
CREATE TABLE p8fs_blobs (
    tenant text COLLATE "C" NOT NULL,
    data_id bigint NOT NULL,
    state text COLLATE "C" NOT NULL CHECK (state IN ('pending', 'freed')),
    since bigint NOT NULL,
    PRIMARY KEY (tenant, data_id)
);
CREATE INDEX p8fs_blobs_reap ON p8fs_blobs (state, since);

CREATE TABLE p8fs_chunks (
    tenant text COLLATE "C" NOT NULL,
    data_id bigint NOT NULL,
    idx bigint NOT NULL CHECK (idx BETWEEN 0 AND 4294967295),
    bytes bytea NOT NULL,
    PRIMARY KEY (tenant, data_id, idx)
);
