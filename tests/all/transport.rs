//! Connection errors and timeouts are retried; the final error is returned unchanged.

use std::time::Duration;

use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware};
use wiremock::{MockServer, ResponseTemplate};

use crate::support::*;

#[tokio::test]
async fn connection_refused_is_retried_and_stays_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::builder().no_proxy().build().unwrap())
        .with(LlmRetryMiddleware::builder().base_delay(Duration::from_millis(5)).max_retries(2).build())
        .build();
    let started = std::time::Instant::now();
    let err = client.get(format!("http://127.0.0.1:{port}/v1/models")).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(matches!(err, reqwest_middleware::Error::Reqwest(_)), "not wrapped");
    // Two backoff waits (5 + 10 ms at least) prove the retries happened.
    assert!(started.elapsed() >= Duration::from_millis(15));
}

#[tokio::test]
async fn a_server_that_comes_up_is_reached_by_a_retry() {
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::builder().no_proxy().build().unwrap())
        .with(
            LlmRetryMiddleware::builder()
                .base_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(40))
                .build(),
        )
        .build();
    let request = tokio::spawn(async move { client.get(format!("http://{addr}/v1/models")).send().await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let listener = std::net::TcpListener::bind(addr).unwrap();
    let server = MockServer::builder().listener(listener).start().await;
    always(&server, ok()).await;
    let resp = request.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.retry_stats().unwrap().attempts >= 2);
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
    let client = reqwest_middleware::ClientBuilder::new(http).with(fast().build()).build();
    let resp = client.post(url(&server, OPENAI, "/v1/chat/completions")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.retry_stats().unwrap().attempts, 2);

    server.reset().await;
    always(&server, ResponseTemplate::new(200).set_delay(Duration::from_millis(500))).await;
    let err = client.post(url(&server, OPENAI, "/v1/chat/completions")).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(hits(&server).await, 5, "every attempt timed out");
}
