//! The service state machine of a model (the seed's service actions): which state a model is in,
//! and which actions each state allows. Pure: the model service applies the actions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};
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

    pub fn parse(text: &str) -> Result<ServiceAction, ApiError> {
        match text {
            "deploy" => Ok(ServiceAction::Deploy),
            "update" => Ok(ServiceAction::Update),
            "pause" => Ok(ServiceAction::Pause),
            "resume" => Ok(ServiceAction::Resume),
            "finish" => Ok(ServiceAction::Finish),
            other => Err(ApiError::new(
                ErrorCode::InvalidPath,
                format!(
                    "unknown action '{}'; actions are deploy, update, pause, resume and finish",
                    other.chars().take(64).collect::<String>()
                ),
            )),
        }
    }

    /// Refuse this action in `state` with a message naming the state and what is allowed.
    pub fn check(self, model: &str, state: ServiceState) -> Result<(), ApiError> {
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
        Err(ApiError::new(
            ErrorCode::InvalidAction,
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
                    assert_eq!(e.code, ErrorCode::InvalidAction);
                    assert!(e.message.contains(state.as_str()), "{}", e.message);
                }
            }
        }
        assert!(ServiceAction::parse("explode").is_err());
        assert_eq!(ServiceAction::parse("pause").unwrap(), Pause);
    }
}
