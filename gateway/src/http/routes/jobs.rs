//! The scheduler's routes: jobs (`/v1/jobs…`), the workflow catalog (`/v1/workflows…`) and a
//! model's retraining (`/v1/models/{name}/retrain`).

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use maas_scheduler::{JobAction, JobState, Priority, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::http::api::{rfc3339, Listing};
use crate::http::auth::Authorized;
use crate::http::error::{ErrorBody, ErrorKind, ServiceError};
use crate::http::json::Json;
use crate::services::auth::{Deploy, Read, Role};
use crate::services::jobs::{
    JobPage, JobReader, JobResults, JobService, JobSummary, JobView, Submission,
};
use crate::store::jobs::{JobFilter, WorkflowRecord};

use crate::http::resource;

/// Register this group's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/v1/jobs")
            .route(web::get().to(list))
            .route(web::post().to(submit)),
    )
    .service(resource("/v1/jobs/summary").route(web::get().to(summary)))
    .service(resource("/v1/jobs/{id}").route(web::get().to(get)))
    .service(resource("/v1/jobs/{id}/results").route(web::get().to(results)))
    .service(resource("/v1/jobs/{id}/tasks/{task}/logs").route(web::get().to(logs)))
    .service(resource("/v1/jobs/{id}/tasks/{task}/retry").route(web::post().to(retry)))
    .service(
        resource("/v1/jobs/{id}/tasks/{task}/artifacts/{path:.+}").route(web::get().to(artifact)),
    )
    .service(resource("/v1/jobs/{id}/{action}").route(web::post().to(act)))
    .service(
        resource("/v1/workflows")
            .route(web::get().to(list_workflows))
            .route(web::post().to(save_workflow)),
    )
    .service(resource("/v1/workflows/{workflow}").route(web::get().to(get_workflow)))
    .service(
        resource("/v1/workflows/{workflow}/versions/{version}")
            .route(web::get().to(get_workflow_version)),
    )
    .service(resource("/v1/models/{name}/retrain").route(web::post().to(retrain)));
}

/// A submit: a workflow definition, or the name (and version) of a saved one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The workflow: YAML or JSON text, or a JSON object.
    #[schema(value_type = Option<Object>)]
    pub workflow: Option<Value>,
    /// The name of a saved workflow (instead of `workflow`).
    pub name: Option<String>,
    /// Its version (default: the latest).
    pub version: Option<u64>,
    /// Values for the workflow's declared variables.
    #[schema(value_type = Option<Object>)]
    pub variables: Option<BTreeMap<String, Value>>,
    /// Overrides the workflow's priority: idle, lowest, low, normal, high, highest.
    pub priority: Option<String>,
}

/// The body of `POST /v1/workflows` and of a retraining request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowBody {
    /// The workflow: YAML or JSON text, or a JSON object.
    #[schema(value_type = Object)]
    pub workflow: Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrainRequest {
    /// Values for the retraining workflow's declared variables (MODEL_NAME and MODEL_VERSION
    /// are set by maas).
    #[schema(value_type = Option<Object>)]
    pub variables: Option<BTreeMap<String, Value>>,
}

/// A saved workflow version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkflowView {
    pub name: String,
    pub version: u64,
    pub description: String,
    pub created_by: String,
    pub created_at: String,
    /// The parsed workflow.
    #[schema(value_type = Object)]
    pub definition: Value,
    /// The text as it was saved.
    pub source: String,
}

/// A saved workflow with all its versions (numbers only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkflowHistory {
    pub latest: WorkflowView,
    pub versions: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowView>,
}

fn workflow_view(record: WorkflowRecord) -> WorkflowView {
    WorkflowView {
        definition: serde_json::from_str(&record.definition).unwrap_or(Value::Null),
        name: record.name,
        version: record.version,
        description: record.description,
        created_by: record.created_by,
        created_at: rfc3339(record.created_at),
        source: record.source,
    }
}

