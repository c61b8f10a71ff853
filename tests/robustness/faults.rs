//! Transport faults: refused, a server that comes up, reset before headers,
//! reset mid-body, slow or never answering, DNS failure. Each is retried or
//! not as the policy says
//! (connect errors and timeouts are, others are not), and the final error is
//! reqwest's own, so `is_timeout()` / `is_connect()` stay truthful. Then
//! cancellation during a wait, and 1,000 concurrent requests.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware, Provider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::*;

/// Sends one GET through the middleware and, separately, through the bare
/// client, so the two errors can be compared.
async fn both(
    builder: impl Fn() -> reqwest::ClientBuilder,
    middleware: LlmRetryMiddleware,
    url: &str,
) -> (reqwest_middleware::Error, reqwest::Error) {
    let ours = client_from(builder(), middleware).get(url).send().await.expect_err("a transport error");
    let bare = builder().build().unwrap().get(url).send().await.expect_err("a transport error");
    (ours, bare)
}

/// The middleware returned reqwest's error itself, with the same kind.
fn assert_unwrapped(ours: &reqwest_middleware::Error, bare: &reqwest::Error) {
    let reqwest_middleware::Error::Reqwest(inner) = ours else { panic!("wrapped: {ours:?}") };
    assert_eq!(
        (inner.is_connect(), inner.is_timeout(), inner.is_request(), inner.is_body()),
        (bare.is_connect(), bare.is_timeout(), bare.is_request(), bare.is_body())
    );
    assert_eq!((ours.is_connect(), ours.is_timeout()), (bare.is_connect(), bare.is_timeout()));
    assert_eq!(ours.to_string(), bare.to_string());
}

async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn connection_refused_is_retried_and_stays_is_connect() {
    let addr = closed_port().await;
    let url = format!("http://api.openai.com:{}/v1/chat/completions", addr.port());
    let dns = CountingDns::new(addr);
    let builder = || reqwest::Client::builder().dns_resolver(dns.clone());
    let middleware = LlmRetryMiddleware::builder().max_retries(2).base_delay(ms(40)).max_delay(ms(200)).build();
    let started = Instant::now();
    let (ours, bare) = both(builder, middleware, &url).await;
    // Each attempt is a new connection, so one lookup.
    assert_eq!(dns.lookups(), 4, "three attempts through the middleware, one bare");
    // A lower bound on the wall clock (each attempt meets a real socket, which tokio's paused
    // clock would jump past): a slow machine only makes it longer.
    assert!(started.elapsed() >= ms(120), "two backoffs of 40 and 80 ms: {:?}", started.elapsed());
    assert!(ours.is_connect());
    assert_unwrapped(&ours, &bare);
}

#[tokio::test]
async fn a_reset_before_headers_is_not_retried() {
    let server = RawServer::start(|mut stream, _| async move {
        read_head(&mut stream).await;
        reset(stream);
    })
    .await;
    let url = server.url("api.anthropic.com", "/v1/messages");
    let builder = || reqwest::Client::builder().resolve("api.anthropic.com", server.addr);
    let (ours, bare) = both(builder, fast().max_retries(2).build(), &url).await;
    assert_eq!(server.connections(), 2, "one attempt through the middleware, one bare");
    assert!(!ours.is_connect() && !ours.is_timeout(), "{ours:?}");
    assert_unwrapped(&ours, &bare);
}

