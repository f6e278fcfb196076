-- Removals (SPEC §15): an item of a source that `ingest --sync` no longer found gets a
-- tombstone. A tombstone takes the tenant's next ingestion sequence, like a new version
-- of an item, and the removed version's `evidence.superseded_seq` is set to it, so the
-- snapshot rule of `evidence` stays as it is: a snapshot at or after the tombstone's
-- sequence holds no version of the item, an earlier one still holds the removed
-- version, and the item, without a current version, comes back as new when ingested
-- again. `evidence.superseded_seq` is therefore the sequence of the version or of the
-- tombstone that ended a version.
CREATE TABLE tombstones (
    tenant     TEXT NOT NULL,
    seq        INTEGER NOT NULL,  -- the ingestion sequence of the removal (the counter of evidence.seq)
    kind       TEXT NOT NULL,     -- the removed version's
    source     TEXT NOT NULL,
    id         TEXT NOT NULL,
    removed_at TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
);

-- The removals of a kind in an interval of sequences (a delta mirror bundle's).
CREATE INDEX tombstones_by_kind ON tombstones (tenant, kind, seq);
