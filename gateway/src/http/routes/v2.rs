//! The Open Inference Protocol (KServe V2, as Triton and MLServer speak it) over REST, so that
//! existing clients such as `tritonclient` work unchanged. Errors use the protocol's body,
//! `{"error": "..."}`, with the same statuses as the rest of the API.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use maas_serving::io::{v2_bytes, v2_datatype, v2_tensor, v2_tensor_from_bytes, Flat};
use maas_serving::{ServedVersion, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::http::auth::authorize;
use crate::http::error::{ErrorKind, ServiceError};
use crate::http::AppState;
use crate::services::auth::{Deploy, Permission, Predict, Principal, Read};
use crate::services::drift::DriftResult;
use crate::services::inference::{Call, Codec, Protocol};
use crate::services::open_inference::{self as oip, logged_tensor};

use crate::http::scoped_resource as resource;

/// Register this group's routes.
/// The protocol's prefix.
const V2: &str = "/v2";

pub fn configure(cfg: &mut web::ServiceConfig, json_limit: usize) {
    cfg.service(
        web::scope(V2)
            .app_data(
                web::JsonConfig::default()
                    .limit(json_limit)
                    .error_handler(json_error),
            )
            .service(resource(V2, "/models/{name}/infer").route(web::post().to(infer)))
            .service(
                resource(V2, "/models/{name}/versions/{version}/infer")
                    .route(web::post().to(infer_version)),
            )
            .service(
                web::resource("")
                    .app_data(crate::http::metrics::RouteStats::new(V2))
                    .route(web::get().to(server_metadata)),
            )
            .service(resource(V2, "/health/live").route(web::get().to(live)))
            .service(resource(V2, "/health/ready").route(web::get().to(ready)))
            .service(resource(V2, "/repository/index").route(web::post().to(repository_index)))
            .service(
                resource(V2, "/repository/models/{name}/load")
                    .route(web::post().to(repository_load)),
            )
            .service(
                resource(V2, "/repository/models/{name}/unload")
                    .route(web::post().to(repository_unload)),
            )
            .service(resource(V2, "/models/{name}").route(web::get().to(model_metadata)))
            .service(resource(V2, "/models/{name}/ready").route(web::get().to(model_ready)))
            .service(
                resource(V2, "/models/{name}/versions/{version}")
                    .route(web::get().to(version_metadata)),
            )
            .service(
                resource(V2, "/models/{name}/versions/{version}/ready")
                    .route(web::get().to(version_ready)),
            ),
    );
}

/// An error in the protocol's shape.
#[derive(Debug)]
pub struct V2Error(pub ServiceError);

#[derive(Serialize, Deserialize, ToSchema)]
pub struct V2ErrorBody {
    pub error: String,
}

impl std::fmt::Display for V2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<ServiceError> for V2Error {
    fn from(e: ServiceError) -> Self {
        V2Error(e)
    }
}

impl ResponseError for V2Error {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.0.kind.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.0.kind.status());
        if let Some(seconds) = self.0.retry_after {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        response
            .insert_header(("X-Error-Code", self.0.kind.code()))
            .json(V2ErrorBody {
                error: self.0.message.clone(),
            })
    }
}

/// `Authorized<P>` for the protocol's routes, failing with the protocol's error body.
pub struct V2Authorized<P: Permission>(pub Principal, PhantomData<P>);

impl<P: Permission + 'static> FromRequest for V2Authorized<P> {
    type Error = V2Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, V2Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let principal = authorize::<P>(&req).await?;
            Ok(V2Authorized(principal, PhantomData))
        })
    }
}

