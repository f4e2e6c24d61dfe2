//! `maas serve`: open the store and the artifacts, load what is deployed, and serve HTTP.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use maas_serving::{ArtifactStore, Backend, TractBackend};
use utoipa_swagger_ui::SwaggerUi;

use crate::error::extractors;
use crate::metrics::Metrics;
use crate::models::ModelService;
use crate::settings::{BackendChoice, Settings};
use crate::store::SqlStore;
use crate::{openapi, request_id, routes};

/// What every handler can reach.
pub struct AppState {
    pub models: ModelService,
    pub settings: Settings,
    /// Client for `model_url` downloads.
    pub http: reqwest::Client,
}

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new()?);
    let url = settings.database_url()?;
    let store = SqlStore::connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the store: {e}"))?;
    let artifact_dir = settings.artifact_dir();
    let artifacts = ArtifactStore::open(&artifact_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the artifact folder {}: {e}",
            artifact_dir.display()
        )
    })?;
    let backend: Arc<dyn Backend> = match settings.serving.backend {
        BackendChoice::Tract => Arc::new(TractBackend),
    };
    tracing::info!(
        store = if url.starts_with("postgres") { "postgres" } else { "sqlite" },
        artifacts = %artifact_dir.display(),
        backend = backend.kind().as_str(),
        "starting"
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(settings.serving.model_url_timeout_secs))
        .build()?;
    let state = web::Data::new(AppState {
        models: ModelService::new(store, artifacts, backend, metrics.clone()),
        settings: settings.clone(),
        http,
    });
    state
        .models
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("loading deployed models: {e}"))?;

    let listener = TcpListener::bind(&settings.server.bind)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.server.bind))?;
    let address = listener.local_addr()?;
    let metrics_data = web::Data::from(metrics);
    let limits = settings.limits.clone();
    let app_state = state.clone();
    let mut server = HttpServer::new(move || {
        let json = |limit: u64| {
            web::JsonConfig::default()
                .limit(usize::try_from(limit).unwrap_or(usize::MAX))
                .error_handler(extractors::json)
        };
        let predict_json = json(limits.max_predict_bytes);
        App::new()
            .app_data(app_state.clone())
            .app_data(metrics_data.clone())
            .app_data(json(limits.max_json_bytes))
            .app_data(
                web::PayloadConfig::default()
                    .limit(usize::try_from(limits.max_json_bytes).unwrap_or(usize::MAX)),
            )
            .app_data(web::PathConfig::default().error_handler(extractors::path))
            .app_data(web::QueryConfig::default().error_handler(extractors::query))
            .wrap(from_fn(crate::metrics::middleware))
            .wrap(from_fn(request_id::middleware))
            .configure(|cfg| routes::configure(cfg, predict_json))
            .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi::document()))
            .default_service(web::to(routes::not_found))
    })
    .listen(listener)?;
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    let server = server.shutdown_timeout(10).run();
    tracing::info!("listening on http://{address}");

    let sync_state = state.clone();
    let interval = Duration::from_millis(settings.serving.sync_interval_ms);
    let sync = actix_web::rt::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if let Err(e) = sync_state.models.reconcile().await {
                tracing::warn!(error = %e, "could not sync with the store; will retry");
            }
        }
    });
    let result = server.await;
    sync.abort();
    tracing::info!("stopped");
    Ok(result?)
}
