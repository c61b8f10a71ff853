//! The builder's setters are independent: the `cooldown` switch and the
//! `shared_store` give the same middleware in either order.

use std::sync::Arc;
use std::time::Duration;

use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddlewareBuilder, MemoryStore};
use wiremock::Mock;
use wiremock::matchers::header;

use crate::support::*;

/// (the middleware asked the store before a send, it told the store of a 429's cooldown),
/// seen by a peer sharing the store: the peer's 429 on one key holds the middleware's
/// request with that key; the middleware's 429 on another key holds the peer's.
async fn store_use(
    configure: impl FnOnce(LlmRetryMiddlewareBuilder, Arc<MemoryStore>) -> LlmRetryMiddlewareBuilder,
) -> (bool, bool) {
    let server = wiremock::MockServer::start().await;
    let limited = openai_error(429, "requests", "rate_limit_exceeded", "Rate limit reached")
        .insert_header("retry-after-ms", "150");
    for key in ["Bearer sk-peer", "Bearer sk-tested"] {
        Mock::given(header("authorization", key))
            .respond_with(limited.clone())
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
    }
    always(&server, ok()).await;
    let store = Arc::new(MemoryStore::new());
    let tested = client(&server, configure(fast().max_retries(0), store.clone()).build());
    let peer = client(&server, fast().max_retries(0).shared_store(store).build());
    let target = url(&server, OPENAI, "/v1/chat/completions");
    let send = |client: &reqwest_middleware::ClientWithMiddleware, key: &str| {
        let request = client.post(&target).header("authorization", key).send();
        async move {
            let response = tokio::time::timeout(Duration::from_secs(10), request).await.expect("deadline").unwrap();
            (response.status().as_u16(), response.retry_stats().unwrap().waited > Duration::ZERO)
        }
    };
    assert_eq!(send(&peer, "Bearer sk-peer").await, (429, false));
    let (status, asked) = send(&tested, "Bearer sk-peer").await;
    assert_eq!(status, 200);
    assert_eq!(send(&tested, "Bearer sk-tested").await, (429, false));
    let (status, told) = send(&peer, "Bearer sk-tested").await;
    assert_eq!(status, 200);
    (asked, told)
}

#[tokio::test]
async fn cooldown_and_shared_store_do_not_undo_each_other() {
    let on = (true, true);
    let off = (false, false);
    assert_eq!(store_use(|b, s| b.shared_store(s)).await, on, "a store alone is used");
    assert_eq!(store_use(|b, s| b.shared_store(s).cooldown(true)).await, on, "store, then switch on");
    assert_eq!(store_use(|b, s| b.cooldown(true).shared_store(s)).await, on, "switch on, then store");
    assert_eq!(store_use(|b, s| b.shared_store(s).cooldown(false)).await, off, "store, then switch off");
    assert_eq!(store_use(|b, s| b.cooldown(false).shared_store(s)).await, off, "switch off, then store");
}