/// Filters of the job listing, summary and export.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// The workflow's name.
    pub name: Option<String>,
    pub owner: Option<String>,
    /// pending, running, paused, finished, failed, canceled, killed, in_error.
    pub state: Option<String>,
    /// Retraining jobs of this model.
    pub model: Option<String>,
    /// Submitted at or after (RFC 3339).
    pub since: Option<String>,
    /// Submitted before (RFC 3339).
    pub until: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
    /// `json` (default) or `csv` (every matching job with its variables and results).
    pub format: Option<String>,
}

impl JobQuery {
    fn filter(&self) -> Result<(JobFilter, bool), ServiceError> {
        let listing = Listing::parse(
            self.format.as_deref(),
            self.limit,
            self.offset,
            self.since.as_deref(),
            self.until.as_deref(),
        )?;
        let state = match &self.state {
            Some(s) => Some(JobState::parse(s).ok_or_else(|| {
                ServiceError::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "`state` '{s}' is not a job state; states are {}",
                        JobState::ALL.map(|s| s.as_str()).join(", ")
                    ),
                )
            })?),
            None => None,
        };
        Ok((
            JobFilter {
                name: self.name.clone(),
                owner: self.owner.clone(),
                state,
                model: self.model.clone(),
                since_ms: listing.since_us.map(|us| us / 1000),
                until_ms: listing.until_us.map(|us| us / 1000),
                limit: i64::from(listing.limit),
                offset: i64::from(listing.offset),
            },
            listing.csv,
        ))
    }
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// `stdout` (default) or `stderr`.
    pub stream: Option<String>,
    /// The attempt (default: the latest).
    pub attempt: Option<u32>,
    /// Start at this byte (for following: pass the previous answer's `X-Log-Offset`).
    pub offset: Option<u64>,
}

fn reader<P: crate::services::auth::Permission>(auth: &Authorized<P>) -> JobReader<'_> {
    JobReader {
        username: &auth.principal.username,
        admin: auth.principal.role == Role::Admin,
    }
}

/// A job can deploy any model (its deploy tasks name them), and its logs and results may show
/// any model's data, so an API key limited to some models may not submit, save, steer or read
/// jobs and workflows.
fn unscoped<P: crate::services::auth::Permission>(
    auth: &Authorized<P>,
) -> Result<(), ServiceError> {
    match &auth.principal.model_patterns {
        None => Ok(()),
        Some(patterns) => Err(ServiceError::new(
            ErrorKind::Forbidden,
            format!(
                "this API key is limited to models {}; jobs may deploy any model, so they need a \
                 credential without a model limit",
                patterns.join(", ")
            ),
        )),
    }
}

fn definition_text(value: &Value) -> Result<String, ServiceError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Object(_) => Ok(value.to_string()),
        _ => Err(ServiceError::new(
            ErrorKind::InvalidWorkflow,
            "`workflow` must be the definition as YAML or JSON text, or a JSON object",
        )),
    }
}

fn scalar_variables(
    variables: Option<BTreeMap<String, Value>>,
) -> Result<BTreeMap<String, String>, ServiceError> {
    variables
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(n) => Ok((k, n.to_string())),
            Value::Bool(b) => Ok((k, b.to_string())),
            _ => Err(ServiceError::new(
                ErrorKind::InvalidWorkflow,
                format!("variable '{k}' must be a string, number or boolean"),
            )),
        })
        .collect()
}

/// Submit a job: a workflow definition, or a saved workflow by name, with variables. Answers
/// 202 with the job; its tasks run as executors become free.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", security(("bearer" = ["deployer"])),
    request_body(content = SubmitRequest, example = json!({"workflow": {"name": "load-iris", "tasks": [{"name": "load", "kind": "load_dataset", "params": {"name": "iris"}}]}})),
    responses((status = 202, body = JobView, description = "Accepted: the job is pending"),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Not a deployer", body = ErrorBody),
        (status = 404, description = "Unknown saved workflow", body = ErrorBody),
        (status = 422, description = "Invalid workflow or variables", body = ErrorBody),
        (status = 429, description = "`queue_full`: as many jobs are not over as `scheduler.max_active_jobs` allows; with `Retry-After`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the job was not recorded", body = ErrorBody)))]
