//! The export-center binary.
