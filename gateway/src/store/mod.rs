//! The store: what is deployed, durably. SQLite by default, PostgreSQL to scale out; both through
//! one set of portable SQL statements on sqlx's `Any` driver.
//!
//! Version numbers come from a per-model counter that only grows, and version rows are kept
//! (state `deleted`) after a delete, so no number is ever handed out twice.

pub mod audit;
pub mod auth;
pub mod drift;
pub mod jobs;
pub mod predictions;
pub mod redact;
pub mod runtime;

use std::future::Future;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Executor, Row};

use crate::store::audit::{AuditSwitch, Change};
use maas_serving::{ModelSignature, ServingOptions};

/// Migrations, in order. Each runs once, in its own transaction, and is recorded.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "models and versions",
        include_str!("../../../migrations/0001_models.sql"),
    ),
    (
        2,
        "users and api keys",
        include_str!("../../../migrations/0002_auth.sql"),
    ),
    (
        3,
        "drift baselines and events",
        include_str!("../../../migrations/0003_drift.sql"),
    ),
    (
        4,
        "serving options per version",
        include_str!("../../../migrations/0004_serving.sql"),
    ),
    (
        5,
        "paused models",
        include_str!("../../../migrations/0005_service.sql"),
    ),
    (
        6,
        "audit trail and runtime settings",
        include_str!("../../../migrations/0006_audit_settings.sql"),
    ),
    (
        7,
        "workflows, jobs and tasks",
        include_str!("../../../migrations/0007_jobs.sql"),
    ),
    (
        8,
        "credentials generation per user",
        include_str!("../../../migrations/0008_credentials_generation.sql"),
    ),
    (
        9,
        "write probe for readiness",
        include_str!("../../../migrations/0009_write_probe.sql"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("version {version} of model '{model}' already exists or existed; version numbers are never reused")]
    VersionExists { model: String, version: u64 },
    #[error("model '{0}' does not exist")]
    ModelNotFound(String),
    #[error("model '{0}' already exists")]
    ModelExists(String),
    #[error("model '{model}' has no version {version}")]
    VersionNotFound { model: String, version: u64 },
    #[error("the database failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the model file failed: {0}")]
    Artifact(std::io::Error),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("user '{0}' already exists")]
    UserExists(String),
    #[error("user '{0}' does not exist")]
    UserNotFound(String),
    #[error("API key '{0}' does not exist")]
    KeyNotFound(String),
}

impl StoreError {
    /// Whether a failed write certainly committed nothing. An error the database answered with is
    /// a refusal; a connection lost during COMMIT (PostgreSQL) may have committed after all.
    pub fn surely_not_committed(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(_)) => true,
            StoreError::Database(_) => false,
            StoreError::VersionExists { .. }
            | StoreError::ModelNotFound(_)
            | StoreError::ModelExists(_)
            | StoreError::VersionNotFound { .. }
            | StoreError::Artifact(_)
            | StoreError::Corrupt(_)
            | StoreError::UserExists(_)
            | StoreError::UserNotFound(_)
            | StoreError::KeyNotFound(_) => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    Deployed,
    Undeployed,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Deployed => "deployed",
            VersionState::Undeployed => "undeployed",
        }
    }
}

/// A stored version of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    pub model: String,
    pub version: u64,
    pub state: VersionState,
    pub sha256: String,
    pub size_bytes: u64,
    pub backend: String,
    /// The model's signature, as the backend read it at deploy time.
    pub signature: ModelSignature,
    pub class_names: Option<Vec<String>>,
    pub feature_names: Option<Vec<String>>,
    pub source: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// How the deploy asked for the version to be served.
    pub serving: ServingOptions,
}

/// A stored model with its live (not deleted) versions, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRecord {
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Paused by a service action: versions stay loaded, predicts are refused.
    pub paused: bool,
    pub versions: Vec<VersionRecord>,
}

