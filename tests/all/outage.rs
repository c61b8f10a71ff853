//! Provider outages (`outage`, on by default): entered after a run of
//! failures, probed by one request at a time, left on a success with the
//! waiting requests released spread, within each request's own bounds.
//! Its `tracing` events, and that independent faults never start it, are in
//! `tests/outage_events.rs` (a binary with a global subscriber).
//!
//! These run on the wall clock: while one request waits on the server's socket
//! the others sleep, and tokio's paused clock would jump them past it (SPEC's
//! testing note). Their time assertions are lower bounds set by the server's
//! own delays, which a slow machine only makes longer, or generous deadlines.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use reqwest_llm_retry::store::{OutageQuery, OutageTurn};
use reqwest_llm_retry::{ErrorKind, LlmApiError, LlmResponseExt, LlmRetryMiddleware, MemoryStore, SharedStore};
use reqwest_middleware::ClientWithMiddleware;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::*;

const MS: fn(u64) -> Duration = Duration::from_millis;
const DEADLINE: Duration = Duration::from_secs(10);

/// Anthropic's 529 to the first `down_for` requests, answered after `delay`; 200 at once after that.
/// Records each arrival and whether it was answered 529.
struct Provider {
    down_for: usize,
    delay: Duration,
    seen: Arc<Mutex<Vec<(Instant, bool)>>>,
}

impl Respond for Provider {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().unwrap();
        let down = seen.len() < self.down_for;
        seen.push((Instant::now(), down));
        if down { anthropic_error(529, "overloaded_error", "Overloaded").set_delay(self.delay) } else { ok() }
    }
}

async fn provider(down_for: usize, delay: Duration) -> (MockServer, Arc<Mutex<Vec<(Instant, bool)>>>) {
    let server = MockServer::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let responder = Provider { down_for, delay, seen: seen.clone() };
    Mock::given(wiremock::matchers::any()).respond_with(responder).mount(&server).await;
    (server, seen)
}

/// `n` concurrent requests; each one's result and how long it took.
async fn concurrent(
    client: &ClientWithMiddleware,
    url: &str,
    n: usize,
) -> Vec<(reqwest_middleware::Result<reqwest::Response>, Duration)> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url) = (client.clone(), url.to_owned());
        tasks.spawn(async move {
            let started = Instant::now();
            let result = client.post(url).body("{}").send().await;
            (result, started.elapsed())
        });
    }
    tokio::time::timeout(DEADLINE, tasks.join_all()).await.expect("every request ends")
}

#[tokio::test]
async fn an_outage_is_probed_one_request_at_a_time_then_the_waiting_requests_are_released_spread() {
    // 20 first attempts fail together (the outage), then 6 more requests are answered 529.
    let (down_for, delay) = (26, MS(30));
    let (server, seen) = provider(down_for, delay).await;
    let middleware = LlmRetryMiddleware::builder().base_delay(MS(40)).max_delay(MS(1000)).max_retries(5).build();
    let results = concurrent(&client(&server, middleware), &url(&server, ANTHROPIC, "/v1/messages"), 20).await;

    for (result, _) in &results {
        assert_eq!(result.as_ref().unwrap().status(), 200, "every request caught by the outage succeeds");
    }
    let seen = seen.lock().unwrap().clone();
    // After the first wave, the requests sent while the provider is down are probes: each
    // arrives after the previous one was answered (`delay` after it came), never two in flight.
    let probes = &seen[20..down_for];
    for pair in probes.windows(2) {
        assert!(pair[1].0 >= pair[0].0 + delay, "two probes in flight: {:?} apart", pair[1].0 - pair[0].0);
    }
    // One probe succeeds, then the others go, spread rather than in one millisecond.
    let released: Vec<Instant> = seen[down_for + 1..].iter().map(|(at, _)| *at).collect();
    assert_eq!(released.len(), 19, "each waiting request sent once more");
    let span = *released.last().unwrap() - released[0];
    assert!(span >= MS(100), "released within {span:?}");
}

