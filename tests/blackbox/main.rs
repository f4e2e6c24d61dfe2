//! Black-box tests: the real `maas` binary, real HTTP, real SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod actions;
mod api;
mod audit;
mod auth;
mod cli;
mod connections;
mod console;
mod contract;
mod crash;
mod deploy_files;
mod docs;
mod drift;
mod drift_cli;
mod errors;
mod grpc;
mod hotswap;
mod jobs;
mod lifecycle;
mod limits;
mod model_bombs;
mod ops;
mod predictions;
mod sandbox;
mod seed;
mod serving;
mod sessions;
mod storage;
mod traces;
mod training;
mod url_policy;
mod v2;
