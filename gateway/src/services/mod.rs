//! The services: every business rule of the gateway, below HTTP and above the store. They speak
//! in domain types and return [`error::Error`]; only the HTTP layer turns those into statuses.

pub mod actions;
pub mod audit;
pub mod auth;
pub mod baseline;
pub mod distributions;
pub mod drift;
pub mod error;
pub mod fetch;
pub mod inference;
pub mod jobs;
pub mod metrics;
pub mod models;
pub mod open_inference;
pub mod predictions;
pub mod runtime;
pub mod telemetry;