pub async fn submit(
    auth: Authorized<Deploy>,
    jobs: web::Data<JobService>,
    body: Json<SubmitRequest>,
) -> Result<HttpResponse, ServiceError> {
    unscoped(&auth)?;
    let body = body.into_inner();
    let (workflow, version): (Workflow, Option<u64>) = match (&body.workflow, &body.name) {
        (Some(definition), None) => {
            if body.version.is_some() {
                return Err(ServiceError::new(
                    ErrorKind::InvalidWorkflow,
                    "`version` goes with `name` (a saved workflow), not with `workflow`",
                ));
            }
            (jobs.parse(&definition_text(definition)?).await?, None)
        }
        (None, Some(name)) => {
            let saved = jobs.workflow(name, body.version).await?;
            (jobs.parse(&saved.source).await?, Some(saved.version))
        }
        _ => {
            return Err(ServiceError::new(
                ErrorKind::InvalidWorkflow,
                "send either `workflow` (a definition) or `name` (a saved workflow)",
            ))
        }
    };
    let priority = match &body.priority {
        Some(p) => Some(Priority::parse(p).ok_or_else(|| {
            ServiceError::new(
                ErrorKind::InvalidWorkflow,
                format!(
                    "priority '{p}' is not one of {}",
                    Priority::ALL.map(|p| p.as_str()).join(", ")
                ),
            )
        })?),
        None => None,
    };
    let job = jobs
        .submit(Submission {
            workflow,
            workflow_version: version,
            variables: scalar_variables(body.variables)?,
            priority,
            owner: auth.username().to_owned(),
            origin: "api".to_owned(),
            model: None,
        })
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/v1/jobs/{}", job.id)))
        .json(JobView::of(&job)))
}

/// Jobs, newest first, filtered by workflow name, owner, state, model and submit time; pages
/// with `limit`/`offset`; `format=csv` exports every match with its variables and results.
#[utoipa::path(get, path = "/v1/jobs", operation_id = "list_jobs", tag = "jobs", security(("bearer" = ["viewer"])),
    params(JobQuery),
    responses((status = 200, body = JobPage, description = "JSON, or CSV with format=csv"),
        (status = 400, description = "Unknown query parameter", body = ErrorBody),
        (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "An API key limited to some models", body = ErrorBody),
        (status = 422, description = "Bad state, time or limit", body = ErrorBody)))]
pub async fn list(
    auth: Authorized<Read>,
    jobs: web::Data<JobService>,
    query: web::Query<JobQuery>,
) -> Result<HttpResponse, ServiceError> {
    unscoped(&auth)?;
    let (filter, csv) = query.filter()?;
    if csv {
        let text = jobs.export_csv(&filter, reader(&auth)).await?;
        return Ok(crate::http::csv_attachment(text, "maas-jobs.csv"));
    }
    let (list, total) = jobs.list(&filter, reader(&auth)).await?;
    Ok(HttpResponse::Ok().json(JobPage { jobs: list, total }))
}

/// Counts per state, success ratio, jobs in progress and mean duration, for the same filters
/// as the listing.
#[utoipa::path(get, path = "/v1/jobs/summary", tag = "jobs", security(("bearer" = ["viewer"])),
    params(JobQuery),
    responses((status = 200, body = JobSummary), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "An API key limited to some models", body = ErrorBody),
        (status = 422, description = "Bad state or time", body = ErrorBody)))]
pub async fn summary(
    auth: Authorized<Read>,
    jobs: web::Data<JobService>,
    query: web::Query<JobQuery>,
) -> Result<web::Json<JobSummary>, ServiceError> {
    unscoped(&auth)?;
    let (filter, _) = query.filter()?;
    Ok(web::Json(jobs.summary(&filter).await?))
}

