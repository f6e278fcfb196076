//! Trivy DB (schema 2) from Export Center advisories.
pub mod bolt;
