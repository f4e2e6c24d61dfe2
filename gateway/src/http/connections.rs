//! Connections and request bodies under limits, so that slow or numerous clients cannot starve
//! the server of file descriptors or of workers:
//!
//! - **File descriptors.** At start the soft limit is raised to the hard one. Each plain-TCP
//!   connection holds two (its socket, and the duplicate that tells whether its client left; see
//!   [`crate::http::client`]); [`FD_RESERVE`] more are kept for the store, model files, logs and
//!   gRPC.
//! - **Connections.** At most `server.max_connections` are served at once (by default what the
//!   descriptors allow). A connection beyond it is answered 503 `too_many_connections` with
//!   `Retry-After` and closed, without a duplicate socket; beyond that again, actix stops
//!   accepting and new connections wait in the kernel's backlog.
//! - **Bodies.** A request body must arrive within `server.body_timeout_secs`
//!   (`server.upload_timeout_secs` for multipart uploads), or the request is answered 408
//!   `body_timeout` and its connection closed: a client trickling a byte a second holds a
//!   connection for that long at most.
//! - **Forms that end without their closing boundary.** `actix-multipart` 0.7 can wait forever
//!   on a form whose last field ends in CRLF where the body ends: [`until_form_stalls`] answers
//!   it 400 at once (found by fuzzing; `fuzz/README.md`).

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{
    forward_ready, Extensions, Payload, Service, ServiceRequest, ServiceResponse, Transform,
};
use actix_web::error::PayloadError;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use actix_web::http::ConnectionType;
use actix_web::{HttpMessage, ResponseError};
use bytes::Bytes;
use futures_util::Stream;

use crate::http::error::{ErrorKind, ServiceError};

/// File descriptors kept for everything but connections: the database pool, model files being
/// written, task logs, gRPC connections, the listening sockets.
pub const FD_RESERVE: u64 = 512;

/// Connections accepted per worker beyond its share of `max_connections`, so that the ones over
/// the limit are answered 503 rather than left waiting unanswered in the backlog.
pub const OVERFLOW_PER_WORKER: usize = 64;

/// Raise the soft file descriptor limit to the hard one; returns the soft limit in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum) {
        if current < maximum {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => return maximum,
                Err(e) => tracing::warn!(error = %e, "cannot raise the file descriptor limit"),
            }
        }
        return current;
    }
    // Unlimited.
    u64::MAX
}

/// The connection limit in force: the configured one, or what `fds` descriptors allow. A
/// configured limit the descriptors cannot honour is an error naming both.
pub fn connection_limit(configured: usize, fds: u64, workers: usize) -> anyhow::Result<usize> {
    let overflow = (OVERFLOW_PER_WORKER * workers.max(1)) as u64;
    let available = fds.saturating_sub(FD_RESERVE + overflow) / 2;
    if configured == 0 {
        if available < 16 {
            anyhow::bail!(
                "the file descriptor limit ({fds}) leaves too few for connections; raise it (ulimit -n) to at least {}",
                FD_RESERVE + overflow + 64
            );
        }
        return Ok(usize::try_from(available.min(100_000)).unwrap_or(100_000));
    }
    if configured as u64 > available {
        anyhow::bail!(
            "server.max_connections ({configured}) needs about {} file descriptors (two per \
             connection, {FD_RESERVE} for the store and files, {overflow} for refusing the \
             overflow) but this process may open {fds}; raise the limit (ulimit -n) or lower \
             server.max_connections",
            configured as u64 * 2 + FD_RESERVE + overflow
        );
    }
    Ok(configured)
}

