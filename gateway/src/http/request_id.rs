//! Request ids: taken from `X-Request-Id` when the client sends a sane one, generated otherwise,
//! echoed in the response header and in every error body, and attached to the request's logs.
//! Trace context too: a W3C `traceparent` is accepted, the request's server span opened under it
//! (`services::telemetry`), and the `traceparent` naming that span returned.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use opentelemetry::KeyValue;
use tracing::Instrument;

use crate::services::telemetry::{self, TraceParent};

pub const HEADER: &str = "x-request-id";
/// The header's name, made once: looking a header up by `&str` parses the name every time.
const NAME: HeaderName = HeaderName::from_static(HEADER);
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, or an empty string outside one.
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id =
        crate::services::audit::request_id(req.headers().get(&NAME).and_then(|v| v.to_str().ok()));
    let parent = req
        .headers()
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let method = req.method().clone();
    let trace = match req.app_data::<web::Data<crate::http::AppState>>() {
        Some(state) if parent.is_some() || state.telemetry.is_recording() => {
            Some(state.telemetry.begin(
                req.method().to_string(),
                parent,
                vec![
                    KeyValue::new("http.request.method", req.method().to_string()),
                    KeyValue::new("url.path", req.path().to_owned()),
                    KeyValue::new("maas.request_id", id.clone()),
                ],
            ))
        }
        _ => None,
    };
    let span = match trace.as_ref().and_then(|t| t.trace_id()) {
        Some(trace_id) => tracing::info_span!("request", request_id = %id, trace_id = %trace_id),
        None => tracing::info_span!("request", request_id = %id),
    };
    let header = HeaderValue::from_str(&id).ok();
    let context = crate::store::audit::AuditContext {
        actor: None,
        client: crate::http::client::address(req.request()),
        request_id: id.clone(),
    };
    let work = crate::store::audit::scope(context, next.call(req)).instrument(span);
    let Some(trace) = trace else {
        let mut response = REQUEST_ID.scope(id, work).await?;
        if let Some(value) = header {
            response.headers_mut().insert(NAME, value);
        }
        return Ok(response);
    };
    let result = REQUEST_ID
        .scope(id, telemetry::scope(trace.trace(), work))
        .await;
    let traceparent = trace
        .traceparent()
        .and_then(|t| HeaderValue::from_str(&t).ok());
    let (status, route) = match &result {
        Ok(r) => (
            r.status().as_u16(),
            r.request()
                .app_data::<crate::http::metrics::RouteStats>()
                .map(|s| s.template().to_owned()),
        ),
        Err(e) => (e.as_response_error().status_code().as_u16(), None),
    };
    let mut attributes = vec![KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    )];
    if let Some(route) = &route {
        attributes.push(KeyValue::new("http.route", route.clone()));
    }
    trace.end_named(
        route.map(|r| format!("{method} {r}")),
        attributes,
        (status >= 500).then(|| format!("HTTP {status}")),
    );
    let mut response = result?;
    if let Some(value) = header {
        response.headers_mut().insert(NAME, value);
    }
    if let Some(value) = traceparent {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    Ok(response)
}
