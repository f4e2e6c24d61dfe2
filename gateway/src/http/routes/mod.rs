//! Route groups, one per resource.

pub mod admin;
pub mod auth;
pub mod deploy;
pub mod health;
pub mod jobs;
pub mod models;
pub mod predict;
pub mod v2;
