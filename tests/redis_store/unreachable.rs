//! A Redis that is cut off, or that never answers: requests go on, from the
//! store's memory and each process's own budgets, delayed at most by the
//! store's bound on each call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware, RedisStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::cooldowns::limited_once;
use crate::deployment::*;
use crate::support::deadline::DEADLINE;
use crate::support::tokens::body;
use crate::support::{client, fast};

/// A TCP proxy to `upstream` that can be cut, to simulate an outage.
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

/// A store (calls bounded at 100 ms) reaching the single node through a
/// [`proxy`], and the proxy's task, whose abort cuts Redis off; `None` when
/// no Redis is reachable outside CI.
async fn behind_a_proxy(test: &str) -> Option<(RedisStore, tokio::task::JoinHandle<()>)> {
    Deployment::Single.store("").await?;
    let (addr, cut) = proxy(redis_addr().await).await;
    let builder = RedisStore::builder().prefix(unique_prefix(test)).timeout(MS(100));
    Some((builder.connect(&format!("redis://{addr}/")).await.unwrap(), cut))
}

#[tokio::test]
async fn an_outage_falls_back_to_memory_without_failing_or_stalling_requests() {
    let Some((store, cut)) = behind_a_proxy("outage").await else { return };
    // Two middlewares share the store (say, chat and batch settings of one process).
    let store = Arc::new(store);
    let server = limited_once("300").await;
    let chat = client(&server, fast().max_retries(0).shared_store(store.clone()).build());
    let batch = client(&server, fast().max_retries(2).shared_store(store).build());
    let target = format!("http://api.openai.com:{}/v1/chat/completions", server.address().port());

    cut.abort();
    let _ = cut.await;
    let started = Instant::now();
    let limited = chat.post(&target).bearer_auth("sk-k").send().await.expect("Redis being down never fails a request");
    assert_eq!(limited.status(), 429);
    // `batch` never saw the 429 and Redis never heard of it: only the store's memory can hold it.
    let held = batch.post(&target).bearer_auth("sk-k").send().await.unwrap();
    assert_eq!(held.status(), 200);
    assert!(held.retry_stats().unwrap().waited > Duration::ZERO, "{:?}", held.retry_stats());
    assert!(started.elapsed() >= MS(300), "{:?}", started.elapsed());

    // Through the outage, requests go on. The cut proxy refuses at once, so no
    // call here waits out its 100 ms bound (the silent Redis below shows that a
    // failed call leaves Redis alone for a while): even asking Redis each time,
    // five requests take at most 5 x (100 ms + a loopback round trip). 1 s is
    // twice that, a deadline against a call that outlives its bound (waiting
    // on the reconnection), not a measure of the machine's speed.
    let started = Instant::now();
    for i in 0..5 {
        let resp = chat.post(&target).bearer_auth(format!("sk-other-{i}")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(started.elapsed() < MS(1000), "no request waits on the cut Redis: {:?}", started.elapsed());
}

#[tokio::test]
async fn in_an_outage_each_process_paces_its_token_budgets_from_memory() {
    let Some((store, cut)) = behind_a_proxy("token-outage").await else { return };
    let server = MockServer::start().await;
    // The first answer: 5 000 of 40 000 tokens left, for another 300 ms.
    let told = ResponseTemplate::new(200)
        .insert_header("x-ratelimit-limit-tokens", "40000")
        .insert_header("x-ratelimit-remaining-tokens", "5000")
        .insert_header("x-ratelimit-reset-tokens", "300ms");
    Mock::given(any()).respond_with(told).up_to_n_times(1).with_priority(1).mount(&server).await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let client = client(&server, fast().max_retries(0).shared_store(store).build());
    let target = format!("http://api.openai.com:{}/v1/chat/completions", server.address().port());
    cut.abort();
    let _ = cut.await;
    let send = |tokens| {
        let request = client.post(&target).bearer_auth("sk-k").body(body(tokens, 256));
        async move { request.send().await.expect("Redis being down never fails a request") }
    };
    let started = Instant::now();
    let test = async {
        send(10).await;
        // 3 256 and then 1 656 fit the 5 000 left: both go at once.
        for tokens in [3_000, 1_400] {
            assert_eq!(send(tokens).await.retry_stats().unwrap().waited, Duration::ZERO, "{tokens}");
        }
        // 88 are left: 1 756 wait for the reset, as this process alone knows, instead of going.
        send(1_500).await
    };
    let held = tokio::time::timeout(DEADLINE, test).await.expect("no request stalls");
    assert_eq!((held.status().as_u16(), held.retry_stats().unwrap().attempts), (200, 1));
    assert!(held.retry_stats().unwrap().waited > MS(150), "{:?}", held.retry_stats());
    assert!(started.elapsed() >= MS(300), "{:?}", started.elapsed());
}

/// The address of the Redis at `REDIS_URL`.
async fn redis_addr() -> SocketAddr {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let info = redis::Client::open(url).unwrap().get_connection_info().addr().to_string();
    let host_port = info.trim_start_matches("redis://").trim_end_matches('/').to_owned();
    tokio::net::lookup_host(host_port).await.unwrap().next().unwrap()
}

/// A Redis that accepts connections and answers the client's greeting
/// (`CLIENT SETINFO`, whose answers the client waits for), then never
/// answers anything again: a hung server.
async fn silent_redis() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut seen, mut answered, mut buffer) = (Vec::new(), 0, [0u8; 4096]);
                while let Ok(read @ 1..) = connection.read(&mut buffer).await {
                    seen.extend_from_slice(&buffer[..read]);
                    let greetings = seen.windows(7).filter(|w| w == b"SETINFO").count();
                    for _ in answered..greetings {
                        let _ = connection.write_all(b"+OK\r\n").await;
                    }
                    answered = greetings;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_redis_that_never_answers_delays_a_request_by_the_stores_bound_at_most() {
    let (silent, server) = (silent_redis().await, MockServer::start().await);
    Mock::given(any()).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let target = format!("http://api.openai.com:{}/v1/chat/completions", server.address().port());
    // Below and above the 250 ms default: the bound is the one set, neither cut nor stretched.
    for bound in [MS(50), MS(400)] {
        let store = RedisStore::builder().timeout(bound).connect(&format!("redis://{silent}/")).await.unwrap();
        let client = client(&server, LlmRetryMiddleware::builder().shared_store(store).build());
        let started = Instant::now();
        let send = client.post(&target).bearer_auth("sk-k").send();
        let response = tokio::time::timeout(DEADLINE, send).await.expect("the store's call is bounded").unwrap();
        let took = started.elapsed();
        assert_eq!(response.status(), 200, "memory answered");
        // The request went once the store's call gave up: not sooner (a bound cut short,
        // as a connection's own shorter timeout would), and not much later: within
        // 150 ms of the bound, for a loopback round trip and a loaded machine's
        // scheduling, which 50 ms stretched to the 250 ms default (200 ms late) exceeds.
        assert!(took >= bound, "{bound:?}: sent after {took:?}");
        assert!(took < bound + MS(150), "{bound:?}: sent after {took:?}");
        // Redis is then left alone for a second: the next request does not wait for it.
        // One that asked again would wait the whole bound (a timeout never fires early),
        // so it could not come back within 400 ms after the 400 ms bound; a request that
        // does not ask is one loopback round trip. (After the 50 ms bound, 400 ms is
        // only a deadline.)
        let started = Instant::now();
        let next = client.post(&target).bearer_auth("sk-k").send().await.unwrap();
        assert_eq!((next.status(), next.retry_stats().unwrap().attempts), (reqwest::StatusCode::OK, 1));
        assert!(started.elapsed() < bound.max(MS(400)), "{bound:?}: {:?}", started.elapsed());
    }
}
