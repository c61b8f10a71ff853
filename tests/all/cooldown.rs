//! Shared rate-limit state: one 429 slows every request that shares the key,
//! and the `remaining` budget keeps requests from collecting 429s at all.
//!
//! A middleware's own cooldowns run on tokio's clock, so those tests run on
//! its paused clock; a store's cooldowns are wall-clock ends (shared across
//! processes), which the paused clock does not move: those tests assert lower
//! bounds, which a slow machine only makes longer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest_llm_retry::{ErrorKind, LlmResponseExt, MemoryStore, RateLimit};
use wiremock::matchers::header;
use wiremock::{MockServer, Request, Respond, ResponseTemplate};

use crate::support::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

#[tokio::test(start_paused = true)]
async fn one_429_makes_every_clone_wait_for_the_same_key_only() {
    let server = MockServer::start().await;
    first(&server, 1, json(429, "{}").insert_header("retry-after-ms", "300")).await;
    always(&server, ok()).await;
    // No retries: a request that was not held would return a 429 of its own.
    let middleware = paused(fast().max_retries(0));
    let a = paused_client(&server, middleware.clone());
    let b = paused_client(&server, middleware);
    let target = url(&server, OPENAI, "/v1/chat/completions");

    let sent = tokio::time::Instant::now();
    // The 429 is back with the caller: the cooldown was set before it returned.
    let limited = a.post(&target).bearer_auth("sk-shared-key").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    // Other headers and bodies do not matter: only provider, host and credential make the key.
    let (same_a, same_b, other_key) = tokio::join!(
        a.post(&target).bearer_auth("sk-shared-key").header("x-client-request-id", "2").body("{}").send(),
        b.post(&target).bearer_auth("sk-shared-key").header("x-client-request-id", "3").send(),
        b.post(&target).bearer_auth("sk-other-key").send(),
    );
    let done = sent.elapsed();
    for held in [same_a.unwrap(), same_b.unwrap()] {
        assert_eq!(held.status(), 200, "waited instead of collecting its own 429");
        assert!(held.retry_stats().unwrap().waited > Duration::ZERO);
    }
    assert!(done >= MS(300), "nothing with the key was sent before the cooldown ended: {done:?}");
    assert_eq!(other_key.unwrap().retry_stats().unwrap().waited, Duration::ZERO, "another key is unaffected");
    assert_eq!(hits(&server).await, 4, "one 429, then three successes");
}

/// An AWS SigV4 `Authorization` for `access_key`, with a signature of its own, as each request has.
fn signed(access_key: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/20260101/us-east-1/bedrock/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, Signature={signature}"
    )
}

