//! The outage state's `tracing` events (a warning on entering, an info event
//! on leaving with the probe count and duration), and that 30 % independent
//! faults never start an outage. A binary of its own: tracing caches
//! per-callsite interest, so the subscriber must be installed before any event fires.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::sync::Arc;

use reqwest_llm_retry::{LlmRetryMiddleware, MemoryStore};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod support;
use support::logs::logs;

/// The log lines about the server on `port` (tests run in parallel, each with its own server).
fn logs_of(port: u16) -> Vec<String> {
    let text = logs().text();
    text.lines().filter(|line| line.contains(&format!(":{port}\""))).map(str::to_owned).collect()
}

/// 529 `overloaded_error` while `failing(arrival index)`, 200 otherwise.
struct Script(AtomicUsize, fn(u64) -> bool);

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::Relaxed) as u64;
        if (self.1)(n) {
            let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
            ResponseTemplate::new(529).set_body_raw(body, "application/json")
        } else {
            ResponseTemplate::new(200)
        }
    }
}

/// A server of its own, not from wiremock's pool: a pooled server's port comes back to the
/// next test, and with it this test's log lines.
async fn server(failing: fn(u64) -> bool) -> MockServer {
    logs_of(0);
    let server = MockServer::builder().start().await;
    Mock::given(any()).respond_with(Script(AtomicUsize::new(0), failing)).mount(&server).await;
    server
}

/// `rounds` rounds of `n` concurrent requests through one middleware; the server's port and the successes.
async fn run(failing: fn(u64) -> bool, rounds: usize, n: usize) -> (u16, usize) {
    let server = server(failing).await;
    let middleware = LlmRetryMiddleware::builder().base_delay(Duration::from_millis(8)).build();
    (server.address().port(), rounds_through(&server, middleware, rounds, n).await)
}

/// `rounds` rounds of `n` concurrent requests through `middleware`; the successes.
async fn rounds_through(server: &MockServer, middleware: LlmRetryMiddleware, rounds: usize, n: usize) -> usize {
    let http = reqwest::Client::builder().no_proxy().resolve("api.anthropic.com", *server.address()).build().unwrap();
    let client = reqwest_middleware::ClientBuilder::new(http).with(middleware).build();
    let url = format!("http://api.anthropic.com:{}/v1/messages", server.address().port());
    let mut successes = 0;
    for _ in 0..rounds {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (client, url) = (client.clone(), url.clone());
            tasks.spawn(async move { client.post(url).send().await.map(|r| r.status() == 200).unwrap_or(false) });
        }
        let done = tokio::time::timeout(Duration::from_secs(10), tasks.join_all()).await.expect("no hang");
        successes += done.into_iter().filter(|ok| *ok).count();
    }
    successes
}

#[tokio::test]
async fn entering_and_leaving_an_outage_are_logged_with_the_probes_and_duration() {
    // The first 20 attempts fail (the outage), then the provider is back.
    let (port, successes) = run(|n| n < 20, 1, 16).await;
    assert_eq!(successes, 16);
    let logs = logs_of(port);
    let entered = logs.iter().filter(|l| l.contains("WARN") && l.contains("provider outage: holding")).count();
    let left: Vec<_> = logs.iter().filter(|l| l.contains("INFO") && l.contains("provider outage over")).collect();
    assert_eq!((entered, left.len()), (1, 1), "{logs:#?}");
    assert!(left[0].contains("probes=") && left[0].contains("lasted_ms="), "{}", left[0]);
}

#[tokio::test]
async fn joining_an_outage_another_middleware_recorded_is_logged() {
    let server = server(|_| true).await;
    let store = Arc::new(MemoryStore::new());
    let fast = || LlmRetryMiddleware::builder().base_delay(Duration::from_millis(8)).max_retries(2);
    // `a` enters the outage and records it in the store as it probes; `b` fails once, and joins it.
    rounds_through(&server, fast().shared_store(store.clone()).build(), 1, 12).await;
    rounds_through(&server, fast().shared_store(store).build(), 1, 4).await;
    let logs = logs_of(server.address().port());
    let entered = logs.iter().filter(|l| l.contains("WARN") && l.contains("provider outage: holding")).count();
    let joined = logs.iter().filter(|l| l.contains("WARN") && l.contains("said by another process")).count();
    assert_eq!((entered, joined), (1, 1), "{logs:#?}");
}

/// 529 with probability 0.3, from a seeded stream (SplitMix64) in arrival order.
fn thirty_percent(n: u64) -> bool {
    let mut z = 0x5EED_u64.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64) < 0.3
}

#[tokio::test]
async fn thirty_percent_independent_faults_never_start_an_outage() {
    let (port, successes) = run(thirty_percent, 25, 16).await;
    assert!(successes >= 396, "{successes} of 400 succeeded");
    let logs = logs_of(port);
    assert!(!logs.iter().any(|l| l.contains("provider outage")), "{logs:#?}");
}
