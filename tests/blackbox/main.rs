//! Black-box tests: the real `maas` binary, real HTTP, real SQLite and PostgreSQL.

mod common;

mod api;
mod cli;
mod crash;
mod errors;
mod hotswap;
mod ops;
