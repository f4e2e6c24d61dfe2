-- Drift: one baseline (sampled rows, per-feature statistics, settings) per model version, and the
-- drift events found while scoring.
CREATE TABLE version_drift (
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    columns TEXT NOT NULL,
    rows TEXT NOT NULL,
    stats TEXT NOT NULL,
    source TEXT NOT NULL,
    settings TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (model, version)
);

CREATE TABLE drift_events (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    feature TEXT NOT NULL,
    detector TEXT NOT NULL,
    kind TEXT NOT NULL,
    mode TEXT NOT NULL,
    rows TEXT NOT NULL,
    request_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX drift_events_model ON drift_events (model, created_at);
