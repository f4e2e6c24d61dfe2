//! Traces a user can follow: a W3C trace context for each request, and the spans of its work.
//!
//! Each protocol opens one server span per request ([`Telemetry::begin`]), child of the caller's
//! `traceparent` when one came, and returns its own `traceparent`. The pipeline then records the
//! phases of the work as child spans, each with the start and end it measured anyway: decode,
//! queue wait, compute, drift, encode and the store writes that follow (the prediction log's).
//! Spans are built with the OpenTelemetry SDK and exported over OTLP/HTTP (protobuf) by its batch
//! processor, on a thread of its own, when `tracing.otlp_endpoint` is set; otherwise nothing is
//! recorded and a request costs one task-local lookup.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use serde::{Deserialize, Serialize};

/// Distributed tracing: spans of each request (the request itself, then decode, queue wait,
/// compute, drift and store writes), exported over OTLP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSettings {
    /// An OTLP/HTTP collector, such as `http://127.0.0.1:4318` (spans are POSTed, in protobuf, to
    /// its `/v1/traces`); unset: no spans are recorded. A W3C `traceparent` is accepted and
    /// returned either way.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` the spans carry.
    pub service_name: String,
}

impl Default for TracingSettings {
    fn default() -> Self {
        TracingSettings {
            otlp_endpoint: None,
            service_name: "maas".into(),
        }
    }
}

/// A `traceparent` header: `00-<trace id>-<parent span id>-<flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub flags: TraceFlags,
}

impl TraceParent {
    /// Parse a header as W3C Trace Context level 1 says: an unknown version is read for its
    /// first four fields; version `ff`, all-zero ids and malformed fields are refused (`None`:
    /// the request starts a trace of its own).
    pub fn parse(text: &str) -> Option<TraceParent> {
        let text = text.trim();
        let mut parts = text.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(parent, 16) {
            return None;
        }
        if !hex(flags, 2) || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let parent_id = SpanId::from_hex(parent).ok()?;
        if trace_id == TraceId::INVALID || parent_id == SpanId::INVALID {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceParent {
            trace_id,
            parent_id,
            flags: TraceFlags::new(flags & 1),
        })
    }

    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.parent_id,
            self.flags.to_u8()
        )
    }
}

/// The process's tracer: recording (an exporter is set) or not.
#[derive(Clone, Default)]
pub struct Telemetry {
    recording: Option<(SdkTracer, SdkTracerProvider)>,
}

impl Telemetry {
    /// No exporter: no spans, but `traceparent` is still accepted and returned.
    pub fn off() -> Telemetry {
        Telemetry::default()
    }

    /// Export spans to `settings.otlp_endpoint` when it is set.
    pub fn start(settings: &TracingSettings) -> anyhow::Result<Telemetry> {
        use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
        let Some(endpoint) = &settings.otlp_endpoint else {
            return Ok(Telemetry::off());
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .with_http_client(OtlpClient::default())
            .build()
            .map_err(|e| anyhow::anyhow!("tracing.otlp_endpoint '{endpoint}': {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("maas");
        tracing::info!(endpoint = %endpoint, "exporting traces over OTLP/HTTP");
        Ok(Telemetry {
            recording: Some((tracer, provider)),
        })
    }

    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// Send what is buffered and stop exporting (at shutdown).
    pub fn shutdown(&self) {
        if let Some((_, provider)) = &self.recording {
            if let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
                tracing::warn!(error = %e, "could not flush the last spans");
            }
        }
    }

    /// Open a request's server span, named `name` (such as `POST /v2/models/{name}/infer` or
    /// `inference.GRPCInferenceService/ModelInfer`), under the caller's `traceparent` if any.
    pub fn begin(
        &self,
        name: String,
        parent: Option<TraceParent>,
        attributes: Vec<KeyValue>,
    ) -> RequestSpan {
        match &self.recording {
            Some((tracer, _)) => {
                let parent_cx = match parent {
                    Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                        p.trace_id,
                        p.parent_id,
                        p.flags,
                        true,
                        TraceState::default(),
                    )),
                    None => Context::new(),
                };
                let span = tracer.build_with_context(
                    SpanBuilder::from_name(name)
                        .with_kind(SpanKind::Server)
                        .with_attributes(attributes),
                    &parent_cx,
                );
                let context = span.span_context().clone();
                let trace = if context.is_sampled() {
                    RequestTrace(Some(Arc::new((tracer.clone(), context.clone()))))
                } else {
                    RequestTrace(None)
                };
                RequestSpan {
                    span: Some(span),
                    parent: Some(TraceParent {
                        trace_id: context.trace_id(),
                        parent_id: context.span_id(),
                        flags: context.trace_flags(),
                    }),
                    trace,
                }
            }
            // Not recording: the caller's trace goes on through a span id of ours, so what it
            // gets back names this hop even though no span of it is kept.
            None => RequestSpan {
                span: None,
                parent: parent.map(|p| TraceParent {
                    parent_id: SpanId::from_bytes(rand::random::<[u8; 8]>()),
                    ..p
                }),
                trace: RequestTrace(None),
            },
        }
    }
}

