//! Section 1, what a layer costs when nothing fails.
//!
//! Every client sends the same small POST to the same server over one shared
//! connection pool. The machine is noisy, so the clients take turns as finely
//! as the workload allows: one request each (one batch of 16 concurrent
//! requests each), in an order shuffled every cycle so that no client always
//! runs after the same one. Each round gives every client a median latency
//! measured under nearly the same conditions; ratios are taken within a
//! round (paired), and the figures reported are medians over rounds, with the
//! interquartile range of the paired ratio to show how much the machine moved.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Url;

use crate::clients::{Clients, Kind, Sent, request_body, url};
use crate::server::{Scenario, Server, Style};
use crate::stats::{median, micros, quantile, turn_order};

pub const CLIENTS: [Kind; N] = [Kind::Bare, Kind::Empty, Kind::ReqwestRetry, Kind::Ours, Kind::OursNoCooldown];
const N: usize = 5;

/// Per-client results of one workload.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    /// Per client (in [`CLIENTS`] order): the median over rounds of the round median, µs.
    pub median_us: [f64; N],
    /// Per client: the median over rounds of (client / bare) within a round.
    pub vs_bare: [f64; N],
    /// Per client: the median over rounds of (client / empty stack) within a round.
    pub vs_empty: [f64; N],
    /// Per client: the interquartile range over rounds of (client / empty stack).
    pub vs_empty_iqr: [(f64, f64); N],
}

#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub rounds: usize,
    /// Sequential requests per client per round.
    pub sequential: usize,
    /// Batches of `CONCURRENCY` concurrent requests per client per round.
    pub concurrent_batches: usize,
    /// SSE requests per client per round.
    pub sse: usize,
}

pub const CONCURRENCY: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sequential,
    Concurrent,
    Sse,
}

pub async fn run(sizes: Sizes) -> Vec<Workload> {
    let ok = Server::start(Scenario::Ok);
    let sse = Server::start(Scenario::Sse { gap: Duration::from_millis(1) });
    let mut out = Vec::new();
    for (mode, server, name) in [
        (Mode::Sequential, &ok, format!("sequential POSTs ({} per client)", sizes.rounds * sizes.sequential)),
        (
            Mode::Concurrent,
            &ok,
            format!(
                "{CONCURRENCY} concurrent POSTs ({} per client)",
                sizes.rounds * CONCURRENCY * sizes.concurrent_batches
            ),
        ),
        (Mode::Sse, &sse, format!("SSE time to first output ({} per client)", sizes.rounds * sizes.sse)),
    ] {
        let clients = Clients::new();
        let url = url(Style::OpenAi, server.port);
        let body = request_body();
        let mut rounds: Vec<[f64; N]> = Vec::new();
        // Round 0 warms the pool and the allocator and is not counted.
        for round in 0..=sizes.rounds {
            let mut latencies: [Vec<f64>; N] = Default::default();
            // Clients take turns request by request (a batch of 16 at a time
            // when concurrent), in an order shuffled every cycle.
            let turns = match mode {
                Mode::Sse => sizes.sse,
                Mode::Sequential => sizes.sequential,
                Mode::Concurrent => sizes.concurrent_batches,
            };
            for i in 0..turns {
                for slot in turn_order::<N>((round * turns + i) as u64) {
                    let kind = CLIENTS[slot];
                    match mode {
                        Mode::Sse => latencies[slot].push(micros(first_output(&clients, kind, &url, &body).await)),
                        Mode::Sequential => {
                            latencies[slot].push(micros(full_request(&clients, kind, &url, &body).await))
                        }
                        Mode::Concurrent => latencies[slot].extend(batch(&clients, kind, &url, &body).await),
                    }
                }
            }
            if round > 0 {
                rounds.push(latencies.map(|mut l| median(&mut l)));
            }
        }
        let column = |f: &dyn Fn(&[f64; N]) -> f64| rounds.iter().map(f).collect::<Vec<f64>>();
        let mut median_us = [0.0; N];
        let mut vs_bare = [0.0; N];
        let mut vs_empty = [0.0; N];
        let mut vs_empty_iqr = [(0.0, 0.0); N];
        for slot in 0..N {
            median_us[slot] = median(&mut column(&|r| r[slot]));
            vs_bare[slot] = median(&mut column(&|r| r[slot] / r[0]));
            let mut ratios = column(&|r| r[slot] / r[1]);
            vs_empty[slot] = median(&mut ratios);
            vs_empty_iqr[slot] = (quantile(&mut ratios, 0.25), quantile(&mut ratios, 0.75));
        }
        out.push(Workload { name, median_us, vs_bare, vs_empty, vs_empty_iqr });
    }
    out
}

/// One client's turn in the concurrent workload: `CONCURRENCY` requests at
/// once; per-request latencies in µs.
async fn batch(clients: &Clients, kind: Kind, url: &Url, body: &Bytes) -> Vec<f64> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (clients, url, body) = (clients.clone(), url.clone(), body.clone());
        tasks.spawn(async move { micros(full_request(&clients, kind, &url, &body).await) });
    }
    tasks.join_all().await
}

/// Send, read the whole body.
async fn full_request(clients: &Clients, kind: Kind, url: &Url, body: &Bytes) -> Duration {
    let started = Instant::now();
    match clients.send(kind, Style::OpenAi, url, body, None).await {
        Sent::Response(response) => {
            let bytes = response.bytes().await.expect("body");
            assert!(bytes.len() > 200, "a chat completion");
        }
        Sent::Failed(error) => panic!("success path failed: {error}"),
    }
    started.elapsed()
}

/// Send, time the first output (the first chunk with text: what a chat
/// user waits for; the role chunk before it carries none), then drain the stream.
async fn first_output(clients: &Clients, kind: Kind, url: &Url, body: &Bytes) -> Duration {
    let started = Instant::now();
    let Sent::Response(mut response) = clients.send(kind, Style::OpenAi, url, body, None).await else {
        panic!("SSE request failed");
    };
    let mut received = Vec::new();
    while !received.windows(7).any(|w| w == b"\"Hello\"") {
        let chunk = response.chunk().await.expect("chunk").expect("the stream ended before its output");
        received.extend_from_slice(&chunk);
    }
    let elapsed = started.elapsed();
    assert!(received.starts_with(b"data: "));
    while response.chunk().await.expect("chunk").is_some() {}
    elapsed
}

/// `n` sequential requests with one client, for `perf stat`.
pub async fn profile(kind: Kind, n: usize) {
    let server = Server::start(Scenario::Ok);
    let clients = Clients::new();
    let (url, body) = (url(Style::OpenAi, server.port), request_body());
    let started = Instant::now();
    for _ in 0..n {
        full_request(&clients, kind, &url, &body).await;
    }
    eprintln!("{kind:?}: {:.2} µs per request", micros(started.elapsed()) / n as f64);
}
