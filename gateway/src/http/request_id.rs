//! Request ids: taken from `X-Request-Id` when the client sends a sane one, generated otherwise,
//! echoed in the response header and in every error body, and attached to the request's logs.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";
/// The header's name, made once: looking a header up by `&str` parses the name every time.
const NAME: HeaderName = HeaderName::from_static(HEADER);

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, or an empty string outside one.
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

fn accept(given: &HeaderValue) -> Option<String> {
    let text = given.to_str().ok()?;
    let sane = !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
    sane.then(|| text.to_owned())
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&NAME)
        .and_then(accept)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span = tracing::info_span!("request", request_id = %id);
    let header = HeaderValue::from_str(&id).ok();
    let context = crate::store::audit::AuditContext {
        actor: None,
        client: crate::http::client::address(req.request()),
        request_id: id.clone(),
    };
    let mut response = REQUEST_ID
        .scope(
            id,
            crate::store::audit::scope(context, next.call(req)).instrument(span),
        )
        .await?;
    if let Some(value) = header {
        response.headers_mut().insert(NAME, value);
    }
    Ok(response)
}
