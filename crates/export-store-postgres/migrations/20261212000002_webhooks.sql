-- Webhooks and the notification outbox (SPEC §16), ported from the SQLite schema.
--
-- A tenant's webhooks: where its run notifications go and the secret their deliveries
-- are signed with (kept, since every delivery needs it; the API never returns it after
-- creation). Deleting a webhook deletes the row, its deliveries and their attempts.
CREATE TABLE webhooks (
    tenant     TEXT COLLATE "C" NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    url        TEXT COLLATE "C" NOT NULL,
    events     TEXT COLLATE "C" NOT NULL,
    secret     TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- One row per run end (and expiry), written in the transaction that ended the run;
-- `body` is rendered once and every delivery and retry sends those bytes.
CREATE TABLE notifications (
    id         TEXT COLLATE "C" PRIMARY KEY,
    tenant     TEXT COLLATE "C" NOT NULL,
    run_id     TEXT COLLATE "C" NOT NULL,
    event      TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    body       BYTEA
);
CREATE INDEX notifications_unprepared ON notifications (created_at) WHERE body IS NULL;

-- A notification to one destination: a webhook (`target` = its id) or NATS (`nats`),
-- claimed until `lease_until`; `claims` counts the claims.
CREATE TABLE notification_deliveries (
    delivery_key    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant          TEXT COLLATE "C" NOT NULL,
    notification_id TEXT COLLATE "C" NOT NULL REFERENCES notifications (id),
    target          TEXT COLLATE "C" NOT NULL,
    state           TEXT COLLATE "C" NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    failures        BIGINT NOT NULL,
    claims          BIGINT NOT NULL,
    next_attempt_at TEXT COLLATE "C" NOT NULL,
    lease_owner     TEXT COLLATE "C",
    lease_until     TEXT COLLATE "C",
    finished_at     TEXT COLLATE "C",
    UNIQUE (notification_id, target)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notification_deliveries_of_target ON notification_deliveries (tenant, target);

CREATE TABLE notification_attempts (
    tenant       TEXT COLLATE "C" NOT NULL,
    delivery_key BIGINT NOT NULL REFERENCES notification_deliveries (delivery_key) ON DELETE CASCADE,
    attempt      BIGINT NOT NULL,
    at           TEXT COLLATE "C" NOT NULL,
    duration_ms  BIGINT NOT NULL,
    http_status  BIGINT,
    error        TEXT COLLATE "C",
    PRIMARY KEY (delivery_key, attempt)
);