#[tokio::test]
async fn held_requests_give_up_at_their_bound_with_the_last_response_or_a_typed_error() {
    let (server, seen) = provider(usize::MAX, MS(5)).await;
    // Retries would take 10 + 20 = 30 ms: no request is held longer.
    let middleware = LlmRetryMiddleware::builder().base_delay(MS(10)).max_retries(2).build();
    let (client, url) = (client(&server, middleware), url(&server, ANTHROPIC, "/v1/messages"));

    // The outage: sent once, then held until the bound, each returns the 529 it got.
    for (result, _) in concurrent(&client, &url, 12).await {
        let response = result.unwrap();
        assert_eq!(response.status(), 529);
        let stats = response.retry_stats().unwrap();
        assert!(stats.waited <= MS(40), "held {:?}, beyond the retry schedule", stats.waited);
        let error = response.llm_error().unwrap();
        assert_eq!((error.kind, error.retryable), (ErrorKind::Overloaded, true));
    }
    // Later requests are held before ever being sent: one probes, the others get the typed error.
    let sent_before = seen.lock().unwrap().len();
    let results = concurrent(&client, &url, 8).await;
    let mut typed = 0;
    for (result, took) in results {
        // A generous deadline: a broken bound holds a request until `max_elapsed` (300 s) or
        // the outage's end (never, here); 1 s is 30 times the 30 ms of retries allowed.
        assert!(took <= MS(1000), "took {took:?}");
        match result {
            Ok(response) => assert_eq!(response.status(), 529),
            Err(error) => {
                let api = LlmApiError::find_in(&error).expect("an LlmApiError in the error");
                assert_eq!((api.kind, api.retryable, api.attempts), (ErrorKind::Overloaded, true, 0));
                assert_eq!(api.status, 503);
                typed += 1;
            }
        }
    }
    assert!(typed >= 1, "no request was held until its bound");
    assert!(seen.lock().unwrap().len() - sent_before < 8, "held requests were sent");
}

#[tokio::test]
async fn a_request_alone_retries_exactly_as_before_even_in_an_outage() {
    let (server, _) = provider(usize::MAX, MS(2)).await;
    let middleware = LlmRetryMiddleware::builder().base_delay(MS(20)).max_retries(2).build();
    let (client, url) = (client(&server, middleware), url(&server, ANTHROPIC, "/v1/messages"));
    concurrent(&client, &url, 12).await;
    // The host is in an outage; a request alone is its own probe, on its own schedule.
    let response = tokio::time::timeout(DEADLINE, client.post(&url).body("{}").send()).await.unwrap().unwrap();
    let stats = response.retry_stats().unwrap();
    assert_eq!(stats.attempts, 3);
    // Overload backoff from base / 2: 10 + 20 ms, plus at most 25 %.
    assert!(stats.waited >= MS(30) && stats.waited <= MS(38), "waited {:?}", stats.waited);
}

#[tokio::test]
async fn outage_false_leaves_every_request_to_its_own_retries() {
    let (server, seen) = provider(usize::MAX, MS(2)).await;
    let middleware = LlmRetryMiddleware::builder().base_delay(MS(10)).max_retries(2).outage(false).build();
    let results = concurrent(&client(&server, middleware), &url(&server, ANTHROPIC, "/v1/messages"), 12).await;
    for (result, _) in results {
        assert_eq!(result.unwrap().retry_stats().unwrap().attempts, 3);
    }
    assert_eq!(seen.lock().unwrap().len(), 36);
}

/// Two middlewares sharing one store, as two processes of a fleet sharing Redis would.
fn fleet_of_two(builder: impl Fn() -> reqwest_llm_retry::LlmRetryMiddlewareBuilder) -> [LlmRetryMiddleware; 2] {
    let store = Arc::new(MemoryStore::new());
    [builder().shared_store(store.clone()).build(), builder().shared_store(store).build()]
}

