//! The fleet-wide budget in Redis: two independent middleware instances (as
//! two processes would have) spend one window's requests between them,
//! instead of each spending all of them.
//!
//! Needs a Redis at `REDIS_URL` (default `redis://127.0.0.1:6379/`); `.ci/run`
//! starts one. In a local run without Redis these tests say so and pass; in
//! CI (`CI` set) a missing Redis fails.
#![cfg(feature = "redis")]

use std::time::{Duration, SystemTime};

use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware, RedisCooldownStore};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// A store on the test Redis with a key prefix of its own, or `None` (with a
/// message) when no Redis is reachable outside CI.
async fn store(prefix: &str) -> Option<RedisCooldownStore> {
    let url = redis_url();
    match RedisCooldownStore::connect(&url).await {
        Ok(store) => Some(store.prefix(prefix)),
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: no Redis reachable at {url} ({error}); start one with `redis-server --port 6379`");
            None
        }
        Err(error) => panic!("CI must provide Redis at {url}: {error}"),
    }
}

fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
    format!("reqwest-llm-retry-test:{test}:{nanos}:")
}

fn client(server: &MockServer, middleware: LlmRetryMiddleware) -> reqwest_middleware::ClientWithMiddleware {
    let http = reqwest::Client::builder().no_proxy().resolve("api.openai.com", *server.address()).build().unwrap();
    reqwest_middleware::ClientBuilder::new(http).with(middleware).build()
}

#[tokio::test]
async fn two_instances_split_one_windows_budget_through_redis() {
    let prefix = unique_prefix("budget");
    let (Some(store_a), Some(store_b)) = (store(&prefix).await, store(&prefix).await) else { return };
    let server = MockServer::start().await;
    // 4 requests per 500 ms window; every answer says 3 are left, as each process would see
    // after its own first request. Each process alone would send 3 more.
    let ok = ResponseTemplate::new(200)
        .insert_header("x-ratelimit-limit-requests", "4")
        .insert_header("x-ratelimit-remaining-requests", "3")
        .insert_header("x-ratelimit-reset-requests", "500ms");
    Mock::given(any()).respond_with(ok).mount(&server).await;
    let a = client(&server, LlmRetryMiddleware::builder().cooldown_store(store_a).build());
    let b = client(&server, LlmRetryMiddleware::builder().cooldown_store(store_b).build());
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
    let client = reqwest_llm_retry::redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        reqwest_llm_retry::redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut connection).await.unwrap();
    assert!(keys.iter().any(|k| k.ends_with(":budget")), "{keys:?}");
    for key in keys {
        let ttl: i64 = reqwest_llm_retry::redis::cmd("PTTL").arg(&key).query_async(&mut connection).await.unwrap();
        assert!(ttl == -2 || ttl > 0, "{key} has no expiry ({ttl})");
    }
    let burst = async {
        let (a1, a2, a3, b1, b2, b3) = tokio::join!(send(&a), send(&a), send(&a), send(&b), send(&b), send(&b));
        [a1, a2, a3, b1, b2, b3]
    };
    let waited = tokio::time::timeout(Duration::from_secs(5), burst).await.expect("the burst ends");
    // The window admits 4 in all, one spent: 3 go at once, the other 3 wait for the next window.
    let at_once = waited.iter().filter(|w| w.is_zero()).count();
    let held = waited.iter().filter(|w| **w >= Duration::from_millis(200)).count();
    assert_eq!((at_once, held), (3, 3), "{waited:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 9);
}
