-- The audit trail (one row per change, written in the change's own transaction), the
-- gateway's runtime settings (debug logging, tracing), and the prediction log.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL, -- microseconds since the epoch
    actor TEXT NOT NULL,
    client TEXT NOT NULL,
    request_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT,
    version BIGINT,
    details TEXT NOT NULL
);

CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_model ON audit_events (model, at);

CREATE TABLE gateway_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The prediction log: requests saved with `"save": true` or by their model's default.
ALTER TABLE models ADD COLUMN log_predictions BIGINT NOT NULL DEFAULT 0;

CREATE TABLE predictions (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    at BIGINT NOT NULL, -- microseconds since the epoch
    actor TEXT NOT NULL,
    request_id TEXT NOT NULL,
    latency_us BIGINT NOT NULL,
    inputs TEXT NOT NULL,
    outputs TEXT NOT NULL,
    drift TEXT
);

CREATE INDEX predictions_version_at ON predictions (model, version, at);
CREATE INDEX predictions_at ON predictions (at);
