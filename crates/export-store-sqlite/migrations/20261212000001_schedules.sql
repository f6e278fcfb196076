-- Schedules (SPEC §16). A run records what made it: `api`, or `schedule` with the fire
-- time it was made for (`trigger_at`, the schema's timestamp text). One run per fire:
-- the unique index makes a second creation for the same (tenant, profile, fire time)
-- write nothing, whichever process attempts it; runs of the API have no fire time, and
-- NULLs never conflict.
ALTER TABLE runs ADD COLUMN trigger_type TEXT NOT NULL DEFAULT 'api' CHECK (trigger_type IN ('api', 'schedule'));
ALTER TABLE runs ADD COLUMN trigger_at TEXT;
CREATE UNIQUE INDEX runs_schedule_fire ON runs (tenant, profile, trigger_at);

-- When a schedule (its cron and time zone) was first seen by a scheduler of any
-- process: no fire before it is ever made.
CREATE TABLE schedule_anchors (
    tenant   TEXT NOT NULL,
    profile  TEXT NOT NULL,
    cron     TEXT NOT NULL,
    timezone TEXT NOT NULL,
    since    TEXT NOT NULL,
    PRIMARY KEY (tenant, profile, cron, timezone)
);
