//! The runtime settings as stored (`gateway_settings`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The runtime settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuntimeSettings {
    /// Debug-level logs for maas itself.
    pub debug: bool,
    /// Record every change in the audit trail (`GET /v1/audit`).
    pub trace: bool,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            debug: false,
            trace: true,
        }
    }
}

/// A change to the runtime settings; fields left out keep their value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub debug: Option<bool>,
    pub trace: Option<bool>,
}

impl RuntimeSettings {
    pub fn patched(self, patch: &SettingsPatch) -> RuntimeSettings {
        RuntimeSettings {
            debug: patch.debug.unwrap_or(self.debug),
            trace: patch.trace.unwrap_or(self.trace),
        }
    }
}
