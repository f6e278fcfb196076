//! Streaming, reproducible `tar.zst`, `tar.gz` and `zip` bundle writers (SPEC §10).
#![doc = include_str!("../README.md")]

mod compressor;
mod error;
mod writer;

pub use error::BundleError;
pub use writer::{tar_header, write_bundle, BundleEntry, BundleWriter, ENTRY_MODE};
