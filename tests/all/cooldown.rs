//! Shared rate-limit state: one 429 slows every request that shares the key,
//! and the `remaining` budget keeps requests from collecting 429s at all.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest_llm_retry::{LlmResponseExt, MemoryCooldownStore, RateLimit};
use wiremock::{MockServer, Request, Respond, ResponseTemplate};

use crate::support::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

#[tokio::test]
async fn one_429_makes_every_clone_wait_for_the_same_key_only() {
    let server = MockServer::start().await;
    first(&server, 1, json(429, "{}").insert_header("retry-after-ms", "150")).await;
    always(&server, ok()).await;
    let middleware = fast().build();
    let a = client(&server, middleware.clone());
    let b = client(&server, middleware);
    let target = url(&server, OPENAI, "/v1/chat/completions");

    let first_request = tokio::spawn({
        let (a, target) = (a.clone(), target.clone());
        async move { a.post(target).bearer_auth("sk-shared-key").send().await.unwrap() }
    });
    while hits(&server).await == 0 {
        tokio::time::sleep(MS(2)).await;
    }
    tokio::time::sleep(MS(10)).await;
    let same_key = b.post(&target).bearer_auth("sk-shared-key").send().await.unwrap();
    let other_key = b.post(&target).bearer_auth("sk-other-key").send().await.unwrap();
    let first_response = first_request.await.unwrap();

    assert_eq!(first_response.retry_stats().unwrap().attempts, 2);
    let stats = same_key.retry_stats().unwrap();
    assert_eq!(stats.attempts, 1, "waited instead of collecting its own 429");
    assert!(stats.waited >= MS(100), "{stats:?}");
    assert_eq!(other_key.retry_stats().unwrap().waited, Duration::ZERO, "another key is unaffected");
    assert_eq!(hits(&server).await, 4, "one 429, then three successes");
}

#[tokio::test]
async fn separately_built_middlewares_share_cooldowns_through_one_store() {
    let server = MockServer::start().await;
    first(&server, 1, json(429, "{}").insert_header("retry-after-ms", "150")).await;
    always(&server, ok()).await;
    let store = Arc::new(MemoryCooldownStore::new());
    // Different settings, one store; `a` returns its 429 at once, without waiting.
    let a = client(&server, fast().max_retries(0).cooldown_store(store.clone()).build());
    let b = client(&server, fast().cooldown_store(store).build());
    let alone = client(&server, fast().build());
    let target = url(&server, OPENAI, "/v1/chat/completions");

    let limited = a.post(&target).bearer_auth("sk-shared-key").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let held = b.post(&target).bearer_auth("sk-shared-key").send().await.unwrap();
    let stats = held.retry_stats().unwrap();
    assert_eq!(stats.attempts, 1, "waited instead of collecting its own 429");
    assert!(stats.waited >= MS(100), "the store's cooldown held it: {stats:?}");
    let free = alone.post(&target).bearer_auth("sk-shared-key").send().await.unwrap();
    assert_eq!(free.retry_stats().unwrap().waited, Duration::ZERO, "a middleware without the store");
    assert_eq!(hits(&server).await, 3);
}

#[tokio::test]
async fn a_used_up_window_on_a_success_paces_the_next_request() {
    let server = MockServer::start().await;
    first(
        &server,
        1,
        ok().insert_header("x-ratelimit-limit-requests", "60")
            .insert_header("x-ratelimit-remaining-requests", "0")
            .insert_header("x-ratelimit-reset-requests", "80ms"),
    )
    .await;
    always(&server, ok()).await;
    let client = client(&server, fast().build());
    let first = client.get(url(&server, OPENAI, "/v1/models")).send().await.unwrap();
    let limits = first.rate_limits().expect("rate limits attached to a success");
    let requests: RateLimit = limits.requests.unwrap();
    assert_eq!((requests.limit, requests.remaining, requests.reset), (Some(60), Some(0), Some(MS(80))));

    let second = client.get(url(&server, OPENAI, "/v1/models")).send().await.unwrap();
    let stats = second.retry_stats().unwrap();
    assert_eq!(stats.attempts, 1);
    assert!(stats.waited >= MS(60) && stats.waited <= MS(120), "{stats:?}");
}