/// Malformed bodies on these routes get the protocol's error body too.
pub fn json_error(err: actix_web::error::JsonPayloadError, req: &HttpRequest) -> actix_web::Error {
    let api: ServiceError =
        match crate::http::error::extractors::json(err, req).as_error::<ServiceError>() {
            Some(api) => api.clone(),
            None => ServiceError::new(ErrorKind::InvalidRequest, "the body could not be read"),
        };
    V2Error(api).into()
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TensorMetadata {
    pub name: String,
    /// FP32, FP64, INT32, INT64, BOOL or BYTES.
    pub datatype: String,
    /// -1 for a dynamic dimension.
    pub shape: Vec<i64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

#[derive(Deserialize, ToSchema)]
pub struct InferInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// Row-major values, flat or nested; absent when the data is sent in binary.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub data: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
pub struct RequestedOutput {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
}

#[derive(Deserialize, ToSchema)]
pub struct InferRequest {
    pub id: Option<String>,
    /// The protocol's `binary_data_output`, and maas's own: `drift` (check these rows with a
    /// detector, as v1's `drift` field: `{"detector": "adwin"}`) and `save` (true or false: save
    /// this request in the prediction log, as v1's `save`).
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!({"drift": {"detector": "adwin"}, "save": true}))]
    pub parameters: Option<Map<String, Value>>,
    pub inputs: Vec<InferInput>,
    pub outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Serialize, ToSchema)]
pub struct InferOutput {
    pub name: String,
    pub shape: Vec<usize>,
    pub datatype: String,
    /// `binary_data_size` when the data follows the JSON in binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// Row-major values (absent when sent in binary).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub data: Option<Flat>,
}

/// The header of the binary tensor extension: the JSON part's length; binary data follows it.
pub(crate) const BINARY_HEADER: &str = "inference-header-content-length";

/// Read a body up to `limit` bytes, failing in the protocol's shape.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, V2Error> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            V2Error(ServiceError::new(
                ErrorKind::InvalidRequest,
                format!("the body could not be read: {e}"),
            ))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(V2Error(ServiceError::new(
                ErrorKind::PayloadTooLarge,
                format!("the body is larger than this route's limit of {limit} bytes"),
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Split a request into its JSON header and the binary data after it.
pub(crate) fn parse_request(
    req: &HttpRequest,
    body: &[u8],
) -> Result<(InferRequest, Vec<u8>), V2Error> {
    parse_body(req.headers(), body)
}

/// Bodies whose JSON is larger than this are parsed on a blocking thread: parsing megabytes takes
/// milliseconds that every other request on the HTTP worker would wait through.
const PARSE_INLINE_MAX: usize = 256 * 1024;

/// [`parse_request`], on a blocking thread when the body is large.
async fn parse_request_off_worker(
    req: &HttpRequest,
    body: web::BytesMut,
) -> Result<(InferRequest, Vec<u8>), V2Error> {
    if body.len() <= PARSE_INLINE_MAX {
        return parse_body(req.headers(), &body);
    }
    let headers = req.headers().clone();
    crate::services::off_worker(move || parse_body(&headers, &body))
        .await
        .map_err(V2Error)?
}

fn parse_body(
    headers: &actix_web::http::header::HeaderMap,
    body: &[u8],
) -> Result<(InferRequest, Vec<u8>), V2Error> {
    let bad = |m: String| V2Error(ServiceError::new(ErrorKind::InvalidRequest, m));
    let json_len = match headers.get(BINARY_HEADER) {
        Some(v) => {
            let n = v
                .to_str()
                .ok()
                .and_then(|t| t.parse::<usize>().ok())
                .ok_or_else(|| bad(format!("{BINARY_HEADER} is not a number")))?;
            if n > body.len() {
                return Err(bad(format!(
                    "{BINARY_HEADER} says {n} bytes but the body has {}",
                    body.len()
                )));
            }
            n
        }
        None => {
            let is_json = headers
                .get(actix_web::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.to_ascii_lowercase().contains("json"));
            if !is_json {
                return Err(V2Error(ServiceError::new(
                    ErrorKind::UnsupportedMediaType,
                    format!("send JSON, or JSON then binary data with {BINARY_HEADER}"),
                )));
            }
            body.len()
        }
    };
    let (json, binary) = body.split_at(json_len);
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(V2Error(ServiceError::new(
            ErrorKind::InvalidJson,
            "the body is empty; send an inference request",
        )));
    }
    let request: InferRequest = crate::http::json::from_slice(json).map_err(|e| {
        V2Error(ServiceError::new(
            e.kind,
            format!("the inference request is not valid: {}", e.message),
        ))
    })?;
    Ok((request, binary.to_vec()))
}

fn binary_size(parameters: &Option<Map<String, Value>>) -> Option<u64> {
    parameters.as_ref()?.get("binary_data_size")?.as_u64()
}

fn wants_binary(parameters: &Option<Map<String, Value>>) -> Option<bool> {
    parameters.as_ref()?.get("binary_data")?.as_bool()
}

#[derive(Serialize, ToSchema)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `drift`: the drift check (as v1's `drift`), when the request asked for one or the
    /// version checks every predict.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    pub outputs: Vec<InferOutput>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RepositoryEntry {
    pub name: String,
    pub version: String,
    /// READY or UNAVAILABLE.
    pub state: String,
    pub reason: String,
}

fn parse_version(text: &str) -> Result<u64, V2Error> {
    Ok(oip::parse_version(text)?)
}

/// The server is up.
#[utoipa::path(get, path = "/v2/health/live", operation_id = "v2_live", tag = "v2", security(("bearer" = ["viewer"])),
    responses((status = 200, description = "Live"), (status = 401, body = V2ErrorBody)))]
