//! Every field of `LlmApiError`, `RetryStats` on every response, and `LlmResponseExt`.

use std::time::Duration;

use reqwest_llm_retry::{ErrorKind, LlmApiError, LlmResponseExt, Provider, mock};
use serde_json::json;
use wiremock::MockServer;

use crate::support::*;

#[tokio::test]
async fn anthropic_fields() {
    let server = MockServer::start().await;
    let failure = mock::anthropic::rate_limited(Duration::from_secs(90));
    always(&server, failure.template()).await;
    let resp = client(&server, fast().build()).post(url(&server, ANTHROPIC, "/v1/messages")).send().await.unwrap();
    let err = resp.llm_error().unwrap().clone();
    assert_eq!(err.provider, Provider::Anthropic);
    assert_eq!(err.status, 429);
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.error_type.as_deref(), Some("rate_limit_error"));
    assert_eq!(err.code, None);
    assert_eq!(err.message, failure.message());
    assert_eq!(err.request_id.as_deref(), Some(mock::anthropic::REQUEST_ID));
    assert_eq!(err.retry_after, Some(Duration::from_secs(90)));
    assert!(err.retryable);
    assert_eq!(err.attempts, 1);
    assert!(err.fix().contains("usage tier"), "{}", err.fix());
    let shown = err.to_string();
    assert!(shown.contains("Anthropic") && shown.contains("429") && shown.contains("rate_limit_error"), "{shown}");
}

#[tokio::test]
async fn header_request_id_wins_over_the_body() {
    let server = MockServer::start().await;
    always(&server, anthropic_error(500, "api_error", "Internal").insert_header("request-id", "req_header")).await;
    let resp = client(&server, fast().max_retries(0).build()).post(url(&server, ANTHROPIC, "/")).send().await.unwrap();
    assert_eq!(resp.llm_error().unwrap().request_id.as_deref(), Some("req_header"));
}

#[tokio::test]
async fn openai_fields_and_body_request_id_fallback() {
    let server = MockServer::start().await;
    always(
        &server,
        openai_error(
            429,
            "insufficient_quota",
            "insufficient_quota",
            "You exceeded your current quota, please check your plan and billing details.",
        )
        .insert_header("x-request-id", "req_deaa3616cbd15d33b4db96b3ba74d2b4"),
    )
    .await;
    let resp = client(&server, fast().build()).post(url(&server, OPENAI, "/v1/chat/completions")).send().await.unwrap();
    let err = resp.llm_error().unwrap();
    assert_eq!((err.kind, err.retryable), (ErrorKind::QuotaExceeded, false));
    assert_eq!(err.error_type.as_deref(), Some("insufficient_quota"));
    assert_eq!(err.code.as_deref(), Some("insufficient_quota"));
    assert_eq!(err.request_id.as_deref(), Some("req_deaa3616cbd15d33b4db96b3ba74d2b4"));
    assert!(err.fix().contains("billing"), "{}", err.fix());

    server.reset().await;
    always(&server, anthropic_error(500, "api_error", "Internal server error")).await;
    let resp = client(&server, fast().max_retries(0).build()).post(url(&server, ANTHROPIC, "/")).send().await.unwrap();
    assert_eq!(resp.llm_error().unwrap().request_id.as_deref(), Some("req_body_1"));
}

#[tokio::test]
async fn gemini_fields() {
    let server = MockServer::start().await;
    let failure = mock::gemini::quota_per_day();
    always(&server, failure.template()).await;
    let resp = client(&server, fast().build())
        .post(url(&server, GEMINI, "/v1beta/models/gemini-2.5-flash:generateContent"))
        .send()
        .await
        .unwrap();
    let err = resp.llm_error().unwrap();
    assert_eq!(
        (err.provider, err.kind, err.retryable, err.attempts),
        (Provider::Gemini, ErrorKind::QuotaExceeded, false, 1)
    );
    assert_eq!(err.error_type.as_deref(), Some("RESOURCE_EXHAUSTED"));
    assert_eq!(err.code.as_deref(), Some("GenerateRequestsPerDayPerProjectPerModel-FreeTier"));
    assert_eq!(err.retry_after, failure.retry_after());
    assert!(err.retry_after.unwrap() > Duration::from_secs(3600));
    failure.assert_matches(err);
}