/// A job with its tasks: states, attempts, executors, timings, errors. The failure reason and
/// the tasks' errors are null for callers other than the job's owner and admins.
#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "get_job", tag = "jobs", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 401, description = "No valid bearer", body = ErrorBody),
        (status = 404, description = "Unknown job", body = ErrorBody), (status = 403, description = "An API key limited to some models", body = ErrorBody)))]
pub async fn get(
    auth: Authorized<Read>,
    jobs: web::Data<JobService>,
    path: web::Path<String>,
) -> Result<web::Json<JobView>, ServiceError> {
    unscoped(&auth)?;
    Ok(web::Json(jobs.view(&path, reader(&auth)).await?))
}

/// `cancel` (nothing new starts, running tasks finish), `pause` (nothing new starts), `resume`,
/// or `kill` (running processes are ended). Refused with 409 when the job's state does not
/// allow it.
#[utoipa::path(post, path = "/v1/jobs/{id}/{action}", operation_id = "act_on_job", tag = "jobs", security(("bearer" = ["deployer"])),
    params(("id" = String, Path, description = "Job id"), ("action" = String, Path, description = "cancel, pause, resume or kill")),
    responses((status = 200, body = JobView), (status = 401, description = "No valid bearer", body = ErrorBody),
        (status = 403, description = "Not a deployer", body = ErrorBody),
        (status = 404, description = "Unknown job or action", body = ErrorBody),
        (status = 409, description = "Not allowed in the job's state", body = ErrorBody)))]
pub async fn act(
    auth: Authorized<Deploy>,
    jobs: web::Data<JobService>,
    path: web::Path<(String, String)>,
) -> Result<web::Json<JobView>, ServiceError> {
    unscoped(&auth)?;
    let (id, action) = path.into_inner();
    let action = match action.as_str() {
        "cancel" => JobAction::Cancel,
        "pause" => JobAction::Pause,
        "resume" => JobAction::Resume,
        "kill" => JobAction::Kill,
        other => {
            return Err(ServiceError::new(
                ErrorKind::RouteNotFound,
                format!("no job action '{other}'; actions are cancel, pause, resume and kill"),
            ))
        }
    };
    Ok(web::Json(jobs.act(&id, action, reader(&auth)).await?))
}

/// Try a failed task again (one more attempt); tasks its failure skipped get their chance
/// back and the job runs again.
#[utoipa::path(post, path = "/v1/jobs/{id}/tasks/{task}/retry", tag = "jobs", security(("bearer" = ["deployer"])),
    params(("id" = String, Path, description = "Job id"), ("task" = String, Path, description = "Task name")),
    responses((status = 200, body = JobView), (status = 401, description = "No valid bearer", body = ErrorBody),
        (status = 403, description = "Not a deployer", body = ErrorBody),
        (status = 404, description = "Unknown job or task", body = ErrorBody),
        (status = 409, description = "The task did not fail, or the job is not failed or in error", body = ErrorBody)))]
pub async fn retry(
    auth: Authorized<Deploy>,
    jobs: web::Data<JobService>,
    path: web::Path<(String, String)>,
) -> Result<web::Json<JobView>, ServiceError> {
    unscoped(&auth)?;
    let (id, task) = path.into_inner();
    Ok(web::Json(jobs.retry(&id, &task, reader(&auth)).await?))
}

/// A task's log (stdout or stderr of an attempt), from byte `offset` on, also while it runs;
/// for the job's owner and admins.
/// `X-Log-Offset` is where the next read starts; `X-Log-Complete: false` while more may come.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks/{task}/logs", tag = "jobs", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "Job id"), ("task" = String, Path, description = "Task name"), LogQuery),
    responses((status = 200, description = "The log text", content_type = "text/plain"),
        (status = 401, description = "No valid bearer", body = ErrorBody),
        (status = 403, description = "Not the job's owner or an admin, or an API key limited to some models", body = ErrorBody),
        (status = 404, description = "Unknown job or task", body = ErrorBody),
        (status = 422, description = "Unknown stream or attempt", body = ErrorBody)))]
