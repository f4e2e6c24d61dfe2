//! `maas serve`: open the store and the artifacts, load what is deployed, and serve HTTP.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use maas_serving::{ArtifactStore, BackendChoice, Backends};
use utoipa_swagger_ui::SwaggerUi;

use crate::http::error::extractors;
use crate::http::{self, openapi, request_id, AppState};
use crate::services::auth::jwt::JwtKeys;
use crate::services::auth::limiter::{LoginLimiter, LoginLimits};
use crate::services::auth::{passwords, Authenticator, Role};
use crate::services::drift::DriftService;
use crate::services::inference::Inference;
use crate::services::jobs::JobService;
use crate::services::metrics::Metrics;
use crate::services::models::ModelService;
use crate::services::predictions::PredictionLog;
use crate::settings::Settings;
use crate::store::SqlStore;

/// The actix app: every route, the middleware and the shared services. `serve` runs it on a
/// listener; tests can run it in process with `actix_web::test::init_service`.
pub fn create_app(
    data: &AppData,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limits = &data.state.settings.limits;
    let json = |limit: u64| {
        web::JsonConfig::default()
            .limit(usize::try_from(limit).unwrap_or(usize::MAX))
            .error_handler(extractors::json)
    };
    let predict_json = json(limits.max_predict_bytes).error_handler(extractors::predict_json);
    let v2_limit = usize::try_from(limits.max_predict_bytes).unwrap_or(usize::MAX);
    App::new()
        .app_data(data.state.clone())
        .app_data(data.jobs.clone())
        .app_data(data.metrics.clone())
        .app_data(data.authenticator.clone())
        .app_data(json(limits.max_json_bytes))
        .app_data(
            web::PayloadConfig::default()
                .limit(usize::try_from(limits.max_json_bytes).unwrap_or(usize::MAX)),
        )
        .app_data(web::PathConfig::default().error_handler(extractors::path))
        .app_data(web::QueryConfig::default().error_handler(extractors::query))
        .wrap(crate::http::connections::ConnectionLimits(
            crate::http::connections::BodyTimeouts {
                body: Duration::from_secs(data.state.settings.server.body_timeout_secs),
                upload: Duration::from_secs(data.state.settings.server.upload_timeout_secs),
            },
        ))
        .wrap(from_fn(crate::http::metrics::middleware))
        .wrap(from_fn(request_id::middleware))
        .configure(|cfg| http::configure(cfg, predict_json, v2_limit))
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi::document()))
        .configure(crate::http::console::configure)
        .default_service(web::to(http::not_found))
}

/// What the app's handlers reach, built once per process by [`build`].
#[derive(Clone)]
pub struct AppData {
    pub state: web::Data<AppState>,
    pub jobs: web::Data<JobService>,
    pub metrics: web::Data<Metrics>,
    pub authenticator: web::Data<Authenticator>,
}

