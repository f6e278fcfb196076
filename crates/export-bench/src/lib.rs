//! Load generators for the API benchmarks (docs/benchmarks-api.md, run by
//! `scripts/bench-api`):
//!
//! - `bench-get`: authenticated `GET /export-center/runs/{runId}` with a fresh DPoP proof
//!   per request over keep-alive connections (issue 3);
//! - `bench-sse`: thousands of concurrent subscribers to one run's event stream, and how
//!   long each event takes to reach all of them (issue 4).
//!
//! Both speak plain HTTP/1.1, one connection per worker or subscriber, so that the client
//! costs as little CPU as possible on a machine it shares with the server: `bench-get`
//! through hyper's connection API, `bench-sse`'s subscribers through [`event_stream`], a
//! socket and a chunked-body decoder read by one task each.

pub mod client;
pub mod event_stream;
pub mod stats;
