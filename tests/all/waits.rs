//! How long the middleware waits: the server's word first, backoff otherwise,
//! and the bounds `max_retry_after`, `max_retries`, `max_elapsed`.
//!
//! Waits are read from `RetryStats::waited` (what the middleware slept), and
//! the time a call took from tokio's paused clock, which moves only by those
//! sleeps (`paused_client`): no assertion here depends on the machine's speed.

use std::time::{Duration, SystemTime};

use reqwest_llm_retry::{ErrorKind, LlmResponseExt, LlmRetryMiddleware, Provider, mock};
use serde_json::json;
use wiremock::{MockServer, ResponseTemplate};

use crate::support::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// One failure with `template`, then 200; returns the time the middleware waited.
async fn waited_once(host: &str, template: ResponseTemplate) -> Duration {
    let server = MockServer::start().await;
    first(&server, 1, template).await;
    always(&server, ok()).await;
    // A long base delay: if the server's wait were ignored, the test would see 2 s.
    let middleware = LlmRetryMiddleware::builder().base_delay(Duration::from_secs(2)).build();
    let resp = client(&server, middleware).post(url(&server, host, "/v1/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let stats = resp.retry_stats().unwrap();
    assert_eq!(stats.attempts, 2);
    stats.waited
}

fn assert_between(waited: Duration, low: Duration, high: Duration) {
    assert!(waited >= low && waited <= high, "waited {waited:?}, expected {low:?}..={high:?}");
}

#[tokio::test]
async fn retry_after_ms_wins_over_retry_after() {
    let t = json(429, "{}").insert_header("retry-after-ms", "30").insert_header("retry-after", "5");
    assert_between(waited_once(OPENAI, t).await, MS(30), MS(34));
}

#[tokio::test]
async fn azure_milliseconds_header() {
    let t = json(429, "{}").insert_header("x-ms-retry-after-ms", "30").insert_header("retry-after", "1");
    assert_between(waited_once(mock::host(Provider::AzureOpenAi), t).await, MS(30), MS(34));
}

#[tokio::test]
async fn fractional_retry_after_seconds() {
    let t = json(429, "{}").insert_header("retry-after", "0.04");
    assert_between(waited_once(ANTHROPIC, t).await, MS(40), MS(45));
}

#[tokio::test]
async fn gemini_retry_info_in_the_body() {
    let details = json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.035s"}]);
    let t = gemini_error(429, "RESOURCE_EXHAUSTED", "Resource exhausted", details);
    assert_between(waited_once(GEMINI, t).await, MS(35), MS(40));
}

#[tokio::test]
async fn wait_written_in_the_message() {
    let t =
        openai_error(429, "tokens", "rate_limit_exceeded", "Rate limit reached for gpt-4o. Please try again in 25ms.");
    assert_between(waited_once(OPENAI, t).await, MS(25), MS(28));
}

#[tokio::test]
async fn openai_reset_headers_when_no_retry_after() {
    let t = json(429, "{}")
        .insert_header("x-ratelimit-remaining-requests", "0")
        .insert_header("x-ratelimit-reset-requests", "30ms")
        .insert_header("x-ratelimit-remaining-tokens", "149000")
        .insert_header("x-ratelimit-reset-tokens", "6m0s");
    assert_between(waited_once(OPENAI, t).await, MS(30), MS(34));
}

#[tokio::test(start_paused = true)]
async fn server_waits_above_max_retry_after_return_at_once() {
    let server = MockServer::start().await;
    let in_an_hour = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    let in_two_hours = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(7200)).to_string();
    let cases: Vec<(&str, ResponseTemplate, Duration)> = vec![
        (OPENAI, json(429, "{}").insert_header("retry-after", "120"), Duration::from_secs(120)),
        (ANTHROPIC, json(429, "{}").insert_header("retry-after", in_an_hour.as_str()), Duration::from_secs(3600)),
        (
            ANTHROPIC,
            json(429, "{}")
                .insert_header("anthropic-ratelimit-requests-remaining", "0")
                .insert_header("anthropic-ratelimit-requests-reset", in_two_hours.as_str()),
            Duration::from_secs(7200),
        ),
        (
            GEMINI,
            gemini_error(
                429,
                "RESOURCE_EXHAUSTED",
                "m",
                json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "61s"}]),
            ),
            Duration::from_secs(61),
        ),
    ];
    for (host, template, asked) in cases {
        server.reset().await;
        always(&server, template).await;
        let started = tokio::time::Instant::now();
        let client = paused_client(&server, paused(LlmRetryMiddleware::builder()));
        let resp = client.get(url(&server, host, "/")).send().await.unwrap();
        // The paused clock moved only if the middleware slept: not at all.
        assert_eq!(started.elapsed(), Duration::ZERO, "{host}: slept");
        let err = resp.llm_error().unwrap();
        assert_eq!((err.kind, err.retryable, err.attempts), (ErrorKind::RateLimited, true, 1), "{host}");
        let retry_after = err.retry_after.expect("retry_after set");
        assert!(retry_after >= asked.saturating_sub(Duration::from_secs(2)), "{host}: {retry_after:?}");
        assert_eq!(resp.retry_stats().unwrap().waited, Duration::ZERO);
    }
}

