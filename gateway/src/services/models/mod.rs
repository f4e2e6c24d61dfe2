//! The model service: deploy, undeploy, roll back, delete and predict, keeping the store (the
//! truth), the artifact files and the in-memory registry (what this process serves) in step.
//!
//! Every change is ordered the same way: do the slow and fallible work (upload, load, test
//! inference) first, then commit to the store together with the artifact's rename, then update
//! the registry. A failure before the commit leaves nothing behind; a crash after it is repaired
//! by [`ModelService::reconcile`], which is also how replicas pick up each other's changes.

mod actions;
mod deploy;

pub use deploy::{DeployRequest, DeploySource, Placement, Upload};

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use maas_serving::batching::{self, BatchConfig, BatchQueue, ClientProbe, Dispatched};
use maas_serving::{
    check_load_limits, ArtifactStore, BackendChoice, BackendKind, Backends, LoadLimits,
    LoadedModel, ModelRegistry, OrtThreads, ServedVersion, ServingDefaults, ServingError,
    ServingOptions, VersionMeta,
};

use crate::services::baseline::{build_record_off_worker, BaselineUpload};
use crate::services::drift::{DriftService, VersionDrift};
use crate::services::error::{ErrorKind, ServiceError};
use crate::services::metrics::Metrics;
use crate::store::{ModelRecord, ModelStore, SqlStore, VersionRecord, VersionState};

/// Leftover artifact files younger than this are never swept: another replica may be between
/// its rename and its commit.
const SWEEP_MIN_AGE: Duration = Duration::from_secs(600);

/// How long one answer of [`ModelService::check_writable`] is reused: each probe is a real write
/// (a synced file and a committed row), and probes may come often.
const WRITE_PROBE_TTL: Duration = Duration::from_secs(1);

/// How long loading a version and its test inference may take unless configured.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Test hook: with `MAAS_TEST_INFERENCE_DELAY_MS` set, every inference (the warmup's too) first
/// sleeps that long, so tests can fill queues and outwait limits deterministically.
fn slowed_for_tests(instances: Vec<Arc<dyn LoadedModel>>) -> Vec<Arc<dyn LoadedModel>> {
    let Some(delay) = std::env::var("MAAS_TEST_INFERENCE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return instances;
    };
    struct Slowed(Arc<dyn LoadedModel>, Duration);
    impl LoadedModel for Slowed {
        fn signature(&self) -> &maas_serving::ModelSignature {
            self.0.signature()
        }
        fn infer(
            &self,
            inputs: Vec<maas_serving::Tensor>,
        ) -> Result<Vec<maas_serving::Tensor>, ServingError> {
            std::thread::sleep(self.1);
            self.0.infer(inputs)
        }
        fn kernel(&self) -> Option<&'static str> {
            self.0.kernel()
        }
    }
    instances
        .into_iter()
        .map(|i| Arc::new(Slowed(i, Duration::from_millis(delay))) as Arc<dyn LoadedModel>)
        .collect()
}

/// A version loaded and warmed up, waiting for its number to start serving.
struct Prepared {
    instances: Vec<Arc<dyn LoadedModel>>,
    backend: BackendKind,
    execution_provider: String,
    note: Option<String>,
    ort_threads: Option<OrtThreads>,
    warmup: std::time::Duration,
    batch: BatchConfig,
}

/// Whether a stored version is loaded here, or why not.
pub enum LoadStatus {
    Loaded(Arc<ServedVersion>),
    NotLoaded,
    Failed(String),
}