pub async fn live(_auth: V2Authorized<Read>) -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// Deployed models are loaded, and the store answers and takes writes: 200. Not ready: 400
/// `not_ready`, a 4xx as the protocol says (the ops probe `/health/ready` answers 503 instead).
#[utoipa::path(get, path = "/v2/health/ready", operation_id = "v2_ready", tag = "v2", security(("bearer" = ["viewer"])),
    responses((status = 200, description = "Ready"), (status = 400, description = "Not ready", body = V2ErrorBody), (status = 401, body = V2ErrorBody)))]
pub async fn ready(
    _auth: V2Authorized<Read>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, V2Error> {
    oip::server_ready(&state.models).await?;
    Ok(HttpResponse::Ok().finish())
}

/// Server metadata.
#[utoipa::path(get, path = "/v2", tag = "v2", security(("bearer" = ["viewer"])),
    responses((status = 200, body = ServerMetadata), (status = 401, body = V2ErrorBody)))]
pub async fn server_metadata(_auth: V2Authorized<Read>) -> web::Json<ServerMetadata> {
    web::Json(ServerMetadata {
        name: oip::SERVER_NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: oip::EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
    })
}

async fn metadata(
    state: &AppState,
    model: &str,
    version: Option<u64>,
) -> Result<ModelMetadata, V2Error> {
    let m = oip::metadata(&state.models, model, version).await?;
    let tensors = |t: Vec<oip::TensorMetadata>| {
        t.into_iter()
            .map(|t| TensorMetadata {
                name: t.name,
                datatype: t.datatype.into(),
                shape: t.shape,
            })
            .collect()
    };
    Ok(ModelMetadata {
        name: m.name,
        versions: m.versions,
        platform: m.platform.into(),
        inputs: tensors(m.inputs),
        outputs: tensors(m.outputs),
    })
}

/// Model metadata (the default version's signature).
#[utoipa::path(get, path = "/v2/models/{name}", tag = "v2", security(("bearer" = ["viewer"])),
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, body = ModelMetadata), (status = 401, body = V2ErrorBody), (status = 404, body = V2ErrorBody),
        (status = 409, description = "The model has no deployed version, or this version is kept but not deployed", body = V2ErrorBody)))]
pub async fn model_metadata(
    _auth: V2Authorized<Read>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<web::Json<ModelMetadata>, V2Error> {
    Ok(web::Json(metadata(&state, &name, None).await?))
}

/// Metadata of one version.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "v2", security(("bearer" = ["viewer"])),
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Version")),
    responses((status = 200, body = ModelMetadata), (status = 401, body = V2ErrorBody), (status = 404, body = V2ErrorBody),
        (status = 409, description = "The model has no deployed version, or this version is kept but not deployed", body = V2ErrorBody)))]