impl ModelRecord {
    /// The newest deployed version: what an unversioned predict runs.
    pub fn default_version(&self) -> Option<u64> {
        self.versions
            .iter()
            .filter(|v| v.state == VersionState::Deployed)
            .map(|v| v.version)
            .max()
    }

    /// The newest version kept, deployed or not: what a deploy without a version number brings
    /// back.
    pub fn newest_version(&self) -> Option<u64> {
        self.versions.iter().map(|v| v.version).max()
    }
}

/// What a deploy asks the store to record.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub model: String,
    pub version: Option<u64>,
    /// False: this version becomes the only deployed one.
    pub append: bool,
    pub sha256: String,
    pub size_bytes: u64,
    pub backend: String,
    pub signature: ModelSignature,
    pub class_names: Option<Vec<String>>,
    pub feature_names: Option<Vec<String>>,
    pub source: String,
    /// The version's drift baseline and settings, recorded in the same transaction.
    pub drift: Option<drift::DriftRecord>,
    pub serving: ServingOptions,
    /// Save the model's predicts by default; `None` keeps the model's setting.
    pub log_predictions: Option<bool>,
}

/// The persistence seam of the model registry.
pub trait ModelStore: Send + Sync {
    /// Record a new deployed version. `place` puts its file in place once the number is known;
    /// the record commits only if it succeeds, so a crash leaves the old state or the new one.
    fn create_version<F>(
        &self,
        new: NewVersion,
        place: F,
    ) -> impl Future<Output = Result<VersionRecord, StoreError>> + Send
    where
        F: FnOnce(u64) -> std::io::Result<()> + Send;
    fn models(&self) -> impl Future<Output = Result<Vec<ModelRecord>, StoreError>> + Send;
    fn model(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<ModelRecord>, StoreError>> + Send;
    /// Mark a kept version deployed; with `exclusive`, every other version is undeployed.
    fn deploy(
        &self,
        model: &str,
        version: u64,
        exclusive: bool,
    ) -> impl Future<Output = Result<VersionRecord, StoreError>> + Send;
    fn undeploy(
        &self,
        model: &str,
        version: u64,
    ) -> impl Future<Output = Result<VersionRecord, StoreError>> + Send;
    fn delete_version(
        &self,
        model: &str,
        version: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn delete_model(&self, model: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every deployed version of every model: what each replica should be serving.
    fn deployed(&self) -> impl Future<Output = Result<Vec<VersionRecord>, StoreError>> + Send;
    /// Every live version of every model, deployed or not (artifact sweeping).
    fn live_versions(&self) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send;
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Rewrite one row: whether the database takes writes now (readiness).
    fn probe_write(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// [`ModelStore`] on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    postgres: bool,
    audit: AuditSwitch,
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const VERSION_COLUMNS: &str = "model, version, state, sha256, size_bytes, backend, signature, \
                               class_names, feature_names, source, created_at, updated_at, serving";

impl SqlStore {
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether changes are recorded in the audit trail (shared by every clone).
    pub fn audit(&self) -> &AuditSwitch {
        &self.audit
    }

    /// Record a change that has no store write of its own (a login, a service action).
    pub async fn record(&self, change: Change<'_>) -> Result<(), StoreError> {
        crate::store::audit::record(&self.pool, &self.audit, change).await
    }

    /// Connect, apply migrations, and tune SQLite for concurrent readers and one writer.
    pub async fn connect(url: &str) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres");
        if let Some(path) = sqlite_file(url) {
            make_private(&path, url.contains("mode=rwc")).map_err(sqlx::Error::Io)?;
        }
        if postgres {
            // The pool retries a server that refuses the connection until its acquire timeout
            // (10 s) and then says only "pool timed out": one direct attempt first names the
            // address and the reason at once.
            use sqlx::Connection;
            match sqlx::AnyConnection::connect(url).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                }
                Err(sqlx::Error::Io(e)) => {
                    let at = url::Url::parse(url).ok().map_or_else(String::new, |u| {
                        format!(
                            " at {}:{}",
                            u.host_str().unwrap_or("localhost"),
                            u.port().unwrap_or(5432)
                        )
                    });
                    let reason = match e.kind() {
                        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                        _ => e.to_string(),
                    };
                    return Err(sqlx::Error::Io(std::io::Error::new(
                        e.kind(),
                        format!("cannot connect to PostgreSQL{at}: {reason}"),
                    ))
                    .into());
                }
                // Anything else the server said (a wrong password, no such database) is its own
                // message, and would only come back from the pool later.
                Err(e) => return Err(e.into()),
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres { 16 } else { 8 })
            .acquire_timeout(std::time::Duration::from_secs(10))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        // FULL: a commit is on disk (WAL synced) before a 2xx, also across a
                        // power loss; NORMAL only survives a crash of this process.
                        conn.execute("PRAGMA synchronous = FULL").await?;
                    }
                    Ok(())
                })
            })
            // A connection whose transaction bookkeeping went wrong is closed, never reused.
            // SQLite rolls a transaction back by itself on some errors (SQLITE_FULL, _IOERR);
            // sqlx's ROLLBACK afterwards fails, and its transaction depth stays above zero. On
            // that connection the next `begin()` would be a SAVEPOINT, its "commit" a RELEASE
            // of a nested savepoint inside a transaction that never ends: a 2xx for a write that
            // is never committed, and a write lock held until the process stops. A pooled idle
            // connection is never in a transaction, so checking the depth (a plain read, no
            // round trip) is enough.
            .before_acquire(|conn, _meta| {
                Box::pin(async move {
                    if conn.is_in_transaction() {
                        tracing::warn!(
                            "closing a database connection left inside a transaction by an \
                             earlier failure"
                        );
                        return Ok(false);
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await?;
        let store = SqlStore {
            pool,
            postgres,
            audit: AuditSwitch::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS maas_schema (version BIGINT PRIMARY KEY, \
                 description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .await?;
        for (version, description, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await?;
            if self.postgres {
                // Replicas starting together: one migrates, the others wait and then skip.
                tx.execute("SELECT pg_advisory_xact_lock(727365001)")
                    .await?;
            }
            let applied = sqlx::query("SELECT version FROM maas_schema WHERE version = $1")
                .bind(*version)
                .fetch_optional(&mut *tx)
                .await?;
            if applied.is_some() {
                continue;
            }
            let sql = strip_comments(sql);
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                tx.execute(statement).await?;
            }
            sqlx::query(
                "INSERT INTO maas_schema (version, description, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(*version)
            .bind(*description)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(version, description, "applied store migration");
        }
        Ok(())
    }

    async fn version_in<'e, E>(
        executor: E,
        model: &str,
        version: u64,
    ) -> Result<Option<VersionRecord>, StoreError>
    where
        E: Executor<'e, Database = sqlx::Any>,
    {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions WHERE model = $1 AND version = $2 AND state <> 'deleted'"
        );
        let row = sqlx::query(&sql)
            .bind(model)
            .bind(to_i64(version))
            .fetch_optional(executor)
            .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    /// Record a model with no version yet (its service state is `created`).
    pub async fn create_model(&self, name: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO models (name, last_version, deleted, created_at, updated_at) \
             VALUES ($1, 0, 1, $2, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // A deleted model's name may be used again (its version numbers are still never reused).
        let revived = sqlx::query(
            "UPDATE models SET deleted = 0, paused = 0, created_at = $1, updated_at = $1 \
             WHERE name = $2 AND deleted = 1",
        )
        .bind(now)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if revived.rows_affected() == 0 {
            return Err(StoreError::ModelExists(name.to_owned()));
        }
        crate::store::audit::record(
            &mut *tx,
            &self.audit,
            Change::new("create_model").model(name),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Pause or resume a model's service.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE models SET paused = $1, updated_at = $2 WHERE name = $3 AND deleted = 0 \
             AND paused <> $1",
        )
        .bind(i64::from(paused))
        .bind(now_ms())
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            if !model_exists(&mut *tx, name).await? {
                return Err(StoreError::ModelNotFound(name.to_owned()));
            }
            // Already in that state: nothing changed, nothing to record.
            return Ok(());
        }
        let kind = if paused { "pause" } else { "resume" };
        crate::store::audit::record(&mut *tx, &self.audit, Change::new(kind).model(name)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Names of the paused models.
    pub async fn paused_models(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT name FROM models WHERE paused = 1 AND deleted = 0")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("name").map_err(StoreError::from))
            .collect()
    }

    /// Change how a version is served (it must then be loaded again).
    pub async fn set_serving(
        &self,
        model: &str,
        version: u64,
        options: &ServingOptions,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE model_versions SET serving = $1, updated_at = $2 \
             WHERE model = $3 AND version = $4 AND state <> 'deleted'",
        )
        .bind(serving_to(options)?)
        .bind(now_ms())
        .bind(model)
        .bind(to_i64(version))
        .execute(&mut *tx)
        .await?;
        let details = serde_json::to_value(options).unwrap_or_default();
        crate::store::audit::record(
            &mut *tx,
            &self.audit,
            Change::new("serving_update")
                .model(model)
                .version(version)
                .details(details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_state(
        &self,
        model: &str,
        version: u64,
        state: VersionState,
        exclusive: bool,
    ) -> Result<VersionRecord, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        // Write first: on SQLite this takes the write lock before any read, on PostgreSQL it
        // locks the row, so concurrent state changes serialize instead of failing.
        let updated = sqlx::query(
            "UPDATE model_versions SET state = $1, updated_at = $2 \
             WHERE model = $3 AND version = $4 AND state <> 'deleted'",
        )
        .bind(state.as_str())
        .bind(now)
        .bind(model)
        .bind(to_i64(version))
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(missing_version(&mut *tx, model, version).await);
        }
        if exclusive {
            sqlx::query(
                "UPDATE model_versions SET state = 'undeployed', updated_at = $1 \
                 WHERE model = $2 AND version <> $3 AND state = 'deployed'",
            )
            .bind(now)
            .bind(model)
            .bind(to_i64(version))
            .execute(&mut *tx)
            .await?;
        }
        touch_model(&mut *tx, model, now).await?;
        let record = Self::version_in(&mut *tx, model, version)
            .await?
            .ok_or_else(|| StoreError::VersionNotFound {
                model: model.into(),
                version,
            })?;
        let kind = match state {
            VersionState::Deployed => "redeploy",
            _ => "undeploy",
        };
        crate::store::audit::record(
            &mut *tx,
            &self.audit,
            Change::new(kind)
                .model(model)
                .version(version)
                .details(serde_json::json!({"exclusive": exclusive})),
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }
}

/// The file of a SQLite URL (`sqlite://path?…` or `sqlite:path`); none for PostgreSQL and for
/// in-memory databases.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// The database holds password hashes and API key hashes: only its owner may read it. SQLite
/// gives the `-wal` and `-shm` files the database file's mode, so the file is created here,
/// 0600, before SQLite opens it (when `create` allows); files made by an older version are
/// narrowed to 0600, or a warning says they could not be.
#[cfg(unix)]
fn make_private(path: &std::path::Path, create: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if create {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                if let Err(error) =
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                {
                    tracing::warn!(path = %std::path::Path::new(&file).display(), %error,
                        "the database file is readable by others and could not be made private");
                }
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_path: &std::path::Path, _create: bool) -> std::io::Result<()> {
    Ok(())
}

fn strip_comments(sql: &str) -> String {
    sql.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// Why a version could not be found: the model is gone, or only the version.
async fn missing_version<'e, E>(executor: E, model: &str, version: u64) -> StoreError
where
    E: Executor<'e, Database = sqlx::Any>,
{
    match model_exists(executor, model).await {
        Ok(true) => StoreError::VersionNotFound {
            model: model.into(),
            version,
        },
        Ok(false) => StoreError::ModelNotFound(model.into()),
        Err(e) => e,
    }
}

async fn model_exists<'e, E>(executor: E, model: &str) -> Result<bool, StoreError>
where
    E: Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT name FROM models WHERE name = $1 AND deleted = 0")
        .bind(model)
        .fetch_optional(executor)
        .await?;
    Ok(row.is_some())
}

async fn touch_model<'e, E>(executor: E, model: &str, now: i64) -> Result<(), StoreError>
where
    E: Executor<'e, Database = sqlx::Any>,
{
    sqlx::query("UPDATE models SET updated_at = $1 WHERE name = $2")
        .bind(now)
        .bind(model)
        .execute(executor)
        .await?;
    Ok(())
}

fn names_from(text: Option<String>) -> Result<Option<Vec<String>>, StoreError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("names: {e}"))))
        .transpose()
}

fn names_to(names: &Option<Vec<String>>) -> Option<String> {
    names
        .as_ref()
        .map(|n| serde_json::Value::from(n.clone()).to_string())
}

fn version_from_row(row: &AnyRow) -> Result<VersionRecord, StoreError> {
    let state = match row.try_get::<String, _>("state")?.as_str() {
        "deployed" => VersionState::Deployed,
        "undeployed" => VersionState::Undeployed,
        other => {
            return Err(StoreError::Corrupt(format!(
                "unknown version state '{other}'"
            )))
        }
    };
    Ok(VersionRecord {
        model: row.try_get("model")?,
        version: row.try_get::<i64, _>("version")?.max(0) as u64,
        state,
        sha256: row.try_get("sha256")?,
        size_bytes: row.try_get::<i64, _>("size_bytes")?.max(0) as u64,
        backend: row.try_get("backend")?,
        signature: serde_json::from_str(&row.try_get::<String, _>("signature")?)
            .map_err(|e| StoreError::Corrupt(format!("signature: {e}")))?,
        class_names: names_from(row.try_get("class_names")?)?,
        feature_names: names_from(row.try_get("feature_names")?)?,
        source: row.try_get("source")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        serving: serving_from(row.try_get("serving")?)?,
    })
}

fn serving_to(options: &ServingOptions) -> Result<Option<String>, StoreError> {
    if *options == ServingOptions::default() {
        return Ok(None);
    }
    serde_json::to_string(options)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn serving_from(text: Option<String>) -> Result<ServingOptions, StoreError> {
    match text {
        None => Ok(ServingOptions::default()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("serving options: {e}"))),
    }
}

impl ModelStore for SqlStore {
    async fn create_version<F>(
        &self,
        new: NewVersion,
        place: F,
    ) -> Result<VersionRecord, StoreError>
    where
        F: FnOnce(u64) -> std::io::Result<()> + Send,
    {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO models (name, last_version, deleted, created_at, updated_at) \
             VALUES ($1, 0, 0, $2, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&new.model)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Locks the model's row (PostgreSQL) so concurrent deploys take numbers one at a time.
        sqlx::query("UPDATE models SET deleted = 0, updated_at = $1 WHERE name = $2")
            .bind(now)
            .bind(&new.model)
            .execute(&mut *tx)
            .await?;
        let last: i64 = sqlx::query("SELECT last_version FROM models WHERE name = $1")
            .bind(&new.model)
            .fetch_one(&mut *tx)
            .await?
            .try_get("last_version")?;
        let version = match new.version {
            Some(v) => {
                let taken = sqlx::query(
                    "SELECT version FROM model_versions WHERE model = $1 AND version = $2",
                )
                .bind(&new.model)
                .bind(to_i64(v))
                .fetch_optional(&mut *tx)
                .await?;
                if taken.is_some() {
                    return Err(StoreError::VersionExists {
                        model: new.model,
                        version: v,
                    });
                }
                v
            }
            None => last.max(0) as u64 + 1,
        };
        let sql = format!(
            "INSERT INTO model_versions ({VERSION_COLUMNS}) \
             VALUES ($1, $2, 'deployed', $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)"
        );
        sqlx::query(&sql)
            .bind(&new.model)
            .bind(to_i64(version))
            .bind(&new.sha256)
            .bind(to_i64(new.size_bytes))
            .bind(&new.backend)
            .bind(
                serde_json::to_string(&new.signature)
                    .map_err(|e| StoreError::Corrupt(format!("signature: {e}")))?,
            )
            .bind(names_to(&new.class_names))
            .bind(names_to(&new.feature_names))
            .bind(&new.source)
            .bind(now)
            .bind(serving_to(&new.serving)?)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE models SET last_version = $1 WHERE name = $2 AND last_version < $1")
            .bind(to_i64(version))
            .bind(&new.model)
            .execute(&mut *tx)
            .await?;
        if !new.append {
            sqlx::query(
                "UPDATE model_versions SET state = 'undeployed', updated_at = $1 \
                 WHERE model = $2 AND version <> $3 AND state = 'deployed'",
            )
            .bind(now)
            .bind(&new.model)
            .bind(to_i64(version))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(record) = &new.drift {
            drift::put_baseline(&mut *tx, &new.model, version, record, now).await?;
        }
        if let Some(on) = new.log_predictions {
            sqlx::query("UPDATE models SET log_predictions = $1 WHERE name = $2")
                .bind(i64::from(on))
                .bind(&new.model)
                .execute(&mut *tx)
                .await?;
        }
        place(version).map_err(StoreError::Artifact)?;
        crate::crash_point("deploy.before_commit");
        let record = Self::version_in(&mut *tx, &new.model, version)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt("a version vanished inside its transaction".into())
            })?;
        crate::store::audit::record(
            &mut *tx,
            &self.audit,
            Change::new("deploy")
                .model(&new.model)
                .version(version)
                .details(serde_json::json!({
                    "source": new.source,
                    "sha256": new.sha256,
                    "size_bytes": new.size_bytes,
                    "backend": new.backend,
                    "append": new.append,
                    "serving": new.serving,
                    "baseline": new.drift.is_some(),
                    "log_predictions": new.log_predictions,
                })),
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        let models = sqlx::query(
            "SELECT name, created_at, updated_at, paused FROM models WHERE deleted = 0 ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions WHERE state <> 'deleted' ORDER BY model, version"
        );
        let versions = sqlx::query(&sql).fetch_all(&self.pool).await?;
        let mut records = Vec::with_capacity(models.len());
        for row in &models {
            records.push(ModelRecord {
                name: row.try_get("name")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                paused: row.try_get::<i64, _>("paused")? != 0,
                versions: Vec::new(),
            });
        }
        for row in &versions {
            let version = version_from_row(row)?;
            if let Some(model) = records.iter_mut().find(|m| m.name == version.model) {
                model.versions.push(version);
            }
        }
        Ok(records)
    }

    async fn model(&self, name: &str) -> Result<Option<ModelRecord>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT name, created_at, updated_at, paused FROM models WHERE name = $1 AND deleted = 0",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions WHERE model = $1 AND state <> 'deleted' ORDER BY version"
        );
        let versions = sqlx::query(&sql)
            .bind(name)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(version_from_row)
            .collect::<Result<_, _>>()?;
        Ok(Some(ModelRecord {
            name: row.try_get("name")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            paused: row.try_get::<i64, _>("paused")? != 0,
            versions,
        }))
    }

    async fn deploy(
        &self,
        model: &str,
        version: u64,
        exclusive: bool,
    ) -> Result<VersionRecord, StoreError> {
        self.set_state(model, version, VersionState::Deployed, exclusive)
            .await
    }

    async fn undeploy(&self, model: &str, version: u64) -> Result<VersionRecord, StoreError> {
        self.set_state(model, version, VersionState::Undeployed, false)
            .await
    }

    async fn delete_version(&self, model: &str, version: u64) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE model_versions SET state = 'deleted', updated_at = $1 \
             WHERE model = $2 AND version = $3 AND state <> 'deleted'",
        )
        .bind(now)
        .bind(model)
        .bind(to_i64(version))
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(missing_version(&mut *tx, model, version).await);
        }
        touch_model(&mut *tx, model, now).await?;
        crate::store::audit::record(
            &mut *tx,
            &self.audit,
            Change::new("delete_version").model(model).version(version),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_model(&self, model: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE models SET deleted = 1, paused = 0, updated_at = $1 WHERE name = $2 AND deleted = 0",
        )
        .bind(now)
        .bind(model)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::ModelNotFound(model.into()));
        }
        sqlx::query("UPDATE model_versions SET state = 'deleted', updated_at = $1 WHERE model = $2 AND state <> 'deleted'")
            .bind(now)
            .bind(model)
            .execute(&mut *tx)
            .await?;
        crate::store::audit::record(
            &mut *tx,
            &self.audit,
            Change::new("delete_model").model(model),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn deployed(&self) -> Result<Vec<VersionRecord>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions WHERE state = 'deployed' ORDER BY model, version"
        );
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(version_from_row)
            .collect()
    }

    async fn live_versions(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows =
            sqlx::query("SELECT model, version FROM model_versions WHERE state <> 'deleted'")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("model")?,
                    r.try_get::<i64, _>("version")?.max(0) as u64,
                ))
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.pool.execute("SELECT 1").await?;
        Ok(())
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO write_probe (id, written_at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at",
        )
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl SqlStore {
    /// The runtime settings as stored (defaults for those never set).
    pub async fn runtime_settings(&self) -> Result<runtime::RuntimeSettings, StoreError> {
        let rows = sqlx::query("SELECT name, value FROM gateway_settings")
            .fetch_all(&self.pool)
            .await?;
        let mut settings = runtime::RuntimeSettings::default();
        for row in &rows {
            let name: String = row.try_get("name")?;
            let value: String = row.try_get("value")?;
            let on = value == "true";
            match name.as_str() {
                "debug" => settings.debug = on,
                "trace" => settings.trace = on,
                _ => {}
            }
        }
        Ok(settings)
    }

    /// Store new runtime settings. The change itself is always recorded, even when it turns
    /// tracing off or while tracing is off.
    pub async fn put_runtime_settings(
        &self,
        before: runtime::RuntimeSettings,
        after: runtime::RuntimeSettings,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        for (name, on) in [("debug", after.debug), ("trace", after.trace)] {
            sqlx::query(
                "INSERT INTO gateway_settings (name, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET value = $2, updated_at = $3",
            )
            .bind(name)
            .bind(if on { "true" } else { "false" })
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        crate::store::audit::record(
            &mut *tx,
            &AuditSwitch::default(),
            Change::new("settings_change")
                .details(serde_json::json!({"before": before, "after": after})),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A page of the audit trail.
    pub async fn audit_events(
        &self,
        filter: &crate::store::audit::AuditFilter,
    ) -> Result<(Vec<crate::store::audit::AuditEvent>, u64), StoreError> {
        crate::store::audit::query(&self.pool, filter).await
    }
}

/// RFC 3339 with milliseconds, for stored millisecond times.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// RFC 3339 with microseconds, for stored microsecond times.
pub fn rfc3339_us(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        let file = |url: &str| sqlite_file(url).map(|p| p.display().to_string());
        assert_eq!(
            file("sqlite:///data/maas.db?mode=rwc").as_deref(),
            Some("/data/maas.db")
        );
        assert_eq!(file("sqlite:maas.db").as_deref(), Some("maas.db"));
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("sqlite://shared?mode=memory&cache=shared"), None);
        assert_eq!(file("postgres://maas@db/maas"), None);
    }
}
