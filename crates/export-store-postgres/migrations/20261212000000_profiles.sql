-- Profiles of the API (SPEC §16), ported from the SQLite schema. A profile is a row of
-- `profiles`, whose `version` points at its newest row of `profile_revisions`;
-- revisions are written once and never changed, so a run's `profile_revision` stays
-- readable after later changes and after the profile is archived. Profiles of the
-- configuration file are not stored here.
CREATE TABLE profiles (
    tenant      TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    version     BIGINT NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    updated_at  TEXT COLLATE "C" NOT NULL,
    archived_at TEXT COLLATE "C",
    PRIMARY KEY (tenant, name)
);

CREATE TABLE profile_revisions (
    tenant     TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL,
    revision   TEXT COLLATE "C" NOT NULL,
    definition TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, name, version)
);
