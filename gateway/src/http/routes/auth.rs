//! Logging in, the caller's own identity, users and API keys.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::api::rfc3339;
use crate::http::auth::Authorized;
use crate::http::error::{ErrorBody, ServiceError};
use crate::http::json::Json;
use crate::services::auth::accounts::NewKey;
use crate::services::auth::{self, Admin, Authenticator, Read, Role};
use crate::store::auth::{ApiKeyRecord, UserRecord};

use crate::http::resource;

/// Register this group's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/auth/token").route(web::post().to(token)))
        .service(resource("/v1/auth/me").route(web::get().to(me)))
        .service(
            resource("/v1/users")
                .route(web::get().to(list_users))
                .route(web::post().to(create_user)),
        )
        .service(
            resource("/v1/users/{username}")
                .route(web::patch().to(update_user))
                .route(web::delete().to(delete_user)),
        )
        .service(
            resource("/v1/api-keys")
                .route(web::get().to(list_keys))
                .route(web::post().to(create_key)),
        )
        .service(resource("/v1/api-keys/{id}").route(web::delete().to(revoke_key)));
}

/// A login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[schema(example = "admin")]
    pub username: String,
    pub password: String,
}

/// A bearer token for the `Authorization` header.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the token expires.
    #[schema(example = 3600)]
    pub expires_in: u64,
}

/// Exchange a user name and password for a bearer token. After repeated failures a user name
/// (from one address, or from all together) and a client address must wait before trying again:
/// 1 s, doubling with each further failure (429 with `Retry-After`). Failures from other addresses
/// never stop a user name logging in from an address that has not failed. The client address is
/// the TCP peer, or `X-Forwarded-For` when the peer is one of `auth.trusted_proxies`.
#[utoipa::path(post, path = "/v1/auth/token", tag = "auth",
    request_body(content = TokenRequest, example = json!({"username": "admin", "password": "change-me-now"})),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Wrong user name or password", body = ErrorBody),
        (status = 429, description = "Too many failed logins for this user name or from this address: try again after `Retry-After` seconds", body = ErrorBody),
    ))]
pub async fn token(
    auth: web::Data<Authenticator>,
    req: HttpRequest,
    body: Json<TokenRequest>,
) -> Result<web::Json<TokenResponse>, ServiceError> {
    let TokenRequest { username, password } = body.into_inner();
    let issued = auth
        .login(username, password, crate::http::client::address(&req))
        .await?;
    Ok(web::Json(TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer".into(),
        expires_in: issued.expires_in,
    }))
}

/// Who the bearer is.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub username: String,
    pub role: Role,
    /// `token` or `api_key`.
    pub credential: String,
    /// Model-name patterns an API key is limited to.
    pub models: Option<Vec<String>>,
}

