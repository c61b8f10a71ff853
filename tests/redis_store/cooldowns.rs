//! Cooldowns through Redis: a 429 seen by one process holds the others'
//! requests with the same key, in the documented key format; the later end
//! wins whoever writes last.

use std::time::{Duration, Instant, SystemTime};

use reqwest_llm_retry::store::Spend;
use reqwest_llm_retry::{LlmResponseExt, RedisStore, SharedStore};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::deployment::*;
use crate::support::deadline::DEADLINE;
use crate::support::{client, fast};

/// One 429 asking for `wait_ms`, then 200s.
pub async fn limited_once(wait_ms: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after-ms", wait_ms))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    server
}

pub async fn two_processes_share_a_429_in_the_documented_key_format(on: Deployment) {
    // The default prefix: the keys below are the whole protocol, pinned.
    let Some((store_a, store_b)) = on.two_stores(RedisStore::DEFAULT_PREFIX).await else { return };
    let server = limited_once("400").await;
    let a = client(&server, fast().max_retries(0).shared_store(store_a).build());
    let b = client(&server, fast().max_retries(0).shared_store(store_b).build());
    let port = server.address().port();
    let target = format!("http://api.openai.com:{port}/v1/chat/completions");

    let sent = SystemTime::now();
    let started = Instant::now();
    let limited = a.post(&target).bearer_auth("sk-AAAA").send().await.unwrap();
    assert_eq!(limited.status(), 429);

    // What Redis holds now, while the cooldown is alive: one cooldown key in the `v2` format
    // (the key in braces: a cluster's hash tag), no secret in key or value, the end time as
    // epoch milliseconds, and an expiry at that time.
    let mut redis = on.inspect().await;
    let name = format!("llmretry:v2:{{openai:api.openai.com:{port}:813f88be1d7d9385dc89f7235a444860}}");
    let pattern = format!("llmretry:v2:{{openai:api.openai.com:{port}:");
    let keys: Vec<String> = redis.keys_that_expire(&pattern).await;
    // Beside it, the window's budget (the send counted before anyone knew the window).
    assert_eq!(keys, [name.clone(), format!("{name}:budget")]);
    let value: String = redis.query(redis::cmd("GET").arg(&name)).await;
    let until: u64 = value.parse().expect("epoch milliseconds");
    assert!(until >= epoch_ms(sent) + 400 && until <= epoch_ms(SystemTime::now()) + 400 + 1, "{value}");
    let ttl: i64 = redis.query(redis::cmd("PTTL").arg(&name)).await;
    assert!((1..=400).contains(&ttl), "expires with the cooldown, ttl {ttl}");

    // The other process never saw the 429: only Redis can hold it.
    let paced = b.post(&target).bearer_auth("sk-AAAA").send().await.unwrap();
    assert_eq!(paced.status(), 200);
    assert!(paced.retry_stats().unwrap().waited > Duration::ZERO, "{:?}", paced.retry_stats());
    assert!(started.elapsed() >= MS(400), "sent only once the cooldown ended: {:?}", started.elapsed());
    let other = b.post(&target).bearer_auth("sk-BBBB").send().await.unwrap();
    assert_eq!(other.retry_stats().unwrap().waited, Duration::ZERO, "another key is unaffected");
}

pub async fn the_later_end_time_wins_whoever_writes_last(on: Deployment) {
    let prefix = unique_prefix("extend");
    let (Some((a, b)), Some(reader)) = (on.two_stores(&prefix).await, on.store(&prefix).await) else { return };
    let mut redis = on.inspect().await;
    let name = format!("{prefix}v2:{{k}}");
    let checks = async {
        let later = SystemTime::now() + MS(3000);
        a.extend("k", later).await;
        // Another process, with its own memory, asks for less: Redis keeps the later end.
        b.extend("k", SystemTime::now() + MS(500)).await;
        let stored: u64 = redis.query(redis::cmd("GET").arg(&name)).await;
        assert_eq!(stored, epoch_ms(later), "the earlier end overwrote the later one");
        let ttl: i64 = redis.query(redis::cmd("PTTL").arg(&name)).await;
        assert!(ttl > 2000 && ttl <= 3000, "the later end's expiry is kept: {ttl}");
        // A third process, asking before a send, is told to wait for it.
        assert_eq!(reader.spend("k", Spend::new(None)).await.map(epoch_ms), Some(epoch_ms(later)));
        // A later end from the other process replaces it, expiry included.
        let latest = SystemTime::now() + MS(5000);
        b.extend("k", latest).await;
        assert_eq!(reader.spend("k", Spend::new(None)).await.map(epoch_ms), Some(epoch_ms(latest)));
        let ttl: i64 = redis.query(redis::cmd("PTTL").arg(&name)).await;
        assert!(ttl > 4000 && ttl <= 5000, "{ttl}");
        assert_eq!(reader.spend("missing", Spend::new(None)).await, None);
    };
    tokio::time::timeout(DEADLINE, checks).await.expect("every Redis call is bounded");
}