pub async fn logs(
    auth: Authorized<Read>,
    jobs: web::Data<JobService>,
    path: web::Path<(String, String)>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ServiceError> {
    unscoped(&auth)?;
    let (id, task) = path.into_inner();
    let (bytes, next, more) = jobs
        .logs(
            &id,
            &task,
            query.attempt,
            query.stream.as_deref().unwrap_or("stdout"),
            query.offset.unwrap_or(0),
            reader(&auth),
        )
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("X-Log-Offset", next.to_string()))
        .insert_header(("X-Log-Complete", (!more).to_string()))
        .body(bytes))
}

/// What the job produced: each task's exported variables, metrics and artifact files; for the
/// job's owner and admins.
#[utoipa::path(get, path = "/v1/jobs/{id}/results", tag = "jobs", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobResults), (status = 401, description = "No valid bearer", body = ErrorBody),
        (status = 403, description = "Not the job's owner or an admin, or an API key limited to some models", body = ErrorBody),
        (status = 404, description = "Unknown job", body = ErrorBody)))]
pub async fn results(
    auth: Authorized<Read>,
    jobs: web::Data<JobService>,
    path: web::Path<String>,
) -> Result<web::Json<JobResults>, ServiceError> {
    unscoped(&auth)?;
    Ok(web::Json(jobs.results(&path, reader(&auth)).await?))
}

/// Download a file a task wrote under its `artifacts/` folder (latest attempt); for the job's
/// owner and admins.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks/{task}/artifacts/{path}", tag = "jobs", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "Job id"), ("task" = String, Path, description = "Task name"),
        ("path" = String, Path, description = "Path under artifacts/, as listed in the results")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 401, description = "No valid bearer", body = ErrorBody),
        (status = 403, description = "Not the job's owner or an admin, or an API key limited to some models", body = ErrorBody),
        (status = 404, description = "Unknown job, task or artifact", body = ErrorBody)))]
pub async fn artifact(
    auth: Authorized<Read>,
    jobs: web::Data<JobService>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ServiceError> {
    unscoped(&auth)?;
    let (id, task, file) = path.into_inner();
    let path = jobs.artifact(&id, &task, &file, reader(&auth)).await?;
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        ServiceError::new(
            ErrorKind::Internal,
            format!("cannot read the artifact: {e}"),
        )
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().replace('"', ""))
        .unwrap_or_default();
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        ))
        .body(bytes))
}

/// Save a workflow in the catalog: a new version under its name.
#[utoipa::path(post, path = "/v1/workflows", tag = "jobs", security(("bearer" = ["deployer"])),
    request_body = WorkflowBody,
    responses((status = 201, body = WorkflowView), (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Not a deployer", body = ErrorBody),
        (status = 422, description = "Invalid workflow", body = ErrorBody)))]
pub async fn save_workflow(
    auth: Authorized<Deploy>,
    jobs: web::Data<JobService>,
    body: Json<WorkflowBody>,
) -> Result<HttpResponse, ServiceError> {
    unscoped(&auth)?;
    let source = definition_text(&body.workflow)?;
    let record = jobs.save_workflow(&source, auth.username()).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/workflows/{}", record.name)))
        .json(workflow_view(record)))
}

/// The catalog: the latest version of every saved workflow.
#[utoipa::path(get, path = "/v1/workflows", tag = "jobs", security(("bearer" = ["viewer"])),
    responses((status = 200, body = WorkflowList), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "An API key limited to some models", body = ErrorBody)))]
pub async fn list_workflows(
    auth: Authorized<Read>,
    jobs: web::Data<JobService>,
) -> Result<web::Json<WorkflowList>, ServiceError> {
    unscoped(&auth)?;
    let workflows = jobs.workflows().await?;
    Ok(web::Json(WorkflowList {
        workflows: workflows.into_iter().map(workflow_view).collect(),
    }))
}