#[tokio::test]
async fn a_reset_mid_body_of_an_error_is_retried_and_reported_as_reqwest_would() {
    let prefix = br#"{"error":{"message":"upstream died","type":"server_error","code":null},"trace":""#;
    let server = RawServer::start(move |mut stream, _| async move {
        read_head(&mut stream).await;
        write_head(&mut stream, 502, &["content-length: 5000", "content-type: application/json"]).await;
        let _ = stream.write_all(prefix).await;
        let _ = stream.flush().await;
        // Let the client read what was sent before the reset discards it.
        tokio::time::sleep(ms(30)).await;
        reset(stream);
    })
    .await;
    let url = server.url("api.openai.com", "/v1/chat/completions");
    let builder = || reqwest::Client::builder().resolve("api.openai.com", server.addr);
    let response = client_from(builder(), fast().max_retries(2).build()).get(&url).send().await.unwrap();
    assert_eq!(server.connections(), 3, "a 502 is retried even when its body was cut");
    let error = response.llm_error().unwrap().clone();
    assert_eq!((error.message.as_str(), error.attempts, error.retryable), ("upstream died", 3, true));
    let (bytes, failure) = drain(response).await;

    let bare = builder().build().unwrap().get(&url).send().await.unwrap();
    let (bare_bytes, bare_failure) = drain(bare).await;
    assert_eq!((bytes.as_slice(), bare_bytes.as_slice()), (&prefix[..], &prefix[..]));
    let (failure, bare_failure) = (failure.expect("the cut is reported"), bare_failure.unwrap());
    assert_eq!(
        (failure.is_body(), failure.is_decode(), failure.is_timeout()),
        (bare_failure.is_body(), bare_failure.is_decode(), bare_failure.is_timeout())
    );
    assert_eq!(failure.to_string(), bare_failure.to_string());
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_each_attempt() {
    let server = RawServer::start(|mut stream, _| async move {
        read_head(&mut stream).await;
        tokio::time::sleep(ms(5_000)).await;
        drop(stream);
    })
    .await;
    let url = server.url("generativelanguage.googleapis.com", "/v1beta/models/gemini:generateContent");
    let builder =
        || reqwest::Client::builder().timeout(ms(150)).resolve("generativelanguage.googleapis.com", server.addr);
    let started = Instant::now();
    let ours = client_from(builder(), fast().max_retries(2).build()).get(&url).send().await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(server.connections(), 3, "timeouts are retried");
    // Three client timeouts of 150 ms; the wall clock, as reqwest's timeout runs on a real
    // socket (tokio's paused clock would fire it at once). The upper bound is a generous
    // deadline: it fails only if an attempt outlived its timeout many times over.
    assert!(took >= ms(450) && took < ms(3_000), "{took:?}");
    assert!(ours.is_timeout());
    let bare = builder().build().unwrap().get(&url).send().await.unwrap_err();
    assert_unwrapped(&ours, &bare);
}

#[tokio::test]
async fn a_server_that_comes_up_is_reached_by_a_retry() {
    let addr = closed_port().await;
    let dns = CountingDns::new(addr);
    let http = reqwest::Client::builder().no_proxy().dns_resolver(dns.clone()).build().unwrap();
    // Retries enough for a loaded machine to start the server in between.
    let middleware = LlmRetryMiddleware::builder().base_delay(ms(20)).max_delay(ms(40)).max_retries(50).build();
    let client = with_deadline(http, middleware);
    let request = tokio::spawn(async move { client.get(url_at(addr, OPENAI, "/v1/models")).send().await });
    // The server comes up once the second attempt has started: the first was refused.
    tokio::time::timeout(DEADLINE, dns.reached(2)).await.expect("the first attempt was refused and retried");
    let listener = std::net::TcpListener::bind(addr).unwrap();
    let server = MockServer::builder().listener(listener).start().await;
    always(&server, ok()).await;
    let resp = request.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.retry_stats().unwrap().attempts >= 2);
    assert_eq!(hits(&server).await, 1, "only the attempt after the server came up reached it");
}

#[tokio::test]
async fn a_timeout_is_retried_and_every_attempt_timing_out_stays_a_timeout() {
    let server = MockServer::start().await;
    first(&server, 1, ok().set_delay(ms(500))).await;
    always(&server, ok()).await;
    let http = http_to(*server.address()).timeout(ms(100)).build().unwrap();
    let client = with_deadline(http, fast().build());
    let resp = client.post(url(&server, OPENAI, "/v1/chat/completions")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.retry_stats().unwrap().attempts, 2);

    server.reset().await;
    always(&server, ResponseTemplate::new(200).set_delay(ms(500))).await;
    let err = client.post(url(&server, OPENAI, "/v1/chat/completions")).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(hits(&server).await, 5, "every attempt timed out");
}

/// A name that cannot resolve ([`NoDns`] says why not `.invalid`).
///
/// On tokio's paused clock: no socket is opened, so the clock moves only by the
/// middleware's sleeps.
#[tokio::test(start_paused = true)]
async fn a_dns_failure_is_a_connect_error_and_is_retried() {
    let dns = NoDns::new();
    let builder = || reqwest::Client::builder().dns_resolver(dns.clone());
    let middleware = fast().max_retries(2).host("llm.invalid", Provider::OpenAi).build();
    let started = tokio::time::Instant::now();
    let (ours, bare) = both(builder, middleware, "http://llm.invalid/v1/chat/completions").await;
    // Retried as any connect error, on its backoff (5 + 10 ms, plus at most 25 %) and no longer.
    assert!(started.elapsed() <= ms(19), "waited {:?}", started.elapsed());
    assert_eq!(dns.lookups(), 4, "three attempts through the middleware, one bare");
    assert!(ours.is_connect(), "{ours:?}");
    assert_unwrapped(&ours, &bare);
}

