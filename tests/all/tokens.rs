//! Token budgets: each request spends its estimated tokens (body bytes / 4,
//! plus the output it reserves where the provider counts it) against the
//! token limits the provider states, and one that does not fit waits for the
//! window's reset, in arrival order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest_llm_retry::{ErrorKind, LlmResponseExt, MemoryStore};
use reqwest_middleware::ClientWithMiddleware;
use wiremock::{MockServer, ResponseTemplate};

use crate::support::tokens::{TokenWindow, body, rejected, two_middlewares_share_a_token_window};
use crate::support::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// A server that answers its first request with `first` and then plain successes.
async fn after(
    first: ResponseTemplate,
    middleware: reqwest_llm_retry::LlmRetryMiddleware,
) -> (MockServer, ClientWithMiddleware) {
    let server = MockServer::start().await;
    crate::support::first(&server, 1, first).await;
    always(&server, ok()).await;
    let client = client(&server, middleware);
    (server, client)
}

/// OpenAI's token headers on a success: `remaining` of 40 000, resetting in `reset`.
fn openai_tokens(remaining: u64, reset: &str) -> ResponseTemplate {
    ok().insert_header("x-ratelimit-limit-tokens", "40000")
        .insert_header("x-ratelimit-remaining-tokens", remaining.to_string())
        .insert_header("x-ratelimit-reset-tokens", reset)
}

async fn send(client: &ClientWithMiddleware, server: &MockServer, host: &str, body: String) -> reqwest::Response {
    client.post(url(server, host, "/v1/chat/completions")).bearer_auth("sk-k").body(body).send().await.unwrap()
}

fn waited(response: &reqwest::Response) -> Duration {
    response.retry_stats().unwrap().waited
}

#[tokio::test]
async fn a_request_larger_than_the_tokens_left_waits_for_the_reset_and_one_that_fits_goes_at_once() {
    let (server, client) = after(openai_tokens(5_000, "300ms"), fast().build()).await;
    let told = Instant::now();
    send(&client, &server, OPENAI, body(10, 0)).await;
    // 3 256 and then 1 656 fit the 5 000 left: both go at once.
    assert_eq!(waited(&send(&client, &server, OPENAI, body(3_000, 256)).await), Duration::ZERO);
    assert_eq!(waited(&send(&client, &server, OPENAI, body(1_400, 256)).await), Duration::ZERO);
    // 88 are left: 1 756 wait for the reset, instead of being sent to collect a 429.
    let held = send(&client, &server, OPENAI, body(1_500, 256)).await;
    assert_eq!(held.status(), 200);
    assert!(waited(&held) > MS(200) && told.elapsed() >= MS(300), "{:?} {:?}", waited(&held), told.elapsed());
    assert_eq!(held.retry_stats().unwrap().attempts, 1);
}

#[tokio::test]
async fn cooldown_false_turns_token_pacing_off() {
    let (server, client) = after(openai_tokens(5_000, "300ms"), fast().cooldown(false).build()).await;
    send(&client, &server, OPENAI, body(10, 0)).await;
    assert_eq!(waited(&send(&client, &server, OPENAI, body(4_000, 256)).await), Duration::ZERO);
    assert_eq!(waited(&send(&client, &server, OPENAI, body(4_000, 256)).await), Duration::ZERO);
}

#[tokio::test]
async fn reserved_output_counts_where_the_provider_counts_it() {
    // OpenAI counts `max_tokens` in its token limit: 1 000 + 4 000 do not fit 4 500, 1 000 + 3 000 do.
    for (max_tokens, holds) in [(3_000, false), (4_000, true)] {
        let (server, client) = after(openai_tokens(4_500, "200ms"), fast().build()).await;
        send(&client, &server, OPENAI, body(10, 0)).await;
        let response = send(&client, &server, OPENAI, body(1_000, max_tokens)).await;
        assert_eq!(waited(&response) > Duration::ZERO, holds, "max_tokens {max_tokens}");
    }
}

#[tokio::test]
async fn anthropic_input_and_output_tokens_are_paced_apart() {
    // 6 000 input and 2 000 output tokens left (each rounded to a thousand), for another 30 s.
    let in_30s = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30)).to_string();
    let headers = ok()
        .insert_header("anthropic-ratelimit-input-tokens-limit", "40000")
        .insert_header("anthropic-ratelimit-input-tokens-remaining", "6000")
        .insert_header("anthropic-ratelimit-input-tokens-reset", in_30s.as_str())
        .insert_header("anthropic-ratelimit-output-tokens-limit", "8000")
        .insert_header("anthropic-ratelimit-output-tokens-remaining", "2000")
        .insert_header("anthropic-ratelimit-output-tokens-reset", in_30s.as_str());
    // A hold of 30 s is within `max_retry_after` here, so it is waited for.
    let (server, client) = after(headers, fast().max_retry_after(Duration::from_secs(60)).build()).await;
    send(&client, &server, ANTHROPIC, body(10, 0)).await;
    assert_eq!(waited(&send(&client, &server, ANTHROPIC, body(5_000, 1_000)).await), Duration::ZERO);
    // About 500 of each are left: more output, or more input, waits for the reset 30 s away.
    for (input, output) in [(100, 1_000), (1_000, 100)] {
        let held = tokio::time::timeout(MS(150), send(&client, &server, ANTHROPIC, body(input, output))).await;
        assert!(held.is_err(), "{input} input and {output} output tokens were sent");
    }
    // What fits both goes at once; the held requests, dropped, left nothing behind.
    assert_eq!(waited(&send(&client, &server, ANTHROPIC, body(400, 400)).await), Duration::ZERO);
    assert_eq!(hits(&server).await, 3);
}

