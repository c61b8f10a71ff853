//! The helpers every test binary shares, one copy of each: a binary at the top
//! of `tests/` includes them as `mod support;`, one in a folder as
//! `#[path = "../support/mod.rs"] mod support;`.
//!
//! - [`clients`]: test settings (`fast`), clients that reach a local server
//!   under a provider's real host, each request under a [`deadline`], and
//!   clients for tests on tokio's paused clock;
//! - [`responses`]: wiremock answers in each provider's error format;
//! - [`raw`]: a raw TCP server for what wiremock cannot play (resets, stalls,
//!   huge bodies);
//! - [`dns`]: resolvers that count lookups or fail them;
//! - [`logs`]: every `tracing` event of the binary, captured;
//! - [`streams`]: request bodies as streams;
//! - [`memory`]: the process's peak resident set;
//! - [`tokens`]: bodies of a given size, a provider with a token window, and
//!   the scenario every shared store runs: two middlewares sharing it.

// Each binary uses the part it needs; the rest is dead code in that binary.
#![allow(dead_code, unused_imports)]

pub mod clients;
pub mod deadline;
pub mod dns;
pub mod logs;
pub mod memory;
pub mod raw;
pub mod responses;
pub mod streams;
pub mod tokens;

pub use clients::*;
pub use deadline::DEADLINE;
pub use dns::{CountingDns, NoDns};
pub use raw::{RawServer, drain, read_head, reset, write_head};
pub use responses::*;
pub use streams::{Receiver, futures_stream};
