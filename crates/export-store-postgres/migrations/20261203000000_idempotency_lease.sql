-- An in-flight idempotency claim lasts until `claimed_until` (a short lease); a claim
-- whose lease ran out without a run is taken over by the next request with the key, so
-- a process that died between claiming a key and creating its run cannot lock the key
-- for the rest of its 24 hours. Claims older than this migration get an empty lease,
-- which sorts before every timestamp: they can be taken over at once.
ALTER TABLE idempotency ADD COLUMN claimed_until TEXT COLLATE "C" NOT NULL DEFAULT '';
