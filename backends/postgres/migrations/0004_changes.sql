-- The change log, version 4 of the schema: every committed write appends its change in the same
-- transaction (the same statement, for single-statement writes), per tenant, at dense cursors
-- 1, 2, 3, ... in commit order.
--
-- Cursors are not taken from a sequence: a sequence hands out numbers before commit, so a reader
-- paging by cursor could pass a number whose transaction commits later and never see it. Instead
-- each tenant has a head row holding its newest cursor; a write increments it (an upsert) as the
-- last thing it does and inserts its change at the new value. The head row stays locked until the
-- write commits, so the next writer of the tenant waits for that commit before it takes the next
-- cursor: cursors are dense and in commit order, and a rolled-back write rolls its increment back.
-- A reader that reads the head row and the changes in one snapshot sees every change up to the
-- head and none after it.

CREATE TABLE p8fs_change_heads (
    tenant text COLLATE "C" PRIMARY KEY,
    -- The cursor of the tenant's newest change.
    head bigint NOT NULL CHECK (head > 0),
    -- The last cursor trim_changes removed (0 while none was): changes floor+1 ..= head are kept.
    floor bigint NOT NULL CHECK (floor >= 0 AND floor <= head)
);

CREATE TABLE p8fs_changes (
    tenant text COLLATE "C" NOT NULL,
    cursor bigint NOT NULL CHECK (cursor > 0),
    -- The writer's clock at the write, milliseconds since the Unix epoch.
    at bigint NOT NULL,
    kind text COLLATE "C" NOT NULL
        CHECK (kind IN ('kv', 'collection', 'vector', 'node', 'edge', 'bucket', 'object')),
    op text COLLATE "C" NOT NULL CHECK (op IN ('put', 'delete')),
    -- The subject as three parts (p8fs_core::Subject::parts): unused parts are empty.
    a text COLLATE "C" NOT NULL,
    b text COLLATE "C" NOT NULL,
    c text COLLATE "C" NOT NULL,
    -- The record's new version, for key-value writes.
    version bigint,
    PRIMARY KEY (tenant, cursor)
);
