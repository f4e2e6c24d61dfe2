//! `inference.GRPCInferenceService`: each RPC authenticates the caller as the HTTP routes do
//! (`authorization: Bearer …` metadata, the same roles and API-key model scopes), runs one
//! services call inside the request's audit and trace scope, and answers protobuf or a status.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

use super::codec::GrpcCodec;
use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::repository_index_response::ModelIndex;
use super::proto::*;
use super::status::status;
use crate::http::AppState;
use crate::services::auth::{Authenticator, Deploy, Permission, Predict, Principal, Read};
use crate::services::error::{ErrorKind, ServiceError};
use crate::services::inference::{Call, Protocol};
use crate::services::metrics::Metrics;
use crate::services::open_inference as oip;
use crate::services::telemetry::{self, TraceParent};

/// The service; cloned into each connection by tonic.
#[derive(Clone)]
pub struct InferenceService {
    state: Arc<AppState>,
    auth: Arc<Authenticator>,
    metrics: Arc<Metrics>,
}

impl InferenceService {
    pub fn new(data: &crate::server::AppData) -> Self {
        InferenceService {
            state: data.state.clone().into_inner(),
            auth: data.authenticator.clone().into_inner(),
            metrics: data.metrics.clone().into_inner(),
        }
    }
}

/// What one call knows about itself before its work runs.
struct CallInfo {
    principal: Principal,
    /// When the caller stops waiting (`grpc-timeout`), if it said.
    deadline: Option<Instant>,
}

/// `grpc-timeout`: an integer of at most 8 digits and a unit (H, M, S, m, u, n).
fn timeout(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The name of a status code as the metrics label it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl InferenceService {
    /// Run one RPC: authenticate for permission `P` (on `model` when the call names one), then
    /// `work`, inside the request's audit and trace scope; count and time it.
    async fn call<P, T, R, F, Fut>(
        &self,
        method: &'static str,
        request: Request<T>,
        model: impl FnOnce(&T) -> Option<String>,
        work: F,
    ) -> Result<Response<R>, Status>
    where
        P: Permission,
        F: FnOnce(CallInfo, T) -> Fut,
        Fut: Future<Output = Result<R, ServiceError>>,
    {
        let started = Instant::now();
        let peer = request.remote_addr().map(|a| a.ip());
        let (metadata, _, message) = request.into_parts();
        let id = crate::services::audit::request_id(
            metadata.get("x-request-id").and_then(|v| v.to_str().ok()),
        );
        let deadline = timeout(&metadata).map(|t| started + t);
        let parent = metadata
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        let span = self.state.telemetry.begin(
            format!("inference.GRPCInferenceService/{method}"),
            parent,
            vec![
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", "inference.GRPCInferenceService"),
                KeyValue::new("rpc.method", method),
                KeyValue::new("maas.request_id", id.clone()),
            ],
        );
        let context = crate::store::audit::AuditContext {
            actor: None,
            client: peer,
            request_id: id.clone(),
        };
        let model = model(&message);
        let authorization = metadata
            .get("authorization")
            .map(|v| v.to_str().map_err(|_| ()));
        let auth = self.auth.clone();
        let work = async move {
            let principal = auth.authenticate(authorization).await?;
            crate::store::audit::set_actor(principal.actor());
            principal.require::<P>(model.as_deref())?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ServiceError::new(
                    ErrorKind::QueueTimeout,
                    "the call's deadline passed before it could start",
                ));
            }
            work(
                CallInfo {
                    principal,
                    deadline,
                },
                message,
            )
            .await
        };
        let log_span = tracing::info_span!("grpc", request_id = %id, method);
        let result = telemetry::scope(
            span.trace(),
            crate::store::audit::scope(context, tracing::Instrument::instrument(work, log_span)),
        )
        .await;
        let traceparent = span.traceparent();
        let answer = match result {
            Ok(message) => {
                let mut response = Response::new(message);
                let metadata = response.metadata_mut();
                if let Ok(value) = MetadataValue::try_from(id.as_str()) {
                    metadata.insert("x-request-id", value);
                }
                if let Some(value) = traceparent.and_then(|t| MetadataValue::try_from(t).ok()) {
                    metadata.insert("traceparent", value);
                }
                Ok(response)
            }
            Err(error) => {
                let mut s = status(error, &id);
                if let Some(value) = traceparent.and_then(|t| MetadataValue::try_from(t).ok()) {
                    s.metadata_mut().insert("traceparent", value);
                }
                Err(s)
            }
        };
        let code = match &answer {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        span.end(
            vec![KeyValue::new("rpc.grpc.status_code", code as i64)],
            answer.as_ref().err().map(|s| s.message().to_owned()),
        );
        self.metrics
            .observe_grpc(method, code_name(code), started.elapsed().as_secs_f64());
        answer
    }
}

/// An optional version as the protocol sends it: empty means the default version.
fn version(text: &str) -> Result<Option<u64>, ServiceError> {
    if text.is_empty() {
        Ok(None)
    } else {
        oip::parse_version(text).map(Some)
    }
}

