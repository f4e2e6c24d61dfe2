//! Errors as gRPC statuses: each service error kind has its gRPC code here (every kind named, no
//! catch-all), and the status carries the error table's stable code (`maas-error-code`), the
//! request id (`x-request-id`) and, when waiting helps, `retry-after` in its metadata.

use std::task::{Context, Poll};

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::services::error::{ErrorKind, ServiceError};

/// The gRPC code of each kind.
pub fn code(kind: ErrorKind) -> Code {
    use ErrorKind as K;
    match kind {
        K::InvalidJson
        | K::InvalidRequest
        | K::InvalidPath
        | K::UnsupportedMediaType
        | K::InvalidModelName
        | K::InvalidArgument
        | K::InvalidModel
        | K::UnsupportedModel
        | K::ModelUrlFailed
        | K::BaselineUrlFailed
        | K::InvalidAction
        | K::InvalidInput
        | K::InvalidWorkflow => Code::InvalidArgument,
        K::BodyTimeout => Code::DeadlineExceeded,
        K::ClientGone => Code::Cancelled,
        K::PayloadTooLarge | K::QueueFull | K::TooManyRequests => Code::ResourceExhausted,
        K::RouteNotFound | K::MethodNotAllowed => Code::Unimplemented,
        K::ModelNotFound
        | K::VersionNotFound
        | K::BaselineNotFound
        | K::UserNotFound
        | K::KeyNotFound
        | K::JobNotFound
        | K::TaskNotFound
        | K::ArtifactNotFound
        | K::WorkflowNotFound => Code::NotFound,
        K::VersionExists | K::ModelExists | K::UserExists => Code::AlreadyExists,
        K::VersionNotDeployed | K::NoDeployedVersion | K::BackendUnavailable => {
            Code::FailedPrecondition
        }
        K::ModelPaused
        | K::VersionUnavailable
        | K::NotReady
        | K::QueueTimeout
        | K::TooManyConnections
        | K::StorageUnavailable => Code::Unavailable,
        K::InferenceFailed | K::Internal => Code::Internal,
        K::Unauthorized => Code::Unauthenticated,
        K::Forbidden => Code::PermissionDenied,
    }
}

/// A service error as the status a gRPC client receives.
pub fn status(error: ServiceError, request_id: &str) -> Status {
    let code = code(error.kind);
    if code == Code::Internal {
        tracing::error!(code = error.kind.code(), message = %error.message, "gRPC call failed");
    }
    let mut status = Status::new(code, error.message);
    let metadata = status.metadata_mut();
    metadata.insert(
        "maas-error-code",
        MetadataValue::from_static(error.kind.code()),
    );
    if let Ok(id) = MetadataValue::try_from(request_id) {
        metadata.insert("x-request-id", id);
    }
    let retry = match (code, error.retry_after) {
        (_, Some(seconds)) => Some(seconds.max(1)),
        (Code::Unavailable | Code::ResourceExhausted, None) => Some(1),
        _ => None,
    };
    if let Some(seconds) = retry {
        metadata.insert("retry-after", MetadataValue::from(seconds));
    }
    status
}

/// Rewrites tonic's answer to a request message over the size limit (OUT_OF_RANGE, with a
/// message naming its decoder) into RESOURCE_EXHAUSTED, as gRPC's own servers answer it, with a
/// message that names the setting. tonic answers it before any handler runs, in the trailers (or
/// in the headers of a trailers-only answer), so this layer looks at both.
#[derive(Clone, Default)]
pub struct MessageTooLargeLayer;

impl<S> tower::Layer<S> for MessageTooLargeLayer {
    type Service = MessageTooLarge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageTooLarge { inner }
    }
}

#[derive(Clone)]
pub struct MessageTooLarge<S> {
    inner: S,
}

/// What tonic's decoder says, at the start of its message.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large";

type Rewritten<B> = http_body_util::combinators::MapFrame<
    B,
    fn(
        http_body::Frame<<B as http_body::Body>::Data>,
    ) -> http_body::Frame<<B as http_body::Body>::Data>,
>;

impl<S, B, R> tower::Service<http::Request<B>> for MessageTooLarge<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: http_body::Body,
{
    type Response = http::Response<Rewritten<R>>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            rewrite(response.headers_mut());
            Ok(response.map(|body| {
                http_body_util::BodyExt::map_frame(
                    body,
                    rewrite_frame::<R::Data> as fn(http_body::Frame<R::Data>) -> _,
                )
            }))
        })
    }
}

fn rewrite_frame<D>(frame: http_body::Frame<D>) -> http_body::Frame<D> {
    match frame.into_trailers() {
        Ok(mut trailers) => {
            rewrite(&mut trailers);
            http_body::Frame::trailers(trailers)
        }
        Err(frame) => frame,
    }
}

/// Rewrite a too-large status in `headers` (headers or trailers), if it is one.
fn rewrite(headers: &mut http::HeaderMap) {
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"11".as_slice()) {
        return;
    }
    let Some(said) = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .filter(|m| m.starts_with(TONIC_TOO_LARGE))
    else {
        return;
    };
    // tonic's message: "…: found N bytes, the limit is: M bytes".
    let numbers: Vec<&str> = said
        .split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty())
        .collect();
    let message = match numbers.as_slice() {
        [found, limit, ..] => format!(
            "the request message is {found} bytes, larger than this server's limit of {limit} bytes \
             (limits.max_predict_bytes); send fewer rows per request"
        ),
        _ => "the request message is larger than this server's limit \
              (limits.max_predict_bytes); send fewer rows per request"
            .to_owned(),
    };
    headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    if let Ok(value) = http::HeaderValue::from_str(&percent_encode(&message)) {
        headers.insert("grpc-message", value);
    }
    headers.insert(
        "maas-error-code",
        http::HeaderValue::from_static(ErrorKind::PayloadTooLarge.code()),
    );
}

/// grpc-message as text: `%XX` sequences decoded.
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// grpc-message is percent-encoded outside printable ASCII (and `%` itself).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_is_resource_exhausted_with_a_retry_hint() {
        let s = status(
            ServiceError::new(ErrorKind::QueueFull, "the queue is full"),
            "abc",
        );
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.metadata().get("retry-after").unwrap(), "1");
        assert_eq!(s.metadata().get("maas-error-code").unwrap(), "queue_full");
        assert_eq!(s.metadata().get("x-request-id").unwrap(), "abc");
    }

    #[test]
    fn messages_are_percent_encoded_outside_printable_ascii() {
        assert_eq!(percent_encode("a 100% é"), "a 100%25 %C3%A9");
        assert_eq!(percent_decode(b"a%20100%25 %C3%A9%2"), "a 100% é%2");
    }
}
