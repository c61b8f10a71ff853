//! Windows through Redis: two instances split one window's budget, and the
//! fleet agrees on windows the store rolls by their length.

use std::time::{Duration, SystemTime};

use reqwest_llm_retry::store::{Spend, Window};
use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware, SharedStore};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::deployment::*;
use crate::support::client;
use crate::support::deadline::DEADLINE;

pub async fn two_instances_split_one_windows_budget(on: Deployment) {
    let prefix = unique_prefix("budget");
    let Some((store_a, store_b)) = on.two_stores(&prefix).await else { return };
    let server = MockServer::start().await;
    // 4 requests per 500 ms window; every answer says 3 are left, as each process would see
    // after its own first request. Each process alone would send 3 more.
    let ok = ResponseTemplate::new(200)
        .insert_header("x-ratelimit-limit-requests", "4")
        .insert_header("x-ratelimit-remaining-requests", "3")
        .insert_header("x-ratelimit-reset-requests", "500ms");
    Mock::given(any()).respond_with(ok).mount(&server).await;
    let a = client(&server, LlmRetryMiddleware::builder().shared_store(store_a).build());
    let b = client(&server, LlmRetryMiddleware::builder().shared_store(store_b).build());
    let url = &format!("http://api.openai.com:{}/v1/chat/completions", server.address().port());
    // Each learns the window from one answer.
    for client in [&a, &b] {
        client.post(url).bearer_auth("sk-shared").body("{}").send().await.unwrap();
    }
    let send = |client: &reqwest_middleware::ClientWithMiddleware| {
        let request = client.post(url).bearer_auth("sk-shared").body("{}");
        async move { request.send().await.unwrap().retry_stats().unwrap().waited }
    };
    // One more through `a` spends the first of the window's 4 in Redis; every key the
    // store writes expires (`PX`).
    send(&a).await;
    let keys = on.inspect().await.keys_that_expire(&prefix).await;
    assert!(keys.iter().any(|k| k.ends_with("}:budget")), "{keys:?}");
    let burst = async {
        let (a1, a2, a3, b1, b2, b3) = tokio::join!(send(&a), send(&a), send(&a), send(&b), send(&b), send(&b));
        [a1, a2, a3, b1, b2, b3]
    };
    let waited = tokio::time::timeout(Duration::from_secs(5), burst).await.expect("the burst ends");
    // The window admits 4 in all, three spent (the store counted the first two before anyone
    // knew the window): 1 goes at once, the other 5 wait for the next windows.
    let at_once = waited.iter().filter(|w| w.is_zero()).count();
    let held = waited.iter().filter(|w| **w >= Duration::from_millis(200)).count();
    assert_eq!((at_once, held), (1, 5), "{waited:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 9);
}

pub async fn the_fleet_agrees_on_windows_the_store_rolls_by_their_length_and_guards_their_boundaries(on: Deployment) {
    let prefix = unique_prefix("windows");
    let Some((a, b)) = on.two_stores(&prefix).await else { return };
    let test = async {
        // A told window of 2 requests, 300 ms long (guard: 2 ms + 300 / 32 = 11 ms).
        let end = epoch_ms(SystemTime::now() + MS(300));
        let told = Window::new(at_ms(end), 2).with_length(MS(300)).as_told();
        assert_eq!(a.spend("k", Spend::new(Some(told))).await, None);
        // Another process predicts the end 40 ms later: the same window all the same.
        assert_eq!(b.spend("k", Spend::new(Some(Window::new(at_ms(end + 40), 2)))).await, None);
        assert_eq!(
            a.spend("k", Spend::new(Some(told))).await,
            Some(at_ms(end + 11)),
            "spent: wait past the end and its guard"
        );
        assert_eq!(b.spend("k", Spend::new(Some(Window::new(at_ms(end - 50), 2)))).await, Some(at_ms(end + 11)));
        tokio::time::sleep(at_ms(end + 11).duration_since(SystemTime::now()).unwrap_or_default()).await;
        // The next window is the store's, 300 ms on, whatever an asker predicts (here 40 ms early).
        let early = Window::new(at_ms(end + 260), 2);
        assert_eq!(b.spend("k", Spend::new(Some(early))).await, None);
        assert_eq!(a.spend("k", Spend::new(None)).await, None, "an asker that knows nothing is counted too");
        assert_eq!(b.spend("k", Spend::new(Some(early))).await, Some(at_ms(end + 300 + 11)));
        // A server tells this window's end, 4 ms after the rolled one: it replaces it; a
        // later told end of the same window may only be earlier.
        let told_end = |ms| Some(Window::new(at_ms(ms), 2).as_told());
        assert_eq!(a.spend("k", Spend::new(told_end(end + 304))).await, Some(at_ms(end + 304 + 11)));
        assert_eq!(b.spend("k", Spend::new(told_end(end + 309))).await, Some(at_ms(end + 304 + 11)));
        assert_eq!(b.spend("k", Spend::new(told_end(end + 302))).await, Some(at_ms(end + 302 + 11)));
        // Sends before anyone knows the window count in the first one told.
        assert_eq!(a.spend("n", Spend::new(None)).await, None);
        assert_eq!(b.spend("n", Spend::new(None)).await, None);
        let first = Window::new(SystemTime::now() + MS(300), 3).as_told();
        assert_eq!(a.spend("n", Spend::new(Some(first))).await, None);
        assert_eq!(a.spend("n", Spend::new(Some(first))).await, Some(at_ms(epoch_ms(first.end) + 2)), "3 went: spent");
    };
    tokio::time::timeout(DEADLINE, test).await.expect("store calls are bounded");
    let keys = on.inspect().await.keys_that_expire(&prefix).await;
    assert_eq!(keys, [format!("{prefix}v2:{{k}}:budget"), format!("{prefix}v2:{{n}}:budget")]);
}