/// A request's server span, open while the request runs.
pub struct RequestSpan {
    span: Option<opentelemetry_sdk::trace::Span>,
    parent: Option<TraceParent>,
    trace: RequestTrace,
}

impl RequestSpan {
    /// The `traceparent` to send back, naming this span; `None` when the request came without
    /// one and nothing is recorded.
    pub fn traceparent(&self) -> Option<String> {
        self.parent.map(|p| p.header())
    }

    /// The trace id, for the request's log line.
    pub fn trace_id(&self) -> Option<String> {
        self.parent.map(|p| p.trace_id.to_string())
    }

    /// What the request's work records its phases under.
    pub fn trace(&self) -> RequestTrace {
        self.trace.clone()
    }

    /// Close the span with the request's outcome: attributes (status code, …) and, for a
    /// failure, its message.
    pub fn end(self, attributes: Vec<KeyValue>, error: Option<String>) {
        self.end_named(None, attributes, error)
    }

    /// [`RequestSpan::end`], renaming the span first when `name` is given (an HTTP span is
    /// named `METHOD /route/{template}` once routing has found the route).
    pub fn end_named(self, name: Option<String>, attributes: Vec<KeyValue>, error: Option<String>) {
        if let Some(mut span) = self.span {
            if let Some(name) = name {
                span.update_name(name);
            }
            span.set_attributes(attributes);
            if let Some(message) = error {
                span.set_status(Status::error(message));
            }
            span.end();
        }
    }
}

/// Where a request's phases go: its server span, or nowhere. Cheap to clone.
#[derive(Clone, Default)]
pub struct RequestTrace(Option<Arc<(SdkTracer, SpanContext)>>);

impl RequestTrace {
    pub fn is_recording(&self) -> bool {
        self.0.is_some()
    }

    /// Record a phase that ran from `start` to `end` as a child of the request's span.
    pub fn phase(
        &self,
        name: &'static str,
        start: SystemTime,
        end: SystemTime,
        attributes: Vec<KeyValue>,
    ) {
        let Some(inner) = &self.0 else { return };
        let (tracer, parent) = &**inner;
        let cx = Context::new().with_remote_span_context(parent.clone());
        let mut span = tracer.build_with_context(
            SpanBuilder::from_name(name)
                .with_kind(SpanKind::Internal)
                .with_start_time(start)
                .with_attributes(attributes),
            &cx,
        );
        span.end_with_timestamp(end);
    }
}

tokio::task_local! {
    static CURRENT: RequestTrace;
}

/// Run `work` with `trace` as the current request's.
pub async fn scope<F: std::future::Future>(trace: RequestTrace, work: F) -> F::Output {
    CURRENT.scope(trace, work).await
}

/// The current request's trace (not recording outside a request).
pub fn current() -> RequestTrace {
    CURRENT.try_with(Clone::clone).unwrap_or_default()
}

/// The exporter's HTTP client: blocking reqwest, built on first use on the batch processor's
/// own thread (it runs the export future to completion there, outside any async runtime).
#[derive(Debug, Default)]
struct OtlpClient {
    client: OnceLock<Result<reqwest::blocking::Client, String>>,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self
            .client
            .get_or_init(|| {
                reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| e.clone())?;
        let (parts, body) = request.into_parts();
        let response = client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()?;
        let mut answer = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        Ok(answer.body(response.bytes()?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_read_as_the_w3c_says() {
        let p =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(p.flags.is_sampled());
        assert_eq!(
            p.header(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        // A later version may add fields after the four it shares with 00.
        assert!(TraceParent::parse(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        )
        .is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn without_an_exporter_the_callers_trace_goes_on_through_a_new_span_id() {
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let span = Telemetry::off().begin("GET /".into(), parent, vec![]);
        let back = TraceParent::parse(&span.traceparent().unwrap()).unwrap();
        assert_eq!(back.trace_id, parent.unwrap().trace_id);
        assert_ne!(back.parent_id, parent.unwrap().parent_id);
        assert!(!span.trace().is_recording());
        assert!(Telemetry::off()
            .begin("GET /".into(), None, vec![])
            .traceparent()
            .is_none());
    }
}
