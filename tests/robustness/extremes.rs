//! Extreme settings under concurrent failures: every combination of zero,
//! `Duration::MAX` and `u32::MAX` settings, with a dozen requests failing at
//! once into an outage, never panics, never hangs, and never holds a request
//! longer than its own retries would take.
//!
//! The provider here is a middleware that answers every request with an
//! Anthropic 529 without touching the network, so tokio's paused clock runs
//! every wait, hold and bound in virtual time.

use std::sync::mpsc;
use std::time::Duration;

use http::Extensions;
use proptest::prelude::*;
use reqwest::{Request, Response, ResponseBuilderExt};
use reqwest_llm_retry::{ErrorKind, LlmApiError, LlmResponseExt, LlmRetryMiddleware};
use reqwest_middleware::{Middleware, Next};
use tokio::time::Instant;

const CONCURRENT: usize = 12;

/// Answers every request with an overload, as Anthropic does, 10 ms (of the
/// paused clock) after it arrives: the requests of a wave overlap.
struct Overloaded;

#[async_trait::async_trait]
impl Middleware for Overloaded {
    async fn handle(&self, request: Request, _: &mut Extensions, _: Next<'_>) -> reqwest_middleware::Result<Response> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let response = http::Response::builder()
            .status(529)
            .header("content-type", "application/json")
            .url(request.url().clone())
            .body(body)
            .expect("a valid response");
        Ok(Response::from(response))
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
    max_retry_after: Duration,
    max_elapsed: Duration,
}

fn durations() -> impl Strategy<Value = Duration> {
    prop::sample::select(vec![Duration::ZERO, Duration::from_millis(1), Duration::from_secs(1), Duration::MAX])
}

fn settings() -> impl Strategy<Value = Settings> {
    let retries = prop::sample::select(vec![0, 1, 4, u32::MAX]);
    (retries, durations(), durations(), durations(), durations()).prop_map(
        |(max_retries, base_delay, max_delay, max_retry_after, max_elapsed)| Settings {
            max_retries,
            base_delay,
            max_delay,
            max_retry_after,
            max_elapsed,
        },
    )
}

/// Whether not even one retry fits: the first overload backoff (half of
/// `base_delay`, capped at `max_delay`; jitter only lengthens it) would end past `max_elapsed`.
fn no_retry_fits(s: &Settings) -> bool {
    s.max_retries == 0 || (s.base_delay / 2).min(s.max_delay) > s.max_elapsed
}

/// Sends `CONCURRENT` requests at once, then as many again into the outage the
/// first wave left; each one's virtual duration and outcome.
async fn storm(s: Settings) -> Vec<(Duration, Result<Response, reqwest_middleware::Error>)> {
    let middleware = LlmRetryMiddleware::builder()
        .max_retries(s.max_retries)
        .base_delay(s.base_delay)
        .max_delay(s.max_delay)
        .max_retry_after(s.max_retry_after)
        .max_elapsed(s.max_elapsed)
        .build();
    let client =
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).with(middleware).with(Overloaded).build();
    let tasks: Vec<_> = (0..2 * CONCURRENT)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                if i >= CONCURRENT {
                    // After the first wave has failed (its attempts take no virtual time).
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let started = Instant::now();
                let result = client.post("https://api.anthropic.com/v1/messages").body("{}").send().await;
                (started.elapsed(), result)
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("no request panics"));
    }
    results
}

/// Whether a request's attempts are few enough to run here in real time. The
/// paused clock runs every wait and bound (`max_elapsed` included) in virtual
/// time at no real cost, but each attempt still costs real work: a failure
/// retried `u32::MAX` times, or every 10 ms for `Duration::MAX`, ends in
/// virtual time only after billions of attempts. Each attempt takes at least
/// its answer (10 ms) and the first backoff (tokio cuts a longer sleep to about
/// 30 years), so `max_elapsed` divided by that bounds the attempts.
fn finite(s: &Settings) -> bool {
    const LONGEST_SLEEP: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    let each = Duration::from_millis(10) + (s.base_delay / 2).min(s.max_delay).min(LONGEST_SLEEP);
    let by_time = s.max_elapsed.as_nanos() / each.as_nanos();
    u128::from(s.max_retries).min(by_time) <= 2_000
}

fn check(s: Settings) -> Result<(), TestCaseError> {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
        let _ = done.send(runtime.block_on(storm(s)));
    });
    // Virtual waits take no real time: a loop that never ends is a hang, not a long wait.
    let results = finished.recv_timeout(Duration::from_secs(30)).map_err(|_| TestCaseError::fail("hung"))?;
    for (took, result) in results {
        let error = match &result {
            Ok(response) => response.llm_error().cloned().expect("a 529 carries its error"),
            Err(error) => LlmApiError::find_in(error).cloned().expect("a held request's error is typed"),
        };
        prop_assert_eq!(error.kind, ErrorKind::Overloaded);
        // The last attempt's answer comes 10 ms after it is sent.
        let answer = Duration::from_millis(10);
        prop_assert!(took <= s.max_elapsed.saturating_add(answer), "{took:?} past max_elapsed {:?}", s.max_elapsed);
        if no_retry_fits(&s) {
            prop_assert_eq!(took, answer, "its own retries would take no time: it is not held");
            prop_assert_eq!(error.attempts, 1);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn extreme_settings_never_panic_hang_or_hold_a_request_past_its_own_retries(s in settings()) {
        prop_assume!(finite(&s));
        check(s)?;
    }
}

#[test]
fn an_absurd_backoff_does_not_hold_concurrent_requests_in_an_outage() {
    // The finding this file was written for: every request would give up at
    // once, so none may be held until `max_elapsed`.
    let absurd = Settings {
        max_retries: 4,
        base_delay: Duration::MAX,
        max_delay: Duration::MAX,
        max_retry_after: Duration::from_secs(60),
        max_elapsed: Duration::from_secs(300),
    };
    check(absurd).unwrap();
}
