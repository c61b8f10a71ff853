//! Section 5, provider outages: an open loop of requests against a provider
//! that answers its overload error to everything for a while, then recovers.

use std::time::{Duration, Instant};

use crate::clients::{Clients, Kind, request_body, url};
use crate::server::{Scenario, Server, Style};
use crate::stats::quantile;

/// One client through one outage.
#[derive(Debug, Clone)]
pub struct OutageRun {
    pub kind: Kind,
    /// Requests started before the recovery.
    pub caught: usize,
    pub caught_ok: usize,
    /// Attempts the server saw during the outage, per caught request.
    pub attempts_during: f64,
    /// Every attempt of the caught requests (the success after the recovery included), per caught request.
    pub attempts_per_caught: f64,
    /// For the caught requests answered after the recovery: how long after it.
    pub after_p50: Duration,
    pub after_p99: Duration,
    /// Requests started 2 s or more after the recovery, and how many succeeded.
    pub late: usize,
    pub late_ok: usize,
}

/// One request every `1 / rate` s for `length`; the provider is down for the first `down`.
pub async fn outage(kinds: &[Kind], style: Style, rate: u32, down: Duration, length: Duration) -> Vec<OutageRun> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, &kind) in kinds.iter().enumerate() {
        tasks.spawn(async move { (index, one(kind, style, rate, down, length).await) });
    }
    let mut done = tasks.join_all().await;
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, run)| run).collect()
}

async fn one(kind: Kind, style: Style, rate: u32, down: Duration, length: Duration) -> OutageRun {
    let start = Instant::now() + Duration::from_millis(50);
    let recovery = start + down;
    let server = Server::start(Scenario::Outage { style, until: recovery });
    let clients = Clients::new();
    let (url, body) = (url(style, server.port), request_body());
    let mut requests = tokio::task::JoinSet::new();
    let gap = Duration::from_secs(1) / rate;
    let count = (length.as_secs_f64() * f64::from(rate)) as u64;
    for id in 0..count {
        let at = start + gap * id as u32;
        tokio::time::sleep_until(at.into()).await;
        let (clients, url, body) = (clients.clone(), url.clone(), body.clone());
        requests.spawn(async move {
            let started = Instant::now();
            let outcome = clients.call(kind, style, &url, &body, Some(id)).await;
            (id, started, Instant::now(), outcome.ok())
        });
    }
    let done = requests.join_all().await;
    let attempts = server.attempts();
    let caught: Vec<_> = done.iter().filter(|(_, started, _, _)| *started < recovery).collect();
    let sent: u64 = caught.iter().map(|(id, ..)| u64::from(attempts.get(id).copied().unwrap_or(0))).sum();
    let mut after: Vec<f64> = caught
        .iter()
        .filter(|(_, _, finished, _)| *finished >= recovery)
        .map(|(_, _, finished, _)| (*finished - recovery).as_secs_f64())
        .collect();
    let late: Vec<_> = done.iter().filter(|(_, started, _, _)| *started >= recovery + Duration::from_secs(2)).collect();
    OutageRun {
        kind,
        caught: caught.len(),
        caught_ok: caught.iter().filter(|d| d.3).count(),
        attempts_during: server.seen().iter().filter(|s| s.at < recovery).count() as f64 / caught.len().max(1) as f64,
        attempts_per_caught: sent as f64 / caught.len().max(1) as f64,
        after_p50: Duration::from_secs_f64(quantile(&mut after, 0.5)),
        after_p99: Duration::from_secs_f64(quantile(&mut after, 0.99)),
        late: late.len(),
        late_ok: late.iter().filter(|d| d.3).count(),
    }
}
