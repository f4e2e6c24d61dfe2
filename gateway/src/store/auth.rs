//! Users and API keys in the store.

use sqlx::any::AnyRow;
use sqlx::Row;

use serde_json::json;

use super::{now_ms, SqlStore, StoreError};
use crate::store::audit::{self, Change};

/// What a user may do, from least to most.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read models, versions and metadata.
    Viewer,
    /// Viewer, plus predict.
    Predictor,
    /// Predictor, plus deploy, undeploy, roll back and delete.
    Deployer,
    /// Everything, including users and API keys.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Predictor => "predictor",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "predictor" => Ok(Role::Predictor),
            "deployer" => Ok(Role::Deployer),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role '{other}': use admin, deployer, predictor or viewer"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub created_at: i64,
    pub updated_at: i64,
    /// Changes with every password or role change; a login token carries the value it was
    /// issued under and is refused once it differs (migration 0008 says how it is chosen).
    pub credentials_generation: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub secret_sha256: String,
    pub description: String,
    /// Model-name patterns the key is limited to; `None` means every model.
    pub model_patterns: Option<Vec<String>>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

fn role_of(row: &AnyRow) -> Result<Role, StoreError> {
    let text: String = row.try_get("role")?;
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown role '{text}'")))
}

fn user_from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: role_of(row)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        credentials_generation: row.try_get("credentials_generation")?,
    })
}

fn key_from_row(row: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    let patterns: Option<String> = row.try_get("model_patterns")?;
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        role: role_of(row)?,
        secret_sha256: row.try_get("secret_sha256")?,
        description: row.try_get("description")?,
        model_patterns: patterns
            .map(|p| {
                serde_json::from_str(&p)
                    .map_err(|e| StoreError::Corrupt(format!("model patterns: {e}")))
            })
            .transpose()?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const USER_COLUMNS: &str =
    "username, password_hash, role, created_at, updated_at, credentials_generation";

const KEY_COLUMNS: &str =
    "id, username, role, secret_sha256, description, model_patterns, expires_at, created_at, revoked_at";

impl SqlStore {
    pub async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let row = sqlx::query(&sql)
            .bind(username)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
        sqlx::query(&sql)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    pub async fn user_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(self.pool())
            .await?
            .try_get("n")?)
    }

    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<UserRecord, StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (username, password_hash, role, created_at, updated_at, \
             credentials_generation) VALUES ($1, $2, $3, $4, $4, $4) \
             ON CONFLICT (username) DO NOTHING",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::UserExists(username.into()));
        }
        audit::record(
            &mut *tx,
            self.audit(),
            Change::new("user_created")
                .details(json!({"username": username, "role": role.as_str()})),
        )
        .await?;
        tx.commit().await?;
        Ok(UserRecord {
            username: username.into(),
            password_hash: password_hash.into(),
            role,
            created_at: now,
            updated_at: now,
            credentials_generation: now,
        })
    }

    /// Change a user's password hash and/or role. Either moves the user's credentials generation
    /// forward (to now, or one past its value if that is not behind now), which ends the tokens
    /// issued before.
    pub async fn update_user(
        &self,
        username: &str,
        password_hash: Option<&str>,
        role: Option<Role>,
    ) -> Result<UserRecord, StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        let changes = password_hash.is_some() || role.is_some();
        let updated = sqlx::query(
            "UPDATE users SET updated_at = $1, credentials_generation = CASE \
             WHEN $2 = 0 THEN credentials_generation \
             WHEN credentials_generation < $1 THEN $1 \
             ELSE credentials_generation + 1 END \
             WHERE username = $3",
        )
        .bind(now)
        .bind(i64::from(changes))
        .bind(username)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::UserNotFound(username.into()));
        }
        if let Some(hash) = password_hash {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
                .bind(hash)
                .bind(username)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(role) = role {
            sqlx::query("UPDATE users SET role = $1 WHERE username = $2")
                .bind(role.as_str())
                .bind(username)
                .execute(&mut *tx)
                .await?;
        }
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let row = sqlx::query(&sql).bind(username).fetch_one(&mut *tx).await?;
        audit::record(
            &mut *tx,
            self.audit(),
            Change::new("user_updated").details(json!({
                "username": username,
                "password_changed": password_hash.is_some(),
                "role": role.map(Role::as_str),
            })),
        )
        .await?;
        tx.commit().await?;
        user_from_row(&row)
    }

    /// Remove a user and revoke every key they hold.
    pub async fn delete_user(&self, username: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        let deleted = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::UserNotFound(username.into()));
        }
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE username = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(username)
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut *tx,
            self.audit(),
            Change::new("user_deleted").details(json!({"username": username})),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn create_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let patterns = key
            .model_patterns
            .as_ref()
            .map(|p| serde_json::Value::from(p.clone()).to_string());
        let sql = format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)"
        );
        let mut tx = self.pool().begin().await?;
        sqlx::query(&sql)
            .bind(&key.id)
            .bind(&key.username)
            .bind(key.role.as_str())
            .bind(&key.secret_sha256)
            .bind(&key.description)
            .bind(patterns)
            .bind(key.expires_at)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut *tx,
            self.audit(),
            Change::new("key_created").details(json!({
                "id": key.id,
                "username": key.username,
                "role": key.role.as_str(),
                "models": key.model_patterns,
                "expires_at": key.expires_at,
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub async fn keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id");
        sqlx::query(&sql)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(key_from_row)
            .collect()
    }

    pub async fn revoke_key(&self, id: &str) -> Result<ApiKeyRecord, StoreError> {
        let mut tx = self.pool().begin().await?;
        let revoked =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if revoked.rows_affected() > 0 {
            audit::record(
                &mut *tx,
                self.audit(),
                Change::new("key_revoked").details(json!({"id": id})),
            )
            .await?;
        }
        tx.commit().await?;
        self.key(id)
            .await?
            .ok_or_else(|| StoreError::KeyNotFound(id.into()))
    }
}
