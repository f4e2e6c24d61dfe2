//! The HTTP metrics middleware: requests and latency by method, route template and status.
//!
//! Each route's resource carries a [`RouteStats`] with its template, so the middleware never asks
//! actix which pattern matched (that runs the router's regexes a second time), and with its metric
//! handles for each method and status once seen, so a request costs no label lookup.

use std::cell::RefCell;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{Histogram, IntCounter};

use crate::services::metrics::Metrics;

/// A route's template and its HTTP metric handles, resolved on first use. Resources are built
/// once per HTTP worker, so each worker has its own and no lock is needed.
pub struct RouteStats {
    template: String,
    handles: RefCell<Vec<(Method, u16, IntCounter, Histogram)>>,
}

impl RouteStats {
    pub fn new(template: impl Into<String>) -> Self {
        RouteStats {
            template: template.into(),
            handles: RefCell::new(Vec::new()),
        }
    }

    /// The route's template, such as `/v2/models/{name}/infer`.
    pub fn template(&self) -> &str {
        &self.template
    }

    fn observe(&self, metrics: &Metrics, method: &Method, status: u16, seconds: f64) {
        let mut handles = self.handles.borrow_mut();
        let found = handles
            .iter()
            .position(|(m, s, _, _)| *s == status && m == method);
        let ix = match found {
            Some(ix) => ix,
            None => {
                let (count, duration) =
                    metrics.http_handles(method.as_str(), &self.template, &status.to_string());
                handles.push((method.clone(), status, count, duration));
                handles.len() - 1
            }
        };
        let (_, _, count, duration) = &handles[ix];
        count.inc();
        duration.observe(seconds);
    }
}

/// Count and time every HTTP request by its route template.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let response = next.call(req).await?;
    let request = response.request();
    if let Some(metrics) = request.app_data::<web::Data<Metrics>>() {
        let status = response.status().as_u16();
        let seconds = started.elapsed().as_secs_f64();
        match request.app_data::<RouteStats>() {
            Some(route) => route.observe(metrics, request.method(), status, seconds),
            None => {
                // Routes built without a template (Swagger UI, the console's files, 404s).
                let route = request
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".into());
                let (count, duration) =
                    metrics.http_handles(request.method().as_str(), &route, &status.to_string());
                count.inc();
                duration.observe(seconds);
            }
        }
    }
    Ok(response)
}
