//! The fleet's probe through a store whose answers a test bends: a wait that
//! has already passed, and a host that answers again. (The protocol itself,
//! through the public stores, is in `tests/all/outage.rs` and
//! `tests/redis_store.rs`.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::store::TestStore;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn overloaded() -> ResponseTemplate {
    let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    ResponseTemplate::new(529).set_body_raw(body, "application/json")
}

/// `n` concurrent requests to `server` through `middleware`, as Anthropic's; their statuses.
async fn concurrent(server: &MockServer, middleware: crate::LlmRetryMiddleware, n: usize) -> Vec<u16> {
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).with(middleware).build();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let request = client.post(format!("{}/v1/messages", server.uri())).with_extension(Provider::Anthropic);
        tasks.spawn(async move { request.body("{}").send().await.unwrap().status().as_u16() });
    }
    tokio::time::timeout(Duration::from_secs(10), tasks.join_all()).await.expect("every request ends")
}

#[test]
fn a_wait_for_the_fleet_is_never_shorter_than_a_poll_nor_longer_than_the_longest() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    for (at, wait) in [
        (now - MS(500), MIN_POLL),
        (now, MIN_POLL),
        (now + MS(1), MIN_POLL),
        (now + MS(40), MS(40)),
        (now + Duration::from_secs(9), POLL),
    ] {
        assert_eq!(poll_wait(at, now), wait, "{at:?}");
    }
}

#[tokio::test]
async fn a_wait_that_has_already_passed_is_not_asked_again_in_a_loop() {
    // Every answer is "wait until" a time long past, as a slow round trip or a skewed clock can make it.
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(overloaded().set_delay(MS(2))).mount(&server).await;
    let store =
        Arc::new(TestStore { outage: Some(|| OutageTurn::Wait(SystemTime::UNIX_EPOCH)), ..TestStore::default() });
    let middleware = crate::LlmRetryMiddleware::builder().base_delay(MS(40)).max_retries(2).shared_store(store.clone());
    assert_eq!(concurrent(&server, middleware.build(), 4).await, [529; 4], "held to its bound");
    // Held for about 60 ms, asking at most every 2 ms.
    let asked = store.outage_asked.load(Ordering::Relaxed);
    assert!((1..=200).contains(&asked), "asked {asked} times");
}

#[tokio::test]
async fn a_host_that_answers_again_costs_no_store_question() {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(overloaded()).up_to_n_times(1).with_priority(1).mount(&server).await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let store = Arc::new(TestStore::default());
    let middleware = crate::LlmRetryMiddleware::builder().base_delay(MS(10)).shared_store(store.clone()).build();
    // One failure, then successes: the host is tracked, and no longer failing.
    assert_eq!(concurrent(&server, middleware.clone(), 4).await, [200; 4]);
    let asked = store.outage_asked.load(Ordering::Relaxed);
    assert_eq!(concurrent(&server, middleware, 8).await, [200; 8]);
    assert_eq!(store.outage_asked.load(Ordering::Relaxed), asked, "the store was asked about a host that answers");
}