fn workflow_missing(name: &str) -> ServiceError {
    ServiceError::new(
        ErrorKind::WorkflowNotFound,
        format!("no workflow named '{name}' is saved"),
    )
}

/// A saved workflow's latest version and the numbers of all its versions.
#[utoipa::path(get, path = "/v1/workflows/{workflow}", tag = "jobs", security(("bearer" = ["viewer"])),
    params(("workflow" = String, Path, description = "Workflow name")),
    responses((status = 200, body = WorkflowHistory), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "An API key limited to some models", body = ErrorBody),
        (status = 404, description = "Unknown workflow", body = ErrorBody)))]
pub async fn get_workflow(
    auth: Authorized<Read>,
    jobs: web::Data<JobService>,
    path: web::Path<String>,
) -> Result<web::Json<WorkflowHistory>, ServiceError> {
    unscoped(&auth)?;
    let versions = jobs.workflow_versions(&path).await?;
    let numbers = versions.iter().map(|v| v.version).collect();
    let latest = versions
        .into_iter()
        .last()
        .ok_or_else(|| workflow_missing(&path))?;
    Ok(web::Json(WorkflowHistory {
        latest: workflow_view(latest),
        versions: numbers,
    }))
}

/// One version of a saved workflow.
#[utoipa::path(get, path = "/v1/workflows/{workflow}/versions/{version}", tag = "jobs", security(("bearer" = ["viewer"])),
    params(("workflow" = String, Path, description = "Workflow name"), ("version" = u64, Path, description = "Version")),
    responses((status = 200, body = WorkflowView), (status = 401, description = "No valid bearer", body = ErrorBody),
        (status = 404, description = "Unknown workflow or version", body = ErrorBody), (status = 403, description = "An API key limited to some models", body = ErrorBody)))]
pub async fn get_workflow_version(
    auth: Authorized<Read>,
    jobs: web::Data<JobService>,
    path: web::Path<(String, u64)>,
) -> Result<web::Json<WorkflowView>, ServiceError> {
    unscoped(&auth)?;
    let (name, version) = path.into_inner();
    let record = jobs.workflow(&name, Some(version)).await?;
    Ok(web::Json(workflow_view(record)))
}

/// Submit the model's retraining workflow (set with the `update` action's `retrain_workflow`)
/// with `MODEL_NAME` and `MODEL_VERSION` (the serving version) set. Its deploy task puts the
/// new version live only if it scores at least as well on the same holdout.
#[utoipa::path(post, path = "/v1/models/{name}/retrain", tag = "jobs", security(("bearer" = ["deployer"])),
    params(("name" = String, Path, description = "Model name")),
    request_body = RetrainRequest,
    responses((status = 202, body = JobView), (status = 401, description = "No valid bearer", body = ErrorBody),
        (status = 403, description = "Not a deployer", body = ErrorBody),
        (status = 404, description = "Unknown model or workflow", body = ErrorBody),
        (status = 409, description = "The model names no retraining workflow", body = ErrorBody),
        (status = 422, description = "Invalid variables", body = ErrorBody),
        (status = 429, description = "`queue_full`: as many jobs are not over as `scheduler.max_active_jobs` allows; with `Retry-After`", body = ErrorBody)))]
pub async fn retrain(
    auth: Authorized<Deploy>,
    jobs: web::Data<JobService>,
    path: web::Path<String>,
    body: Option<Json<RetrainRequest>>,
) -> Result<HttpResponse, ServiceError> {
    unscoped(&auth)?;
    let variables = scalar_variables(body.and_then(|b| b.into_inner().variables))?;
    let job = jobs
        .retrain(&path, auth.username(), "retrain", variables)
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/v1/jobs/{}", job.id)))
        .json(JobView::of(&job)))
}
