-- Schedules (SPEC §16), ported from the SQLite schema. A run records what made it:
-- `api`, or `schedule` with the fire time it was made for (`trigger_at`). One run per
-- fire: the unique index makes a second creation for the same (tenant, profile, fire
-- time) write nothing, whichever replica attempts it (a concurrent one waits for the
-- first to commit, then finds the conflict); runs of the API have no fire time, and
-- NULLs never conflict.
ALTER TABLE runs ADD COLUMN trigger_type TEXT COLLATE "C" NOT NULL DEFAULT 'api' CHECK (trigger_type IN ('api', 'schedule'));
ALTER TABLE runs ADD COLUMN trigger_at TEXT COLLATE "C";
CREATE UNIQUE INDEX runs_schedule_fire ON runs (tenant, profile, trigger_at);

-- When a schedule (its cron and time zone) was first seen by a scheduler of any
-- replica: no fire before it is ever made.
CREATE TABLE schedule_anchors (
    tenant   TEXT COLLATE "C" NOT NULL,
    profile  TEXT COLLATE "C" NOT NULL,
    cron     TEXT COLLATE "C" NOT NULL,
    timezone TEXT COLLATE "C" NOT NULL,
    since    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, profile, cron, timezone)
);
