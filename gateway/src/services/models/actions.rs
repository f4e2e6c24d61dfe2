//! The service actions on a model (the seed's MaaS actions): pause, resume, finish, deploy and
//! update, each checked against the model's state first.

use super::{DeployRequest, DeploySource, ModelService, Placement};
use crate::services::actions::{ActionRequest, ServiceAction, ServiceState};
use crate::services::error::{ErrorKind, ServiceError};
use crate::store::audit::Change;
use crate::store::{ModelRecord, VersionRecord, VersionState};

impl ModelService {
    /// Run one service action, refusing it with 409 when the model's state does not allow it.
    pub async fn act(
        &self,
        name: &str,
        action: ServiceAction,
        request: ActionRequest,
    ) -> Result<ModelRecord, ServiceError> {
        let model = self.model(name).await?;
        let state = ServiceState::of(&model);
        request.check_fits(action)?;
        action.check(name, state)?;
        match action {
            ServiceAction::Pause | ServiceAction::Resume => {
                let pause = action == ServiceAction::Pause;
                let _guard = self.write_lock.lock().await;
                self.store.set_paused(name, pause).await?;
                if pause {
                    self.paused.write().insert(name.to_owned());
                } else {
                    self.paused.write().remove(name);
                }
            }
            ServiceAction::Finish => {
                for v in model
                    .versions
                    .iter()
                    .filter(|v| v.state == VersionState::Deployed)
                {
                    self.undeploy(name, v.version).await?;
                }
                let _guard = self.write_lock.lock().await;
                self.store.set_paused(name, false).await?;
                self.paused.write().remove(name);
            }
            ServiceAction::Deploy => {
                let version = match request.version {
                    Some(v) => v,
                    None => model.newest_version().ok_or_else(|| {
                        ServiceError::new(
                            ErrorKind::InvalidAction,
                            format!("model '{name}' has no version to deploy"),
                        )
                    })?,
                };
                self.deploy(DeployRequest {
                    model: name.to_owned(),
                    source: DeploySource::Kept(version),
                    placement: Placement::from_append(request.append),
                })
                .await?;
            }
            ServiceAction::Update => self.update(&model, request).await?,
        }
        tracing::info!(model = name, action = action.as_str(), "service action");
        let after = self.model(name).await?;
        self.store
            .record(
                Change::new("action")
                    .model(name)
                    .details(serde_json::json!({
                        "action": action.as_str(),
                        "from": state.as_str(),
                        "to": ServiceState::of(&after).as_str(),
                    })),
            )
            .await?;
        Ok(after)
    }

    /// The `update` action: new serving options (each deployed version is loaded again with
    /// them and swapped in) and new drift settings (on every deployed version with a baseline).
    async fn update(
        &self,
        model: &ModelRecord,
        request: ActionRequest,
    ) -> Result<(), ServiceError> {
        let deployed: Vec<&VersionRecord> = model
            .versions
            .iter()
            .filter(|v| v.state == VersionState::Deployed)
            .collect();
        // First everything that can fail: nothing changes unless all of the update can.
        let mut baselines = Vec::new();
        if let Some(settings) = &request.drift {
            settings.validate()?;
            let text = serde_json::to_string(settings)
                .map_err(|e| ServiceError::new(ErrorKind::Internal, e.to_string()))?;
            for v in &deployed {
                if let Some(mut baseline) = self.store.baseline(&v.model, v.version).await? {
                    baseline.settings = text.clone();
                    baselines.push((v.version, baseline));
                }
            }
            if baselines.is_empty() {
                return Err(ServiceError::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "no deployed version of '{}' has a drift baseline; send one with PUT /v1/models/{}/versions/{{v}}/baseline first",
                        model.name, model.name
                    ),
                ));
            }
        }
        if let Some(name) = request
            .retrain_workflow
            .as_deref()
            .filter(|n| !n.is_empty())
        {
            if self.store.workflow(name, None).await?.is_none() {
                return Err(ServiceError::new(
                    ErrorKind::WorkflowNotFound,
                    format!("workflow '{name}' is not in the catalog; save it with POST /v1/workflows first"),
                ));
            }
        }
        let mut reloaded = Vec::new();
        if let Some(patch) = &request.serving {
            for v in &deployed {
                let mut record = (*v).clone();
                record.serving = record.serving.patched(patch);
                record.serving.resolve(&self.defaults)?;
                let served = self.load_stored(&record).await?;
                reloaded.push((record, served));
            }
        }

        if let Some(name) = &request.retrain_workflow {
            self.store
                .set_retrain_workflow(&model.name, (!name.is_empty()).then_some(name.as_str()))
                .await?;
        }
        if let Some(on) = request.log_predictions {
            self.store.set_log_predictions(&model.name, on).await?;
            if on {
                self.logged.write().insert(model.name.clone());
            } else {
                self.logged.write().remove(&model.name);
            }
        }
        for (version, baseline) in baselines {
            self.store
                .replace_baseline(&model.name, version, &baseline)
                .await?;
            self.drift.forget(&model.name, version);
        }
        if !reloaded.is_empty() {
            for (record, served) in reloaded {
                let _guard = self.write_lock.lock().await;
                self.store
                    .set_serving(&record.model, record.version, &record.serving)
                    .await?;
                if self.registry.contains(&record.model, record.version) {
                    self.registry.insert(served);
                }
            }
            self.publish_loaded();
        }
        Ok(())
    }
}
