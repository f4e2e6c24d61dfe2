//! The service state machine of a model (the seed's service actions): which state a model is in,
//! and which actions each state allows. Pure: the model service applies the actions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::services::error::{ErrorKind, ServiceError};
use crate::store::{ModelRecord, VersionState};

/// Where a model's service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// The model exists but no version was ever deployed.
    Created,
    /// At least one version is deployed and answering.
    Running,
    /// Versions stay loaded; every predict answers 503 `model_paused`.
    Paused,
    /// Every version is undeployed; the history is kept.
    Finished,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Created => "created",
            ServiceState::Running => "running",
            ServiceState::Paused => "paused",
            ServiceState::Finished => "finished",
        }
    }

    /// The state a stored model is in.
    pub fn of(model: &ModelRecord) -> ServiceState {
        let deployed = model
            .versions
            .iter()
            .any(|v| v.state == VersionState::Deployed);
        match (model.paused, deployed, model.versions.is_empty()) {
            (true, _, _) => ServiceState::Paused,
            (false, true, _) => ServiceState::Running,
            (false, false, true) => ServiceState::Created,
            (false, false, false) => ServiceState::Finished,
        }
    }

    /// The actions this state allows, in a stable order.
    pub fn actions(self) -> &'static [ServiceAction] {
        use ServiceAction::*;
        match self {
            ServiceState::Created => &[],
            ServiceState::Running => &[Deploy, Update, Pause, Finish],
            ServiceState::Paused => &[Update, Resume, Finish],
            ServiceState::Finished => &[Deploy],
        }
    }
}

/// What an operator can do to a model's service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceAction {
    /// Serve a kept version again (by default the newest), the only one unless `append`.
    Deploy,
    /// Change the service's parameters at run time (serving options, drift settings).
    Update,
    /// Stop answering predicts, keeping everything loaded.
    Pause,
    /// Answer predicts again.
    Resume,
    /// Undeploy every version, keeping the history.
    Finish,
}

impl ServiceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceAction::Deploy => "deploy",
            ServiceAction::Update => "update",
            ServiceAction::Pause => "pause",
            ServiceAction::Resume => "resume",
            ServiceAction::Finish => "finish",
        }
    }

    pub fn parse(text: &str) -> Result<ServiceAction, ServiceError> {
        match text {
            "deploy" => Ok(ServiceAction::Deploy),
            "update" => Ok(ServiceAction::Update),
            "pause" => Ok(ServiceAction::Pause),
            "resume" => Ok(ServiceAction::Resume),
            "finish" => Ok(ServiceAction::Finish),
            other => Err(ServiceError::new(
                ErrorKind::InvalidPath,
                format!(
                    "unknown action '{}'; actions are deploy, update, pause, resume and finish",
                    other.chars().take(64).collect::<String>()
                ),
            )),
        }
    }

    /// Refuse this action in `state` with a message naming the state and what is allowed.
    pub fn check(self, model: &str, state: ServiceState) -> Result<(), ServiceError> {
        if state.actions().contains(&self) {
            return Ok(());
        }
        let allowed: Vec<&str> = state.actions().iter().map(|a| a.as_str()).collect();
        let hint = match (self, state) {
            (ServiceAction::Deploy, ServiceState::Created) => {
                format!("; upload a version first with POST /v1/models/{model}/versions")
            }
            (ServiceAction::Deploy, ServiceState::Paused) => "; resume it first".to_owned(),
            _ => String::new(),
        };
        Err(ServiceError::new(
            ErrorKind::InvalidAction,
            format!(
                "cannot {} model '{model}': it is {}; allowed now: {}{hint}",
                self.as_str(),
                state.as_str(),
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                },
            ),
        ))
    }
}

/// The body of a service action (optional; each action reads only its own fields).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// `deploy`: the version to serve (default: the newest kept).
    pub version: Option<u64>,
    /// `deploy`: keep the other deployed versions serving (default false: this one only).
    pub append: Option<bool>,
    /// `update`: serving options to change on every deployed version (fields not given keep
    /// their value); the versions are loaded again and swapped in without a gap.
    pub serving: Option<maas_serving::ServingOptions>,
    /// `update`: drift settings for every deployed version that has a baseline.
    pub drift: Option<crate::services::drift::DriftSettings>,
    /// `update`: save every predict of this model in the prediction log (a request's own
    /// `"save"` overrides it).
    pub log_predictions: Option<bool>,
    /// `update`: the catalog workflow that retrains this model (submitted on drift or with
    /// `POST /v1/models/{name}/retrain`); `""` clears it.
    pub retrain_workflow: Option<String>,
}

impl ActionRequest {
    /// Refuse fields that belong to another action, and an `update` that changes nothing.
    pub fn check_fits(&self, action: ServiceAction) -> Result<(), ServiceError> {
        let misplaced = |field: &str, belongs: &str| {
            Err(ServiceError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "`{field}` goes with the {belongs} action, not {}",
                    action.as_str()
                ),
            ))
        };
        if action != ServiceAction::Deploy {
            if self.version.is_some() {
                return misplaced("version", "deploy");
            }
            if self.append.is_some() {
                return misplaced("append", "deploy");
            }
        }
        if action != ServiceAction::Update {
            if self.serving.is_some() {
                return misplaced("serving", "update");
            }
            if self.drift.is_some() {
                return misplaced("drift", "update");
            }
            if self.log_predictions.is_some() {
                return misplaced("log_predictions", "update");
            }
            if self.retrain_workflow.is_some() {
                return misplaced("retrain_workflow", "update");
            }
        } else if self.serving.is_none()
            && self.drift.is_none()
            && self.log_predictions.is_none()
            && self.retrain_workflow.is_none()
        {
            return Err(ServiceError::new(
                ErrorKind::InvalidArgument,
                "an update needs `serving` options, `drift` settings, `log_predictions` or `retrain_workflow`",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_allows_exactly_its_actions() {
        use ServiceAction::*;
        let all = [Deploy, Update, Pause, Resume, Finish];
        for state in [
            ServiceState::Created,
            ServiceState::Running,
            ServiceState::Paused,
            ServiceState::Finished,
        ] {
            for action in all {
                let allowed = state.actions().contains(&action);
                let checked = action.check("m", state);
                assert_eq!(checked.is_ok(), allowed, "{action:?} in {state:?}");
                if let Err(e) = checked {
                    assert_eq!(e.kind, ErrorKind::InvalidAction);
                    assert!(e.message.contains(state.as_str()), "{}", e.message);
                }
            }
        }
        assert!(ServiceAction::parse("explode").is_err());
        assert_eq!(ServiceAction::parse("pause").unwrap(), Pause);
    }
}