/// Open the store and the artifacts, load what is deployed, and build every service the handlers
/// reach. Starts no listener and no scheduler and creates no admin: [`serve`] does, and so must a
/// caller that wants one ([`bootstrap_admin`]).
pub async fn build(settings: &Settings) -> anyhow::Result<AppData> {
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
    let runtime_settings = store.runtime_settings().await?;
    crate::services::runtime::apply(&store, runtime_settings);
    let authenticator = web::Data::new(Authenticator {
        store: store.clone(),
        jwt: JwtKeys::load(&settings.auth, &settings.storage.data_dir)?,
        limiter: LoginLimiter::new(LoginLimits {
            max_failures: settings.auth.login_max_failures,
            address_max_failures: settings.auth.login_address_max_failures,
            max_backoff: Duration::from_secs(settings.auth.login_max_backoff_secs),
            window: Duration::from_secs(settings.auth.login_window_secs),
        }),
        protect_metrics: settings.auth.protect_metrics,
        cache: crate::services::auth::CredentialCache::new(Duration::from_millis(
            settings.auth.cache_ttl_ms,
        )),
    });
    let backends = Arc::new(Backends::new(&settings.serving.ort));
    let ort = match backends.ort_unavailable() {
        None if backends.cuda_available() => "available, with CUDA".to_owned(),
        None => "available, CPU only".to_owned(),
        Some(why) => format!("unavailable: {why}"),
    };
    // An explicit ONNX Runtime default that cannot be honoured is a startup error, not a
    // surprise at the first deploy.
    match settings.serving.backend {
        BackendChoice::OrtCpu | BackendChoice::OrtCuda if backends.ort_unavailable().is_some() => {
            anyhow::bail!(
                "serving.backend is {} but ONNX Runtime is {ort}",
                settings.serving.backend.as_str()
            )
        }
        BackendChoice::OrtCuda if !backends.cuda_available() => anyhow::bail!(
            "serving.backend is ort-cuda but ONNX Runtime's CUDA execution provider is not available \
             (install onnxruntime-gpu and point ORT_DYLIB_PATH at its library, on a machine with an NVIDIA GPU)"
        ),
        _ => {}
    }
    tracing::info!(
        store = if url.starts_with("postgres") { "postgres" } else { "sqlite" },
        artifacts = %artifact_dir.display(),
        backend = settings.serving.backend.as_str(),
        onnxruntime = %ort,
        "starting"
    );
    let fetcher = crate::services::fetch::UrlFetcher::new(
        settings.limits.url_policy()?,
        Duration::from_secs(settings.serving.model_url_timeout_secs),
    )?;
    let job_store = store.clone();
    let drift = Arc::new(DriftService::new(
        store.clone(),
        metrics.clone(),
        settings.drift.webhook_url.clone(),
    ));
    let models = Arc::new(
        ModelService::new(
            store.clone(),
            artifacts,
            backends,
            settings.serving.defaults(),
            metrics.clone(),
            drift.clone(),
        )
        .with_load_limits(
            settings.limits.load_limits(),
            Duration::from_secs(settings.limits.load_timeout_secs),
        ),
    );
    let predictions =
        PredictionLog::start(store.clone(), metrics.clone(), settings.predictions.clone());
    let state = web::Data::new(AppState {
        inference: Inference::new(models.clone(), drift, predictions, metrics.clone()),
        models,
        settings: settings.clone(),
        fetcher,
        telemetry: crate::services::telemetry::Telemetry::start(&settings.tracing)?,
    });
    // The scheduler deploys through the same registry a user calls.
    let jobs = web::Data::new(crate::services::jobs::JobService::new(
        job_store,
        metrics.clone(),
        settings.scheduler.clone(),
        &settings.storage.data_dir,
        state.models.clone(),
    )?);
    state
        .models
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("loading deployed models: {e}"))?;
    Ok(AppData {
        state,
        jobs,
        metrics: web::Data::from(metrics),
        authenticator,
    })
}

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let data = build(&settings).await?;
    data.jobs.start();
    let state = data.state.clone();

    let listener = TcpListener::bind(&settings.server.bind)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.server.bind))?;
    let address = listener.local_addr()?;
    let sync_store = data.authenticator.store.clone();
    let admin_store = data.authenticator.store.clone();
    let grpc_data = data.clone();
    let workers = match settings.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let fds = crate::http::connections::raise_fd_limit();
    let gate = crate::http::connections::ConnectionGate::new(
        crate::http::connections::connection_limit(settings.server.max_connections, fds, workers)?,
    );
    tracing::info!(
        max_connections = gate.max(),
        file_descriptors = fds,
        "connection limit"
    );
    let per_worker = gate.max().div_ceil(workers) + crate::http::connections::OVERFLOW_PER_WORKER;
    let mut server = HttpServer::new(move || create_app(&data))
        .on_connect(move |connection, extensions| gate.on_connect(connection, extensions))
        .max_connections(per_worker);
    let scheme = match (&settings.server.tls_cert, &settings.server.tls_key) {
        (Some(cert), Some(key)) => {
            server = server.listen_rustls_0_23(listener, tls_config(cert, key)?)?;
            "https"
        }
        _ => {
            server = server.listen(listener)?;
            "http"
        }
    };
    server = server.workers(workers);
    let grpc = crate::grpc::start(&settings, &grpc_data)?;
    // Only now, with everything that can fail at start behind us, the first start creates the
    // admin: a start that fails earlier leaves no admin behind, and the next one creates it and
    // prints its password, rather than an admin whose generated password went out with a failed
    // start's log.
    bootstrap_admin(&admin_store).await?;
    let server = server.shutdown_timeout(10).run();
    // Logged before the HTTP line: what waits for "listening on" knows both addresses then.
    if let Some(grpc) = &grpc {
        tracing::info!("gRPC listening at {}", grpc.address);
    }
    tracing::info!("listening on {scheme}://{address}");

    let sync_state = state.clone();
    let interval = Duration::from_millis(settings.serving.sync_interval_ms);
    let sync = actix_web::rt::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if let Err(e) = sync_state.models.reconcile().await {
                tracing::warn!(error = %e, "could not sync with the store; will retry");
            }
            // Runtime settings changed on another replica take effect here too.
            match sync_store.runtime_settings().await {
                Ok(settings) => crate::services::runtime::apply(&sync_store, settings),
                Err(e) => tracing::warn!(error = %e, "could not read the runtime settings"),
            }
        }
    });
    let result = server.await;
    sync.abort();
    if let Some(grpc) = grpc {
        // Joining blocks this thread for as long as the calls in flight take (10 s at most).
        let _ = tokio::task::spawn_blocking(move || grpc.stop()).await;
    }
    state.telemetry.shutdown();
    tracing::info!("stopped");
    Ok(result?)
}

