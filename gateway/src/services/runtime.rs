//! Gateway parameters that change at run time (`GET/PATCH /v1/settings`), kept in the store so
//! they survive restarts and reach every replica: `debug` (the seed's DEBUG_ENABLED: debug-level
//! logs for maas itself) and `trace` (TRACE_ENABLED: record every change in the audit trail).

use std::sync::OnceLock;

/// Swaps the log filter; installed once by the CLI when logging starts.
type Reload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static RELOAD: OnceLock<(String, Reload)> = OnceLock::new();

/// Remember how to change the log filter, and the configured filter debug mode adds to.
pub fn install_log_reload(base: String, reload: Reload) {
    let _ = RELOAD.set((base, reload));
}

/// Turn debug logging for maas's own crates on or off.
pub fn apply_debug(on: bool) {
    let Some((base, reload)) = RELOAD.get() else {
        return;
    };
    let filter = if on {
        format!("{base},maas=debug,maas_gateway=debug,maas_serving=debug,maas_drift=debug")
    } else {
        base.clone()
    };
    if let Err(e) = reload(&filter) {
        tracing::warn!(error = %e, "could not change the log filter");
    }
}

use crate::services::error::ServiceError;
pub use crate::store::runtime::{RuntimeSettings, SettingsPatch};

/// Make runtime settings take effect on this process.
pub fn apply(store: &crate::store::SqlStore, settings: RuntimeSettings) {
    apply_debug(settings.debug);
    store.audit().set(settings.trace);
}

/// The runtime settings as stored.
pub async fn current(store: &crate::store::SqlStore) -> Result<RuntimeSettings, ServiceError> {
    Ok(store.runtime_settings().await?)
}

/// Change runtime settings: stored (the change is recorded in the audit trail even when it
/// turns tracing off), applied here at once and on other replicas at their next sync.
pub async fn change(
    store: &crate::store::SqlStore,
    patch: &SettingsPatch,
) -> Result<RuntimeSettings, ServiceError> {
    let before = store.runtime_settings().await?;
    let after = before.patched(patch);
    store.put_runtime_settings(before, after).await?;
    apply(store, after);
    tracing::info!(
        debug = after.debug,
        trace = after.trace,
        "runtime settings changed"
    );
    Ok(after)
}
