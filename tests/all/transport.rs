//! Connection errors and timeouts are retried; the final error is returned unchanged.

use std::time::Duration;

use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware};
use wiremock::{MockServer, ResponseTemplate};

use crate::support::*;

/// A loopback address nothing listens on (for now).
fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[tokio::test]
async fn connection_refused_is_retried_and_stays_a_connect_error() {
    let refused = free_addr();
    let dns = CountingDns::new(refused);
    let http = reqwest::Client::builder().no_proxy().dns_resolver(dns.clone()).build().unwrap();
    let client =
        with_deadline(http, LlmRetryMiddleware::builder().base_delay(Duration::from_millis(5)).max_retries(2).build());
    let err = client.get(url_at(refused, OPENAI, "/v1/models")).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(matches!(err, reqwest_middleware::Error::Reqwest(_)), "not wrapped");
    assert_eq!(dns.lookups(), 3, "the first attempt and two retries, each a new connection");
}

#[tokio::test]
async fn a_server_that_comes_up_is_reached_by_a_retry() {
    let addr = free_addr();
    let dns = CountingDns::new(addr);
    let http = reqwest::Client::builder().no_proxy().dns_resolver(dns.clone()).build().unwrap();
    // Retries enough for a loaded machine to start the server in between.
    let middleware = LlmRetryMiddleware::builder()
        .base_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(40))
        .max_retries(50)
        .build();
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
async fn timeouts_are_retried_and_stay_timeouts() {
    let server = MockServer::start().await;
    first(&server, 1, ok().set_delay(Duration::from_millis(500))).await;
    always(&server, ok()).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .resolve(OPENAI, *server.address())
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let client = with_deadline(http, fast().build());
    let resp = client.post(url(&server, OPENAI, "/v1/chat/completions")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.retry_stats().unwrap().attempts, 2);

    server.reset().await;
    always(&server, ResponseTemplate::new(200).set_delay(Duration::from_millis(500))).await;
    let err = client.post(url(&server, OPENAI, "/v1/chat/completions")).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(hits(&server).await, 5, "every attempt timed out");
}
