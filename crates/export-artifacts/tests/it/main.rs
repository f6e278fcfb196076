//! Integration tests of export-artifacts: the conformance suite on every backend, and
//! what only the local filesystem or S3 backend can show.

mod conformance;
mod local;
mod s3;