#[tokio::test]
async fn fix_hints_carry_the_reference_table() {
    let server = MockServer::start().await;
    let client = client(&server, fast().max_retries(0).build());
    let cases = [
        (ANTHROPIC, anthropic_error(413, "request_too_large", "too large"), "32 MB"),
        (ANTHROPIC, anthropic_error(401, "authentication_error", "bad"), "x-api-key"),
        (OPENAI, openai_error(503, "service_unavailable", "", "overloaded"), "another model"),
        (GEMINI, gemini_error(404, "NOT_FOUND", "no model", json!([])), "models.list"),
        (GEMINI, gemini_error(400, "FAILED_PRECONDITION", "free tier", json!([])), "billing"),
        // The compatible providers' own rows, beyond the generic status table.
        (mock::host(Provider::Groq), openai_error(498, "", "", "capacity exceeded"), "Flex tier"),
        (mock::host(Provider::DeepSeek), openai_error(402, "", "", "Insufficient Balance"), "top up"),
        (mock::host(Provider::Fireworks), openai_error(402, "", "", "Payment required"), "not paid"),
        (mock::host(Provider::Fireworks), json(412, "{}"), "LoRA"),
    ];
    for (host, template, hint) in cases {
        server.reset().await;
        always(&server, template).await;
        let resp = client.post(url(&server, host, "/")).send().await.unwrap();
        let fix = resp.llm_error().unwrap().fix();
        assert!(fix.contains(hint), "{host}: {fix}");
    }
}

#[tokio::test]
async fn stats_on_every_response_and_error_for_llm_status() {
    let server = MockServer::start().await;
    first(&server, 1, ok()).await;
    always(&server, openai_error(404, "invalid_request_error", "model_not_found", "The model `gpt-9` does not exist"))
        .await;
    let client = client(&server, fast().build());

    let resp = client.post(url(&server, OPENAI, "/v1/chat/completions")).send().await.unwrap();
    let stats = *resp.retry_stats().unwrap();
    assert_eq!((stats.attempts, stats.waited), (1, Duration::ZERO));
    assert!(resp.llm_error().is_none());
    let resp = resp.error_for_llm_status().expect("200 is Ok");
    assert_eq!(resp.status(), 200);

    let resp = client.post(url(&server, OPENAI, "/v1/chat/completions")).send().await.unwrap();
    let attached = resp.llm_error().cloned().unwrap();
    let err: LlmApiError = resp.error_for_llm_status().unwrap_err();
    assert_eq!(err, attached);
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn error_for_llm_status_without_the_middleware() {
    let server = MockServer::start().await;
    always(&server, json(529, "{}")).await;
    let resp = reqwest_client(&server).post(url(&server, ANTHROPIC, "/v1/messages")).send().await.unwrap();
    assert!(resp.retry_stats().is_none() && resp.llm_error().is_none());
    let err = resp.error_for_llm_status().unwrap_err();
    assert_eq!(
        (err.provider, err.kind, err.retryable, err.attempts),
        (Provider::Anthropic, ErrorKind::Overloaded, true, 1)
    );
}

#[test]
fn parse_serves_errors_met_outside_the_middleware() {
    // An Anthropic SSE `event: error` payload, as it arrives inside a 200 stream.
    let data = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let err = LlmApiError::parse(
        Provider::Anthropic,
        http::StatusCode::from_u16(529).unwrap(),
        &http::HeaderMap::new(),
        data,
    );
    assert_eq!((err.kind, err.retryable, err.message.as_str()), (ErrorKind::Overloaded, true, "Overloaded"));
}
