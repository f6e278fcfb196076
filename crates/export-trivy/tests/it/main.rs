//! export-trivy against the real Trivy scanner (`TEST_TRIVY_BIN`, installed by `scripts/test`).

mod go_corpus;
mod projects;
mod scan;
mod trivy;