pub async fn version_metadata(
    _auth: V2Authorized<Read>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<web::Json<ModelMetadata>, V2Error> {
    let (name, version) = path.into_inner();
    Ok(web::Json(
        metadata(&state, &name, Some(parse_version(&version)?)).await?,
    ))
}

async fn readiness(
    state: &AppState,
    model: &str,
    version: Option<u64>,
) -> Result<HttpResponse, V2Error> {
    oip::model_ready(&state.models, model, version).await?;
    Ok(HttpResponse::Ok().finish())
}

/// Whether the model's default version is ready: 200, or 400 `not_ready` (undeployed, paused,
/// still loading), a 4xx as the protocol says.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "v2", security(("bearer" = ["viewer"])),
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, description = "Ready"), (status = 400, description = "Not ready", body = V2ErrorBody), (status = 404, body = V2ErrorBody)))]
pub async fn model_ready(
    _auth: V2Authorized<Read>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, V2Error> {
    readiness(&state, &name, None).await
}

/// Whether one version is ready: 200, or 400 `not_ready`, a 4xx as the protocol says.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "v2", security(("bearer" = ["viewer"])),
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Version")),
    responses((status = 200, description = "Ready"), (status = 400, description = "Not ready", body = V2ErrorBody), (status = 404, body = V2ErrorBody)))]
