//! The Store for SQLite.
