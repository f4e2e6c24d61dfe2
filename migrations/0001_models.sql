-- Models and their versions. Portable SQL: the same text runs on SQLite and PostgreSQL.
-- Version rows are never removed: a deleted version keeps its row (state 'deleted') so that
-- its number is never handed out again.
CREATE TABLE models (
    name TEXT PRIMARY KEY,
    last_version BIGINT NOT NULL,
    deleted BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE model_versions (
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    state TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    backend TEXT NOT NULL,
    signature TEXT NOT NULL,
    class_names TEXT,
    feature_names TEXT,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (model, version)
);

CREATE INDEX model_versions_state ON model_versions (state);