pub async fn version_ready(
    _auth: V2Authorized<Read>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, V2Error> {
    let (name, version) = path.into_inner();
    readiness(&state, &name, Some(parse_version(&version)?)).await
}

/// The Open Inference Protocol's codec: named, typed tensors in (JSON `data`, or binary data
/// after the JSON), the same out.
struct V2Codec {
    inputs: Vec<InferInput>,
    /// Requested outputs, each with whether its data goes in binary; `None`: every output.
    outputs: Option<Vec<RequestedOutput>>,
    /// `binary_data_output` of the request: outputs in binary unless they say otherwise.
    all_binary: bool,
    /// The binary data after the JSON.
    binary: Vec<u8>,
    id: Option<String>,
}

/// A V2 answer: the JSON response and the binary output data that follows it.
pub struct V2Answer {
    response: InferResponse,
    tail: Vec<u8>,
}

impl Codec for V2Codec {
    type Answer = V2Answer;

    fn decode(
        &mut self,
        served: &ServedVersion,
        log: bool,
    ) -> Result<(Vec<Tensor>, Option<Value>), ServiceError> {
        let signature = served.loaded.signature();
        let invalid = |m: String| ServiceError::new(ErrorKind::InvalidInput, m);
        // Binary inputs take their bytes from the tail, in request order.
        let mut ranges = Vec::with_capacity(self.inputs.len());
        let mut at = 0usize;
        for input in &self.inputs {
            match binary_size(&input.parameters) {
                Some(n) => {
                    let n = usize::try_from(n).unwrap_or(usize::MAX);
                    let end = at
                        .checked_add(n)
                        .filter(|&e| e <= self.binary.len())
                        .ok_or_else(|| {
                            invalid(format!(
                                "input '{}' declares {n} bytes of binary data that the body does not hold",
                                input.name
                            ))
                        })?;
                    ranges.push(Some(at..end));
                    at = end;
                }
                None => ranges.push(None),
            }
        }
        if at != self.binary.len() {
            return Err(invalid(format!(
                "{} bytes of binary data belong to no input",
                self.binary.len() - at
            )));
        }
        let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        let requested = self.outputs.iter().flatten().map(|o| o.name.as_str());
        let tensors = oip::bind_inputs(signature, &names, requested, |ix, spec| {
            let input = &self.inputs[ix];
            let tensor = match &ranges[ix] {
                Some(range) => v2_tensor_from_bytes(
                    spec,
                    &input.datatype,
                    &input.shape,
                    &self.binary[range.clone()],
                ),
                None => match &input.data {
                    Some(data) => v2_tensor(spec, &input.datatype, &input.shape, data),
                    None => {
                        return Err(invalid(format!(
                            "input '{}' has neither `data` nor binary data",
                            input.name
                        )))
                    }
                },
            };
            Ok(tensor?)
        })?;
        let logged = log.then(|| oip::logged_inputs(signature, &tensors));
        Ok((tensors, logged))
    }

    fn encode(
        self,
        served: &ServedVersion,
        results: Vec<Tensor>,
        drift: Option<DriftResult>,
        log: bool,
    ) -> Result<(V2Answer, Option<Value>), ServiceError> {
        let signature = served.loaded.signature();
        let wanted: Option<Vec<(String, bool)>> = self.outputs.map(|o| {
            o.into_iter()
                .map(|o| {
                    let binary = wants_binary(&o.parameters).unwrap_or(self.all_binary);
                    (o.name, binary)
                })
                .collect()
        });
        let mut logged = Vec::new();
        let mut outputs = Vec::new();
        let mut tail = Vec::new();
        for (spec, tensor) in signature.outputs.iter().zip(results) {
            let binary = match &wanted {
                Some(w) => match w.iter().find(|(n, _)| n == &spec.name) {
                    Some((_, binary)) => *binary,
                    None => continue,
                },
                None => self.all_binary,
            };
            if log {
                logged.push(logged_tensor(&spec.name, &tensor));
            }
            let parameters = binary.then(|| {
                let bytes = v2_bytes(&tensor);
                tail.extend_from_slice(&bytes);
                Map::from_iter([("binary_data_size".to_owned(), Value::from(bytes.len()))])
            });
            let Tensor { shape, data } = tensor;
            outputs.push(InferOutput {
                name: spec.name.clone(),
                datatype: v2_datatype(data.element_type()).into(),
                parameters,
                shape,
                data: (!binary).then_some(Flat(data)),
            });
        }
        let parameters = match drift {
            Some(drift) => {
                let drift = serde_json::to_value(drift).map_err(|e| {
                    ServiceError::internal(format!("encoding the drift check: {e}"))
                })?;
                Some(Map::from_iter([("drift".to_owned(), drift)]))
            }
            None => None,
        };
        let response = InferResponse {
            model_name: served.model.clone(),
            model_version: served.version.to_string(),
            id: self.id,
            parameters,
            outputs,
        };
        Ok((
            V2Answer { response, tail },
            log.then(|| json!({ "outputs": logged })),
        ))
    }
}

/// Run an inference request through the pipeline. The request's `parameters` may hold `drift`
/// (a detector to check these rows with, as v1's `drift` field) and `save` (as v1's `save`).
async fn run_infer(
    state: &AppState,
    principal: &Principal,
    model: &str,
    version: Option<u64>,
    request: InferRequest,
    binary: Vec<u8>,
    req: &HttpRequest,
) -> Result<V2Answer, V2Error> {
    let invalid = |m: String| V2Error(ServiceError::new(ErrorKind::InvalidInput, m));
    let parameters = request.parameters.unwrap_or_default();
    let drift = match parameters.get("drift") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            serde_json::from_value::<maas_drift::DetectorConfig>(value.clone()).map_err(|e| {
                invalid(format!(
                    "parameters.drift must be a detector such as {{\"detector\": \"adwin\"}}: {e}"
                ))
            })?,
        ),
    };
    let save = match parameters.get("save") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(invalid("parameters.save must be true or false".into())),
    };
    let all_binary = parameters
        .get("binary_data_output")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let call = Call {
        model: model.to_owned(),
        version,
        codec: V2Codec {
            inputs: request.inputs,
            outputs: request.outputs,
            all_binary,
            binary,
            id: request.id,
        },
        drift,
        save,
        actor: principal.username.clone(),
        client: crate::http::client::probe(req),
        protocol: Protocol::RestV2,
    };
    Ok(state.inference.run(call).await?.answer)
}

/// JSON, or JSON then binary output data with the extension's header.
fn respond(answer: V2Answer) -> Result<HttpResponse, V2Error> {
    let V2Answer { response, tail } = answer;
    let json = serde_json::to_vec(&response)
        .map_err(|e| V2Error(ServiceError::new(ErrorKind::Internal, e.to_string())))?;
    if tail.is_empty() {
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(json));
    }
    let header = json.len();
    let mut body = json;
    body.extend_from_slice(&tail);
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((BINARY_HEADER, header.to_string()))
        .body(body))
}

