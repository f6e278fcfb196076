-- Mirror imports (SPEC §15): each bundle a sealed site applied to a tenant's evidence,
-- numbered 1, 2, 3 … per tenant. The newest row is the state the next bundle of the
-- chain must continue from (the connected site's `watermark` and the digest of the
-- bundle's `manifest.json`); an import checks the number it expects under the ingest
-- lock, in the transaction that applies the bundle and writes the row, so two imports
-- never both continue from one state.
CREATE TABLE mirror_imports (
    tenant          TEXT NOT NULL,
    generation      INTEGER NOT NULL,
    mode            TEXT NOT NULL CHECK (mode IN ('full', 'delta')),
    watermark       INTEGER NOT NULL,  -- the connected site's, from mirror.json
    manifest_digest TEXT NOT NULL,
    snapshot_time   TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    imported_at     TEXT NOT NULL,
    added           INTEGER NOT NULL,
    changed         INTEGER NOT NULL,
    unchanged       INTEGER NOT NULL,
    removed         INTEGER NOT NULL,
    local_watermark INTEGER NOT NULL,  -- this store's snapshot point after the import
    PRIMARY KEY (tenant, generation)
);