#[tokio::test]
async fn middlewares_sharing_a_store_probe_one_at_a_time_between_them_and_all_release_on_its_success() {
    // Both send 10 requests at once into the outage: 20 first attempts fail, then 6 probes.
    let (down_for, delay) = (26, MS(30));
    let (server, seen) = provider(down_for, delay).await;
    let [a, b] = fleet_of_two(|| LlmRetryMiddleware::builder().base_delay(MS(40)).max_delay(MS(1000)).max_retries(6));
    let url = url(&server, ANTHROPIC, "/v1/messages");
    let (a, b) = (client(&server, a), client(&server, b));
    let (from_a, from_b) = tokio::join!(concurrent(&a, &url, 10), concurrent(&b, &url, 10));

    for (result, _) in from_a.iter().chain(&from_b) {
        assert_eq!(result.as_ref().unwrap().status(), 200, "every request caught by the outage succeeds");
    }
    // Each middleware entered the outage by itself; the probes of both are one at a time.
    let seen = seen.lock().unwrap().clone();
    for pair in seen[20..down_for].windows(2) {
        assert!(pair[1].0 >= pair[0].0 + delay, "two probes in flight: {:?} apart", pair[1].0 - pair[0].0);
    }
    // The success of one's probe releases the other's requests too: each sent once more.
    assert_eq!(seen.len(), down_for + 1 + 19, "requests sent after the recovery");
}

/// Anthropic down for good: the `n`th arrival (from 1) is answered 529 after `delay(n)`.
/// Each arrival says whether it came from `b`; their count is published, to wait on.
struct Down {
    delay: fn(usize) -> Duration,
    seen: Arc<Mutex<Vec<bool>>>,
    count: tokio::sync::watch::Sender<usize>,
}

impl Respond for Down {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().unwrap();
        seen.push(request.headers.contains_key("x-from-b"));
        self.count.send_replace(seen.len());
        anthropic_error(529, "overloaded_error", "Overloaded").set_delay((self.delay)(seen.len()))
    }
}

/// A server that is [`Down`], what it saw, and the count of arrivals.
async fn down(
    delay: fn(usize) -> Duration,
) -> (MockServer, Arc<Mutex<Vec<bool>>>, tokio::sync::watch::Receiver<usize>) {
    let server = MockServer::start().await;
    let (seen, (count, counted)) = (Arc::new(Mutex::new(Vec::new())), tokio::sync::watch::channel(0));
    let responder = Down { delay, seen: seen.clone(), count };
    Mock::given(wiremock::matchers::any()).respond_with(responder).mount(&server).await;
    (server, seen, counted)
}

#[tokio::test]
async fn a_middleware_joins_the_outage_another_recorded_after_one_failure() {
    let (server, seen, mut counted) = down(|_| MS(5)).await;
    let url = url(&server, ANTHROPIC, "/v1/messages");
    let store = Arc::new(MemoryStore::new());
    let a = LlmRetryMiddleware::builder().base_delay(MS(40)).max_delay(MS(80)).max_retries(8);
    let a = client(&server, a.shared_store(store.clone()).build());
    // `b` alone would need 10 failures in a row before holding anything: 3 rounds of its 4 requests.
    let b = LlmRetryMiddleware::builder().base_delay(MS(40)).max_retries(2).shared_store(store).build();
    let b = client(&server, b);

    let from_a = tokio::spawn({
        let (a, url) = (a.clone(), url.clone());
        async move { concurrent(&a, &url, 10).await }
    });
    // `a`'s first probe is sent once the store has its outage on record.
    tokio::time::timeout(DEADLINE, counted.wait_for(|n| *n > 10)).await.expect("a probes").unwrap();
    let mut from_b = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (b, url) = (b.clone(), url.clone());
        from_b.spawn(async move { b.post(url).header("x-from-b", "1").body("{}").send().await });
    }
    for result in tokio::time::timeout(DEADLINE, from_b.join_all()).await.unwrap() {
        let response = result.unwrap();
        assert_eq!(response.status(), 529, "held to its bound, it returns the last error it got");
        assert_eq!(response.llm_error().unwrap().kind, ErrorKind::Overloaded);
    }
    let sent_by_b = seen.lock().unwrap().iter().filter(|from_b| **from_b).count();
    // 4 first attempts, then held, save the fleet's probes it may have been granted (one
    // every 25 ms at most, within its 60 ms of retries); alone: 12.
    assert!(sent_by_b <= 7, "b sent {sent_by_b} requests into the fleet's outage");
    from_a.await.unwrap();
}

