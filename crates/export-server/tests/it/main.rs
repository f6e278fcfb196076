//! Integration tests of the whole service: a real server on a loopback port, real
//! SQLite files (and a real PostgreSQL server for replicas) and a real artifact
//! directory, exercised over HTTP.

mod airgap;
mod allocator;
mod auth;
mod auth_hardening;
mod chaos;
mod connections;
mod control;
mod crash;
mod determinism;
mod disk;
mod distributions;
mod downloads;
mod egress;
mod errors;
mod events;
mod files;
mod helpers;
mod ingest;
mod mirror;
mod nats;
mod object;
mod oci;
mod processes;
mod profiles;
mod replicas;
mod runs;
mod schedules;
mod service;
mod signing;
mod webhooks;
