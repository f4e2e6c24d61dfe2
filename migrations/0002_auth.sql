-- Users and API keys. Passwords are argon2id PHC strings; API key secrets are stored only as
-- SHA-256 hashes (they are 256-bit random values, so a fast hash is the right one).
CREATE TABLE users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    description TEXT NOT NULL,
    model_patterns TEXT,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE INDEX api_keys_username ON api_keys (username);
