//! Hostile input, transport faults and resource bounds, through the public API only.
//!
//! One test binary (it links faster than many): parser properties, error
//! bodies of every kind, every provider row of the reference, and transport
//! faults (refused, reset, stalled, timed out, unresolvable; cancellation;
//! 1,000 concurrent requests). The middleware's ordinary behaviour is
//! `tests/all/`. Secrets have their own binary (`tests/secrets.rs`) because
//! it installs a global tracing subscriber; the 100 MB body and upload have
//! their own (`tests/huge_body.rs`, `tests/huge_upload.rs`) because they
//! measure the process's peak memory.

#[path = "../support/mod.rs"]
mod support;

mod bodies;
mod extremes;
mod faults;
mod properties;
mod providers;