pub struct ModelService {
    store: SqlStore,
    drift: Arc<DriftService>,
    artifacts: Arc<ArtifactStore>,
    registry: ModelRegistry,
    backends: Arc<Backends>,
    /// Server-wide serving defaults, for options a deploy left out.
    defaults: ServingDefaults,
    metrics: Arc<Metrics>,
    /// Serialises store commits with registry updates on this process.
    write_lock: tokio::sync::Mutex<()>,
    /// Versions the store says are deployed but that failed to load here, with the reason.
    failed: parking_lot::Mutex<HashMap<(String, u64), String>>,
    /// Models whose service is paused: their predicts are refused before any other work.
    paused: parking_lot::RwLock<HashSet<String>>,
    /// Models whose predicts are saved in the prediction log by default.
    logged: parking_lot::RwLock<HashSet<String>>,
    ready: AtomicBool,
    /// What loading one model may cost, and how long loading and its test inference may take.
    load_limits: LoadLimits,
    load_timeout: Duration,
    /// The last write probe: when, and why the store refused it.
    write_probe: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

/// Model names are path segments, file names and metric labels: keep them plain.
pub fn validate_model_name(name: &str) -> Result<(), ServiceError> {
    let ok = (1..=128).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::new(
            ErrorKind::InvalidModelName,
            format!(
                "model name '{}' is not allowed: use 1 to 128 letters, digits, '-', '_' or '.', \
                 starting with a letter or digit",
                name.chars().take(140).collect::<String>()
            ),
        ))
    }
}

impl ModelService {
    pub fn new(
        store: SqlStore,
        artifacts: ArtifactStore,
        backends: Arc<Backends>,
        defaults: ServingDefaults,
        metrics: Arc<Metrics>,
        drift: Arc<DriftService>,
    ) -> Self {
        ModelService {
            drift,
            store,
            artifacts: Arc::new(artifacts),
            registry: ModelRegistry::new(),
            backends,
            defaults,
            metrics,
            write_lock: tokio::sync::Mutex::new(()),
            failed: parking_lot::Mutex::new(HashMap::new()),
            paused: parking_lot::RwLock::new(HashSet::new()),
            logged: parking_lot::RwLock::new(HashSet::new()),
            ready: AtomicBool::new(false),
            write_probe: tokio::sync::Mutex::new(None),
            load_limits: LoadLimits::default(),
            load_timeout: DEFAULT_LOAD_TIMEOUT,
        }
    }

