//! The one deploy operation: a new file as a new version, or a kept version again, alone or
//! alongside the deployed ones; and what a new version carries forward from the one it
//! replaces.

use std::collections::BTreeSet;

use maas_serving::batching::ClientProbe;
use maas_serving::{Dim, LoadedModel, ServingOptions, StagedArtifact};

use super::{validate_model_name, ModelService};
use crate::services::baseline::{build_record_off_worker, BaselineUpload};
use crate::services::error::{ErrorKind, ServiceError};
use crate::store::drift::DriftRecord;
use crate::store::{ModelStore, NewVersion, VersionRecord};

/// Whether a deployed version serves alone or alongside the versions already deployed.
///
/// The one default, for every entry point (upload, redeploy, the `deploy` service action, the
/// V2 repository's load, the scheduler's `deploy` task and the CLI): **alone**. The new version
/// replaces the deployed ones, which stay kept and undeployed, one redeploy away — the "latest
/// version" policy of TF Serving and Triton. `append` (the seed's APPEND) keeps them serving:
/// unversioned requests then go to the newest deployed version, and each older one answers its
/// own version's route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    #[default]
    Alone,
    Alongside,
}

impl Placement {
    /// From an `append` flag; absent means the default.
    pub fn from_append(append: Option<bool>) -> Placement {
        match append {
            Some(true) => Placement::Alongside,
            Some(false) | None => Placement::Alone,
        }
    }
}

/// A new model file to deploy as a new version, once it is on disk.
pub struct Upload {
    pub staged: StagedArtifact,
    /// The number to give it; `None`: the last number used plus one.
    pub version: Option<u64>,
    /// Where it came from: `upload:<file name>`, a URL, `job:<id>`.
    pub source: String,
    /// `None` carries the replaced version's, when they fit the new model.
    pub class_names: Option<Vec<String>>,
    pub feature_names: Option<Vec<String>>,
    /// A baseline and drift settings. Without a baseline the replaced version's is carried (when
    /// it fits the new model); without settings, its settings (detector, continuous, webhook…).
    pub drift: BaselineUpload,
    /// Backend, instances and batching limits; fields left out carry the replaced version's.
    pub serving: ServingOptions,
    /// Save the model's predicts by default (the seed's LOGGING_PREDICTION), recorded with the
    /// version; `None` leaves the model's setting as it is (off for a new model).
    pub log_predictions: Option<bool>,
    /// Whether the client that asked is still there: a deploy whose client left is abandoned
    /// (its load dropped, nothing recorded). `None`: run to the end (jobs, gRPC).
    pub client: Option<ClientProbe>,
}

/// How often a loading deploy looks whether its client is still there.
const CLIENT_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// The error of a deploy whose client left (logged: nobody reads the answer).
fn abandoned(model: &str) -> ServiceError {
    tracing::info!(
        model,
        "deploy abandoned: its client closed the connection first"
    );
    ServiceError::new(
        ErrorKind::ClientGone,
        "the client closed its connection before the deploy was recorded; it was abandoned",
    )
}

/// What to deploy.
pub enum DeploySource {
    Upload(Box<Upload>),
    /// A version already kept: a redeploy, or a rollback when alone.
    Kept(u64),
}

/// The one deploy operation's request.
pub struct DeployRequest {
    pub model: String,
    pub source: DeploySource,
    pub placement: Placement,
}

impl ModelService {
    /// The one deploy operation: a new file as a new version, or a kept version again, alone or
    /// alongside the deployed ones (see [`Placement`]).
    pub async fn deploy(&self, request: DeployRequest) -> Result<VersionRecord, ServiceError> {
        let DeployRequest {
            model,
            source,
            placement,
        } = request;
        match source {
            DeploySource::Upload(upload) => {
                let result = self.deploy_upload(model, *upload, placement).await;
                self.metrics
                    .observe_deploy(if result.is_ok() { "ok" } else { "refused" });
                result
            }
            DeploySource::Kept(version) => self.redeploy(&model, version, placement).await,
        }
    }

