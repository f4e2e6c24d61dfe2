//! The OpenAPI document. `maas openapi` prints it; `openapi/openapi.json` is the committed copy
//! and a test fails when the two differ.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::api;
use crate::http::error::ErrorBody;
use crate::http::routes::{admin, auth, deploy, health, jobs, models, predict, v2};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "maas",
        description = "Model-as-a-service gateway: versioned ONNX models over HTTP (and the Open \
                       Inference Protocol over gRPC, on `server.grpc_bind`).\n\nEvery error \
                       has the body `{code, message, request_id}` with a stable snake_case `code`.\n\n\
                       Every route takes an `X-Request-Id` header and answers with one, and takes a \
                       W3C `traceparent` header: a request that sends one (or any request, when \
                       spans are exported) gets back a `traceparent` naming its own span in that trace.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerScheme, &CommonResponses),
    paths(
        admin::settings,
        admin::update_settings,
        admin::audit,
        auth::token,
        auth::me,
        auth::list_users,
        auth::create_user,
        auth::update_user,
        auth::delete_user,
        auth::create_key,
        auth::list_keys,
        auth::revoke_key,
        health::live,
        health::ready,
        health::metrics,
        models::list,
        models::create,
        models::get,
        models::actions,
        models::act,
        models::delete_model,
        models::versions,
        deploy::deploy,
        models::version,
        models::delete_version,
        models::redeploy,
        models::undeploy,
        models::drift_events,
        models::drift_distribution,
        deploy::replace_baseline,
        predict::predict_default,
        predict::predict_version,
        predict::saved,
        v2::live,
        v2::ready,
        v2::server_metadata,
        v2::model_metadata,
        v2::version_metadata,
        v2::model_ready,
        v2::version_ready,
        v2::infer,
        v2::infer_version,
        v2::repository_index,
        v2::repository_load,
        v2::repository_unload,
        jobs::submit,
        jobs::list,
        jobs::summary,
        jobs::get,
        jobs::act,
        jobs::retry,
        jobs::logs,
        jobs::results,
        jobs::artifact,
        jobs::save_workflow,
        jobs::list_workflows,
        jobs::get_workflow,
        jobs::get_workflow_version,
        jobs::retrain,
    ),
    components(schemas(
        ErrorBody,
        jobs::SubmitRequest,
        jobs::WorkflowBody,
        jobs::RetrainRequest,
        jobs::WorkflowView,
        jobs::WorkflowHistory,
        jobs::WorkflowList,
        crate::services::jobs::JobView,
        crate::services::jobs::TaskView,
        crate::services::jobs::JobPage,
        crate::services::jobs::JobSummary,
        crate::services::jobs::JobResults,
        crate::services::jobs::TaskResults,
        crate::services::jobs::ArtifactView,
        api::HealthStatus,
        api::TensorInfo,
        api::VersionInfo,
        api::VersionSummary,
        api::ModelInfo,
        api::ModelList,
        api::VersionList,
        api::DeployForm,
        api::RedeployRequest,
        maas_serving::ServingOptions,
        api::ServingInfo,
        crate::services::actions::ActionRequest,
        api::ServiceInfo,
        crate::services::runtime::RuntimeSettings,
        crate::services::runtime::SettingsPatch,
        crate::store::audit::AuditEvent,
        crate::http::routes::admin::AuditPage,
        crate::services::predictions::PredictionRecord,
        crate::http::routes::predict::PredictionPage,
        api::CreateModelRequest,
        crate::services::actions::ServiceState,
        crate::services::actions::ServiceAction,
        api::PredictRequest,
        api::PredictResponse,
        api::DriftInfo,
        api::DriftEvent,
        crate::services::distributions::DriftDistribution,
        crate::services::distributions::FeatureDistribution,
        crate::services::distributions::ValueSummary,
        crate::services::distributions::Quantiles,
        api::DriftEventList,
        crate::services::drift::DriftSettings,
        crate::services::drift::DriftResult,
        crate::services::auth::Role,
        v2::V2ErrorBody,
        v2::ServerMetadata,
        v2::TensorMetadata,
        v2::ModelMetadata,
        v2::InferInput,
        v2::RequestedOutput,
        v2::InferRequest,
        v2::InferOutput,
        v2::InferResponse,
        v2::RepositoryEntry,
        auth::TokenRequest,
        auth::TokenResponse,
        auth::Me,
        auth::UserInfo,
        auth::UserList,
        auth::NewUser,
        auth::UserUpdate,
        auth::NewApiKey,
        auth::ApiKeyInfo,
        auth::CreatedApiKey,
        auth::ApiKeyList,
    )),
    tags(
        (name = "auth", description = "Tokens, users and API keys"),
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "models", description = "Deploy, inspect, roll back and delete model versions"),
        (name = "predict", description = "Run a model"),
        (name = "drift", description = "Baselines and drift events"),
        (name = "v2", description = "Open Inference Protocol (KServe V2): the routes tritonclient and the KServe SDK call"),
    )
)]
pub struct ApiDoc;

/// The `bearer` scheme every protected route names, with the least role it needs: a JWT from
/// `POST /v1/auth/token` or an API key (`maas_…`). Swagger UI's Authorize button takes either.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or maas API key")
                    .description(Some(
                        "A token from POST /v1/auth/token, or an API key. The list on each route names the least role it needs.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The statuses every route can answer for the same reasons, added where a route's own list
/// leaves them out: 401 on a route that needs a bearer; 400 on one that reads a path value, a
/// query string or a body (a value of the wrong type, an unknown query key, JSON that does not
/// parse); 408, 413 and 415 on one that takes a body (too slow, too large, wrong `Content-Type`);
/// 503 on every route (more connections than `server.max_connections`). `/v2` routes
/// answer with the Open Inference Protocol's `{"error"}` body, the others with `ErrorBody`.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        for (path, item) in openapi.paths.paths.iter_mut() {
            let body = if path.starts_with("/v2") {
                "V2ErrorBody"
            } else {
                "ErrorBody"
            };
            let error = |description: &str| {
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(body)))
                            .build(),
                    )
                    .build()
            };
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let takes_body = operation.request_body.is_some();
                let reads_input =
                    takes_body || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let mut common = Vec::new();
                if reads_input {
                    common.push((
                        "400",
                        "Malformed request: a path value of the wrong type, an unknown query key, \
                         or a body that is not valid JSON",
                    ));
                }
                if secured {
                    common.push(("401", "No valid bearer"));
                }
                if takes_body {
                    common.push((
                        "408",
                        "`body_timeout`: the body did not arrive within server.body_timeout_secs \
                         (multipart uploads: server.upload_timeout_secs); the connection is closed",
                    ));
                    common.push(("413", "The body is larger than this route takes"));
                    common.push(("415", "The body's Content-Type is not one this route takes"));
                }
                common.push((
                    "503",
                    "`too_many_connections`: more connections are open than \
                     server.max_connections; retry after `Retry-After`",
                ));
                let responses = &mut operation.responses.responses;
                for (status, description) in common {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

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
