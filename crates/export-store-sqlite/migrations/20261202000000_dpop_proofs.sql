-- DPoP proof ids seen (SHA-256 of the `jti`), until they could no longer be accepted:
-- shared by every process on this database, so a proof is accepted once.
CREATE TABLE dpop_proofs (
    jti   BLOB PRIMARY KEY,
    until TEXT NOT NULL
);
CREATE INDEX dpop_proofs_by_until ON dpop_proofs (until);
