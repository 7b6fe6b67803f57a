//! Integration tests of the OAuth authorization server: the router served on a loopback port
//! over RocksDB, driven over HTTP as clients and browsers would (forms, cookies, CSRF), with a
//! manual clock for expiry.

#![allow(clippy::unwrap_used)]

mod client_metadata;
mod code;
mod device;
mod device_keys;
mod harness;
mod limits;
mod other;
mod pages;
mod redirects;
mod refresh;
mod resource;
mod s3;
mod sessions;