/// The caller's identity and role.
#[utoipa::path(get, path = "/v1/auth/me", tag = "auth", security(("bearer" = ["viewer"])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(auth: Authorized<Read>) -> web::Json<Me> {
    let p = auth.principal;
    web::Json(Me {
        username: p.username,
        role: p.role,
        credential: match p.credential {
            auth::Credential::Token => "token".into(),
            auth::Credential::ApiKey(_) => "api_key".into(),
        },
        models: p.model_patterns,
    })
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    pub username: String,
    pub role: Role,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&UserRecord> for UserInfo {
    fn from(u: &UserRecord) -> Self {
        UserInfo {
            username: u.username.clone(),
            role: u.role,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    /// At least 8 characters.
    pub password: String,
    pub role: Role,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub password: Option<String>,
    pub role: Option<Role>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserInfo>,
}

/// List users.
#[utoipa::path(get, path = "/v1/users", tag = "auth", security(("bearer" = ["admin"])),
    responses((status = 200, body = UserList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    _auth: Authorized<Admin>,
    authn: web::Data<Authenticator>,
) -> Result<web::Json<UserList>, ServiceError> {
    let users = authn.users().await?;
    Ok(web::Json(UserList {
        users: users.iter().map(UserInfo::from).collect(),
    }))
}

/// Create a user.
#[utoipa::path(post, path = "/v1/users", tag = "auth", security(("bearer" = ["admin"])),
    request_body(content = NewUser, example = json!({"username": "alice", "password": "a-long-passphrase", "role": "predictor"})),
    responses((status = 201, body = UserInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_user(
    _auth: Authorized<Admin>,
    authn: web::Data<Authenticator>,
    body: Json<NewUser>,
) -> Result<HttpResponse, ServiceError> {
    let NewUser {
        username,
        password,
        role,
    } = body.into_inner();
    let user = authn.create_user(&username, password, role).await?;
    Ok(HttpResponse::Created().json(UserInfo::from(&user)))
}

/// Change a user's password or role.
#[utoipa::path(patch, path = "/v1/users/{username}", tag = "auth", security(("bearer" = ["admin"])),
    params(("username" = String, Path, description = "User name")),
    request_body = UserUpdate,
    responses((status = 200, body = UserInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_user(
    _auth: Authorized<Admin>,
    authn: web::Data<Authenticator>,
    username: web::Path<String>,
    body: Json<UserUpdate>,
) -> Result<web::Json<UserInfo>, ServiceError> {
    let UserUpdate { password, role } = body.into_inner();
    let user = authn.update_user(&username, password, role).await?;
    Ok(web::Json(UserInfo::from(&user)))
}

/// Delete a user; their API keys are revoked and their tokens stop working at once.
#[utoipa::path(delete, path = "/v1/users/{username}", tag = "auth", security(("bearer" = ["admin"])),
    params(("username" = String, Path, description = "User name")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_user(
    _auth: Authorized<Admin>,
    authn: web::Data<Authenticator>,
    username: web::Path<String>,
) -> Result<HttpResponse, ServiceError> {
    authn.delete_user(&username).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// The user the key acts for.
    pub username: String,
    /// The key's role; at most the user's own.
    pub role: Role,
    /// Limit the key to these model names; `*` matches any run of characters.
    pub models: Option<Vec<String>>,
    /// Seconds until the key expires; it never expires when absent.
    pub expires_in_secs: Option<u64>,
    /// What the key is for.
    pub description: Option<String>,
}

/// An API key, without its secret.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ApiKeyInfo {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub models: Option<Vec<String>>,
    pub description: String,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<&ApiKeyRecord> for ApiKeyInfo {
    fn from(k: &ApiKeyRecord) -> Self {
        ApiKeyInfo {
            id: k.id.clone(),
            username: k.username.clone(),
            role: k.role,
            models: k.model_patterns.clone(),
            description: k.description.clone(),
            expires_at: k.expires_at.map(rfc3339),
            created_at: rfc3339(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

/// A new API key; `key` is shown this once and stored only as a hash.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    /// Send as `Authorization: Bearer <key>`.
    pub key: String,
    #[serde(flatten)]
    pub info: ApiKeyInfo,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ApiKeyList {
    pub keys: Vec<ApiKeyInfo>,
}

/// Create an API key for a user.
#[utoipa::path(post, path = "/v1/api-keys", tag = "auth", security(("bearer" = ["admin"])),
    request_body(content = NewApiKey, example = json!({"username": "admin", "role": "viewer", "description": "dashboards"})),
    responses((status = 201, body = CreatedApiKey), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_key(
    _auth: Authorized<Admin>,
    authn: web::Data<Authenticator>,
    body: Json<NewApiKey>,
) -> Result<HttpResponse, ServiceError> {
    let request = body.into_inner();
    let (record, key) = authn
        .create_key(NewKey {
            username: request.username,
            role: request.role,
            models: request.models,
            expires_in_secs: request.expires_in_secs,
            description: request.description,
        })
        .await?;
    Ok(HttpResponse::Created().json(CreatedApiKey {
        key,
        info: ApiKeyInfo::from(&record),
    }))
}

/// List API keys (never their secrets).
#[utoipa::path(get, path = "/v1/api-keys", tag = "auth", security(("bearer" = ["admin"])),
    responses((status = 200, body = ApiKeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_keys(
    _auth: Authorized<Admin>,
    authn: web::Data<Authenticator>,
) -> Result<web::Json<ApiKeyList>, ServiceError> {
    let keys = authn.keys().await?;
    Ok(web::Json(ApiKeyList {
        keys: keys.iter().map(ApiKeyInfo::from).collect(),
    }))
}

/// Revoke an API key, at once on every replica.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "auth", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    _auth: Authorized<Admin>,
    authn: web::Data<Authenticator>,
    id: web::Path<String>,
) -> Result<HttpResponse, ServiceError> {
    authn.revoke_key(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}
