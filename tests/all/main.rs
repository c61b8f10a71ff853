//! Integration tests of the middleware through its public API, against
//! wiremock on 127.0.0.1. One binary with a module per concern links once.

#[path = "../shared/raw_http.rs"]
mod raw_http;
mod support;

mod bodies;
mod builder;
mod cooldown;
mod detection;
mod error_for_status;
mod errors;
mod footprint;
mod outage;
mod policy;
mod streams;
mod tokens;
mod transport;
mod uploads;
mod waits;
