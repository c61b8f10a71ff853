//! `error_for_status(true)`: a final 4xx/5xx as `Err` holding the
//! `LlmApiError`, found again with `LlmApiError::find_in`.

use std::time::Duration;

use reqwest_llm_retry::{ErrorKind, LlmApiError, LlmResponseExt, mock};
use wiremock::MockServer;
use wiremock::matchers::any;

use crate::support::*;

#[tokio::test]
async fn a_final_error_becomes_err_with_every_field_filled() {
    let server = MockServer::start().await;
    let wait = Duration::from_millis(5);
    always(&server, mock::openai::rate_limited(wait).template()).await;
    let client = client(&server, fast().max_retries(1).error_for_status(true).build());
    let error = client.post(url(&server, OPENAI, "/v1/chat/completions")).send().await.unwrap_err();

    let api = LlmApiError::find_in(&error).expect("the LlmApiError");
    mock::openai::rate_limited(wait).assert_matches(api);
    assert_eq!(api.kind, ErrorKind::RateLimited);
    assert_eq!(api.attempts, 2, "retried, then returned");
    assert!(api.request_id.is_some() && api.retry_after == Some(wait));
    assert_eq!(error.to_string(), api.to_string(), "Display is the error's own");
    assert_eq!(hits(&server).await, 2);
}

#[tokio::test]
async fn a_quota_error_is_err_at_once_and_not_retryable() {
    let server = MockServer::start().await;
    always(&server, mock::openai::insufficient_quota().template()).await;
    let client = client(&server, fast().error_for_status(true).build());
    let error = client.post(url(&server, OPENAI, "/v1/chat/completions")).send().await.unwrap_err();

    let api = LlmApiError::find_in(&error).unwrap();
    assert_eq!(
        (api.kind, api.code.as_deref(), api.retryable, api.attempts),
        (ErrorKind::QuotaExceeded, Some("insufficient_quota"), false, 1)
    );
    assert_eq!(hits(&server).await, 1);
}

#[tokio::test]
async fn off_by_default_and_successes_are_untouched() {
    let server = MockServer::start().await;
    first(&server, 1, mock::anthropic::overloaded().with_header("retry-after-ms", "1").template()).await;
    wiremock::Mock::given(any()).respond_with(ok()).mount(&server).await;
    let response = client(&server, fast().error_for_status(true).build())
        .post(url(&server, ANTHROPIC, "/v1/messages"))
        .send()
        .await
        .expect("a success is Ok");
    assert_eq!(response.retry_stats().unwrap().attempts, 2);

    let server = MockServer::start().await;
    always(&server, mock::openai::insufficient_quota().template()).await;
    let response =
        client(&server, fast().build()).post(url(&server, OPENAI, "/v1/chat/completions")).send().await.unwrap();
    assert_eq!(response.status(), 429, "by default the failed response is Ok");
    assert_eq!(response.llm_error().unwrap().kind, ErrorKind::QuotaExceeded);
}

#[tokio::test]
async fn transport_errors_stay_as_they_were() {
    // A port nothing listens on: connection refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::builder().no_proxy().build().unwrap())
        .with(fast().max_retries(0).error_for_status(true).build())
        .build();
    let error = client.get(format!("http://127.0.0.1:{port}/v1/models")).send().await.unwrap_err();
    assert!(error.is_connect(), "{error}");
    assert!(matches!(error, reqwest_middleware::Error::Reqwest(_)));
    assert!(LlmApiError::find_in(&error).is_none());
}