#[tokio::test]
async fn cooldown_can_be_turned_off() {
    let server = MockServer::start().await;
    first(&server, 1, json(429, "{}").insert_header("retry-after-ms", "100").insert_header("retry-after", "1")).await;
    always(&server, ok()).await;
    let middleware = fast().cooldown(false).max_retries(0).build();
    let client = client(&server, middleware);
    let limited = client.get(url(&server, OPENAI, "/")).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let next = client.get(url(&server, OPENAI, "/")).send().await.unwrap();
    assert_eq!(next.retry_stats().unwrap().waited, Duration::ZERO);
}

#[tokio::test]
async fn long_cooldowns_are_not_waited_for() {
    let server = MockServer::start().await;
    first(&server, 1, json(429, "{}").insert_header("retry-after", "90")).await;
    always(&server, ok()).await;
    let client = client(&server, fast().build());
    let limited = client.get(url(&server, OPENAI, "/")).send().await.unwrap();
    assert_eq!(limited.llm_error().unwrap().retry_after, Some(Duration::from_secs(90)));
    let started = Instant::now();
    let next = client.get(url(&server, OPENAI, "/")).send().await.unwrap();
    assert_eq!(next.status(), 200);
    assert!(started.elapsed() < MS(500), "a wait above max_retry_after is left to the server");
}

/// A fixed window of `limit` requests per `window`, with OpenAI-style headers.
struct FixedWindow {
    limit: u64,
    window: Duration,
    state: Mutex<(Instant, u64, u64)>, // window start, used, 429s sent
}

impl Respond for FixedWindow {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        if now.duration_since(state.0) >= self.window {
            *state = (now, 0, state.2);
        }
        let reset = self.window.saturating_sub(now.duration_since(state.0));
        let reset = format!("{}ms", reset.as_millis().max(1));
        if state.1 >= self.limit {
            state.2 += 1;
            return json(
                429,
                r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
            )
            .insert_header("retry-after-ms", reset.trim_end_matches("ms"))
            .insert_header("x-ratelimit-limit-requests", self.limit.to_string())
            .insert_header("x-ratelimit-remaining-requests", "0")
            .insert_header("x-ratelimit-reset-requests", reset);
        }
        state.1 += 1;
        ok().insert_header("x-ratelimit-limit-requests", self.limit.to_string())
            .insert_header("x-ratelimit-remaining-requests", (self.limit - state.1).to_string())
            .insert_header("x-ratelimit-reset-requests", reset)
    }
}

#[tokio::test]
async fn the_remaining_budget_prevents_429s_under_a_fixed_window() {
    let server = MockServer::start().await;
    let limiter = Arc::new(FixedWindow { limit: 4, window: MS(60), state: Mutex::new((Instant::now(), 0, 0)) });
    struct Shared(Arc<FixedWindow>);
    impl Respond for Shared {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            self.0.respond(request)
        }
    }
    wiremock::Mock::given(wiremock::matchers::any()).respond_with(Shared(limiter.clone())).mount(&server).await;
    let client = client(&server, fast().build());
    let target = url(&server, OPENAI, "/v1/chat/completions");
    // 4 workers, 16 requests: exactly one window's worth in flight at a time.
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (client, target) = (client.clone(), target.clone());
            tokio::spawn(async move {
                for _ in 0..4 {
                    let resp = client.post(&target).bearer_auth("sk-k").send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let rejected = limiter.state.lock().unwrap().2;
    assert!(rejected <= 1, "{rejected} requests collected a 429");
    assert_eq!(hits(&server).await as u64, 16 + rejected);
}
