-- DPoP proof ids seen (SHA-256 of the `jti`), until they could no longer be accepted:
-- shared by every replica, so a proof replayed to another replica is refused.
CREATE TABLE dpop_proofs (
    jti   BYTEA PRIMARY KEY,
    until TEXT COLLATE "C" NOT NULL
);
CREATE INDEX dpop_proofs_by_until ON dpop_proofs (until);
