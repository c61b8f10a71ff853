//! The builder's setters are independent: the `cooldown` switch and the
//! `cooldown_store` give the same middleware in either order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use reqwest_llm_retry::{CooldownStore, LlmResponseExt, LlmRetryMiddlewareBuilder, StoreFuture};

use crate::support::*;

/// A store written against the public trait, counting what the middleware asks and tells it.
#[derive(Debug, Default)]
struct Recording {
    gets: AtomicUsize,
    extends: AtomicUsize,
}

impl CooldownStore for Recording {
    fn get<'a>(&'a self, _key: &'a str) -> StoreFuture<'a, Option<SystemTime>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { None })
    }

    fn extend<'a>(&'a self, _key: &'a str, _until: SystemTime) -> StoreFuture<'a, ()> {
        self.extends.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(()))
    }
}

/// (store asked before a send, store told of the 429's cooldown) for one 429 then a 200.
async fn store_use(
    configure: impl FnOnce(LlmRetryMiddlewareBuilder, Arc<Recording>) -> LlmRetryMiddlewareBuilder,
) -> (bool, bool) {
    let server = wiremock::MockServer::start().await;
    let limited = openai_error(429, "requests", "rate_limit_exceeded", "Rate limit reached")
        .insert_header("retry-after-ms", "10");
    first(&server, 1, limited).await;
    always(&server, ok()).await;
    let store = Arc::new(Recording::default());
    let client = client(&server, configure(fast(), store.clone()).build());
    let send = client.post(url(&server, OPENAI, "/v1/chat/completions")).send();
    let response = tokio::time::timeout(Duration::from_secs(10), send).await.expect("deadline").unwrap();
    assert_eq!((response.status().as_u16(), response.retry_stats().unwrap().attempts), (200, 2));
    (store.gets.load(Ordering::SeqCst) > 0, store.extends.load(Ordering::SeqCst) > 0)
}

#[tokio::test]
async fn cooldown_and_cooldown_store_do_not_undo_each_other() {
    let on = (true, true);
    let off = (false, false);
    assert_eq!(store_use(|b, s| b.cooldown_store(s)).await, on, "a store alone is used");
    assert_eq!(store_use(|b, s| b.cooldown_store(s).cooldown(true)).await, on, "store, then switch on");
    assert_eq!(store_use(|b, s| b.cooldown(true).cooldown_store(s)).await, on, "switch on, then store");
    assert_eq!(store_use(|b, s| b.cooldown_store(s).cooldown(false)).await, off, "store, then switch off");
    assert_eq!(store_use(|b, s| b.cooldown(false).cooldown_store(s)).await, off, "switch off, then store");
}
