//! The conformance suite every `Store` passes, in a fresh PostgreSQL schema per test.

export_store::conformance_tests!(crate::fresh_store);
