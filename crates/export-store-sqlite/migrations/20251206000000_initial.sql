-- The Export Center schema on SQLite.
--
-- Conventions, kept so that the PostgreSQL port is mechanical:
-- * every tenant table has a `tenant` column, and every query filters on it;
-- * timestamps are ISO-8601 UTC text with microseconds (`2025-12-06T10:00:00.000000Z`),
--   fixed width, so comparing the text compares the instants;
-- * digests are `sha256:<hex>` text, JSON values are text, documents are BLOBs of their
--   canonical bytes;
-- * text compares bytewise (SQLite's BINARY collation; `COLLATE "C"` on PostgreSQL).

-- Per-tenant counters: `evidence` (the ingestion sequence) and `run:<YYYY-MM-DD>`
-- (the run sequence of one UTC day), taken with
-- `INSERT … ON CONFLICT … DO UPDATE SET value = value + 1 RETURNING value`.
CREATE TABLE counters (
    tenant TEXT NOT NULL,
    name   TEXT NOT NULL,
    value  INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- Every version of every evidence item. A version is in the snapshot at watermark W
-- iff `seq <= W AND (superseded_seq IS NULL OR superseded_seq > W)`.
CREATE TABLE evidence (
    tenant         TEXT NOT NULL,
    seq            INTEGER NOT NULL,  -- the ingestion sequence of this version
    superseded_seq INTEGER,           -- the seq of the version that replaced it, NULL while current
    kind           TEXT NOT NULL,
    source         TEXT NOT NULL,
    id             TEXT NOT NULL,
    format         TEXT NOT NULL,
    modified       TEXT,
    aliases        TEXT NOT NULL,     -- JSON array of strings
    digest         TEXT NOT NULL,
    document       BLOB NOT NULL,
    ingested_at    TEXT NOT NULL,
    PRIMARY KEY (tenant, seq),
    CHECK (superseded_seq IS NULL OR superseded_seq > seq)
);

-- The current version of each (source, id): what ingestion compares against.
CREATE UNIQUE INDEX evidence_current ON evidence (tenant, source, id) WHERE superseded_seq IS NULL;

-- The streamed order of a kind target and of a kind:source target, with the snapshot
-- columns last so invisible versions are skipped without reading their documents.
CREATE INDEX evidence_by_kind ON evidence (tenant, kind, id, source, digest, seq, superseded_seq);
CREATE INDEX evidence_by_kind_source ON evidence (tenant, kind, source, id, digest, seq, superseded_seq);

CREATE TABLE runs (
    run_key          INTEGER PRIMARY KEY,  -- internal handle; the public id is (tenant, day, seq)
    tenant           TEXT NOT NULL,
    day              TEXT NOT NULL,        -- YYYY-MM-DD, the UTC day of created_at
    seq              INTEGER NOT NULL,
    profile          TEXT NOT NULL,        -- export-profile::<tenant>::<name>
    project          TEXT,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired')),
    priority         INTEGER NOT NULL,     -- 2 high, 1 normal, 0 low (a copy of the plan's, for claiming)
    plan             TEXT NOT NULL,        -- RunPlan as JSON
    watermark        INTEGER NOT NULL,
    snapshot_at      TEXT,
    items_total      INTEGER NOT NULL,
    items_completed  INTEGER NOT NULL DEFAULT 0,
    estimate_seconds INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    completed_at     TEXT,
    expires_at       TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    worker           TEXT,                 -- the worker holding the lease
    lease_expires_at TEXT,
    error            TEXT,                 -- RunError as JSON
    warnings         TEXT NOT NULL DEFAULT '[]',  -- RunWarning[] as JSON
    UNIQUE (tenant, day, seq)
);

-- Claiming scans the queued and running runs; throughput reads a profile's history.
CREATE INDEX runs_by_status ON runs (status, tenant);
CREATE INDEX runs_by_profile ON runs (tenant, profile, status, completed_at);

CREATE TABLE run_outputs (
    tenant     TEXT NOT NULL,
    run_key    INTEGER NOT NULL REFERENCES runs (run_key) ON DELETE CASCADE,
    path       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    output_id  TEXT NOT NULL,
    format     TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    records    INTEGER,
    PRIMARY KEY (run_key, path)
);

-- Idempotency records (SPEC §2.2): `run_id` is NULL while the first request is in flight.
CREATE TABLE idempotency (
    tenant      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    run_id      TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant, subject, method, path, key)
);

-- Expired records are dropped per tenant when a new key is claimed.
CREATE INDEX idempotency_by_age ON idempotency (tenant, created_at);
