//! p8fs-gateway: the `p8fs` binary's library. Configuration ([`config`]), the one place a backend
//! is chosen ([`backend`]), server assembly ([`server`]) and the command line ([`cli`]).
//!
//! Cargo features: none yet; the PostgreSQL and TiDB backends and the pingora edge will be
//! optional features of this crate.

pub mod backend;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod server;
