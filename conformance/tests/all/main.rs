//! The conformance suite, instantiated once per backend in one test binary. Adding a backend is
//! one factory in `harness.rs` and one line here.

mod architecture;
mod harness;
mod sealed;

p8fs_conformance::suite!(model, p8fs_conformance::model_factory);
p8fs_conformance::suite!(rocksdb, crate::harness::rocksdb);
p8fs_conformance::suite!(tidb, crate::harness::tidb);
p8fs_conformance::suite!(postgres, crate::harness::postgres);
