//! The auth extractor: a handler's signature states the permission it needs
//! (`Authorized<Predict>`), so a route cannot forget to check. It also enforces an API key's model
//! scope on every route with a `{name}` segment.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};

use crate::services::auth::{Authenticator, Permission, Principal};
use crate::services::error::{ErrorKind, ServiceError};

/// The caller behind a request's bearer, or 401.
pub async fn authenticate(
    auth: &Authenticator,
    req: &HttpRequest,
) -> Result<Principal, ServiceError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        // UTF-8 is checked, not the header grammar byte by byte (`to_str`, ~12 instructions a
        // byte): a token with anything but its own characters fails verification anyway.
        .map(|h| std::str::from_utf8(h.as_bytes()).map_err(|_| ()));
    auth.authenticate(header).await
}

/// Proof that the caller holds permission `P` (and, on routes naming a model, may use it).
pub struct Authorized<P: Permission> {
    pub principal: Principal,
    _permission: PhantomData<P>,
}

impl<P: Permission> Authorized<P> {
    pub fn username(&self) -> &str {
        &self.principal.username
    }
}

pub async fn authorize<P: Permission>(req: &HttpRequest) -> Result<Principal, ServiceError> {
    let auth = req
        .app_data::<web::Data<Authenticator>>()
        .cloned()
        .ok_or_else(|| {
            ServiceError::new(ErrorKind::Internal, "authentication is not configured")
        })?;
    let principal = authenticate(&auth, req).await?;
    crate::store::audit::set_actor(principal.actor());
    principal.require::<P>(req.match_info().get("name"))?;
    Ok(principal)
}

impl<P: Permission + 'static> FromRequest for Authorized<P> {
    type Error = ServiceError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ServiceError>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let principal = authorize::<P>(&req).await?;
            Ok(Authorized {
                principal,
                _permission: PhantomData,
            })
        })
    }
}
