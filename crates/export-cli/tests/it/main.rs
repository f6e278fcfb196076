//! Integration tests of `exportctl`: the real binary against a real `export-center serve`.

mod commands;
mod mirror;
mod profiles;
mod restart;
mod schedules;
mod support;
mod tls;
mod trivy;
mod webhooks;
