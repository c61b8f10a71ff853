//! A key whose budgets are far from empty: the pacer reads one response in
//! eight, and each response still carries the snapshot of its own headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest_llm_retry::LlmResponseExt;
use wiremock::{MockServer, Request, Respond, ResponseTemplate};

use crate::support::*;

/// Answers every request 200 with OpenAI's request headers: `remaining`
/// from `left(n)` for the n-th request (from 0), of `limit`, resetting in `reset`.
struct Counting<F> {
    served: Arc<AtomicU64>,
    limit: u64,
    left: F,
    reset: &'static str,
}

impl<F: Fn(u64) -> u64 + Send + Sync> Respond for Counting<F> {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.served.fetch_add(1, Ordering::SeqCst);
        ok().insert_header("x-ratelimit-limit-requests", self.limit.to_string().as_str())
            .insert_header("x-ratelimit-remaining-requests", (self.left)(n).to_string().as_str())
            .insert_header("x-ratelimit-reset-requests", self.reset)
    }
}

async fn counting(
    limit: u64,
    left: impl Fn(u64) -> u64 + Send + Sync + 'static,
    reset: &'static str,
) -> (MockServer, Arc<AtomicU64>) {
    let server = MockServer::start().await;
    let served = Arc::new(AtomicU64::new(0));
    let responder = Counting { served: served.clone(), limit, left, reset };
    wiremock::Mock::given(wiremock::matchers::any()).respond_with(responder).mount(&server).await;
    (server, served)
}

#[tokio::test]
async fn every_response_carries_its_own_rate_limits_while_the_pacer_reads_few() {
    let (server, _) = counting(1000, |n| 999 - n, "1s").await;
    let client = client(&server, fast().build());
    let target = url(&server, OPENAI, "/v1/chat/completions");
    for n in 0..40 {
        let response = client.post(&target).bearer_auth("sk-quiet").send().await.unwrap();
        let requests = response.rate_limits().and_then(|limits| limits.requests);
        assert_eq!(requests.and_then(|r| r.remaining), Some(999 - n), "response {n}");
        assert_eq!(requests.and_then(|r| r.reset), Some(Duration::from_secs(1)), "response {n}");
    }
}

/// Sends one request at a time until one is held for the window's reset;
/// returns how many went after the window was used up (after `roomy` responses).
async fn sent_into_a_used_up_window(limit: u64, left_before: u64, roomy: u64) -> u64 {
    let (server, served) = counting(limit, move |n| if n < roomy { left_before } else { 0 }, "200ms").await;
    let client = paused_client(&server, paused(fast()));
    let target = url(&server, OPENAI, "/v1/chat/completions");
    let mut sent_into_empty = 0;
    loop {
        let response = client.post(&target).bearer_auth("sk-quiet").send().await.unwrap();
        if response.retry_stats().unwrap().waited > Duration::ZERO {
            return sent_into_empty; // held for the reset
        }
        if served.load(Ordering::SeqCst) > roomy {
            sent_into_empty += 1;
        }
        assert!(sent_into_empty <= 100, "sent into a used-up window without pacing");
    }
}

#[tokio::test(start_paused = true)]
async fn a_window_others_used_up_is_seen_within_eight_responses() {
    // Plenty left for 32 responses, as far as this process spends it; then
    // others with the key have used it up: every answer says 0 left. (32: the
    // 33rd send is the first after a read, if reads fall on every 8th.)
    let sent = sent_into_a_used_up_window(1000, 990, 32).await;
    assert!((1..=8).contains(&sent), "{sent} requests went into the used-up window");
}

#[tokio::test(start_paused = true)]
async fn every_response_is_read_with_less_than_half_or_64_requests_left() {
    // Less than half the limit left: the pacer reads every response.
    assert_eq!(sent_into_a_used_up_window(1000, 499, 32).await, 1);
    // Half of a small limit, but fewer than 64 requests left: the same.
    assert_eq!(sent_into_a_used_up_window(100, 63, 32).await, 1);
}
