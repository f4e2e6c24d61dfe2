//! The `maas` gateway: command line, settings, HTTP API, store, metrics. It wires the domain
//! crates together and adapts them to HTTP; the domain logic lives in `maas-serving`.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod client;
pub mod console;
pub mod drift;
pub mod drift_cli;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod predictions;
pub mod redact;
pub mod request_id;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod service;
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
