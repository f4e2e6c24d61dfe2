//! Black-box tests: the real `maas` binary, real HTTP, real SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod api;
mod auth;
mod cli;
mod crash;
mod drift;
mod drift_cli;
mod errors;
mod hotswap;
mod ops;
mod serving;
mod v2;