/// What the log says when `MAAS_ADMIN_PASSWORD` is set but the admin already exists.
pub const ADMIN_EXISTS: &str =
    "admin exists; MAAS_ADMIN_PASSWORD ignored; change it with maas user passwd";

/// On a store with no users, create `admin` with `MAAS_ADMIN_PASSWORD`, or with a random password
/// printed once in the log. On a store with users, say that `MAAS_ADMIN_PASSWORD` is ignored.
pub async fn bootstrap_admin(store: &SqlStore) -> anyhow::Result<()> {
    let given = std::env::var("MAAS_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    if store.user_count().await? > 0 {
        if given.is_some() {
            ignored_admin_password(store).await?;
        }
        return Ok(());
    }
    let (password, given) = match given {
        Some(p) => (p, true),
        None => (passwords::random(), false),
    };
    let to_hash = password.clone();
    let hash = tokio::task::spawn_blocking(move || passwords::hash(&to_hash))
        .await?
        .map_err(|e| anyhow::anyhow!("MAAS_ADMIN_PASSWORD: {e}"))?;
    match store.create_user("admin", &hash, Role::Admin).await {
        Ok(_) if given => tracing::info!("created user 'admin' with the password from MAAS_ADMIN_PASSWORD"),
        Ok(_) => tracing::warn!(
            "created user 'admin' with password {password} (shown once; change it with `maas user passwd admin`)"
        ),
        // Another replica bootstrapped at the same moment.
        Err(crate::store::StoreError::UserExists(_)) if given => {
            ignored_admin_password(store).await?
        }
        Err(crate::store::StoreError::UserExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn ignored_admin_password(store: &SqlStore) -> anyhow::Result<()> {
    if store.user("admin").await?.is_some() {
        tracing::warn!("{ADMIN_EXISTS}");
    } else {
        tracing::warn!(
            "users exist, none named admin; MAAS_ADMIN_PASSWORD ignored; add an admin with maas user add NAME --role admin"
        );
    }
    Ok(())
}

fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    use std::io::BufReader;
    let open = |p: &std::path::Path| {
        std::fs::File::open(p)
            .map(BufReader::new)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
    };
    let certs = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", cert.display());
    }
    let private_key = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?
        .ok_or_else(|| anyhow::anyhow!("{} holds no PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)?)
}
