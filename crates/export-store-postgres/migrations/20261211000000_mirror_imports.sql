-- Mirror imports (SPEC §15), ported from the SQLite schema: each bundle a sealed site
-- applied to a tenant's evidence, numbered 1, 2, 3 … per tenant. The newest row is the
-- state the next bundle of the chain must continue from (the connected site's
-- `watermark` and the digest of the bundle's `manifest.json`); an import checks the
-- number it expects under the ingest lock, in the transaction that applies the bundle
-- and writes the row, so two imports never both continue from one state.
CREATE TABLE mirror_imports (
    tenant          TEXT COLLATE "C" NOT NULL,
    generation      BIGINT NOT NULL,
    mode            TEXT COLLATE "C" NOT NULL CHECK (mode IN ('full', 'delta')),
    watermark       BIGINT NOT NULL,
    manifest_digest TEXT COLLATE "C" NOT NULL,
    snapshot_time   TEXT COLLATE "C" NOT NULL,
    expires_at      TEXT COLLATE "C" NOT NULL,
    imported_at     TEXT COLLATE "C" NOT NULL,
    added           BIGINT NOT NULL,
    changed         BIGINT NOT NULL,
    unchanged       BIGINT NOT NULL,
    removed         BIGINT NOT NULL,
    local_watermark BIGINT NOT NULL,
    PRIMARY KEY (tenant, generation)
);
