//! Hostile input, faults and resource bounds, through the public API only.
//!
//! One test binary (it links faster than many): parser properties, error
//! bodies of every kind, every provider row of the reference, and transport
//! faults. Secrets have their own binary (`tests/secrets.rs`) because it
//! installs a global tracing subscriber; the 100 MB body has its own
//! (`tests/huge_body.rs`) because it measures the process's peak memory.

mod bodies;
mod extremes;
mod faults;
mod properties;
mod providers;
mod support;
