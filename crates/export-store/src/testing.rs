//! The conformance suite: see the crate docs.
