-- DPoP proof ids seen (SHA-256 of the `jti`), until they could no longer be accepted:
-- shared by every replica, so a proof replayed to another replica is refused.
--
-- UNLOGGED: a record lives seconds, and one is written per authenticated request, so
-- it skips the write-ahead log (a commit then waits for no WAL flush). The price: after
-- a crash of the database server, or on a standby after failover, the records of the
-- last window are gone, and a proof captured in that window could be replayed once.
CREATE UNLOGGED TABLE dpop_proofs (
    jti   BYTEA PRIMARY KEY,
    until TEXT COLLATE "C" NOT NULL
);
CREATE INDEX dpop_proofs_by_until ON dpop_proofs (until);
