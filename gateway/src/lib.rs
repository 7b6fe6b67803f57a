//! p8fs-gateway: the `p8fs` binary's library. Configuration ([`config`]), the one place a backend
//! is chosen ([`backend`]), server assembly ([`server`]), the accept loop and its limits on
//! slow and numerous clients ([`connections`]), metrics ([`metrics`], [`metered`]),
//! the S3 listener and the object reaper ([`s3`]), the change hub that wakes change streams and
//! the log's retention ([`changes`]), admin commands and their socket ([`admin`]), the OAuth client behind `p8fs login` ([`login`]),
//! the vault's client commands `p8fs models install`, `p8fs ingest` and `p8fs search` ([`vault`])
//! and the command line ([`cli`]).
//!
//! Cargo features: `postgres` and `tidb` (both default) compile in those backends; without them
//! the matching `storage.provider` is refused at start. The pingora edge will be one more.

pub mod admin;
pub mod backend;
pub mod changes;
pub mod cli;
pub mod config;
pub mod connections;
mod grpc;
pub mod ingest;
mod lease;
pub mod login;
pub mod mcp_stdio;
pub mod memory;
pub mod metered;
pub mod metrics;
pub mod nats;
pub mod s3;
pub mod sealing;
pub mod server;
pub mod vault;
