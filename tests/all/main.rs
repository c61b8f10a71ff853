//! The middleware's behaviour through its public API, against wiremock on
//! 127.0.0.1: detection, classification, waits, cooldowns, outages, bodies,
//! streams and uploads, a module per concern.
//!
//! One binary links once for all of them. Hostile input, transport faults and
//! resource bounds are `tests/robustness/`; binaries of their own hold what
//! needs the whole process (a global tracing subscriber, peak memory) or a
//! service (Redis): see CONTRIBUTING.md, "Tests".

#[path = "../support/mod.rs"]
mod support;

mod bodies;
mod builder;
mod cooldown;
mod detection;
mod error_for_status;
mod errors;
mod fallback;
mod footprint;
mod outage;
mod policy;
mod quiet;
mod streams;
mod tokens;
mod uploads;
mod waits;
