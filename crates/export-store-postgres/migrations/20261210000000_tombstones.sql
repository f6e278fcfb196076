-- Removals (SPEC §15), ported from the SQLite schema: an item of a source that
-- `ingest --sync` no longer found gets a tombstone. A tombstone takes the tenant's next
-- ingestion sequence, like a new version of an item, and the removed version's
-- `evidence.superseded_seq` is set to it, so the snapshot rule of `evidence` stays as it
-- is: a snapshot at or after the tombstone's sequence holds no version of the item, an
-- earlier one still holds the removed version, and the item, without a current version,
-- comes back as new when ingested again. `evidence.superseded_seq` is therefore the
-- sequence of the version or of the tombstone that ended a version.
CREATE TABLE tombstones (
    tenant     TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    kind       TEXT COLLATE "C" NOT NULL,
    source     TEXT COLLATE "C" NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    removed_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, seq)
);

CREATE INDEX tombstones_by_kind ON tombstones (tenant, kind, seq);
