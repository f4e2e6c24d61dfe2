//! HTTP routes. Handlers are adapters: extract, call one service function, map the result.
//! Each route is one resource with its methods, so a wrong method gets a JSON 405.

pub mod admin;
pub mod auth;
pub mod deploy;
pub mod health;
pub mod jobs;
pub mod models;
pub mod predict;
pub mod v2;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::{ApiError, ErrorCode};

/// Register every route; `predict_json` is the body limit of the predict routes.
pub fn configure(
    cfg: &mut web::ServiceConfig,
    predict_json: web::JsonConfig,
    v2_json_limit: usize,
) {
    let resource =
        |path: &str| web::resource(path.to_owned()).default_service(web::to(method_not_allowed));
    // actix tries resources in the order they are registered, and each pattern with a `{…}`
    // segment costs a regex run (for routing, and again when the metrics middleware asks for the
    // matched pattern): the predict routes come first, so the hot path matches at once.
    cfg.service(
        resource("/v1/models/{name}/predict")
            .app_data(predict_json.clone())
            .route(web::post().to(predict::predict_default)),
    )
    .service(
        resource("/v1/models/{name}/versions/{version}/predict")
            .app_data(predict_json)
            .route(web::post().to(predict::predict_version)),
    )
    .service(web::resource("/docs").route(web::get().to(docs_redirect)))
    .service(resource("/health/live").route(web::get().to(health::live)))
    .service(resource("/health/ready").route(web::get().to(health::ready)))
    .service(resource("/metrics").route(web::get().to(health::metrics)))
    .service(
        web::scope("/v2")
            .app_data(
                web::JsonConfig::default()
                    .limit(v2_json_limit)
                    .error_handler(v2::json_error),
            )
            .service(resource("/models/{name}/infer").route(web::post().to(v2::infer)))
            .service(
                resource("/models/{name}/versions/{version}/infer")
                    .route(web::post().to(v2::infer_version)),
            )
            .service(web::resource("").route(web::get().to(v2::server_metadata)))
            .service(resource("/health/live").route(web::get().to(v2::live)))
            .service(resource("/health/ready").route(web::get().to(v2::ready)))
            .service(resource("/repository/index").route(web::post().to(v2::repository_index)))
            .service(
                resource("/repository/models/{name}/load")
                    .route(web::post().to(v2::repository_load)),
            )
            .service(
                resource("/repository/models/{name}/unload")
                    .route(web::post().to(v2::repository_unload)),
            )
            .service(resource("/models/{name}").route(web::get().to(v2::model_metadata)))
            .service(resource("/models/{name}/ready").route(web::get().to(v2::model_ready)))
            .service(
                resource("/models/{name}/versions/{version}")
                    .route(web::get().to(v2::version_metadata)),
            )
            .service(
                resource("/models/{name}/versions/{version}/ready")
                    .route(web::get().to(v2::version_ready)),
            ),
    )
    .service(
        resource("/v1/settings")
            .route(web::get().to(admin::settings))
            .route(web::patch().to(admin::update_settings)),
    )
    .service(resource("/v1/audit").route(web::get().to(admin::audit)))
    .service(
        resource("/v1/jobs")
            .route(web::get().to(jobs::list))
            .route(web::post().to(jobs::submit)),
    )
    .service(resource("/v1/jobs/summary").route(web::get().to(jobs::summary)))
    .service(resource("/v1/jobs/{id}").route(web::get().to(jobs::get)))
    .service(resource("/v1/jobs/{id}/results").route(web::get().to(jobs::results)))
    .service(resource("/v1/jobs/{id}/tasks/{task}/logs").route(web::get().to(jobs::logs)))
    .service(resource("/v1/jobs/{id}/tasks/{task}/retry").route(web::post().to(jobs::retry)))
    .service(
        resource("/v1/jobs/{id}/tasks/{task}/artifacts/{path:.+}")
            .route(web::get().to(jobs::artifact)),
    )
    .service(resource("/v1/jobs/{id}/{action}").route(web::post().to(jobs::act)))
    .service(
        resource("/v1/workflows")
            .route(web::get().to(jobs::list_workflows))
            .route(web::post().to(jobs::save_workflow)),
    )
    .service(resource("/v1/workflows/{workflow}").route(web::get().to(jobs::get_workflow)))
    .service(
        resource("/v1/workflows/{workflow}/versions/{version}")
            .route(web::get().to(jobs::get_workflow_version)),
    )
    .service(resource("/v1/models/{name}/retrain").route(web::post().to(jobs::retrain)))
    .service(resource("/v1/auth/token").route(web::post().to(auth::token)))
    .service(resource("/v1/auth/me").route(web::get().to(auth::me)))
    .service(
        resource("/v1/users")
            .route(web::get().to(auth::list_users))
            .route(web::post().to(auth::create_user)),
    )
    .service(
        resource("/v1/users/{username}")
            .route(web::patch().to(auth::update_user))
            .route(web::delete().to(auth::delete_user)),
    )
    .service(
        resource("/v1/api-keys")
            .route(web::get().to(auth::list_keys))
            .route(web::post().to(auth::create_key)),
    )
    .service(resource("/v1/api-keys/{id}").route(web::delete().to(auth::revoke_key)))
    .service(
        resource("/v1/models")
            .route(web::get().to(models::list))
            .route(web::post().to(models::create)),
    )
    .service(resource("/v1/models/{name}/actions").route(web::get().to(models::actions)))
    .service(
        resource("/v1/models/{name}/versions/{version}/predictions")
            .route(web::get().to(predict::saved)),
    )
    .service(resource("/v1/models/{name}/actions/{action}").route(web::post().to(models::act)))
    .service(
        resource("/v1/models/{name}")
            .route(web::get().to(models::get))
            .route(web::delete().to(models::delete_model)),
    )
    .service(
        resource("/v1/models/{name}/versions")
            .route(web::get().to(models::versions))
            .route(web::post().to(deploy::deploy)),
    )
    .service(
        resource("/v1/models/{name}/versions/{version}")
            .route(web::get().to(models::version))
            .route(web::delete().to(models::delete_version)),
    )
    .service(resource("/v1/models/{name}/drift").route(web::get().to(models::drift_events)))
    .service(
        resource("/v1/models/{name}/versions/{version}/baseline")
            .route(web::put().to(deploy::replace_baseline)),
    )
    .service(
        resource("/v1/models/{name}/versions/{version}/deploy")
            .route(web::post().to(models::redeploy)),
    )
    .service(
        resource("/v1/models/{name}/versions/{version}/undeploy")
            .route(web::post().to(models::undeploy)),
    );
}

/// Swagger UI lives at `/docs/`; `/docs` is what people type.
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}

async fn method_not_allowed(req: HttpRequest) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    )
}

pub async fn not_found(req: HttpRequest) -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        format!("no route {} {}", req.method(), req.path()),
    )
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _req: &HttpRequest) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

/// A CSV export, offered as a download.
pub fn csv_attachment(text: String, file_name: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{file_name}\""),
        ))
        .body(text)
}
