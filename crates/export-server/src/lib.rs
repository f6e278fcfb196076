//! The `export-center` binary's library half: configuration, wiring, and the commands
//! (`serve`, `ingest`, `demo`). Only this crate reads configuration files and the
//! environment; the libraries get typed configuration.

pub mod app;
pub mod config;
mod connections;
pub mod data_dir;
pub mod demo;
pub mod import;
pub mod ingest;
pub mod keys;
mod replay;
pub mod telemetry;

pub use app::{App, Listeners, Role};
pub use config::Config;
