//! Section 6, model fallback (`--only fallback`): an open loop of requests
//! for a model that answers its overload error for a while, then recovers,
//! while the model configured as its fallback always answers.

use std::time::{Duration, Instant};

use crate::clients::{Clients, FALLBACK_MODEL, Kind, PRIMARY_MODEL, primary_model_body, url};
use crate::server::{Scenario, Seen, Server, Style};
use crate::stats::{Table, fmt_secs, quantile};
use crate::verdict;

/// The clients compared: with the fallback, then without one.
pub const KINDS: [Kind; 3] = [Kind::OursFallback, Kind::Ours, Kind::ReqwestRetry];

/// One client through one model's outage.
#[derive(Debug, Clone)]
pub struct FallbackRun {
    pub kind: Kind,
    pub requests: usize,
    pub failures: usize,
    /// Latency of every request, from its start to its answer (failures included).
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Attempts on the primary model the server saw before the recovery, per caught request.
    pub primary_per_caught: f64,
    /// The most attempts one request made on the primary model.
    pub most_on_primary: u32,
    /// Requests the fallback model answered.
    pub fallback_answers: usize,
    /// From the recovery to the primary's first 200 after which no request
    /// for the fallback arrives: traffic back on the primary for good.
    pub back: Option<Duration>,
}

/// One request every `1 / rate` s for `length`, one server per client; the
/// primary model is down for the first `down`.
pub async fn fallback(kinds: &[Kind], rate: u32, down: Duration, length: Duration) -> Vec<FallbackRun> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, &kind) in kinds.iter().enumerate() {
        tasks.spawn(async move { (index, one(kind, rate, down, length).await) });
    }
    let mut done = tasks.join_all().await;
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, run)| run).collect()
}

async fn one(kind: Kind, rate: u32, down: Duration, length: Duration) -> FallbackRun {
    let style = Style::Anthropic;
    let start = Instant::now() + Duration::from_millis(50);
    let recovery = start + down;
    let server = Server::start(Scenario::ModelOutage { style, model: PRIMARY_MODEL, until: recovery });
    let clients = Clients::new();
    let (url, body) = (url(style, server.port), primary_model_body());
    let mut requests = tokio::task::JoinSet::new();
    let gap = Duration::from_secs(1) / rate;
    let count = (length.as_secs_f64() * f64::from(rate)) as u64;
    for id in 0..count {
        // On a fixed schedule, whatever the earlier requests are doing.
        tokio::time::sleep_until((start + gap * id as u32).into()).await;
        let (clients, url, body) = (clients.clone(), url.clone(), body.clone());
        requests.spawn(async move {
            let started = Instant::now();
            let outcome = clients.call(kind, style, &url, &body, Some(id)).await;
            (started, started.elapsed(), outcome.ok())
        });
    }
    let done = requests.join_all().await;
    let seen = server.seen();
    let caught = done.iter().filter(|(started, ..)| *started < recovery).count();
    let mut latencies: Vec<f64> = done.iter().map(|(_, took, _)| took.as_secs_f64()).collect();
    let primary_during = seen.iter().filter(|s| s.primary && s.at < recovery).count();
    FallbackRun {
        kind,
        requests: done.len(),
        failures: done.iter().filter(|(.., ok)| !ok).count(),
        p50: Duration::from_secs_f64(quantile(&mut latencies, 0.5)),
        p99: Duration::from_secs_f64(quantile(&mut latencies, 0.99)),
        max: Duration::from_secs_f64(quantile(&mut latencies, 1.0)),
        primary_per_caught: primary_during as f64 / caught.max(1) as f64,
        most_on_primary: most_on_primary(&seen),
        fallback_answers: seen.iter().filter(|s| !s.primary && s.status == 200).count(),
        back: back_on_primary(&seen, recovery),
    }
}

fn most_on_primary(seen: &[Seen]) -> u32 {
    let mut per_request = std::collections::HashMap::new();
    for id in seen.iter().filter(|s| s.primary).filter_map(|s| s.id) {
        *per_request.entry(id).or_insert(0) += 1;
    }
    per_request.into_values().max().unwrap_or(0)
}

/// From `recovery` to the primary's first success after the last request for
/// another model, if the primary answered one.
fn back_on_primary(seen: &[Seen], recovery: Instant) -> Option<Duration> {
    let last_elsewhere = seen.iter().filter(|s| !s.primary).map(|s| s.at).max();
    seen.iter()
        .filter(|s| s.primary && s.status == 200 && last_elsewhere.is_none_or(|last| s.at > last))
        .map(|s| s.at.saturating_duration_since(recovery))
        .min()
}

/// The section's table, and its verdicts on the client with the fallback.
pub fn report(runs: &[FallbackRun], rate: u32, down: Duration, length: Duration, verdicts: &mut Vec<String>) -> String {
    let mut table = Table::new(&[
        "client",
        "failed requests",
        "latency p50 / p99 / max",
        "attempts on the primary per request during its outage",
        "most on the primary by one request",
        "answered by the fallback",
        "traffic back on the primary after its recovery",
    ]);
    for run in runs {
        table.row(vec![
            run.kind.name().into(),
            format!("{} / {}", run.failures, run.requests),
            format!(
                "{} / {} / {}",
                fmt_secs(run.p50.as_secs_f64()),
                fmt_secs(run.p99.as_secs_f64()),
                fmt_secs(run.max.as_secs_f64())
            ),
            format!("{:.3}", run.primary_per_caught),
            run.most_on_primary.to_string(),
            run.fallback_answers.to_string(),
            run.back.map_or("never".into(), |back| fmt_secs(back.as_secs_f64())),
        ]);
        if run.kind == Kind::OursFallback {
            push_verdicts(run, verdicts);
        }
    }
    format!(
        "\n### 7. Model fallback\n\nOpen loop, {rate} requests/s for {} s, every request for `{PRIMARY_MODEL}` on Anthropic; it answers 529 \
         `overloaded_error` for the first {} s, then 200; `{FALLBACK_MODEL}` always answers 200. Each client has a server of its own. \
         Attempts on the primary during its outage = requests for it the server saw before the recovery, per request started before it. \
         Traffic back = from the recovery to the primary's first 200 after which no request for the fallback arrives (for the clients \
         without a fallback: its first 200).\n\n{}",
        length.as_secs(),
        down.as_secs(),
        table.render()
    )
}

fn push_verdicts(run: &FallbackRun, verdicts: &mut Vec<String>) {
    let back = run.back.map_or("never".into(), |back| fmt_secs(back.as_secs_f64()));
    let lines = [
        (run.failures == 0, format!("{} of {} requests failed (target 0)", run.failures, run.requests)),
        (run.p99 <= Duration::from_secs(1), format!("p99 latency {} (target ≤ 1 s)", fmt_secs(run.p99.as_secs_f64()))),
        (
            run.primary_per_caught <= 0.2,
            format!(
                "{:.3} attempts on the primary per request during its outage (target ≤ 0.2)",
                run.primary_per_caught
            ),
        ),
        (
            run.back.is_some_and(|back| back <= Duration::from_secs(1)),
            format!("traffic back on the primary {back} after its recovery (target ≤ 1 s)"),
        ),
    ];
    for (met, text) in lines {
        verdicts.push(verdict(met, format!("fallback: ours {text}")));
    }
}
