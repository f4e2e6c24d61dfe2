//! The OpenAPI document. `maas openapi` prints it; `openapi/openapi.json` is the committed copy
//! and a test fails when the two differ.

use utoipa::OpenApi;

use crate::api;
use crate::error::ErrorBody;
use crate::routes::{deploy, health, models, predict};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "maas",
        description = "Model-as-a-service gateway: versioned ONNX models over HTTP.\n\nEvery error \
                       has the body `{code, message, request_id}` with a stable snake_case `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        health::live,
        health::ready,
        health::metrics,
        models::list,
        models::get,
        models::delete_model,
        models::versions,
        deploy::deploy,
        models::version,
        models::delete_version,
        models::redeploy,
        models::undeploy,
        predict::predict_default,
        predict::predict_version,
    ),
    components(schemas(
        ErrorBody,
        api::HealthStatus,
        api::TensorInfo,
        api::VersionInfo,
        api::VersionSummary,
        api::ModelInfo,
        api::ModelList,
        api::VersionList,
        api::DeployForm,
        api::RedeployRequest,
        api::PredictRequest,
        api::PredictResponse,
    )),
    tags(
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "models", description = "Deploy, inspect, roll back and delete model versions"),
        (name = "predict", description = "Run a model"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON, with the running version filled in.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

pub fn pretty_json() -> String {
    document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
