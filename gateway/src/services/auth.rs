//! Who is calling, and may they? (The extractor that asks is `http::auth`.) Every `/v1` route but the token route needs a bearer: a JWT
//! from `POST /v1/auth/token` or an API key. Each handler states the permission it needs in its
//! signature (`Authorized<Predict>`), so a route cannot forget to check; the extractor also
//! enforces an API key's model scope on every route with a `{name}` segment.
//!
//! Tokens and keys are checked against the store's users and keys. A record read from the store is
//! trusted for `auth.cache_ttl_ms` (1 s by default; a store read per request would cost more than
//! the inference of a small model): a deleted user, a changed role or a revoked key takes effect
//! at once on the process that made the change, and within that delay on other replicas.
//!
//! A login token carries its user's credentials generation (`gen`), which the store moves on with
//! every password or role change and which a re-created user starts afresh: a token whose `gen`
//! differs from its user's is refused, so such a change ends every token issued before it.

pub mod accounts;
pub mod client_address;
pub mod jwt;
pub mod limiter;
pub mod passwords;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::services::error::{ErrorKind, ServiceError};
use crate::store::auth::{ApiKeyRecord, UserRecord};
use crate::store::SqlStore;
use jwt::JwtKeys;
use limiter::LoginLimiter;

pub use crate::store::auth::Role;

/// A permission a route requires, and the least role that holds it.
pub trait Permission {
    const NAME: &'static str;
    const ROLE: Role;
}

/// Read models, versions and metadata.
pub struct Read;
/// Run predictions.
pub struct Predict;
/// Deploy, undeploy, roll back and delete.
pub struct Deploy;
/// Manage users, keys and settings.
pub struct Admin;

impl Permission for Read {
    const NAME: &'static str = "read";
    const ROLE: Role = Role::Viewer;
}
impl Permission for Predict {
    const NAME: &'static str = "predict";
    const ROLE: Role = Role::Predictor;
}
impl Permission for Deploy {
    const NAME: &'static str = "deploy";
    const ROLE: Role = Role::Deployer;
}
impl Permission for Admin {
    const NAME: &'static str = "administer";
    const ROLE: Role = Role::Admin;
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Token,
    ApiKey(String),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub username: String,
    pub role: Role,
    pub credential: Credential,
    /// Model-name patterns an API key is limited to; `None`: every model.
    pub model_patterns: Option<Vec<String>>,
}

impl Principal {
    pub fn may_use_model(&self, model: &str) -> bool {
        self.model_patterns
            .as_ref()
            .is_none_or(|patterns| patterns.iter().any(|p| glob_match(p, model)))
    }

    /// `Forbidden` unless this caller holds permission `P` and, when the request names `model`,
    /// may use that model. Every protocol asks this after [`Authenticator::authenticate`].
    pub fn require<P: Permission>(&self, model: Option<&str>) -> Result<(), ServiceError> {
        if self.role < P::ROLE {
            return Err(ServiceError::new(
                ErrorKind::Forbidden,
                format!(
                    "'{}' has role {}, which may not {}; this needs {} or above",
                    self.username,
                    self.role.as_str(),
                    P::NAME,
                    P::ROLE.as_str()
                ),
            ));
        }
        if let Some(model) = model {
            if !self.may_use_model(model) {
                return Err(ServiceError::new(
                    ErrorKind::Forbidden,
                    format!("this API key is limited to other models than '{model}'"),
                ));
            }
        }
        Ok(())
    }