    /// What a new version takes from the one it replaces (the model's default version), for
    /// every field the deploy left out.
    async fn carry_forward(
        &self,
        model: &str,
        upload: &mut Upload,
    ) -> Result<Option<DriftRecord>, ServiceError> {
        let Some(record) = self.store.model(model).await? else {
            return Ok(None);
        };
        let Some(previous) = record
            .default_version()
            .and_then(|v| record.versions.iter().find(|r| r.version == v))
        else {
            return Ok(None);
        };
        upload.serving = previous.serving.patched(&upload.serving);
        if upload.class_names.is_none() {
            upload.class_names = previous.class_names.clone();
        }
        if upload.feature_names.is_none() {
            upload.feature_names = previous.feature_names.clone();
        }
        let baseline = self.store.baseline(model, previous.version).await?;
        let drift = &mut upload.drift;
        let brings_data = drift.baseline_csv.is_some() || drift.training_csv.is_some();
        match &baseline {
            Some(old) if brings_data && drift.settings.is_none() => {
                drift.settings = serde_json::from_str(&old.settings).ok();
                Ok(None)
            }
            Some(old) if !brings_data => {
                let mut carried = old.clone();
                if let Some(settings) = drift.settings.take() {
                    settings.validate()?;
                    carried.settings = serde_json::to_string(&settings)
                        .map_err(|e| ServiceError::internal(e.to_string()))?;
                }
                Ok(Some(carried))
            }
            _ => Ok(None),
        }
    }

    async fn deploy_upload(
        &self,
        model: String,
        mut request: Upload,
        placement: Placement,
    ) -> Result<VersionRecord, ServiceError> {
        validate_model_name(&model)?;
        let explicit_names = (
            request.class_names.is_some(),
            request.feature_names.is_some(),
        );
        let carried_baseline = self.carry_forward(&model, &mut request).await?;
        let path = request.staged.path().to_path_buf();
        let client = request.client.clone();
        let prepared = match &client {
            None => self.prepare(path, &request.serving).await?,
            // Loading may take long (limits.load_timeout_secs): stop waiting once nobody will
            // read the answer. The loading thread runs on; what it makes is dropped.
            Some(probe) => {
                let loading = self.prepare(path, &request.serving);
                tokio::pin!(loading);
                let mut check = tokio::time::interval(CLIENT_CHECK);
                loop {
                    tokio::select! {
                        prepared = &mut loading => break prepared?,
                        _ = check.tick() => if !probe() {
                            return Err(abandoned(&model));
                        }
                    }
                }
            }
        };
        let loaded = prepared.instances.first().cloned().ok_or_else(|| {
            ServiceError::new(ErrorKind::Internal, "a version loaded no instance")
        })?;
        // Names carried from the replaced version are dropped when they do not fit the new
        // model; names the caller sent must fit.
        if !explicit_names.0 && check_names(loaded.as_ref(), &request.class_names, &None).is_err() {
            request.class_names = None;
        }
        if !explicit_names.1 && check_names(loaded.as_ref(), &None, &request.feature_names).is_err()
        {
            request.feature_names = None;
        }
        check_names(
            loaded.as_ref(),
            &request.class_names,
            &request.feature_names,
        )?;
        let drift = match build_record_off_worker(
            request.drift,
            loaded.signature(),
            request.feature_names.as_deref(),
        )
        .await?
        {
            Some(drift) => Some(drift),
            None => carried_baseline.filter(|old| baseline_fits(old, loaded.signature())),
        };
        let digest = request.staged.digest();
        let signature = loaded.signature().clone();
        let append = placement == Placement::Alongside;
        let new = NewVersion {
            model: model.clone(),
            version: request.version,
            append,
            sha256: digest.sha256,
            size_bytes: digest.size,
            backend: prepared.backend.as_str().to_owned(),
            signature,
            class_names: request.class_names,
            feature_names: request.feature_names,
            source: request.source,
            drift,
            serving: request.serving,
            log_predictions: request.log_predictions,
        };

        let _guard = self.write_lock.lock().await;
        // The last moment to abandon: after the commit the version exists, answered or not.
        if client.as_ref().is_some_and(|probe| !probe()) {
            return Err(abandoned(&model));
        }
        let artifacts = self.artifacts.clone();
        let staged = request.staged;
        let placed = parking_lot::Mutex::new(None);
        let created = self
            .store
            .create_version(new, |version| {
                *placed.lock() = Some(artifacts.commit(staged, &model, version)?);
                crate::crash_point("deploy.after_artifact");
                Ok(())
            })
            .await;
        let record = match created {
            Ok(record) => record,
            Err(e) => {
                // The number was not recorded, so its file goes too. When the outcome of the
                // commit is unknown the file stays; the sweep at the next start removes it if no
                // stored version refers to it.
                if let Some(placed) = placed.into_inner().filter(|_| e.surely_not_committed()) {
                    if let Err(error) = self.artifacts.discard(&placed) {
                        tracing::warn!(path = %placed.path().display(), %error,
                            "could not remove the file of a deploy that was not recorded");
                    }
                }
                return Err(e.into());
            }
        };
        crate::crash_point("deploy.after_commit");
        let served = self.serve(&record, prepared)?;
        if append {
            self.registry.insert(served);
        } else {
            self.registry.replace_all(served);
        }
        match request.log_predictions {
            Some(true) => {
                self.logged.write().insert(model.clone());
            }
            Some(false) => {
                self.logged.write().remove(&model);
            }
            None => {}
        }
        self.publish_loaded();
        tracing::info!(model = %record.model, version = record.version, append, "deployed");
        Ok(record)
    }