/// Counts open connections across workers.
#[derive(Clone)]
pub struct ConnectionGate {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// A connection's place in the count, given back when the connection ends (actix drops a
/// connection's extensions with it).
struct Slot {
    open: Arc<AtomicUsize>,
    over: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionGate {
    pub fn new(max: usize) -> Self {
        ConnectionGate {
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// `HttpServer::on_connect` hook: count the connection; one within the limit also keeps the
    /// duplicate socket of the client-gone probe.
    pub fn on_connect(&self, connection: &dyn Any, extensions: &mut Extensions) {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        let over = before >= self.max;
        extensions.insert(Slot {
            open: self.open.clone(),
            over,
        });
        if !over {
            crate::http::client::on_connect(connection, extensions);
        }
    }
}

/// The body limits of [`ConnectionLimits`].
#[derive(Clone, Copy)]
pub struct BodyTimeouts {
    pub body: Duration,
    pub upload: Duration,
}

/// The middleware: refuse requests on connections over the limit, and time request bodies out.
/// A `Transform` rather than `from_fn`, so a request pays no boxed future for it (it runs on
/// every request; `benches/http/instructions.sh` measured the `from_fn` form at 2.7 k
/// instructions a predict).
#[derive(Clone, Copy)]
pub struct ConnectionLimits(pub BodyTimeouts);

impl<S, B> Transform<S, ServiceRequest> for ConnectionLimits
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = ConnectionLimitsService<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(ConnectionLimitsService {
            service,
            timeouts: self.0,
        }))
    }
}

pub struct ConnectionLimitsService<S> {
    service: S,
    timeouts: BodyTimeouts,
}

impl<S, B> Service<ServiceRequest> for ConnectionLimitsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Guarded<S::Future>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        if req.conn_data::<Slot>().is_some_and(|slot| slot.over) {
            let error = ServiceError::new(
                ErrorKind::TooManyConnections,
                "the server has as many connections open as server.max_connections allows; \
                 retry shortly, and reuse connections (keep-alive) rather than opening many",
            )
            .retry_after(1);
            return Guarded::Refused {
                response: Some(req.into_response(closing(&error))),
            };
        }
        let has_body = req.headers().contains_key(TRANSFER_ENCODING)
            || req
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() != "0");
        if !has_body {
            return Guarded::Running {
                call: self.service.call(req),
                body: None,
            };
        }
        let upload = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/"));
        let (limit, setting) = if upload {
            (self.timeouts.upload, "server.upload_timeout_secs")
        } else {
            (self.timeouts.body, "server.body_timeout_secs")
        };
        let body = BodyEnd::default();
        if upload {
            req.extensions_mut().insert(body.clone());
        }
        let payload = TimedPayload {
            inner: req.take_payload(),
            started: tokio::time::Instant::now(),
            limit,
            deadline: None,
            body: body.clone(),
        };
        req.set_payload(Payload::Stream {
            payload: Box::pin(payload),
        });
        Guarded::Running {
            call: self.service.call(req),
            body: Some((body, limit, setting)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`ConnectionLimitsService`]: a refusal, or the inner service's answer,
    /// replaced by 408 when the request's body ran out of time.
    #[project = GuardedProjection]
    pub enum Guarded<F> {
        Refused { response: Option<ServiceResponse> },
        Running {
            #[pin]
            call: F,
            body: Option<(BodyEnd, Duration, &'static str)>,
        },
    }
}

impl<F, B> Future for Guarded<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardedProjection::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response.map_into_right_body())),
                None => Poll::Pending,
            },
            GuardedProjection::Running { call, body } => {
                let response = match call.poll(cx) {
                    Poll::Ready(Ok(response)) => response,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                };
                let Some((_, limit, setting)) = body.take().filter(|(b, ..)| b.0.timed_out.get())
                else {
                    return Poll::Ready(Ok(response.map_into_left_body()));
                };
                let error = ServiceError::new(
                    ErrorKind::BodyTimeout,
                    format!(
                        "the request body did not arrive within {} s ({setting}); send it \
                         faster, or in a smaller request",
                        limit.as_secs()
                    ),
                );
                let (req, _) = response.into_parts();
                Poll::Ready(Ok(
                    ServiceResponse::new(req, closing(&error)).map_into_right_body()
                ))
            }
        }
    }
}

/// The error's response, closing its connection: what is left of the request is not read.
fn closing(error: &ServiceError) -> actix_web::HttpResponse {
    let mut response = error.error_response();
    response
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    response
}

/// Whether a request's body has been read to its end (or failed), and whether its time ran out:
/// shared by [`ConnectionLimits`], the body it wraps and, for uploads, the request's extensions.
#[derive(Clone, Default)]
pub struct BodyEnd(Rc<BodyState>);

#[derive(Default)]
struct BodyState {
    ended: Cell<bool>,
    timed_out: Cell<bool>,
}

impl BodyEnd {
    fn ended(&self) -> bool {
        self.0.ended.get()
    }
}

/// Read a multipart form (`read`, whose only waits are on the form's fields) unless it stalls:
/// once the body has ended nothing can wake a form reader, so a reader still waiting then is
/// `actix-multipart` 0.7 stuck on a form whose last field ends in CRLF with no closing boundary,
/// which would otherwise hold the request until its client leaves. That is answered 400.
pub async fn until_form_stalls<T>(
    req: &actix_web::HttpRequest,
    read: impl Future<Output = Result<T, ServiceError>>,
) -> Result<T, ServiceError> {
    let Some(end) = req.extensions().get::<BodyEnd>().cloned() else {
        return read.await;
    };
    let mut read = std::pin::pin!(read);
    std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
        Poll::Pending if end.ended() => Poll::Ready(Err(ServiceError::new(
            ErrorKind::InvalidRequest,
            "the upload ended before the form's closing boundary (`--BOUNDARY--`); send the \
             whole form",
        ))),
        other => other,
    })
    .await
}

/// A request body that fails once its deadline passes. The timer is set only when the body is
/// not all there yet: most bodies arrive with their headers and never need one.
struct TimedPayload {
    inner: Payload,
    started: tokio::time::Instant,
    limit: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    body: BodyEnd,
}

impl Stream for TimedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.body.ended() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(None) => {
                this.body.0.ended.set(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.body.0.ended.set(true);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Pending => {
                let (started, limit) = (this.started, this.limit);
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(started + limit)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.body.0.ended.set(true);
                        this.body.0.timed_out.set(true);
                        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the request body did not arrive in time",
                        )))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_fits_the_descriptors() {
        assert_eq!(
            connection_limit(0, 1024, 2).unwrap(),
            (1024 - 512 - 128) / 2
        );
        assert_eq!(connection_limit(100, 1024, 2).unwrap(), 100);
        let e = connection_limit(1000, 1024, 2).unwrap_err().to_string();
        assert!(e.contains("server.max_connections (1000)"), "{e}");
        assert!(connection_limit(0, 600, 2).is_err());
        assert_eq!(connection_limit(0, u64::MAX, 2).unwrap(), 100_000);
    }
}
