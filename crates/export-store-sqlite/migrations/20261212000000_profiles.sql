-- Profiles of the API (SPEC §16). A profile is a row of `profiles`, whose `version`
-- points at its newest row of `profile_revisions`; revisions are written once and never
-- changed, so a run's `profile_revision` stays readable after later changes and after
-- the profile is archived. Profiles of the configuration file are not stored here.
CREATE TABLE profiles (
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,  -- the newest revision's
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    archived_at TEXT,              -- set once: no new runs
    PRIMARY KEY (tenant, name)
);

CREATE TABLE profile_revisions (
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,   -- 1, 2, 3 … per profile
    revision   TEXT NOT NULL,      -- sha256:<hex> of the definition's canonical JSON
    definition TEXT NOT NULL,      -- the definition's canonical JSON
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,      -- the token subject that wrote it
    PRIMARY KEY (tenant, name, version)
);