#[tokio::test]
async fn without_headers_the_token_limit_is_learned_from_the_429s() {
    let server = MockServer::start().await;
    let (window, log) = TokenWindow::new(MS(200), 10_000, false);
    wiremock::Mock::given(wiremock::matchers::any()).respond_with(window).mount(&server).await;
    let client = client(&server, fast().build());
    // Requests of two sizes, one at a time: a request count cannot stand for the limit.
    for i in 0..16 {
        let tokens = if i % 2 == 0 { 1_000 } else { 4_000 };
        assert_eq!(send(&client, &server, OPENAI, body(tokens, 0)).await.status(), 200, "request {i}");
    }
    // The first 429 names the limit, a second one (a single request sent to find
    // the next window's end) its length; from then on, none.
    assert!(rejected(&log) <= 2, "{} 429s", rejected(&log));
}

// The test's runtime has one thread (`#[tokio::test]`), which orders the two
// requests without racing the clock: the large one is polled into the line
// before the test goes on, and cannot be released while the test blocks that
// thread past the reset. So the small one always comes after the window opened
// and before the large one went: it must not take what the large one waits for.
#[tokio::test(flavor = "current_thread")]
async fn waiting_requests_go_in_arrival_order() {
    let server = MockServer::start().await;
    let window = MS(250);
    let (provider, log) = TokenWindow::new(window, 10_000, true);
    let epoch = provider.epoch;
    wiremock::Mock::given(wiremock::matchers::any()).respond_with(provider).mount(&server).await;
    let client = client(&server, fast().build());
    // Three rounds, two windows each: one filled, one waited for.
    for round in 0..3u32 {
        let opens = epoch + window * (2 * round);
        tokio::time::sleep_until((opens + MS(5)).max(Instant::now()).into()).await;
        // Less than 9 000 tokens are left in this window.
        assert_eq!(send(&client, &server, OPENAI, body(7_000, 0)).await.status(), 200);
        // A large request waits for the next window.
        let large = {
            let (client, target) = (client.clone(), url(&server, OPENAI, "/v1/chat/completions"));
            tokio::spawn(async move {
                let response = client.post(target).bearer_auth("sk-k").body(body(9_000, 0)).send().await.unwrap();
                (response.status().as_u16(), Instant::now())
            })
        };
        // A yield runs every ready task first: the large request reaches the line (it
        // touches no socket before it waits). Then, blocking the runtime's one thread
        // (the mock server has a thread of its own), the small one comes 10 ms after the
        // window opened, past the pacer's 5 ms guard at a reset, while the large one is
        // still in line. (Blocking for under a window, 250 ms, is no real-seconds sleep.)
        tokio::task::yield_now().await;
        std::thread::sleep((opens + window + MS(10)).saturating_duration_since(Instant::now()));
        let small = send(&client, &server, OPENAI, body(2_000, 0)).await;
        let small_done = Instant::now();
        let (large_status, large_done) = large.await.unwrap();
        assert_eq!((large_status, small.status().as_u16()), (200, 200));
        // The small one could not take the tokens the large one had waited for: it waited for
        // the window after, 240 ms on (half a window leaves 115 ms for a late wake of this thread).
        assert!(large_done < small_done, "round {round}: the large request went after the small one");
        assert!(waited(&small) > window / 2, "round {round}: {:?}", waited(&small));
    }
    assert_eq!(rejected(&log), 0);
}

// On tokio's paused clock: one request at a time and a mock that answers at
// once, so the clock moves only by the middleware's own sleeps, and "at once"
// is exactly zero (the server's `retry-after: 1` honoured would show as 1 s).
#[tokio::test(start_paused = true)]
async fn a_request_larger_than_the_whole_limit_returns_at_once_not_retryable() {
    let server = MockServer::start().await;
    let message = "This request would exceed the rate limit for your organization (0dccdde6) of 40,000 input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.";
    let refused = anthropic_error(429, "rate_limit_error", message)
        .insert_header("retry-after", "1")
        .insert_header("x-should-retry", "true");
    crate::support::first(&server, 1, refused).await;
    always(&server, ok()).await;
    let client = paused_client(&server, paused(fast()));
    let sent = tokio::time::Instant::now();
    // About 50 000 input tokens: no window of 40 000 can ever admit it.
    let response = send(&client, &server, ANTHROPIC, body(50_000, 0)).await;
    assert_eq!(sent.elapsed(), Duration::ZERO, "returned without waiting");
    let error = response.llm_error().expect("the error attached");
    assert_eq!((error.kind, error.retryable, error.attempts), (ErrorKind::RequestTooLarge, false, 1));
    // The window was not spent: the next request goes at once.
    assert_eq!(waited(&send(&client, &server, ANTHROPIC, body(1_000, 0)).await), Duration::ZERO);
}

#[tokio::test]
async fn two_middlewares_share_a_token_window_through_a_memory_store() {
    let store = Arc::new(MemoryStore::new());
    let (a, b) = (fast().shared_store(store.clone()).build(), fast().shared_store(store).build());
    two_middlewares_share_a_token_window(a, b).await;
}
