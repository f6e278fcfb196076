-- Where a succeeded run was published beyond the artifact store: the pushed OCI
-- reference with its digest (`host/repo@sha256:…`). NULL for other distributions.
ALTER TABLE runs ADD COLUMN published_ref TEXT;
