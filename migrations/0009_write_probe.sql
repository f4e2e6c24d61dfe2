-- One row that readiness rewrites: a store that refuses writes (read-only, full, no permission)
-- is reported not-ready before a user's write fails.
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY,
    written_at BIGINT NOT NULL
);
