//! The Redis store against a real Redis, a single node and a Redis Cluster:
//! separately connected stores (as separate processes would have: their own
//! connection, their own memory) share cooldowns, request and token windows and outages only
//! through Redis, in the documented key format, every key expiring; and a
//! Redis that is down or never answers degrades to memory without failing
//! or stalling a request.
//!
//! Each test body runs on both deployments (`single::…` and `cluster::…`):
//! a Redis at `REDIS_URL` (default `redis://127.0.0.1:6379/`) and a cluster
//! reached through `REDIS_CLUSTER_URLS` (comma-separated; default the nodes
//! on 127.0.0.1:7000-7002); `.ci/run` starts both. With `CI` set a missing
//! Redis fails these tests; without it they say why on stderr and pass.
#![cfg(feature = "redis")]

mod deployment;
#[path = "../support/mod.rs"]
mod support;

mod cooldowns;
mod outages;
mod tokens;
mod unreachable;
mod windows;

/// Runs each body on a single node (`single::body`) and on a Redis Cluster (`cluster::body`).
macro_rules! on_both {
    ($($module:ident :: $body:ident),* $(,)?) => {
        mod single {
            $(#[tokio::test]
            async fn $body() {
                crate::$module::$body(crate::deployment::Deployment::Single).await
            })*
        }
        mod cluster {
            $(#[tokio::test]
            async fn $body() {
                crate::$module::$body(crate::deployment::Deployment::Cluster).await
            })*
        }
    };
}

on_both! {
    cooldowns::two_processes_share_a_429_in_the_documented_key_format,
    cooldowns::the_later_end_time_wins_whoever_writes_last,
    windows::two_instances_split_one_windows_budget,
    windows::the_fleet_agrees_on_windows_the_store_rolls_by_their_length_and_guards_their_boundaries,
    outages::memory_and_redis_stores_speak_the_same_outage_protocol,
    outages::two_instances_share_one_outage_probe,
    outages::a_lease_of_any_length_holds_the_fleet,
    tokens::memory_and_redis_stores_speak_the_same_token_protocol,
    tokens::two_processes_share_a_token_window_through_redis,
}
