//! The conformance suite every `Store` passes, on a fresh SQLite file per test.

export_store::conformance_tests!(crate::fresh_store);
