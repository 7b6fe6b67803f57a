//! p8fs-core: the domain types, backend traits, errors, clock, validation and the shared
//! algorithms of p8fs. It owns the semantic contract (`DESIGN.md`, "The semantic contract").
//!
//! Traits, one capability each, bundled by [`Backend`]:
//! - [`KvStore`]: versioned JSON values with ttl, put-if-absent, compare-and-swap, scans;
//! - [`VectorStore`]: collections and exact nearest-neighbour candidates;
//! - [`GraphStore`]: nodes, edges and the `edges_of` traversal primitive;
//! - [`ObjectStore`]: buckets, chunked objects and multipart uploads (S3 semantics);
//! - [`ChangeLog`]: reading and trimming each tenant's log of committed writes;
//! - [`Maintenance`]: physical removal of expired records.
//!
//! [`Embedder`] (texts to unit-length vectors) is the contract of embedding providers; the
//! builtin model lives in `p8fs-embed`.
//!
//! Semantics that must not drift between backends are free functions here, not overridable
//! trait methods: [`kv::find_by_field`], [`vector::search`] (f64 rescoring and ordering),
//! [`traverse::neighbors`], [`traverse::shortest_path`], and the object functions
//! ([`object::ObjectWriter`], [`object::list_objects_v2`], [`object::plan_completion`]).
//!
//! Invariants:
//! - no storage driver and no front-end framework is a dependency of this crate;
//! - nothing here does IO or reads the wall clock except [`SystemClock`]; backends take time from
//!   an injected [`Clock`];
//! - every limit of the contract is checked in [`validate`], and identifier types can only be
//!   built there, so a backend never sees unvalidated input.
//!
//! Adding a backend: implement the six traits in a crate under `backends/`, add one
//! `suite!` instantiation in `conformance/tests/all/`, and one arm where the gateway builds its
//! backend from configuration.

pub mod backend;
pub mod change;
pub mod clock;
pub mod embed;
pub mod error;
pub mod graph;
pub mod json;
pub mod kv;
pub mod object;
pub mod sealed;
pub mod traverse;
pub mod types;
pub mod validate;
pub mod vector;

pub use backend::{Backend, Maintenance};
pub use change::{
    Change, ChangeCursor, ChangeEvent, ChangeFilter, ChangeKind, ChangeLog, ChangeOp, ChangePage,
    ChangeSignal, Subject,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use embed::Embedder;
pub use error::{Error, ErrorKind, Resource, Result};
pub use graph::{Direction, EdgeRecord, GraphStore, NodeRecord};
pub use kv::{KvEntry, KvStore};
pub use object::{
    BucketInfo, DataId, ObjectAttributes, ObjectMeta, ObjectStore, PartRecord, Precondition,
    ReapPolicy, Segment, UploadId, UploadInfo,
};
pub use types::*;
pub use vector::{SearchHit, SearchMode, VectorRecord, VectorStore};