/// A 429 asks for 1 s; the caller gives up during the wait. The failed
/// response (its unread body included) is released before the wait, and
/// once the future is dropped no timer, task or retry is left.
#[tokio::test]
async fn dropping_the_future_during_a_wait_leaves_nothing_behind() {
    let closed = Arc::new(AtomicBool::new(false));
    let seen = closed.clone();
    let server = RawServer::start(move |mut stream, _| {
        let closed = seen.clone();
        async move {
            read_head(&mut stream).await;
            let head = ["content-length: 1000000", "retry-after-ms: 1000", "content-type: application/json"];
            write_head(&mut stream, 429, &head).await;
            let _ = stream.write_all(br#"{"error":{"message":"slow down","type":"rate_limit_error"},"pad":""#).await;
            // The client reads a small prefix and must then hang up, not keep the body.
            let mut buf = [0u8; 64];
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            closed.store(true, Ordering::SeqCst);
        }
    })
    .await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let http = reqwest::Client::builder().resolve("api.anthropic.com", server.addr).build().unwrap();
    let client = reqwest_middleware::ClientBuilder::new(http)
        .with(fast().max_retries(2).error_body_limit(16).max_retry_after(ms(2_000)).build())
        .build();
    let started = tokio::time::Instant::now();
    let mut send = Box::pin(client.get(server.url("api.anthropic.com", "/v1/messages")).send());
    // Drive the request until the server sees the client hang up: the future
    // is still pending, in its wait, and the failed response is already gone.
    // The wall clock: the client reads a real socket while the middleware sleeps, so tokio's
    // paused clock would end the wait at once. A response held during the wait is let go at
    // its end: seen closed before the end is the promise, with the whole wait (about 1 s)
    // as the margin for a slow machine.
    let wait = ms(1_000);
    while !closed.load(Ordering::SeqCst) {
        tokio::select! {
            _ = &mut send => panic!("the 1 s wait ended early"),
            _ = tokio::time::sleep(ms(10)) => {}
        }
        assert!(started.elapsed() < wait, "the failed response was still held during the wait");
    }
    drop(send);
    // Past the moment the retry would have been sent.
    tokio::time::sleep_until(started + wait + ms(300)).await;
    assert_eq!(server.connections(), 1, "no retry fired after the future was dropped");
    assert!(
        wait_for(|| metrics.num_alive_tasks() <= baseline).await,
        "{} tasks alive, {baseline} before",
        metrics.num_alive_tasks()
    );
}

async fn wait_for(condition: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if condition() {
            return true;
        }
        tokio::time::sleep(ms(10)).await;
    }
    condition()
}

/// 503 with `retry-after-ms: 10` on the first attempt of each request, 200 on the second.
struct FirstAttemptOverloaded(Mutex<HashSet<String>>);

impl Respond for FirstAttemptOverloaded {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.headers.get("x-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        if self.0.lock().unwrap().insert(id.clone()) {
            ResponseTemplate::new(503)
                .insert_header("retry-after-ms", "10")
                .set_body_raw(r#"{"error":{"message":"overloaded","type":"server_error"}}"#, "application/json")
        } else {
            ResponseTemplate::new(200).set_body_string(format!("ok {id}"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_through_one_middleware_all_complete() {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(FirstAttemptOverloaded(Mutex::new(HashSet::new()))).mount(&server).await;
    // Every first attempt failing is an outage to the shared health state, which would hold
    // these requests within their (tiny) bounds: this test is about the retry loop alone.
    let client = client_to("api.openai.com", *server.address(), fast().max_retries(3).outage(false).build());
    let url = format!("http://api.openai.com:{}/v1/chat/completions", server.address().port());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let response = client.get(url).header("x-id", i.to_string()).send().await.unwrap();
            let attempts = response.retry_stats().unwrap().attempts;
            (response.status(), attempts, response.text().await.unwrap() == format!("ok {i}"))
        });
    }
    let all = tokio::time::timeout(std::time::Duration::from_secs(30), tasks.join_all()).await.expect("no deadlock");
    assert_eq!(all.len(), 1000);
    assert!(
        all.iter().all(|&(status, attempts, body_ok)| status == 200 && attempts == 2 && body_ok),
        "{:?}",
        &all[..5]
    );
}