/// maas's own request parameters: `drift` (a detector, as JSON text) and `save` (bool).
fn parameters(
    parameters: &std::collections::HashMap<String, InferParameter>,
) -> Result<(Option<maas_drift::DetectorConfig>, Option<bool>), ServiceError> {
    let invalid = |m: String| ServiceError::new(ErrorKind::InvalidInput, m);
    let drift = match parameters.get("drift").and_then(|p| p.parameter_choice.as_ref()) {
        None => None,
        Some(ParameterChoice::StringParam(text)) => {
            Some(serde_json::from_str(text).map_err(|e| {
                invalid(format!(
                    "parameters.drift must be a detector as JSON text, such as {{\"detector\": \"adwin\"}}: {e}"
                ))
            })?)
        }
        Some(_) => {
            return Err(invalid(
                "parameters.drift must be a string_param holding JSON, such as {\"detector\": \"adwin\"}".into(),
            ))
        }
    };
    let save = match parameters
        .get("save")
        .and_then(|p| p.parameter_choice.as_ref())
    {
        None => None,
        Some(ParameterChoice::BoolParam(b)) => Some(*b),
        Some(_) => return Err(invalid("parameters.save must be a bool_param".into())),
    };
    Ok((drift, save))
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        self.call::<Read, _, _, _, _>(
            "ServerLive",
            request,
            |_| None,
            |_, _| async { Ok(ServerLiveResponse { live: true }) },
        )
        .await
    }

    async fn server_ready(
        &self,
        request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let state = self.state.clone();
        self.call::<Read, _, _, _, _>(
            "ServerReady",
            request,
            |_| None,
            |_, _| async move {
                Ok(ServerReadyResponse {
                    ready: oip::server_ready(&state.models).await.is_ok(),
                })
            },
        )
        .await
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let state = self.state.clone();
        self.call::<Read, _, _, _, _>(
            "ModelReady",
            request,
            |m| Some(m.name.clone()),
            |_, m| async move {
                let version = version(&m.version)?;
                match oip::model_ready(&state.models, &m.name, version).await {
                    Ok(()) => Ok(ModelReadyResponse { ready: true }),
                    Err(e) if e.kind == ErrorKind::NotReady => {
                        Ok(ModelReadyResponse { ready: false })
                    }
                    Err(e) => Err(e),
                }
            },
        )
        .await
    }

    async fn server_metadata(
        &self,
        request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.call::<Read, _, _, _, _>(
            "ServerMetadata",
            request,
            |_| None,
            |_, _| async {
                Ok(ServerMetadataResponse {
                    name: oip::SERVER_NAME.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    extensions: oip::EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
                })
            },
        )
        .await
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let state = self.state.clone();
        self.call::<Read, _, _, _, _>(
            "ModelMetadata",
            request,
            |m| Some(m.name.clone()),
            |_, m| async move {
                let meta = oip::metadata(&state.models, &m.name, version(&m.version)?).await?;
                let tensors = |t: Vec<oip::TensorMetadata>| {
                    t.into_iter()
                        .map(|t| TensorMetadata {
                            name: t.name,
                            datatype: t.datatype.into(),
                            shape: t.shape,
                        })
                        .collect()
                };
                Ok(ModelMetadataResponse {
                    name: meta.name,
                    versions: meta.versions,
                    platform: meta.platform.into(),
                    inputs: tensors(meta.inputs),
                    outputs: tensors(meta.outputs),
                })
            },
        )
        .await
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let state = self.state.clone();
        self.call::<Predict, _, _, _, _>(
            "ModelInfer",
            request,
            |m| Some(m.model_name.clone()),
            |info, m| async move {
                let version = version(&m.model_version)?;
                let (drift, save) = parameters(&m.parameters)?;
                // A call whose deadline passes while it waits in the queue is not computed.
                let client = info.deadline.map(|deadline| {
                    std::sync::Arc::new(move || Instant::now() < deadline)
                        as maas_serving::batching::ClientProbe
                });
                let call = Call {
                    model: m.model_name,
                    version,
                    codec: GrpcCodec {
                        id: m.id,
                        inputs: m.inputs,
                        outputs: m.outputs,
                        raw: m.raw_input_contents,
                    },
                    drift,
                    save,
                    actor: info.principal.username,
                    client,
                    protocol: Protocol::Grpc,
                };
                Ok(state.inference.run(call).await?.answer)
            },
        )
        .await
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let state = self.state.clone();
        self.call::<Read, _, _, _, _>(
            "RepositoryIndex",
            request,
            |_| None,
            |info, m| async move {
                let models = oip::index(&state.models, &info.principal)
                    .await?
                    .into_iter()
                    .filter(|e| !m.ready || e.ready)
                    .map(|e| ModelIndex {
                        state: e.state().into(),
                        name: e.name,
                        version: e.version,
                        reason: e.reason,
                    })
                    .collect();
                Ok(RepositoryIndexResponse { models })
            },
        )
        .await
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let state = self.state.clone();
        self.call::<Deploy, _, _, _, _>(
            "RepositoryModelLoad",
            request,
            |m| Some(m.model_name.clone()),
            |_, m| async move {
                oip::load(&state.models, &m.model_name).await?;
                Ok(RepositoryModelLoadResponse {})
            },
        )
        .await
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let state = self.state.clone();
        self.call::<Deploy, _, _, _, _>(
            "RepositoryModelUnload",
            request,
            |m| Some(m.model_name.clone()),
            |_, m| async move {
                oip::unload(&state.models, &m.model_name).await?;
                Ok(RepositoryModelUnloadResponse {})
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_is_read_in_every_unit() {
        let mut m = MetadataMap::new();
        for (text, want) in [
            ("2S", Some(Duration::from_secs(2))),
            ("150m", Some(Duration::from_millis(150))),
            ("1H", Some(Duration::from_secs(3600))),
            ("99999999n", Some(Duration::from_nanos(99_999_999))),
            ("123456789S", None),
            ("S", None),
            ("5x", None),
        ] {
            m.insert("grpc-timeout", MetadataValue::try_from(text).unwrap());
            assert_eq!(timeout(&m), want, "{text}");
        }
    }
}