#[tokio::test]
async fn requests_signed_with_one_access_key_share_a_cooldown_whatever_their_signatures() {
    let server = MockServer::start().await;
    let throttled = json(429, r#"{"message":"Too many requests, please wait before trying again."}"#)
        .insert_header("x-amzn-ErrorType", "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/")
        .insert_header("retry-after-ms", "300");
    first(&server, 1, throttled).await;
    always(&server, ok()).await;
    // `b` is built apart, sharing a store: the key a store sees is the same too.
    let store = Arc::new(MemoryStore::new());
    let a = client(&server, fast().max_retries(0).shared_store(store.clone()).build());
    let b = client(&server, fast().max_retries(0).shared_store(store).build());
    let target = url(&server, "bedrock-runtime.us-east-1.amazonaws.com", "/model/anthropic.claude-sonnet-4/converse");
    let send = |client: &reqwest_middleware::ClientWithMiddleware, auth: String| {
        client.post(&target).header("authorization", auth).header("x-amz-date", "20260101T000000Z").body("{}").send()
    };

    let sent = Instant::now();
    let limited = send(&a, signed("AKIDAAAAEXAMPLE", "9f86d081884c7d65")).await.unwrap();
    assert_eq!(limited.llm_error().unwrap().kind, ErrorKind::RateLimited);
    let (same_here, same_there, other_key) = tokio::join!(
        send(&a, signed("AKIDAAAAEXAMPLE", "60303ae22b998861")),
        send(&b, signed("AKIDAAAAEXAMPLE", "fd61a03af4f77d87")),
        send(&a, signed("AKIDBBBBEXAMPLE", "9f86d081884c7d65")),
    );
    let done = sent.elapsed();
    for held in [same_here.unwrap(), same_there.unwrap()] {
        assert_eq!(held.status(), 200, "waited for the access key's cooldown instead of collecting a 429");
        assert!(held.retry_stats().unwrap().waited > Duration::ZERO);
    }
    assert!(done >= MS(300), "nothing signed with the key was sent before the cooldown ended: {done:?}");
    assert_eq!(other_key.unwrap().retry_stats().unwrap().waited, Duration::ZERO, "another access key never waits");
    assert_eq!(hits(&server).await, 4, "one 429, then three successes");
}

#[tokio::test]
async fn separately_built_middlewares_share_cooldowns_through_one_store() {
    let server = MockServer::start().await;
    first(&server, 1, json(429, "{}").insert_header("retry-after-ms", "300")).await;
    always(&server, ok()).await;
    let store = Arc::new(MemoryStore::new());
    // Different settings, one store; `a` returns its 429 at once, without waiting.
    let a = client(&server, fast().max_retries(0).shared_store(store.clone()).build());
    let b = client(&server, fast().shared_store(store).build());
    let alone = client(&server, fast().build());
    let target = url(&server, OPENAI, "/v1/chat/completions");

    let sent = Instant::now();
    let limited = a.post(&target).bearer_auth("sk-shared-key").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let held = b.post(&target).bearer_auth("sk-shared-key").send().await.unwrap();
    let stats = held.retry_stats().unwrap();
    assert_eq!(stats.attempts, 1, "waited instead of collecting its own 429");
    assert!(stats.waited > Duration::ZERO && sent.elapsed() >= MS(300), "the store's cooldown held it: {stats:?}");
    let other = b.post(&target).bearer_auth("sk-other-key").send().await.unwrap();
    assert_eq!(other.retry_stats().unwrap().waited, Duration::ZERO, "the store keeps keys apart");
    let free = alone.post(&target).bearer_auth("sk-shared-key").send().await.unwrap();
    assert_eq!(free.retry_stats().unwrap().waited, Duration::ZERO, "a middleware without the store");
    assert_eq!(hits(&server).await, 4);
}

/// A 200 saying the request window is used up for another `reset`.
fn used_up(reset: &str) -> ResponseTemplate {
    ok().insert_header("x-ratelimit-limit-requests", "60")
        .insert_header("x-ratelimit-remaining-requests", "0")
        .insert_header("x-ratelimit-reset-requests", reset)
}

#[tokio::test(start_paused = true)]
async fn a_used_up_window_on_a_success_paces_the_next_request() {
    let server = MockServer::start().await;
    first(&server, 1, used_up("250ms")).await;
    always(&server, ok()).await;
    let client = paused_client(&server, paused(fast()));
    let sent = tokio::time::Instant::now();
    let first = client.get(url(&server, OPENAI, "/v1/models")).send().await.unwrap();
    let limits = first.rate_limits().expect("rate limits attached to a success");
    let requests: RateLimit = limits.requests.unwrap();
    assert_eq!((requests.limit, requests.remaining, requests.reset), (Some(60), Some(0), Some(MS(250))));

    let second = client.get(url(&server, OPENAI, "/v1/models")).send().await.unwrap();
    let stats = second.retry_stats().unwrap();
    assert_eq!(stats.attempts, 1);
    assert!(sent.elapsed() >= MS(250), "held until the window reset: {:?}", sent.elapsed());
    // At most the reset and its spread (5 %).
    assert!(stats.waited > Duration::ZERO && stats.waited <= MS(263), "{stats:?}");
}

#[tokio::test]
async fn a_used_up_window_on_a_success_reaches_the_store() {
    let server = MockServer::start().await;
    first(&server, 1, used_up("300ms")).await;
    always(&server, ok()).await;
    let store = Arc::new(MemoryStore::new());
    let a = client(&server, fast().shared_store(store.clone()).build());
    let b = client(&server, fast().shared_store(store).build());
    let target = url(&server, OPENAI, "/v1/models");
    let sent = Instant::now();
    assert_eq!(a.get(&target).bearer_auth("sk-k").send().await.unwrap().status(), 200);
    // `b` has never seen a response: only the store can hold it.
    let held = b.get(&target).bearer_auth("sk-k").send().await.unwrap();
    assert!(held.retry_stats().unwrap().waited > Duration::ZERO, "{:?}", held.retry_stats());
    assert!(sent.elapsed() >= MS(300), "{:?}", sent.elapsed());
}

#[tokio::test]
async fn failed_responses_carry_their_rate_limits() {
    let server = MockServer::start().await;
    let limited = openai_error(429, "requests", "rate_limit_exceeded", "Rate limit reached")
        .insert_header("x-ratelimit-limit-requests", "60")
        .insert_header("x-ratelimit-remaining-requests", "0")
        .insert_header("x-ratelimit-reset-requests", "1s")
        .insert_header("x-ratelimit-remaining-tokens", "1200");
    always(&server, limited).await;
    let resp = client(&server, fast().max_retries(0).build()).get(url(&server, OPENAI, "/")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let limits = resp.rate_limits().expect("rate limits attached to a failure");
    let requests = limits.requests.unwrap();
    assert_eq!((requests.limit, requests.remaining, requests.reset), (Some(60), Some(0), Some(MS(1000))));
    assert_eq!(limits.tokens.unwrap().remaining, Some(1200));
}

#[tokio::test]
async fn only_a_rate_limit_cools_the_key_not_overload_or_quota() {
    let overloaded = anthropic_error(529, "overloaded_error", "Overloaded").insert_header("retry-after-ms", "300");
    let quota = openai_error(429, "insufficient_quota", "insufficient_quota", "You exceeded your current quota")
        .insert_header("retry-after-ms", "300");
    for (host, failure, kind) in
        [(ANTHROPIC, overloaded, ErrorKind::Overloaded), (OPENAI, quota, ErrorKind::QuotaExceeded)]
    {
        let server = MockServer::start().await;
        first(&server, 1, failure).await;
        always(&server, ok()).await;
        let client = client(&server, fast().max_retries(0).build());
        let failed = client.post(url(&server, host, "/v1/x")).bearer_auth("sk-k").send().await.unwrap();
        let error = failed.llm_error().unwrap();
        assert_eq!((error.kind, error.retry_after), (kind, Some(MS(300))), "{host}");
        // The wait was about that request (or the whole provider), not about this key's window.
        let next = client.post(url(&server, host, "/v1/x")).bearer_auth("sk-k").send().await.unwrap();
        assert_eq!(next.retry_stats().unwrap().waited, Duration::ZERO, "{host}: {kind:?} cooled the key");
    }
}

#[tokio::test]
async fn a_cooldown_is_not_waited_for_past_max_elapsed() {
    let server = MockServer::start().await;
    first(&server, 1, json(429, "{}").insert_header("retry-after-ms", "400")).await;
    always(&server, ok()).await;
    let client = client(&server, fast().max_retries(0).max_elapsed(MS(100)).build());
    let target = url(&server, OPENAI, "/v1/chat/completions");
    assert_eq!(client.post(&target).bearer_auth("sk-k").send().await.unwrap().status(), 429);
    // The cooldown ends 400 ms from now, past this request's 100 ms: sent at once, the server decides.
    let next = client.post(&target).bearer_auth("sk-k").send().await.unwrap();
    assert_eq!(next.status(), 200);
    assert_eq!(next.retry_stats().unwrap().waited, Duration::ZERO);
}

#[tokio::test]
async fn cooldown_holds_add_up_to_at_most_max_retry_after() {
    let server = MockServer::start().await;
    // A neighbour in the fleet keeps hitting the limit; each 429 asks for 100 ms more.
    wiremock::Mock::given(header("x-neighbour", "1"))
        .respond_with(json(429, "{}").insert_header("retry-after-ms", "100"))
        .with_priority(1)
        .mount(&server)
        .await;
    always(&server, ok()).await;
    let store = Arc::new(MemoryStore::new());
    // It never waits itself (every wait is above its 1 ms), and publishes every cooldown.
    let neighbour = client(&server, fast().max_retries(0).max_retry_after(MS(1)).shared_store(store.clone()).build());
    let patient = client(&server, fast().max_retry_after(MS(250)).shared_store(store).build());
    let target = url(&server, OPENAI, "/v1/chat/completions");
    let poke = move || neighbour.post(&target).bearer_auth("sk-k").header("x-neighbour", "1").send();
    assert_eq!(poke().await.unwrap().status(), 429);
    let stop = Arc::new(AtomicBool::new(false));
    let pokes = tokio::spawn({
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::SeqCst) {
                assert_eq!(poke().await.unwrap().status(), 429);
                tokio::time::sleep(MS(20)).await;
            }
        }
    });
    let resp = patient.post(url(&server, OPENAI, "/v1/chat/completions")).bearer_auth("sk-k").send().await.unwrap();
    stop.store(true, Ordering::SeqCst);
    pokes.await.unwrap();
    // Each hold is short, but they add up: at 250 ms the request is sent anyway.
    assert_eq!(resp.status(), 200);
    let stats = resp.retry_stats().unwrap();
    assert!(stats.waited > Duration::ZERO && stats.waited <= MS(250), "{stats:?}");
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
    let next = client.get(url(&server, OPENAI, "/")).send().await.unwrap();
    assert_eq!(next.status(), 200);
    assert_eq!(
        next.retry_stats().unwrap().waited,
        Duration::ZERO,
        "a wait above max_retry_after is left to the server"
    );
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
    // Windows long enough that a loaded machine's scheduling delays are small beside them.
    let limiter = Arc::new(FixedWindow { limit: 4, window: MS(150), state: Mutex::new((Instant::now(), 0, 0)) });
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
