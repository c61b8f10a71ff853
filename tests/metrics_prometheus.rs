//! The `prometheus` example's run, checked: what its `/metrics` endpoint serves holds every
//! metric with the values the storm implies, and `docs/dashboard.json` queries exactly those
//! series. Scraped every 20 ms while the storm runs, the same endpoint draws the dashboard's
//! picture; `UPDATE_DOCS=1` writes it to `docs/dashboard.svg`:
//!
//! ```sh
//! UPDATE_DOCS=1 cargo test --features metrics --test metrics_prometheus
//! ```
//!
//! A binary of its own: the example installs a global recorder.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest_llm_retry::Provider;

#[path = "../examples/prometheus/storm.rs"]
mod storm;
#[path = "../benches/harness/svg.rs"]
mod svg;

/// One series of an exposition: its name, labels and value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of an exposition text (the label values here hold no comma or quote).
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|line| !line.is_empty() && !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.strip_suffix('}').expect("closed labels")),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').expect("key=value");
                (key.to_owned(), value.trim_matches('"').to_owned())
            })
            .collect();
        samples.push(Sample { name: name.to_owned(), labels, value: value.parse().expect("a number") });
    }
    samples
}

/// The sum of `name` over the series whose labels include `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matches = |s: &&Sample| s.name == name && labels.iter().all(|&(k, v)| s.labels.get(k).is_some_and(|l| l == v));
    samples.iter().filter(matches).map(|s| s.value).sum()
}

