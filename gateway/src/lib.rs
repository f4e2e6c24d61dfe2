//! The `maas` gateway: command line, settings and the server that joins the domain crates.
//!
//! Three layers, imports pointing down only (see ARCHITECTURE.md):
//! - [`http`]: routes grouped by resource, extractors, the one error table, OpenAPI, the
//!   protocol codecs (v1 JSON, Open Inference Protocol JSON and binary); [`grpc`] beside it: the
//!   Open Inference Protocol over gRPC;
//! - [`services`]: the model lifecycle, the inference pipeline, drift monitoring, the prediction
//!   log, audit, auth and the scheduler's gateway side; they return domain errors;
//! - [`store`]: sqlx, migrations and typed records.
//!
//! [`server`], [`cli`] and [`settings`] sit above them and only wire things together.

pub mod cli;
pub mod drift_cli;
pub mod fuzz_targets;
pub mod grpc;
pub mod http;
pub mod job_cli;
pub mod server;
pub mod services;
pub mod settings;
pub mod store;

/// Failure injection for crash-safety tests: when `MAAS_CRASH_AT` names this point, the process
/// aborts on the spot, as a `kill -9` would stop it there.
pub fn crash_point(name: &str) {
    if std::env::var("MAAS_CRASH_AT").is_ok_and(|at| at == name) {
        eprintln!("MAAS_CRASH_AT={name}: aborting");
        std::process::abort();
    }
}
