-- Webhooks and the notification outbox (SPEC §16).
--
-- A tenant's webhooks: where its run notifications go and the secret their deliveries
-- are signed with (kept, since every delivery needs it; the database file is 0600 and
-- the API never returns it after creation). Deleting a webhook deletes the row, its
-- deliveries and their attempts.
CREATE TABLE webhooks (
    tenant     TEXT NOT NULL,
    id         TEXT NOT NULL,     -- export-webhook::<tenant>::<hex>
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,     -- event names, space-separated, sorted
    secret     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- One row per run end (and expiry), written in the transaction that ended the run;
-- `body` is rendered once, by the first delivery task to get to it, and every delivery
-- and retry sends those bytes.
CREATE TABLE notifications (
    id         TEXT PRIMARY KEY,  -- <run id>/<event>
    tenant     TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    event      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body       BLOB
);
CREATE INDEX notifications_unprepared ON notifications (created_at) WHERE body IS NULL;

-- A notification to one destination: a webhook (`target` = its id) or NATS (`nats`).
-- A claim takes it until `lease_until`; `claims` counts the claims, so that only the
-- latest claimant records an attempt.
CREATE TABLE notification_deliveries (
    delivery_key    INTEGER PRIMARY KEY,
    tenant          TEXT NOT NULL,
    notification_id TEXT NOT NULL REFERENCES notifications (id),
    target          TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    failures        INTEGER NOT NULL,
    claims          INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_owner     TEXT,
    lease_until     TEXT,
    finished_at     TEXT,
    UNIQUE (notification_id, target)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notification_deliveries_of_target ON notification_deliveries (tenant, target);

-- Every attempt of a delivery: when, how long, the HTTP status or the class of error.
CREATE TABLE notification_attempts (
    tenant       TEXT NOT NULL,
    delivery_key INTEGER NOT NULL REFERENCES notification_deliveries (delivery_key) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    at           TEXT NOT NULL,
    duration_ms  INTEGER NOT NULL,
    http_status  INTEGER,
    error        TEXT,
    PRIMARY KEY (delivery_key, attempt)
);
