//! Sections 2 and 3, rate-limit storms and overload: many requests, 16 at a
//! time, against a server that pushes back.

use std::sync::Arc;

use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::clients::{Clients, Kind, Outcome, request_body, url};
use crate::server::{Scenario, Seen, Server, Style};
use crate::stats::{median, quantile};

pub const CONCURRENCY: u64 = 16;

/// One logical request, start to end.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    pub outcome: Outcome,
    pub started: Instant,
    pub finished: Instant,
}

/// Sends requests `0..n`, `CONCURRENCY` at a time, starting at `start`;
/// request `id`'s body is `body(style, id)`.
pub async fn drive(
    clients: &Clients,
    (kind, style): (Kind, Style),
    port: u16,
    n: u64,
    start: Instant,
    body: fn(Style, u64) -> Bytes,
) -> Vec<Done> {
    tokio::time::sleep_until(start.into()).await;
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (clients, next) = (clients.clone(), next.clone());
        workers.spawn(async move {
            let url = url(style, port);
            let mut done = Vec::new();
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= n {
                    break done;
                }
                let started = Instant::now();
                let outcome = clients.call(kind, style, &url, &body(style, id), Some(id)).await;
                done.push(Done { outcome, started, finished: Instant::now() });
            }
        });
    }
    workers.join_all().await.into_iter().flatten().collect()
}

/// One client in one storm.
#[derive(Debug, Clone)]
pub struct StormRun {
    pub kind: Kind,
    pub requests: u64,
    pub successes: u64,
    pub give_ups: u64,
    pub seen: usize,
    pub makespan: Duration,
    /// When the last window the work needs opens: `(⌈n / limit⌉ − 1) × window`.
    pub minimum: Duration,
    /// Server arrivals: seconds since the storm started, and the status answered.
    pub timeline: Vec<(f64, u16)>,
    pub limit: u32,
    pub window: Duration,
}

impl StormRun {
    pub fn wasted_per_success(&self) -> f64 {
        crate::stats::wasted_per_success(self.seen, self.successes)
    }

    pub fn ratio(&self) -> f64 {
        self.makespan.as_secs_f64() / self.minimum.as_secs_f64()
    }
}

/// `limit` requests per `window`, `n` requests, each client on a fresh server;
/// with `bare`, successes carry no rate-limit headers.
pub async fn storm(style: Style, limit: u32, window: Duration, n: u64, bare: bool, kinds: &[Kind]) -> Vec<StormRun> {
    let mut runs = Vec::new();
    for &kind in kinds {
        let (epoch, wall_epoch) = aligned_start(window);
        let server = Server::start(Scenario::Storm { style, limit, window, epoch, wall_epoch, bare });
        let done = drive(&Clients::new(), (kind, style), server.port, n, epoch, |_, _| request_body()).await;
        let successes = done.iter().filter(|d| d.outcome.ok()).count() as u64;
        let finished = done.iter().map(|d| d.finished).max().unwrap_or(epoch);
        let seen = server.seen();
        // No client can finish before the last window it needs opens.
        let windows = n.div_ceil(u64::from(limit)) as u32;
        runs.push(StormRun {
            kind,
            requests: n,
            successes,
            give_ups: n - successes,
            seen: seen.len(),
            makespan: finished.saturating_duration_since(epoch),
            minimum: window * windows.saturating_sub(1).max(1),
            timeline: relative(&seen, epoch),
            limit,
            window,
        });
    }
    runs
}

/// A start a little ahead, on a window boundary of the wall clock, so that a
/// whole-second window matches the whole-second reset timestamp Anthropic sends.
pub fn aligned_start(window: Duration) -> (Instant, SystemTime) {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let since = wall.duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos();
    let window_ns = window.as_nanos();
    let lead = Duration::from_millis(150).as_nanos();
    let target = (since + lead).div_ceil(window_ns) * window_ns;
    let ahead = Duration::from_nanos((target - since) as u64);
    (now + ahead, wall + ahead)
}

fn relative(seen: &[Seen], epoch: Instant) -> Vec<(f64, u16)> {
    seen.iter().map(|s| (s.at.saturating_duration_since(epoch).as_secs_f64(), s.status)).collect()
}

/// One client under overload.
#[derive(Debug, Clone)]
pub struct OverloadRun {
    pub style: Style,
    pub kind: Kind,
    pub requests: u64,
    pub successes: u64,
    pub seen: usize,
    pub mean: Duration,
    pub p50: Duration,
    pub p95: Duration,
    pub makespan: Duration,
}

/// The provider's overload error with probability `p`, the same faults for
/// every client. Latencies here are seconds of backoff, so the runs (each
/// with a server of its own) go side by side to keep the harness short.
pub async fn overload(runs: &[(Style, Kind)], p: f64, seed: u64, n: u64) -> Vec<OverloadRun> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, &(style, kind)) in runs.iter().enumerate() {
        tasks.spawn(async move { (index, overload_one(style, kind, p, seed, n).await) });
    }
    let mut done = tasks.join_all().await;
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, run)| run).collect()
}

async fn overload_one(style: Style, kind: Kind, p: f64, seed: u64, n: u64) -> OverloadRun {
    let server = Server::start(Scenario::Overload { style, p, seed });
    let start = Instant::now() + Duration::from_millis(20);
    let done = drive(&Clients::new(), (kind, style), server.port, n, start, |_, _| request_body()).await;
    let mut latencies: Vec<f64> = done.iter().map(|d| (d.finished - d.started).as_secs_f64()).collect();
    let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    let finished = done.iter().map(|d| d.finished).max().unwrap_or(start);
    OverloadRun {
        style,
        kind,
        requests: n,
        successes: done.iter().filter(|d| d.outcome.ok()).count() as u64,
        seen: server.seen().len(),
        mean: Duration::from_secs_f64(mean),
        p50: Duration::from_secs_f64(median(&mut latencies)),
        p95: Duration::from_secs_f64(quantile(&mut latencies, 0.95)),
        makespan: finished.saturating_duration_since(start),
    }
}
