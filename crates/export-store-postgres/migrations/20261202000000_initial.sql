-- The Export Center schema on PostgreSQL: the SQLite schema (crates/export-store-sqlite/
-- migrations), ported column for column, so both backends read and write the same rows.
--
-- * Every tenant table has a `tenant` column, and every query filters on it.
-- * Timestamps are ISO-8601 UTC text with microseconds (`2025-12-06T10:00:00.000000Z`),
--   fixed width, so comparing the text compares the instants, as on SQLite.
-- * Every text column is `COLLATE "C"`: text compares and sorts bytewise, whatever the
--   database's default collation, as the outputs' order requires (SPEC §5).
-- * Integers are BIGINT (the driver reads them as i64), documents BYTEA.

CREATE TABLE counters (
    tenant TEXT COLLATE "C" NOT NULL,
    name   TEXT COLLATE "C" NOT NULL,
    value  BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE evidence (
    tenant         TEXT COLLATE "C" NOT NULL,
    seq            BIGINT NOT NULL,
    superseded_seq BIGINT,
    kind           TEXT COLLATE "C" NOT NULL,
    source         TEXT COLLATE "C" NOT NULL,
    id             TEXT COLLATE "C" NOT NULL,
    format         TEXT COLLATE "C" NOT NULL,
    modified       TEXT COLLATE "C",
    aliases        TEXT COLLATE "C" NOT NULL,
    digest         TEXT COLLATE "C" NOT NULL,
    document       BYTEA NOT NULL,
    ingested_at    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, seq),
    CHECK (superseded_seq IS NULL OR superseded_seq > seq)
);

CREATE UNIQUE INDEX evidence_current ON evidence (tenant, source, id) WHERE superseded_seq IS NULL;
CREATE INDEX evidence_by_kind ON evidence (tenant, kind, id, source, digest, seq, superseded_seq);
CREATE INDEX evidence_by_kind_source ON evidence (tenant, kind, source, id, digest, seq, superseded_seq);

CREATE TABLE runs (
    run_key          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant           TEXT COLLATE "C" NOT NULL,
    day              TEXT COLLATE "C" NOT NULL,
    seq              BIGINT NOT NULL,
    profile          TEXT COLLATE "C" NOT NULL,
    project          TEXT COLLATE "C",
    status           TEXT COLLATE "C" NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired')),
    priority         BIGINT NOT NULL,
    plan             TEXT COLLATE "C" NOT NULL,
    watermark        BIGINT NOT NULL,
    snapshot_at      TEXT COLLATE "C",
    items_total      BIGINT NOT NULL,
    items_completed  BIGINT NOT NULL DEFAULT 0,
    estimate_seconds BIGINT NOT NULL,
    created_at       TEXT COLLATE "C" NOT NULL,
    started_at       TEXT COLLATE "C",
    completed_at     TEXT COLLATE "C",
    expires_at       TEXT COLLATE "C",
    attempts         BIGINT NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    worker           TEXT COLLATE "C",
    lease_expires_at TEXT COLLATE "C",
    error            TEXT COLLATE "C",
    warnings         TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    published_ref    TEXT COLLATE "C",
    UNIQUE (tenant, day, seq)
);

CREATE INDEX runs_by_status ON runs (status, tenant);
CREATE INDEX runs_by_profile ON runs (tenant, profile, status, completed_at);

CREATE TABLE run_outputs (
    tenant     TEXT COLLATE "C" NOT NULL,
    run_key    BIGINT NOT NULL REFERENCES runs (run_key) ON DELETE CASCADE,
    path       TEXT COLLATE "C" NOT NULL,
    kind       TEXT COLLATE "C" NOT NULL,
    output_id  TEXT COLLATE "C" NOT NULL,
    format     TEXT COLLATE "C" NOT NULL,
    sha256     TEXT COLLATE "C" NOT NULL,
    bytes      BIGINT NOT NULL,
    media_type TEXT COLLATE "C" NOT NULL,
    records    BIGINT,
    PRIMARY KEY (run_key, path)
);

CREATE TABLE idempotency (
    tenant      TEXT COLLATE "C" NOT NULL,
    subject     TEXT COLLATE "C" NOT NULL,
    method      TEXT COLLATE "C" NOT NULL,
    path        TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT COLLATE "C" NOT NULL,
    run_id      TEXT COLLATE "C",
    created_at  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, subject, method, path, key)
);

CREATE INDEX idempotency_by_age ON idempotency (tenant, created_at);

-- `event_row` numbers appends across all runs, for `runs_with_events_after`. Unlike
-- SQLite's rowid it is taken when an append starts, not when it commits, so a reader
-- may see row 8 before row 7 commits; the watcher then misses run 7's wake-up and its
-- feeder's own polling delivers it (see `runs_with_events_after`).
CREATE TABLE run_events (
    event_row  BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    run_key    BIGINT NOT NULL REFERENCES runs (run_key) ON DELETE CASCADE,
    tenant     TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    event      TEXT COLLATE "C" NOT NULL,
    data       TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (run_key, seq)
);
