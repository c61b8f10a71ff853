//! When a request leaves its model: after a timeout, never once a stream has
//! given output, and each model on a retry schedule of its own.

use std::time::Duration;

use reqwest_llm_retry::{ErrorKind, LlmResponseExt};
use wiremock::MockServer;

use super::{bodies_for, model_answers};
use crate::support::*;

/// A request for opus on `client`.
async fn ask_opus(
    client: &reqwest_middleware::ClientWithMiddleware,
    server: &MockServer,
    body: &str,
) -> reqwest::Response {
    let request = client.post(url(server, ANTHROPIC, "/v1/messages")).body(body.to_owned());
    tokio::time::timeout(DEADLINE, request.send()).await.expect("it ends").unwrap()
}

#[tokio::test]
async fn a_timeout_falls_back_whether_the_client_gave_up_or_the_server_said_504() {
    // The client's own timeout: opus answers too late, and no response is left to keep.
    let server = MockServer::start().await;
    model_answers(&server, "opus", ok().set_delay(ms(500))).await;
    model_answers(&server, "sonnet", ok()).await;
    let middleware = fast().max_retries(0).fallback("opus", "sonnet").build();
    let impatient = client_from(http_to(*server.address()).timeout(ms(100)), middleware);
    let response = ask_opus(&impatient, &server, r#"{"model":"opus"}"#).await;
    assert_eq!(response.status(), 200);
    let taken = response.model_fallback().expect("answered by sonnet");
    assert_eq!(taken.tried, ["opus", "sonnet"]);
    assert!(taken.primary_error.is_none(), "a timeout without a response has no error to keep");
    assert_eq!(response.retry_stats().unwrap().attempts, 2);

    // The server's 504: its error is kept.
    let server = MockServer::start().await;
    model_answers(&server, "opus", json(504, r#"{"error":{"message":"upstream timed out"}}"#)).await;
    model_answers(&server, "sonnet", ok()).await;
    let client = client(&server, fast().max_retries(1).fallback("opus", "sonnet").build());
    let response = ask_opus(&client, &server, r#"{"model":"opus"}"#).await;
    assert_eq!(response.status(), 200);
    let primary = response.model_fallback().and_then(|f| f.primary_error.clone()).expect("opus's 504");
    assert_eq!((primary.kind, primary.status.as_u16(), primary.attempts), (ErrorKind::Timeout, 504, 2));
}

#[tokio::test]
async fn a_stream_that_fails_after_its_first_output_is_handed_over_and_not_sent_to_the_fallback() {
    let server = MockServer::start().await;
    let stream = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n\
                  event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Par\"}}\n\n\
                  event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let sse = wiremock::ResponseTemplate::new(200).set_body_raw(stream.as_bytes().to_vec(), "text/event-stream");
    model_answers(&server, "opus", sse).await;
    model_answers(&server, "sonnet", ok()).await;
    let client = client(&server, fast().fallback("opus", "sonnet").build());
    let response = ask_opus(&client, &server, r#"{"model":"opus","stream":true}"#).await;

    assert_eq!(response.status(), 200);
    assert!(response.model_fallback().is_none());
    assert_eq!(response.retry_stats().unwrap().attempts, 1);
    assert_eq!(response.text().await.unwrap(), stream, "opus's stream as it came, its error included");
    assert!(bodies_for(&server, "sonnet").await.is_empty(), "the caller has output: sonnet is never asked");
}

#[tokio::test(start_paused = true)]
async fn each_model_of_a_chain_has_max_elapsed_of_its_own() {
    // Every model asks for 30 s: within a `max_elapsed` of 100 s, four attempts each
    // (waits of 30 s plus at most 1 s of jitter: the fourth would end past 100 s).
    let server = MockServer::start().await;
    let overloaded = anthropic_error(529, "overloaded_error", "Overloaded").insert_header("retry-after", "30");
    always(&server, overloaded).await;
    let builder = paused(
        reqwest_llm_retry::LlmRetryMiddleware::builder()
            .max_retries(10)
            .max_retry_after(Duration::from_secs(60))
            .max_elapsed(Duration::from_secs(100))
            .fallback("opus", "sonnet"),
    );
    let started = tokio::time::Instant::now();
    let response = paused_client(&server, builder)
        .post(url(&server, ANTHROPIC, "/v1/messages"))
        .body(r#"{"model":"opus"}"#)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 529);
    let taken = response.model_fallback().expect("sonnet failed too");
    assert_eq!(taken.primary_error.as_ref().map(|e| e.attempts), Some(4), "opus: four attempts");
    assert_eq!(response.retry_stats().unwrap().attempts, 8, "sonnet: four of its own");
    assert_eq!((bodies_for(&server, "opus").await.len(), bodies_for(&server, "sonnet").await.len()), (4, 4));
    // Each model within its own 100 s: the chain took more than one `max_elapsed`, at most two.
    let took = started.elapsed();
    assert!(took > Duration::from_secs(180) && took <= Duration::from_secs(200), "took {took:?}");
}