    /// Load models under these limits (`limits.max_graph_nodes`, `limits.max_load_bytes`,
    /// `limits.load_timeout_secs`) instead of the defaults.
    pub fn with_load_limits(mut self, limits: LoadLimits, timeout: Duration) -> Self {
        self.load_limits = limits;
        self.load_timeout = timeout;
        self
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub async fn ping(&self) -> Result<(), ServiceError> {
        Ok(self.store.ping().await?)
    }

    /// Whether the store takes writes now: a row rewritten in the database, and a small file
    /// written, synced and removed in the artifact folder. `Err` says which refused and what a
    /// person can do. An answer is reused for [`WRITE_PROBE_TTL`].
    pub async fn check_writable(&self) -> Result<(), String> {
        let mut last = self.write_probe.lock().await;
        if let Some((at, answer)) = &*last {
            if at.elapsed() < WRITE_PROBE_TTL {
                return answer.clone();
            }
        }
        let answer = self.probe_writes().await;
        *last = Some((Instant::now(), answer.clone()));
        answer
    }

    async fn probe_writes(&self) -> Result<(), String> {
        self.store
            .probe_write()
            .await
            .map_err(|e| ServiceError::from(e).message)?;
        let artifacts = self.artifacts.clone();
        tokio::task::spawn_blocking(move || artifacts.probe_write())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Load the deployed versions, sweep artifacts nobody refers to, and report ready.
    pub async fn start(&self) -> Result<(), ServiceError> {
        self.reconcile().await?;
        let live: BTreeSet<(String, u64)> = self.store.live_versions().await?.into_iter().collect();
        let artifacts = self.artifacts.clone();
        let swept = crate::services::off_worker(move || {
            artifacts.retain(SWEEP_MIN_AGE, |m, v| live.contains(&(m.to_owned(), v)))
        })
        .await?
        .map_err(|e| ServiceError::new(ErrorKind::Internal, format!("sweeping artifacts: {e}")))?;
        if swept > 0 {
            tracing::info!(
                swept,
                "removed artifact files that no stored version refers to"
            );
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Load a model file as the options ask (every instance, on a blocking thread) and warm each
    /// instance up. Nothing serves yet: see [`ModelService::serve`].
    async fn prepare(
        &self,
        path: std::path::PathBuf,
        options: &ServingOptions,
    ) -> Result<Prepared, ServiceError> {
        let resolved = options.resolve(&self.defaults)?;
        let backends = self.backends.clone();
        let limits = self.load_limits;
        let loading = crate::services::off_worker(move || {
            let bytes = std::fs::read(&path).map_err(|e| {
                ServingError::InvalidModel(format!("reading {}: {e}", path.display()))
            })?;
            check_load_limits(&bytes, &limits)?;
            let first = backends.load_instance(resolved.backend, &bytes, resolved.instances)?;
            let mut instances = vec![first.model.clone()];
            for _ in 1..resolved.instances {
                // Later loads use what the first one settled on, so `auto` cannot differ.
                let choice = match first.backend {
                    BackendKind::Tract => BackendChoice::Tract,
                    BackendKind::OrtCpu => BackendChoice::OrtCpu,
                    BackendKind::OrtCuda => BackendChoice::OrtCuda,
                };
                instances.push(
                    backends
                        .load_instance(choice, &bytes, resolved.instances)?
                        .model,
                );
            }
            let instances = slowed_for_tests(instances);
            let warmup = batching::warm_up(&instances, &resolved.batch)?;
            Ok::<_, ServingError>(Prepared {
                instances,
                backend: first.backend,
                execution_provider: first.execution_provider,
                note: first.note,
                ort_threads: first.ort_threads,
                warmup,
                batch: resolved.batch,
            })
        });
        // A load past its time is abandoned: its thread cannot be stopped and runs on, but what
        // it makes is dropped, and nothing is recorded.
        let timeout = self.load_timeout;
        tokio::time::timeout(timeout, loading)
            .await
            .map_err(|_| {
                ServiceError::new(
                    ErrorKind::InvalidModel,
                    format!(
                        "loading the model and its test inference took longer than {} s \
                         (limits.load_timeout_secs); nothing was recorded",
                        timeout.as_secs()
                    ),
                )
            })??
            .map_err(ServiceError::from)
    }

    /// Start the request queue of a prepared version under its stored number.
    fn serve(
        &self,
        record: &VersionRecord,
        prepared: Prepared,
    ) -> Result<Arc<ServedVersion>, ServiceError> {
        let Prepared {
            instances,
            backend,
            execution_provider,
            note,
            ort_threads,
            warmup,
            batch,
        } = prepared;
        let loaded = instances.first().cloned().ok_or_else(|| {
            ServiceError::new(ErrorKind::Internal, "a version loaded no instance")
        })?;
        if let Some(note) = &note {
            tracing::warn!(model = %record.model, version = record.version, note = %note, "backend fallback");
        }
        if ort_threads.is_some() {
            if let Some(why) = self.backends.ort_oversubscription(instances.len()) {
                tracing::warn!(model = %record.model, version = record.version, "{why}");
            }
        }
        let observer = Arc::new(self.metrics.version_observer(&record.model, record.version));
        let queue = BatchQueue::start(&record.model, record.version, instances, batch, observer)
            .map_err(ServiceError::from)?;
        tracing::info!(model = %record.model, version = record.version, backend = backend.as_str(),
            execution_provider = %execution_provider, kernel = loaded.kernel(),
            instances = queue.instances(),
            intra_op_threads = ort_threads.map(|t| t.intra_op),
            batching = queue.is_batching(), warmup_ms = warmup.as_secs_f64() * 1000.0, "ready");
        Ok(Arc::new(ServedVersion {
            model: record.model.clone(),
            version: record.version,
            backend,
            execution_provider,
            backend_note: note,
            ort_threads,
            loaded,
            queue,
            warmup,
            meta: VersionMeta {
                class_names: record.class_names.clone(),
                feature_names: record.feature_names.clone(),
            },
        }))
    }

    /// Load a stored version from its artifact file.
    async fn load_stored(
        &self,
        record: &VersionRecord,
    ) -> Result<Arc<ServedVersion>, ServiceError> {
        let path = self
            .artifacts
            .path(&record.model, record.version)
            .map_err(ServingError::Io)?;
        let prepared = self.prepare(path, &record.serving).await?;
        self.serve(record, prepared)
    }

    fn publish_loaded(&self) {
        self.metrics.set_loaded(&self.registry.loaded());
    }

    /// The store, for reads that need no model logic.
    pub fn store(&self) -> &SqlStore {
        &self.store
    }

    /// Whether a model's predicts are saved by default.
    pub fn logs_predictions(&self, model: &str) -> bool {
        self.logged.read().contains(model)
    }

    /// Names of the paused models, for the metrics scrape.
    pub fn paused_models(&self) -> Vec<String> {
        self.paused.read().iter().cloned().collect()
    }

    /// Record a model with no version yet.
    pub async fn create_model(&self, name: &str) -> Result<ModelRecord, ServiceError> {
        validate_model_name(name)?;
        self.store.create_model(name).await?;
        tracing::info!(model = name, "created model");
        self.model(name).await
    }

    /// Every version loaded here, for the metrics scrape.
    pub fn served_versions(&self) -> Vec<Arc<ServedVersion>> {
        self.registry.all()
    }

    /// Make this process serve exactly what the store says is deployed. Loads happen outside the
    /// write lock; a model being swapped keeps its old version until the new one is in.
    pub async fn reconcile(&self) -> Result<(), ServiceError> {
        self.drift.refresh().await?;
        let paused: HashSet<String> = self.store.paused_models().await?.into_iter().collect();
        *self.paused.write() = paused;
        let logged: HashSet<String> = self.store.logged_models().await?.into_iter().collect();
        *self.logged.write() = logged;
        let missing: Vec<VersionRecord> = {
            let _guard = self.write_lock.lock().await;
            let desired = self.store.deployed().await?;
            let wanted: BTreeSet<(String, u64)> = desired
                .iter()
                .map(|r| (r.model.clone(), r.version))
                .collect();
            let failed = self.failed.lock();
            let missing: Vec<VersionRecord> = desired
                .into_iter()
                .filter(|r| !self.registry.contains(&r.model, r.version))
                .filter(|r| !failed.contains_key(&(r.model.clone(), r.version)))
                .collect();
            drop(failed);
            let pending: BTreeSet<&str> = missing.iter().map(|r| r.model.as_str()).collect();
            for (model, version) in self.registry.loaded() {
                if !wanted.contains(&(model.clone(), version)) && !pending.contains(model.as_str())
                {
                    self.registry.remove(&model, version);
                }
            }
            self.failed.lock().retain(|key, _| wanted.contains(key));
            missing
        };
        if missing.is_empty() {
            self.publish_loaded();
            return Ok(());
        }

        let mut loaded = Vec::with_capacity(missing.len());
        for record in missing {
            match self.load_stored(&record).await {
                Ok(served) => loaded.push(served),
                Err(e) => {
                    tracing::error!(model = %record.model, version = record.version, error = %e.message,
                        "a deployed version failed to load; it will not serve on this process");
                    self.failed
                        .lock()
                        .insert((record.model.clone(), record.version), e.message);
                }
            }
        }

        let _guard = self.write_lock.lock().await;
        let wanted: BTreeSet<(String, u64)> = self
            .store
            .deployed()
            .await?
            .into_iter()
            .map(|r| (r.model, r.version))
            .collect();
        for served in loaded {
            if wanted.contains(&(served.model.clone(), served.version)) {
                // Newly (re)deployed here: continuous drift starts afresh.
                self.drift.forget(&served.model, served.version);
                tracing::info!(model = %served.model, version = served.version, "loaded");
                self.registry.insert(served);
            }
        }
        for (model, version) in self.registry.loaded() {
            if !wanted.contains(&(model.clone(), version)) {
                tracing::info!(%model, version, "unloaded");
                self.registry.remove(&model, version);
            }
        }
        self.failed.lock().retain(|key, _| wanted.contains(key));
        self.publish_loaded();
        Ok(())
    }

    pub async fn undeploy(&self, model: &str, version: u64) -> Result<VersionRecord, ServiceError> {
        let _guard = self.write_lock.lock().await;
        let record = self.store.undeploy(model, version).await?;
        self.registry.remove(model, version);
        self.drift.forget(model, version);
        self.publish_loaded();
        tracing::info!(model, version, "undeployed");
        Ok(record)
    }

    pub async fn delete_version(&self, model: &str, version: u64) -> Result<(), ServiceError> {
        let _guard = self.write_lock.lock().await;
        self.store.delete_version(model, version).await?;
        self.registry.remove(model, version);
        self.drift.forget(model, version);
        self.publish_loaded();
        if let Err(e) = self.artifacts.remove_version(model, version) {
            tracing::warn!(model, version, error = %e, "could not remove the artifact; it will be swept at the next start");
        }
        tracing::info!(model, version, "deleted version");
        Ok(())
    }

    pub async fn delete_model(&self, model: &str) -> Result<(), ServiceError> {
        let _guard = self.write_lock.lock().await;
        self.store.delete_model(model).await?;
        self.registry.remove_model(model);
        self.drift.forget_model(model);
        self.publish_loaded();
        if let Err(e) = self.artifacts.remove_model(model) {
            tracing::warn!(model, error = %e, "could not remove the artifacts; they will be swept at the next start");
        }
        tracing::info!(model, "deleted model");
        Ok(())
    }

    pub async fn models(&self) -> Result<Vec<ModelRecord>, ServiceError> {
        Ok(self.store.models().await?)
    }

    pub async fn model(&self, name: &str) -> Result<ModelRecord, ServiceError> {
        self.store.model(name).await?.ok_or_else(|| {
            ServiceError::new(
                ErrorKind::ModelNotFound,
                format!("model '{name}' does not exist"),
            )
        })
    }

    pub async fn version(&self, model: &str, version: u64) -> Result<VersionRecord, ServiceError> {
        let record = self.model(model).await?;
        record
            .versions
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| {
                ServiceError::new(
                    ErrorKind::VersionNotFound,
                    format!("model '{model}' has no version {version}"),
                )
            })
    }

    /// Replace a version's drift baseline; the settings sent with it, else the version's own,
    /// apply. Continuous state starts afresh.
    pub async fn replace_baseline(
        &self,
        model: &str,
        version: u64,
        upload: BaselineUpload,
    ) -> Result<(), ServiceError> {
        let record = self.version(model, version).await?;
        let signature = &record.signature;
        let mut upload = upload;
        if upload.settings.is_none() {
            if let Some(current) = self.store.baseline(model, version).await? {
                upload.settings = serde_json::from_str(&current.settings).ok();
            }
        }
        let Some(drift) =
            build_record_off_worker(upload, signature, record.feature_names.as_deref()).await?
        else {
            return Err(ServiceError::new(
                ErrorKind::InvalidArgument,
                "send a `baseline` or `training_data` CSV (or its `baseline_url` or `training_data_url`)",
            ));
        };
        self.store.replace_baseline(model, version, &drift).await?;
        self.drift.forget(model, version);
        tracing::info!(model, version, source = %drift.source, "replaced the drift baseline");
        Ok(())
    }

    /// A page of a version's saved predictions, newest first, and how many match in all.
    pub async fn saved_predictions(
        &self,
        model: &str,
        version: u64,
        window: (Option<i64>, Option<i64>),
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<crate::store::predictions::PredictionRecord>, u64), ServiceError> {
        self.version(model, version).await?;
        Ok(self
            .store
            .predictions(model, version, window.0, window.1, limit, offset)
            .await?)
    }

    pub async fn version_drift(
        &self,
        model: &str,
        version: u64,
    ) -> Result<Option<Arc<VersionDrift>>, ServiceError> {
        self.drift.version(model, version).await
    }

    pub async fn drift_events(
        &self,
        model: &str,
        version: Option<u64>,
        limit: u32,
    ) -> Result<Vec<crate::store::drift::DriftEventRecord>, ServiceError> {
        self.model(model).await?;
        Ok(self.store.drift_events(model, version, None, limit).await?)
    }

    pub fn load_status(&self, model: &str, version: u64) -> LoadStatus {
        if let Ok(served) = self.registry.get(model, Some(version)) {
            LoadStatus::Loaded(served)
        } else if let Some(reason) = self.failed.lock().get(&(model.to_owned(), version)) {
            LoadStatus::Failed(reason.clone())
        } else {
            LoadStatus::NotLoaded
        }
    }

    /// The loaded version a request runs: the one asked for or the default.
    pub async fn resolve(
        &self,
        model: &str,
        version: Option<u64>,
    ) -> Result<Arc<ServedVersion>, ServiceError> {
        if self.is_paused(model) {
            return Err(ServiceError::new(
                ErrorKind::ModelPaused,
                format!("model '{model}' is paused; resume it with POST /v1/models/{model}/actions/resume"),
            ));
        }
        match self.registry.get(model, version) {
            Ok(served) => Ok(served),
            Err(_) => {
                // A deploy or rollback may sit between its store commit and its registry update.
                // Read the store first, then wait for the write lock (held across commit and
                // registry update) and look again: the explanation is never newer than the
                // registry it explains.
                let explanation = self.explain_miss(model, version).await;
                drop(self.write_lock.lock().await);
                self.registry.get(model, version).map_err(|_| explanation)
            }
        }
    }

    /// Whether a model (or one version) is loaded and answering here.
    pub fn is_serving(&self, model: &str, version: Option<u64>) -> bool {
        !self.is_paused(model) && self.registry.get(model, version).is_ok()
    }

    pub fn is_paused(&self, model: &str) -> bool {
        self.paused.read().contains(model)
    }

    /// Queue tensors on a version and wait for its answer. Dropping this future (the client went
    /// away) withdraws the request: it will not run.
    pub async fn queue(
        &self,
        served: &ServedVersion,
        inputs: Vec<maas_serving::Tensor>,
        client: Option<ClientProbe>,
    ) -> Result<maas_serving::batching::Completion, ServiceError> {
        let done = match served.queue.dispatch(inputs, client)? {
            Dispatched::Done(done) => done?,
            Dispatched::Queued(answer) => answer.await.map_err(|_| {
                ServiceError::new(ErrorKind::Internal, "the inference thread stopped")
            })??,
        };
        self.metrics
            .observe_queue_wait(&served.model, served.version, done.queue_wait);
        Ok(done)
    }

    /// Say precisely why a model or version cannot answer (the slow path, off the hot one).
    async fn explain_miss(&self, model: &str, version: Option<u64>) -> ServiceError {
        let record = match self.model(model).await {
            Ok(record) => record,
            Err(e) => return e,
        };
        let unavailable = |v: u64| {
            let why = match self.load_status(model, v) {
                LoadStatus::Failed(reason) => format!("it failed to load here: {reason}"),
                _ => "it is still loading on this replica; try again shortly".to_owned(),
            };
            ServiceError::new(
                ErrorKind::VersionUnavailable,
                format!("version {v} of '{model}' is deployed but {why}"),
            )
        };
        match version {
            Some(v) => match record.versions.iter().find(|r| r.version == v) {
                None => ServiceError::new(ErrorKind::VersionNotFound, format!("model '{model}' has no version {v}")),
                Some(r) if r.state == VersionState::Deployed => unavailable(v),
                Some(_) => ServiceError::new(
                    ErrorKind::VersionNotDeployed,
                    format!("version {v} of '{model}' is undeployed; deploy it again with POST /v1/models/{model}/versions/{v}/deploy"),
                ),
            },
            None => match record.default_version() {
                Some(v) => unavailable(v),
                None => ServiceError::new(
                    ErrorKind::NoDeployedVersion,
                    format!("model '{model}' has no deployed version; deploy or redeploy one first"),
                ),
            },
        }
    }
}