    /// Who the audit trail names: the user, and the key when one was used.
    pub fn actor(&self) -> String {
        match &self.credential {
            Credential::ApiKey(id) => format!("{} (key {id})", self.username),
            _ => self.username.clone(),
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// API keys look like `maas_<id>_<secret>`: the id finds the record, the secret is compared by
/// its SHA-256 in constant time.
pub const KEY_PREFIX: &str = "maas_";

pub fn new_key_material() -> (String, String, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let id = hex::encode(id);
    let secret = hex::encode(secret);
    let full = format!("{KEY_PREFIX}{id}_{secret}");
    (id, secret_hash(&secret), full)
}

pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn unauthorized(message: &str) -> ServiceError {
    ServiceError::new(ErrorKind::Unauthorized, message)
}

/// Checks bearers and logins.
pub struct Authenticator {
    pub store: SqlStore,
    pub jwt: JwtKeys,
    pub limiter: LoginLimiter,
    pub protect_metrics: bool,
    pub cache: CredentialCache,
}

/// Users and API keys recently read from the store, each trusted until its entry is `ttl` old.
/// Only records that exist are kept; every change made through this process clears it.
pub struct CredentialCache {
    ttl: Duration,
    users: Mutex<HashMap<String, (Arc<UserRecord>, Instant)>>,
    keys: Mutex<HashMap<String, (ApiKeyRecord, Instant)>>,
}

/// Entries kept at most per map; a full map is emptied rather than scanned.
const CACHE_CAPACITY: usize = 10_000;

impl CredentialCache {
    pub fn new(ttl: Duration) -> Self {
        CredentialCache {
            ttl,
            users: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Forget everything: called after every user or key change.
    pub fn clear(&self) {
        self.users.lock().clear();
        self.keys.lock().clear();
    }

    async fn user(
        &self,
        store: &SqlStore,
        name: &str,
    ) -> Result<Option<Arc<UserRecord>>, ServiceError> {
        if let Some(hit) = fresh(&self.users, name, self.ttl) {
            return Ok(Some(hit));
        }
        let found = store.user(name).await?.map(Arc::new);
        if let Some(user) = &found {
            remember(&self.users, name, user.clone(), self.ttl);
        }
        Ok(found)
    }

    async fn key(&self, store: &SqlStore, id: &str) -> Result<Option<ApiKeyRecord>, ServiceError> {
        if let Some(hit) = fresh(&self.keys, id, self.ttl) {
            return Ok(Some(hit));
        }
        let found = store.key(id).await?;
        if let Some(key) = &found {
            remember(&self.keys, id, key.clone(), self.ttl);
        }
        Ok(found)
    }
}

fn fresh<T: Clone>(
    map: &Mutex<HashMap<String, (T, Instant)>>,
    id: &str,
    ttl: Duration,
) -> Option<T> {
    let map = map.lock();
    let (record, at) = map.get(id)?;
    (at.elapsed() < ttl).then(|| record.clone())
}

fn remember<T>(map: &Mutex<HashMap<String, (T, Instant)>>, id: &str, record: T, ttl: Duration) {
    if ttl.is_zero() {
        return;
    }
    let mut map = map.lock();
    if map.len() >= CACHE_CAPACITY {
        map.clear();
    }
    map.insert(id.to_owned(), (record, Instant::now()));
}

impl Authenticator {
    /// The caller behind the request's bearer, or 401.
    /// `authorization` is the request's `Authorization` header: `None` when it is absent,
    /// `Some(Err(()))` when it is not readable text.
    pub async fn authenticate(
        &self,
        authorization: Option<Result<&str, ()>>,
    ) -> Result<Principal, ServiceError> {
        let value = authorization
            .ok_or_else(|| unauthorized("this route needs `Authorization: Bearer <token>`; get a token from POST /v1/auth/token"))?
            .map_err(|()| unauthorized("the Authorization header is not readable text"))?;
        let token = match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                token.trim()
            }
            _ => {
                return Err(unauthorized(
                    "the Authorization header must be `Bearer <token>`",
                ))
            }
        };
        if let Some(rest) = token.strip_prefix(KEY_PREFIX) {
            return self.authenticate_key(rest).await;
        }
        let claims = self.jwt.verify(token).map_err(|e| {
            tracing::debug!(reason = %e, "rejected a bearer token");
            unauthorized("the token is invalid or expired; get a new one from POST /v1/auth/token")
        })?;
        let user = self
            .cache
            .user(&self.store, &claims.sub)
            .await?
            .ok_or_else(|| unauthorized("the token's user no longer exists"))?;
        if claims.gen != user.credentials_generation {
            return Err(unauthorized(
                "the token was issued before its user's password or role last changed, or to an \
                 earlier user of that name; log in again at POST /v1/auth/token",
            ));
        }
        Ok(Principal {
            username: user.username.clone(),
            role: user.role,
            credential: Credential::Token,
            model_patterns: None,
        })
    }

    async fn authenticate_key(&self, rest: &str) -> Result<Principal, ServiceError> {
        let invalid = || unauthorized("the API key is invalid, expired or revoked");
        let (id, secret) = rest.split_once('_').ok_or_else(invalid)?;
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let key = self.cache.key(&self.store, id).await?.ok_or_else(invalid)?;
        let matches: bool = secret_hash(secret)
            .as_bytes()
            .ct_eq(key.secret_sha256.as_bytes())
            .into();
        let expired = key
            .expires_at
            .is_some_and(|at| at <= crate::store::now_ms());
        if !matches || key.revoked_at.is_some() || expired {
            return Err(invalid());
        }
        let user = self
            .cache
            .user(&self.store, &key.username)
            .await?
            .ok_or_else(invalid)?;
        Ok(Principal {
            username: user.username.clone(),
            // A key never holds more than its user holds now.
            role: key.role.min(user.role),
            credential: Credential::ApiKey(key.id),
            model_patterns: key.model_patterns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(
            Role::Admin > Role::Deployer
                && Role::Deployer > Role::Predictor
                && Role::Predictor > Role::Viewer
        );
        assert_eq!("deployer".parse::<Role>().unwrap(), Role::Deployer);
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("iris", "iris"));
        assert!(!glob_match("iris", "iris2"));
        assert!(glob_match("iris*", "iris-v2"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("team-*-prod", "team-a-prod"));
        assert!(!glob_match("team-*-prod", "team-a-dev"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "ac"));
    }

    #[test]
    fn key_material_round_trips() {
        let (id, hash, full) = new_key_material();
        let rest = full.strip_prefix(KEY_PREFIX).unwrap();
        let (got_id, secret) = rest.split_once('_').unwrap();
        assert_eq!(got_id, id);
        assert_eq!(secret_hash(secret), hash);
    }
}