/// Whether a series of `name` with `labels` is there.
fn has(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> bool {
    samples.iter().any(|s| s.name == name && labels.iter().all(|&(k, v)| s.labels.get(k).is_some_and(|l| l == v)))
}

/// Every metric the dashboard's queries name (without a histogram's `_bucket`, `_sum` or `_count`),
/// and its panel titles.
fn dashboard() -> (BTreeSet<String>, Vec<String>) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let mut metrics = BTreeSet::new();
    let mut titles = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        titles.push(panel["title"].as_str().expect("a title").to_owned());
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a query");
            for (at, _) in expr.match_indices("llm_retry_") {
                let name: String = expr[at..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                let base = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix));
                metrics.insert(base.unwrap_or(&name).to_owned());
            }
        }
    }
    (metrics, titles)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_exports_every_metric_and_the_dashboard_reads_them() {
    let handle = storm::recorder().expect("the only recorder of this binary");
    let address = storm::serve(handle).await.unwrap();

    // A scraper, every 20 ms, as Prometheus would (far more often).
    let started = Instant::now();
    let running = Arc::new(AtomicBool::new(true));
    let scraper = tokio::spawn({
        let running = running.clone();
        async move {
            let mut scrapes = Vec::new();
            while running.load(Ordering::SeqCst) {
                let text = storm::scrape(address).await.expect("scraped");
                scrapes.push((started.elapsed().as_secs_f64(), parse(&text)));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            scrapes
        }
    });
    let phases = tokio::time::timeout(Duration::from_secs(60), storm::storm()).await.expect("no hang").unwrap();
    running.store(false, Ordering::SeqCst);
    let scrapes = scraper.await.unwrap();
    let text = storm::scrape(address).await.unwrap();
    let last = parse(&text);

    // Each call is one outcome; each request answered beyond the calls, one retry or one
    // fallback (save a fallback's that was the call's first request: its model was not asked).
    for provider in [Provider::OpenAi, Provider::Anthropic, Provider::Gemini] {
        let of = |f: fn(&storm::Phase) -> usize| phases.iter().filter(|p| p.provider == provider).map(f).sum::<usize>();
        let (calls, successes, answered) = (of(|p| p.calls), of(|p| p.successes), of(|p| p.answered));
        let (fallbacks, straight) = (of(|p| p.fallbacks), of(|p| p.straight));
        let names: Vec<_> = phases.iter().filter(|p| p.provider == provider).map(|p| p.name).collect();
        let p = ("provider", provider.name());
        assert_eq!(sum(&last, "llm_retry_requests_total", &[p]), calls as f64, "{names:?}\n{text}");
        assert_eq!(sum(&last, "llm_retry_requests_total", &[p, ("outcome", "success")]), successes as f64, "{names:?}");
        let retries = answered + straight - calls - fallbacks;
        assert_eq!(sum(&last, "llm_retry_retries_total", &[p]), retries as f64, "{names:?}\n{text}");
        assert_eq!(sum(&last, "llm_retry_fallbacks_total", &[p]), fallbacks as f64, "{names:?}\n{text}");
    }
    // Opus was down for its first 10 answers: some calls went on to Sonnet.
    let fallback = phases.iter().find(|p| p.name == "fallback").expect("the fallback phase");
    let models = [("provider", "anthropic"), ("from", storm::OPUS), ("to", storm::SONNET)];
    assert!(fallback.fallbacks > 0, "{fallback:?}");
    assert_eq!(sum(&last, "llm_retry_fallbacks_total", &models), fallback.fallbacks as f64, "{text}");
    let (openai, anthropic, gemini) = (("provider", "openai"), ("provider", "anthropic"), ("provider", "gemini"));
    for (labels, what) in [
        ([openai, ("reason", "rate_limited")], "a 429 retried"),
        ([anthropic, ("reason", "overloaded")], "a 529 retried"),
        ([gemini, ("reason", "overloaded")], "a 503 retried"),
    ] {
        assert!(sum(&last, "llm_retry_retries_total", &labels) > 0.0, "{what}\n{text}");
    }
    for (labels, what) in [
        ([openai, ("cause", "retry")], "the server's wait before a retry"),
        ([openai, ("cause", "rate_limit")], "held by the pacing while the tokens ran out"),
        ([anthropic, ("cause", "retry")], "the backoff after an overload"),
        ([gemini, ("cause", "outage")], "held by the outage"),
    ] {
        assert!(sum(&last, "llm_retry_wait_seconds_count", &labels) > 0.0, "{what}\n{text}");
        assert!(sum(&last, "llm_retry_wait_seconds_sum", &labels) > 0.0, "{what}");
        assert!(has(&last, "llm_retry_wait_seconds_bucket", &[labels[0], labels[1], ("le", "0.05")]), "{what}");
    }
    for (provider, host, limit) in [
        ("openai", "api.openai.com", "requests"),
        ("openai", "api.openai.com", "tokens"),
        ("anthropic", "api.anthropic.com", "requests"),
        ("anthropic", "api.anthropic.com", "tokens"),
        ("anthropic", "api.anthropic.com", "input_tokens"),
        ("anthropic", "api.anthropic.com", "output_tokens"),
    ] {
        let labels = [("provider", provider), ("host", host), ("limit", limit)];
        assert!(has(&last, "llm_retry_ratelimit_remaining", &labels), "{labels:?}\n{text}");
    }
    let outage = [gemini, ("host", "generativelanguage.googleapis.com")];
    assert_eq!(sum(&last, "llm_retry_outage", &outage), 0.0, "over\n{text}");
    assert!(scrapes.iter().any(|(_, s)| sum(s, "llm_retry_outage", &outage) == 1.0), "seen while it lasted");
    assert!(text.contains("# TYPE llm_retry_wait_seconds histogram"), "{text}");

    // The dashboard queries these series, and the picture shows its panels.
    let (queried, titles) = dashboard();
    let exported: BTreeSet<String> = [
        "llm_retry_requests_total",
        "llm_retry_retries_total",
        "llm_retry_wait_seconds",
        "llm_retry_ratelimit_remaining",
        "llm_retry_outage",
        "llm_retry_fallbacks_total",
    ]
    .map(String::from)
    .into();
    assert_eq!(queried, exported, "the dashboard queries every metric, and no other");
    for name in &exported {
        assert!(last.iter().any(|s| s.name.starts_with(name.as_str())), "{name} not exported\n{text}");
    }
    let picture = picture(&scrapes);
    for panel in &picture.panels {
        let title = panel.title.split(" (").next().unwrap();
        assert!(titles.iter().any(|t| t == title), "{title:?} is not a panel of docs/dashboard.json");
        assert!(!panel.lines.is_empty(), "{title}: nothing drawn");
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/dashboard.svg"), picture.render()).unwrap();
    }
}

/// Rates over this window, as `rate(…[250ms])` would give.
const WINDOW: f64 = 0.25;

/// The dashboard's four main panels over the scrapes of one run.
fn picture(scrapes: &[(f64, Vec<Sample>)]) -> svg::Figure {
    let x_end = scrapes.last().map_or(1.0, |(t, _)| *t);
    let panels = vec![
        panel("Retries by reason (per second)", scrapes, "llm_retry_retries_total", "reason", None, Draw::Rate),
        panel(
            "Time spent waiting, by cause (seconds per second)",
            scrapes,
            "llm_retry_wait_seconds_sum",
            "cause",
            None,
            Draw::Rate,
        ),
        panel(
            "Rate-limit headroom per host (requests left)",
            scrapes,
            "llm_retry_ratelimit_remaining",
            "host",
            Some(("limit", "requests")),
            Draw::Value,
        ),
        panel("Provider outage (1: in an outage)", scrapes, "llm_retry_outage", "host", None, Draw::Value),
    ];
    svg::Figure {
        title: "The dashboard over one run of the prometheus example (rates over 250 ms)".to_owned(),
        x_label: "seconds since the storm began".to_owned(),
        x_end,
        panel_height: 140.0,
        panels,
    }
}

#[derive(Clone, Copy)]
enum Draw {
    /// The increase per second over the last [`WINDOW`], of a counter.
    Rate,
    /// The value, held until the next scrape, of a gauge (from its first appearance).
    Value,
}

/// One line per value of label `by` of `name` (summed over the other labels), over time.
fn panel(
    title: &str,
    scrapes: &[(f64, Vec<Sample>)],
    name: &str,
    by: &str,
    only: Option<(&str, &str)>,
    draw: Draw,
) -> svg::Panel {
    let keys: BTreeSet<String> = scrapes
        .iter()
        .flat_map(|(_, samples)| samples.iter())
        .filter(|s| s.name == name && only.is_none_or(|(k, v)| s.labels.get(k).is_some_and(|l| l == v)))
        .filter_map(|s| s.labels.get(by).cloned())
        .collect();
    let mut lines = Vec::new();
    let mut legend = Vec::new();
    let mut top: f64 = 0.0;
    for (i, key) in keys.iter().enumerate() {
        let color = svg::COLORS[(i + 1) % svg::COLORS.len()];
        let mut filter = vec![(by, key.as_str())];
        filter.extend(only);
        let value = |samples: &[Sample]| has(samples, name, &filter).then(|| sum(samples, name, &filter));
        let series: Vec<(f64, Option<f64>)> = scrapes.iter().map(|(t, s)| (*t, value(s))).collect();
        let points: Vec<(f64, f64)> = match draw {
            Draw::Rate => series
                .iter()
                .map(|&(t, v)| {
                    let (t0, v0) = series.iter().rev().find(|(t0, _)| *t0 <= t - WINDOW).copied().unwrap_or(series[0]);
                    let rate = (v.unwrap_or(0.0) - v0.unwrap_or(0.0)) / (t - t0).max(WINDOW);
                    (t, rate)
                })
                .collect(),
            Draw::Value => steps(&series.iter().filter_map(|&(t, v)| Some((t, v?))).collect::<Vec<_>>()),
        };
        top = points.iter().map(|p| p.1).fold(top, f64::max);
        lines.push(svg::Line { points, color, width: 1.8 });
        legend.push(svg::Key { color, width: 2.5, name: key.clone(), detail: None });
    }
    svg::Panel { title: title.to_owned(), y_max: svg::nice_ceiling(top.max(1.0)), lines, legend }
}

/// Points that hold each value until the next one, as a scraped gauge does.
fn steps(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut stepped = Vec::with_capacity(points.len() * 2);
    for (i, &(x, y)) in points.iter().enumerate() {
        if i > 0 {
            stepped.push((x, points[i - 1].1));
        }
        stepped.push((x, y));
    }
    stepped
}
