//! Integration tests of export-artifacts: the conformance suite on every backend, and
//! what only the local filesystem backend can show.

mod conformance;
mod local;