/// Inference with the default version: typed tensors in, typed tensors out.
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "v2", security(("bearer" = ["predictor"])),
    params(("name" = String, Path, description = "Model name")),
    request_body(content = InferRequest, example = json!({"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})),
    responses((status = 200, body = InferResponse), (status = 400, body = V2ErrorBody), (status = 401, body = V2ErrorBody),
        (status = 403, body = V2ErrorBody), (status = 404, body = V2ErrorBody),
        (status = 409, description = "The model has no deployed version", body = V2ErrorBody), (status = 422, body = V2ErrorBody),
        (status = 429, description = "The version's queue is full; retry after `Retry-After` seconds", body = V2ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Paused, not loaded here yet, or waited in the queue too long", body = V2ErrorBody)))]
pub async fn infer(
    auth: V2Authorized<Predict>,
    state: web::Data<AppState>,
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, V2Error> {
    let body = read_body(payload, state.v2_limit()).await?;
    let (request, binary) = parse_request_off_worker(&req, body).await?;
    let answer = run_infer(&state, &auth.0, &name, None, request, binary, &req).await?;
    respond(answer)
}

/// Inference with one version.
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "v2", security(("bearer" = ["predictor"])),
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Version")),
    request_body(content = InferRequest, example = json!({"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})),
    responses((status = 200, body = InferResponse), (status = 400, body = V2ErrorBody), (status = 401, body = V2ErrorBody),
        (status = 403, body = V2ErrorBody), (status = 404, body = V2ErrorBody),
        (status = 409, description = "The version is kept but not deployed", body = V2ErrorBody), (status = 422, body = V2ErrorBody),
        (status = 429, description = "The version's queue is full; retry after `Retry-After` seconds", body = V2ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Paused, not loaded here yet, or waited in the queue too long", body = V2ErrorBody)))]
pub async fn infer_version(
    auth: V2Authorized<Predict>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, V2Error> {
    let (name, version) = path.into_inner();
    let version = parse_version(&version)?;
    let body = read_body(payload, state.v2_limit()).await?;
    let (request, binary) = parse_request_off_worker(&req, body).await?;
    let answer = run_infer(&state, &auth.0, &name, Some(version), request, binary, &req).await?;
    respond(answer)
}

/// Repository extension: every version of every model with its state (an API key limited to
/// some models sees only those).
#[utoipa::path(post, path = "/v2/repository/index", tag = "v2", security(("bearer" = ["viewer"])),
    responses((status = 200, body = Vec<RepositoryEntry>), (status = 401, body = V2ErrorBody)))]
pub async fn repository_index(
    auth: V2Authorized<Read>,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<RepositoryEntry>>, V2Error> {
    let entries = oip::index(&state.models, &auth.0)
        .await?
        .into_iter()
        .map(|e| RepositoryEntry {
            state: e.state().into(),
            name: e.name,
            version: e.version,
            reason: e.reason,
        })
        .collect();
    Ok(web::Json(entries))
}

/// Repository extension: load a model, that is, deploy its newest kept version.
#[utoipa::path(post, path = "/v2/repository/models/{name}/load", tag = "v2", security(("bearer" = ["deployer"])),
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, description = "Loaded"), (status = 401, body = V2ErrorBody), (status = 403, body = V2ErrorBody),
        (status = 404, body = V2ErrorBody)))]
pub async fn repository_load(
    _auth: V2Authorized<Deploy>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, V2Error> {
    oip::load(&state.models, &name).await?;
    Ok(HttpResponse::Ok().finish())
}

/// Repository extension: unload a model, that is, undeploy every deployed version.
#[utoipa::path(post, path = "/v2/repository/models/{name}/unload", tag = "v2", security(("bearer" = ["deployer"])),
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, description = "Unloaded"), (status = 401, body = V2ErrorBody), (status = 403, body = V2ErrorBody),
        (status = 404, body = V2ErrorBody)))]
pub async fn repository_unload(
    _auth: V2Authorized<Deploy>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, V2Error> {
    oip::unload(&state.models, &name).await?;
    Ok(HttpResponse::Ok().finish())
}