/// By arrival: 529 at once, except the 13th, which never comes in time; 200 from the 18th.
struct Scripted(AtomicUsize);

impl Respond for Scripted {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        match self.0.fetch_add(1, Ordering::Relaxed) {
            12 => anthropic_error(529, "overloaded_error", "Overloaded").set_delay(Duration::from_secs(30)),
            0..17 => anthropic_error(529, "overloaded_error", "Overloaded"),
            _ => ok(),
        }
    }
}

#[tokio::test]
async fn an_abandoned_probe_frees_the_fleets_lease_at_once() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any()).respond_with(Scripted(AtomicUsize::new(0))).mount(&server).await;
    let url = url(&server, ANTHROPIC, "/v1/messages");
    let [a, b] = fleet_of_two(|| LlmRetryMiddleware::builder().base_delay(MS(40)).max_retries(3));
    let (a, b) = (client(&server, a), client(&server, b));
    // `a` enters the outage; its probe hangs until its caller gives up (the others end at their bound).
    let mut from_a = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (a, url) = (a.clone(), url.clone());
        from_a.spawn(async move { tokio::time::timeout(MS(300), a.post(url).body("{}").send()).await.is_err() });
    }
    assert_eq!(from_a.join_all().await.into_iter().filter(|timed_out| *timed_out).count(), 1, "the probe");
    // `b` fails once, joins the outage, and probes at once: not after the 10 s lease.
    for (result, _) in concurrent(&b, &url, 4).await {
        assert_eq!(result.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn a_request_alone_retries_exactly_as_before_while_another_middleware_probes() {
    // The 13th request, `a`'s first probe, never returns.
    let (server, _, mut counted) = down(|n| if n == 13 { Duration::from_secs(30) } else { Duration::ZERO }).await;
    let url = url(&server, ANTHROPIC, "/v1/messages");
    let store = Arc::new(MemoryStore::new());
    let builder = || LlmRetryMiddleware::builder().base_delay(MS(20)).max_retries(2).shared_store(store.clone());
    let (a, b) = (client(&server, builder().build()), client(&server, builder().build()));
    // `a` enters the outage and holds the fleet's probe lease: its probe hangs.
    let from_a = tokio::spawn({
        let url = url.clone();
        async move { concurrent(&a, &url, 12).await }
    });
    tokio::time::timeout(DEADLINE, counted.wait_for(|n| *n > 12)).await.expect("a probes").unwrap();
    // `b` meets the outage too, and its requests wait for `a`'s probe until their bound.
    for (result, _) in concurrent(&b, &url, 12).await {
        assert_eq!(result.unwrap().status(), 529);
    }
    // Then `b`'s one request is its own probe, on its own schedule: the store is not asked.
    let response = tokio::time::timeout(DEADLINE, b.post(&url).body("{}").send()).await.unwrap().unwrap();
    let stats = response.retry_stats().unwrap();
    assert_eq!(stats.attempts, 3);
    // Overload backoff from base / 2: 10 + 20 ms, plus at most 25 %.
    assert!(stats.waited >= MS(30) && stats.waited <= MS(38), "waited {:?}", stats.waited);
    // Its failures were not the fleet's probe: `a` still holds the lease (10 s), and its probe
    // is still the only one in flight.
    let host = format!("{ANTHROPIC}:{}", server.address().port());
    let turn = store.outage(&host, OutageQuery::new(None, Duration::from_secs(10))).await;
    let soon = SystemTime::now() + Duration::from_secs(5);
    assert!(matches!(turn, OutageTurn::Wait(until) if until > soon), "{turn:?}");
    from_a.abort();
}
