//! The Redis cooldown store: two independent middleware instances (as two
//! processes would have) share one 429 through a real Redis, and an outage
//! degrades to memory without failing a request.
//!
//! Needs a Redis at `REDIS_URL` (default `redis://127.0.0.1:6379/`); `.ci/run`
//! starts one. In a local run without Redis these tests say so and pass.
#![cfg(feature = "redis")]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use reqwest_llm_retry::{CooldownStore, LlmResponseExt, LlmRetryMiddleware, RedisCooldownStore};
use tokio::net::{TcpListener, TcpStream};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// A store on the test Redis with a key prefix of its own, or `None` (with a
/// message) when no Redis is reachable outside CI. In CI a missing Redis fails.
async fn store(url: &str, prefix: &str) -> Option<RedisCooldownStore> {
    match RedisCooldownStore::connect(url).await {
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
async fn two_instances_share_a_429_through_redis() {
    let prefix = unique_prefix("share");
    let (Some(store_a), Some(store_b)) = (store(&redis_url(), &prefix).await, store(&redis_url(), &prefix).await)
    else {
        return;
    };
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after-ms", "200"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let fast = || LlmRetryMiddleware::builder().base_delay(Duration::from_millis(5)).max_retries(0);
    let a = client(&server, fast().cooldown_store(store_a).build());
    let b = client(&server, fast().cooldown_store(store_b).build());
    let target = format!("http://api.openai.com:{}/v1/chat/completions", server.address().port());

    let limited = a.post(&target).bearer_auth("sk-fleet-key").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let paced = b.post(&target).bearer_auth("sk-fleet-key").send().await.unwrap();
    assert_eq!(paced.status(), 200);
    let stats = paced.retry_stats().unwrap();
    assert!(stats.waited >= Duration::from_millis(150), "the other instance waited: {stats:?}");
    let other = b.post(&target).bearer_auth("sk-another-key").send().await.unwrap();
    assert_eq!(other.retry_stats().unwrap().waited, Duration::ZERO);

    // What Redis holds: an expiring key with no secret in key or value.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut connection).await.unwrap();
    for key in &keys {
        assert!(!key.contains("sk-fleet-key") && key.starts_with(&prefix), "{key}");
        let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut connection).await.unwrap();
        assert!(ttl == -2 || (0..=200).contains(&ttl), "expiring key, ttl {ttl}");
    }
}

#[tokio::test]
async fn the_later_cooldown_wins_and_expires() {
    let prefix = unique_prefix("extend");
    let Some(store) = store(&redis_url(), &prefix).await else { return };
    let soon = SystemTime::now() + Duration::from_millis(300);
    store.extend("k", soon).await;
    store.extend("k", SystemTime::now() + Duration::from_millis(50)).await;
    let until = store.get("k").await.expect("set");
    assert!(until.duration_since(soon).unwrap_or_else(|e| e.duration()) < Duration::from_millis(2));
    assert_eq!(store.get("missing").await, None);
}

/// A TCP proxy to Redis that can be cut, to simulate an outage.
async fn proxy(upstream: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut links = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            links.spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn an_outage_falls_back_to_memory_without_failing_requests() {
    let prefix = unique_prefix("outage");
    if store(&redis_url(), &prefix).await.is_none() {
        return;
    }
    let upstream: SocketAddr = {
        let info = redis::Client::open(redis_url()).unwrap().get_connection_info().addr().to_string();
        let host_port = info.trim_start_matches("redis://").trim_end_matches('/').to_owned();
        tokio::net::lookup_host(host_port).await.unwrap().next().unwrap()
    };
    let (addr, cut) = proxy(upstream).await;
    let store = store(&format!("redis://{addr}/"), &prefix).await.unwrap().timeout(Duration::from_millis(100));
    store.extend("before", SystemTime::now() + Duration::from_secs(5)).await;

    cut.abort();
    let _ = cut.await;
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let middleware = LlmRetryMiddleware::builder().cooldown_store(store).build();
    let client = client(&server, middleware);
    let target = format!("http://api.openai.com:{}/v1/models", server.address().port());
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let resp = client.get(&target).send().await.expect("Redis being down never fails a request");
        assert_eq!(resp.status(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(2), "an outage costs at most one timeout a second");
}