#[tokio::test]
async fn defaults_make_five_attempts() {
    let server = MockServer::start().await;
    always(&server, json(429, "{}").insert_header("retry-after-ms", "1")).await;
    let resp = client(&server, LlmRetryMiddleware::default()).get(url(&server, OPENAI, "/")).send().await.unwrap();
    let err = resp.llm_error().unwrap();
    assert_eq!((err.attempts, err.retryable, err.retry_after), (5, true, Some(MS(1))));
    assert_eq!(hits(&server).await, 5);
}

#[tokio::test]
async fn exponential_backoff_doubles_within_the_cap() {
    let server = MockServer::start().await;
    always(&server, json(500, "{}")).await;
    let middleware = LlmRetryMiddleware::builder().base_delay(MS(10)).max_delay(MS(1000)).max_retries(3).build();
    let resp = client(&server, middleware).get(url(&server, OPENAI, "/")).send().await.unwrap();
    // 10 + 20 + 40 ms, each plus at most 25 % jitter.
    assert_between(resp.retry_stats().unwrap().waited, MS(70), MS(88));
    assert_eq!(resp.llm_error().unwrap().attempts, 4);

    let capped = LlmRetryMiddleware::builder().base_delay(MS(10)).max_delay(MS(15)).max_retries(3).build();
    let resp = client(&server, capped).get(url(&server, OPENAI, "/")).send().await.unwrap();
    // 10 (+ up to 2.5) + 15 + 15 ms: never above the cap.
    assert_between(resp.retry_stats().unwrap().waited, MS(40), MS(43));
}

#[tokio::test]
async fn overload_backs_off_from_half_the_base() {
    let server = MockServer::start().await;
    always(&server, anthropic_error(529, "overloaded_error", "Overloaded")).await;
    let middleware = LlmRetryMiddleware::builder().base_delay(MS(20)).max_retries(1).build();
    let resp = client(&server, middleware).get(url(&server, ANTHROPIC, "/")).send().await.unwrap();
    assert_between(resp.retry_stats().unwrap().waited, MS(10), MS(13));
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_stops_retries_that_would_start_too_late() {
    let server = MockServer::start().await;
    always(&server, json(500, "{}")).await;
    let max_elapsed = MS(250);
    let builder =
        LlmRetryMiddleware::builder().base_delay(MS(100)).max_delay(MS(1000)).max_elapsed(max_elapsed).max_retries(10);
    let started = tokio::time::Instant::now();
    let resp = paused_client(&server, paused(builder)).get(url(&server, OPENAI, "/")).send().await.unwrap();
    // Waits 100–125 ms, then the next wait (200–250 ms) would end past 250 ms.
    let err = resp.llm_error().unwrap();
    assert_eq!((err.attempts, err.retryable), (2, true));
    assert_between(resp.retry_stats().unwrap().waited, MS(100), MS(125));
    assert!(started.elapsed() <= max_elapsed, "returned past max_elapsed: {:?}", started.elapsed());

    let server_wait = paused(LlmRetryMiddleware::builder().max_elapsed(MS(20)));
    server.reset().await;
    always(&server, json(429, "{}").insert_header("retry-after-ms", "50")).await;
    let started = tokio::time::Instant::now();
    let resp = paused_client(&server, server_wait).get(url(&server, OPENAI, "/")).send().await.unwrap();
    assert_eq!(resp.llm_error().unwrap().attempts, 1, "a server wait past max_elapsed is not slept");
    assert_eq!(started.elapsed(), Duration::ZERO, "slept");
}

#[tokio::test]
async fn nonsense_retry_after_falls_back_to_backoff() {
    for value in ["-5", "soon", "nan", "inf", "1e9999", "Thu, 01 Jan 1970 00:00:00 GMT", "0"] {
        let server = MockServer::start().await;
        first(&server, 1, json(503, "{}").insert_header("retry-after", value)).await;
        always(&server, ok()).await;
        let middleware = LlmRetryMiddleware::builder().base_delay(MS(20)).build();
        let resp = client(&server, middleware).get(url(&server, OPENAI, "/")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{value}");
        // 503 overload backs off base / 2 = 10 ms, plus at most 25 %.
        assert_between(resp.retry_stats().unwrap().waited, MS(10), MS(13));
    }
}
