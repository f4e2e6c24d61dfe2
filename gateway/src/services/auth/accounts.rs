//! Users, logins and API keys: the rules the auth routes apply. Failed logins back off per user
//! name and per client address, never into a lockout (`limiter`); the last admin cannot be
//! demoted or deleted; a key never holds more than its user; every change clears the credential
//! cache, so it takes effect at once here.

use std::net::IpAddr;

use super::limiter::Throttled;
use super::{new_key_material, passwords, Authenticator, Role};
use crate::services::error::{ErrorKind, ServiceError};
use crate::store::audit::{self, Change};
use crate::store::auth::{ApiKeyRecord, UserRecord};

/// A bearer token issued by a login.
pub struct IssuedToken {
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// An API key to create.
pub struct NewKey {
    pub username: String,
    pub role: Role,
    pub models: Option<Vec<String>>,
    pub expires_in_secs: Option<u64>,
    pub description: Option<String>,
}

fn validate_username(name: &str) -> Result<(), ServiceError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::new(
            ErrorKind::InvalidArgument,
            "a user name has 1 to 64 letters, digits, '-', '_', '.' or '@', starting with a letter or digit",
        ))
    }
}

async fn hash(password: String) -> Result<String, ServiceError> {
    crate::services::off_worker(move || passwords::hash(&password))
        .await?
        .map_err(|m| ServiceError::new(ErrorKind::InvalidArgument, m))
}

impl Authenticator {
    /// Exchange a user name and password for a token. Failed attempts count against the user
    /// name and the client address (`client`: the peer, or what a trusted proxy says); while
    /// either must wait, the answer is `TooManyRequests` with the seconds to wait.
    pub async fn login(
        &self,
        username: String,
        password: String,
        client: Option<IpAddr>,
    ) -> Result<IssuedToken, ServiceError> {
        if let Err(throttled) = self.limiter.attempt(&username, client) {
            let wait = throttled.retry_after_secs();
            let message = match throttled {
                Throttled::UserName { .. } => {
                    format!("too many failed logins for this user name; try again in {wait} s")
                }
                Throttled::Address { .. } => {
                    format!("too many failed logins from this address; try again in {wait} s")
                }
            };
            return Err(ServiceError::new(ErrorKind::TooManyRequests, message).retry_after(wait));
        }
        let user = self.store.user(&username).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let ok =
            crate::services::off_worker(move || passwords::verify(&password, stored.as_deref()))
                .await?;
        let Some(user) = user.filter(|_| ok) else {
            tracing::warn!(username = %username.chars().take(64).collect::<String>(), client = ?client, "failed login");
            return Err(ServiceError::new(
                ErrorKind::Unauthorized,
                "wrong user name or password",
            ));
        };
        self.limiter.succeeded(&username, client);
        let access_token = self
            .jwt
            .issue(
                &user.username,
                user.role.as_str(),
                user.credentials_generation,
            )
            .map_err(|e| ServiceError::internal(format!("signing the token failed: {e}")))?;
        audit::set_actor(user.username.clone());
        self.store
            .record(Change::new("token_issued").details(serde_json::json!({
                "username": user.username,
                "role": user.role.as_str(),
                "expires_in": self.jwt.ttl_secs(),
            })))
            .await?;
        tracing::info!(username = %user.username, "issued a token");
        Ok(IssuedToken {
            access_token,
            expires_in: self.jwt.ttl_secs(),
        })
    }

    pub async fn users(&self) -> Result<Vec<UserRecord>, ServiceError> {
        Ok(self.store.users().await?)
    }

    pub async fn create_user(
        &self,
        username: &str,
        password: String,
        role: Role,
    ) -> Result<UserRecord, ServiceError> {
        validate_username(username)?;
        let hashed = hash(password).await?;
        let user = self.store.create_user(username, &hashed, role).await?;
        self.cache.clear();
        tracing::info!(username = %user.username, role = role.as_str(), "created user");
        Ok(user)
    }

    /// A new password, a new role, or both.
    pub async fn update_user(
        &self,
        username: &str,
        password: Option<String>,
        role: Option<Role>,
    ) -> Result<UserRecord, ServiceError> {
        let hashed = match password {
            Some(p) => Some(hash(p).await?),
            None => None,
        };
        if role.is_some_and(|r| r != Role::Admin) {
            self.refuse_last_admin(username).await?;
        }
        let user = self
            .store
            .update_user(username, hashed.as_deref(), role)
            .await?;
        self.cache.clear();
        tracing::info!(username = %user.username, "updated user");
        Ok(user)
    }

    /// Delete a user; their API keys go with them.
    pub async fn delete_user(&self, username: &str) -> Result<(), ServiceError> {
        self.refuse_last_admin(username).await?;
        self.store.delete_user(username).await?;
        self.cache.clear();
        tracing::info!(username = %username, "deleted user");
        Ok(())
    }

    async fn refuse_last_admin(&self, username: &str) -> Result<(), ServiceError> {
        let users = self.store.users().await?;
        let admins: Vec<&UserRecord> = users.iter().filter(|u| u.role == Role::Admin).collect();
        if admins.len() == 1 && admins[0].username == username {
            return Err(ServiceError::new(
                ErrorKind::InvalidArgument,
                format!("'{username}' is the last admin; make another admin first"),
            ));
        }
        Ok(())
    }

    /// Create an API key; returns its record and the key itself, shown this once.
    pub async fn create_key(
        &self,
        request: NewKey,
    ) -> Result<(ApiKeyRecord, String), ServiceError> {
        let user = self.store.user(&request.username).await?.ok_or_else(|| {
            ServiceError::new(
                ErrorKind::UserNotFound,
                format!("user '{}' does not exist", request.username),
            )
        })?;
        if request.role > user.role {
            return Err(ServiceError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "'{}' is a {}; a key cannot hold more than its user",
                    user.username,
                    user.role.as_str()
                ),
            ));
        }
        if let Some(patterns) = &request.models {
            if patterns.is_empty() || patterns.iter().any(|p| p.is_empty() || p.len() > 128) {
                return Err(ServiceError::new(
                    ErrorKind::InvalidArgument,
                    "`models` must list 1 or more non-empty patterns",
                ));
            }
        }
        let now = crate::store::now_ms();
        let expires_at = match request.expires_in_secs {
            Some(0) => {
                return Err(ServiceError::new(
                    ErrorKind::InvalidArgument,
                    "`expires_in_secs` must be positive",
                ))
            }
            Some(secs) => Some(
                now.saturating_add(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)),
            ),
            None => None,
        };
        let (id, secret_sha256, key) = new_key_material();
        let record = ApiKeyRecord {
            id,
            username: user.username,
            role: request.role,
            secret_sha256,
            description: request.description.unwrap_or_default(),
            model_patterns: request.models,
            expires_at,
            created_at: now,
            revoked_at: None,
        };
        self.store.create_key(&record).await?;
        self.cache.clear();
        tracing::info!(id = %record.id, username = %record.username, role = record.role.as_str(), "created API key");
        Ok((record, key))
    }

    pub async fn keys(&self) -> Result<Vec<ApiKeyRecord>, ServiceError> {
        Ok(self.store.keys().await?)
    }

    /// Revoke a key, at once here and within the cache's TTL on other replicas.
    pub async fn revoke_key(&self, id: &str) -> Result<ApiKeyRecord, ServiceError> {
        let key = self.store.revoke_key(id).await?;
        self.cache.clear();
        tracing::info!(id = %key.id, "revoked API key");
        Ok(key)
    }
}
