-- The events of each run (SPEC §7), stored so a client resumes with Last-Event-ID from
-- any replica without loss or duplicates. `seq` counts 1, 2, 3 … per run.
CREATE TABLE run_events (
    run_key    INTEGER NOT NULL REFERENCES runs (run_key) ON DELETE CASCADE,
    tenant     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    event      TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_key, seq)
);
