-- The training scheduler: saved workflows (the catalog), jobs and their tasks. The DAG and every
-- state live here, so a restart loses nothing: a running task's lease names the process that
-- holds it, and a lease that is not renewed in time is reaped (re-queued or failed).
CREATE TABLE workflows (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    description TEXT NOT NULL,
    definition TEXT NOT NULL, -- the parsed workflow, JSON
    source TEXT NOT NULL,     -- the text as it was saved (YAML or JSON)
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    workflow_version BIGINT,  -- the catalog version it was submitted from, if any
    definition TEXT NOT NULL, -- the workflow, JSON
    variables TEXT NOT NULL,  -- resolved variables, JSON object
    priority BIGINT NOT NULL, -- 0 idle .. 5 highest
    owner TEXT NOT NULL,
    origin TEXT NOT NULL,     -- api, retrain
    model TEXT,               -- the model a retraining job is for
    state TEXT NOT NULL,
    reason TEXT,
    submitted_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL
);

CREATE INDEX jobs_state ON jobs (state);
CREATE INDEX jobs_submitted ON jobs (submitted_at);

CREATE TABLE tasks (
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    position BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempt BIGINT NOT NULL,       -- attempts started so far
    max_attempts BIGINT NOT NULL,
    executor TEXT NOT NULL,
    native_id TEXT,                -- process id or Slurm job id of the running attempt
    lease_owner TEXT,
    lease_until BIGINT,
    not_before BIGINT NOT NULL,    -- retry backoff
    started_at BIGINT,
    finished_at BIGINT,
    error TEXT,
    variables TEXT NOT NULL,       -- exported variables, JSON object
    metrics TEXT NOT NULL,         -- JSON object
    history TEXT NOT NULL,         -- every attempt, JSON array
    PRIMARY KEY (job_id, name)
);

CREATE INDEX tasks_state ON tasks (state);

-- The closed loop: a model may name the workflow that retrains it.
ALTER TABLE models ADD COLUMN retrain_workflow TEXT;
