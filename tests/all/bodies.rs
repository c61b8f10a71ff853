//! The caller receives the complete body, byte for byte, with everything else
//! unchanged; success bodies are never buffered.

use std::time::Duration;

use reqwest_llm_retry::defaults::ERROR_BODY_LIMIT;
use reqwest_llm_retry::{ErrorKind, LlmResponseExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::{MockServer, ResponseTemplate};

use crate::support::*;

/// An error body larger than the parse limit, not UTF-8, JSON at the start.
fn big_binary_body() -> Vec<u8> {
    let mut body =
        br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"},"pad":""#.to_vec();
    body.extend((0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    body
}

#[tokio::test]
async fn error_bodies_arrive_whole_with_status_headers_version_url_and_extensions() {
    let server = MockServer::start().await;
    let body = big_binary_body();
    always(
        &server,
        ResponseTemplate::new(429)
            .set_body_raw(body.clone(), "application/json")
            .insert_header("x-request-id", "req_big")
            .insert_header("x-custom", "kept"),
    )
    .await;
    let middleware = fast().max_retries(0).build();
    let target = url(&server, OPENAI, "/v1/chat/completions?stream=false");
    let resp = client(&server, middleware).post(&target).send().await.unwrap();

    assert_eq!(resp.status(), 429);
    assert_eq!(resp.version(), http::Version::HTTP_11);
    assert_eq!(resp.url().as_str(), target);
    assert_eq!(resp.headers()["x-custom"], "kept");
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.content_length(), Some(body.len() as u64));
    assert_eq!(resp.remote_addr(), Some(*server.address()), "connection info extension kept");
    let err = resp.llm_error().unwrap();
    assert_eq!((err.kind, err.code.as_deref()), (ErrorKind::RateLimited, Some("rate_limit_exceeded")));
    assert_eq!(err.message, "Rate limit reached", "salvaged from the truncated prefix");
    assert!(body.len() > ERROR_BODY_LIMIT * 4);
    let received = resp.bytes().await.unwrap();
    assert!(received == body, "{} bytes received of {}", received.len(), body.len());
}

#[tokio::test]
async fn small_limits_and_empty_bodies() {
    let server = MockServer::start().await;
    let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.to_vec();
    always(&server, ResponseTemplate::new(529).set_body_raw(body.clone(), "application/json")).await;
    for limit in [0, 1, 17, body.len(), body.len() + 1] {
        let resp = client(&server, fast().max_retries(0).error_body_limit(limit).build())
            .post(url(&server, ANTHROPIC, "/v1/messages"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.llm_error().unwrap().kind, ErrorKind::Overloaded, "kind from the status at limit {limit}");
        assert_eq!(resp.bytes().await.unwrap(), body, "limit {limit}");
    }
    server.reset().await;
    always(&server, ResponseTemplate::new(502)).await;
    let resp = client(&server, fast().max_retries(0).build()).get(url(&server, OPENAI, "/")).send().await.unwrap();
    let err = resp.llm_error().unwrap();
    assert_eq!((err.kind, err.message.as_str()), (ErrorKind::ServerError, "Bad Gateway"));
    assert!(resp.bytes().await.unwrap().is_empty());
}

/// A raw server: sends SSE headers and a first event, then holds the rest
/// until told, so a middleware that buffered success bodies would hang. The
/// start of a stream is held only until the hold's time bound.
#[tokio::test]
async fn success_streams_pass_straight_through() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = vec![0u8; 4096];
        let _ = socket.read(&mut request).await.unwrap();
        let first = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n";
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        socket.write_all(format!("{head}{:x}\r\n{first}\r\n", first.len()).as_bytes()).await.unwrap();
        released.await.unwrap();
        let last = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        socket.write_all(format!("{:x}\r\n{last}\r\n0\r\n\r\n", last.len()).as_bytes()).await.unwrap();
    });
    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder().no_proxy().resolve(ANTHROPIC, addr).build().unwrap(),
    )
    .with(fast().stream_hold_timeout(Duration::from_millis(20)).build())
    .build();
    let mut resp = tokio::time::timeout(
        Duration::from_secs(5),
        client.post(format!("http://{ANTHROPIC}:{}/v1/messages", addr.port())).send(),
    )
    .await
    .expect("headers arrive before the body ends")
    .unwrap();
    assert_eq!(resp.retry_stats().unwrap().attempts, 1);
    let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk()).await.expect("first event streams").unwrap();
    assert!(chunk.unwrap().starts_with(b"event: message_start"));
    release.send(()).unwrap();
    let rest = resp.bytes().await.unwrap();
    assert!(rest.starts_with(b"event: message_stop"));
    server.await.unwrap();
}

#[tokio::test]
async fn streaming_request_bodies_are_sent_once_and_still_parsed() {
    let server = MockServer::start().await;
    always(&server, anthropic_error(529, "overloaded_error", "Overloaded").insert_header("retry-after-ms", "1")).await;
    let chunks: Vec<Result<&'static [u8], std::io::Error>> = vec![Ok(b"{\"model\":"), Ok(b"\"claude\"}")];
    let body = reqwest::Body::wrap_stream(futures_stream(chunks));
    let resp =
        client(&server, fast().build()).post(url(&server, ANTHROPIC, "/v1/messages")).body(body).send().await.unwrap();
    let err = resp.llm_error().unwrap();
    assert_eq!((err.kind, err.retryable, err.attempts), (ErrorKind::Overloaded, true, 1));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body, b"{\"model\":\"claude\"}");
}