    /// Serve a kept version again (a rollback when alone).
    async fn redeploy(
        &self,
        model: &str,
        version: u64,
        placement: Placement,
    ) -> Result<VersionRecord, ServiceError> {
        let exclusive = placement == Placement::Alone;
        let record = self.version(model, version).await?;
        let served = match self.registry.get(model, Some(version)) {
            Ok(served) => served,
            Err(_) => self.load_stored(&record).await?,
        };
        let _guard = self.write_lock.lock().await;
        let record = self.store.deploy(&record.model, version, exclusive).await?;
        self.failed.lock().remove(&(model.to_owned(), version));
        if exclusive {
            self.registry.replace_all(served);
        } else {
            self.registry.insert(served);
        }
        self.drift.forget(model, version);
        self.publish_loaded();
        tracing::info!(model, version, exclusive, "redeployed");
        Ok(record)
    }
}

/// Whether a baseline kept for one version fits another model: as many features as its one
/// `[N, features]` input takes (any number when that size is not fixed).
fn baseline_fits(baseline: &DriftRecord, signature: &maas_serving::ModelSignature) -> bool {
    let Ok(columns) = serde_json::from_str::<Vec<String>>(&baseline.columns) else {
        return false;
    };
    match signature.inputs.as_slice() {
        [input] if input.shape.len() == 2 => match input.shape[1] {
            Dim::Fixed(n) => n == columns.len(),
            Dim::Symbolic(_) => true,
        },
        _ => false,
    }
}

/// Class and feature names must fit the model they describe.
fn check_names(
    model: &dyn LoadedModel,
    class_names: &Option<Vec<String>>,
    feature_names: &Option<Vec<String>>,
) -> Result<(), ServiceError> {
    let signature = model.signature();
    let invalid = |m: String| Err(ServiceError::new(ErrorKind::InvalidArgument, m));
    if let Some(names) = class_names {
        if names.is_empty() {
            return invalid("class_names is empty".into());
        }
        // One float per row and nothing else: a regressor, which has no classes to name.
        let regressor = signature.outputs.iter().all(|o| {
            matches!(
                o.element_type,
                maas_serving::ElementType::Float32 | maas_serving::ElementType::Float64
            ) && (o.shape.len() == 1 || (o.shape.len() == 2 && o.shape[1] == Dim::Fixed(1)))
        });
        if regressor {
            let outputs: Vec<&str> = signature.outputs.iter().map(|o| o.name.as_str()).collect();
            return invalid(format!(
                "class_names applies to classifiers, and this model is a regressor: its output {} \
                 is one number per row; deploy it without class_names",
                outputs.join(", ")
            ));
        }
        let classes = signature
            .outputs
            .iter()
            .find(|o| {
                o.shape.len() == 2 && matches!(o.element_type, maas_serving::ElementType::Float32)
            })
            .and_then(|o| match o.shape[1] {
                Dim::Fixed(n) => Some(n),
                Dim::Symbolic(_) => None,
            });
        if let Some(n) = classes {
            if n != names.len() {
                return invalid(format!(
                    "class_names has {} names but the model scores {n} classes",
                    names.len()
                ));
            }
        }
    }
    if let Some(names) = feature_names {
        let distinct: BTreeSet<&String> = names.iter().collect();
        if names.is_empty() || distinct.len() != names.len() {
            return invalid("feature_names must be a non-empty list of distinct names".into());
        }
        match signature.inputs.as_slice() {
            [input] if input.shape.len() == 2 => {
                if let Dim::Fixed(n) = input.shape[1] {
                    if n != names.len() {
                        return invalid(format!(
                            "feature_names has {} names but input '{}' takes {n} features",
                            names.len(),
                            input.name
                        ));
                    }
                }
            }
            _ => {
                return invalid(
                    "feature_names applies to models with one input of shape [N, features]".into(),
                )
            }
        }
    }
    Ok(())
}
