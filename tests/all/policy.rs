//! Retry decisions per provider and per parsed error, counted on the wire.

use reqwest_llm_retry::mock;
use reqwest_llm_retry::{ErrorKind, LlmResponseExt, Provider, RetryRule};
use serde_json::json;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

/// Sends one request to `host` against a server that always answers
/// `template`, with up to 2 retries, and returns (error, requests seen).
async fn outcome(host: &str, template: ResponseTemplate) -> (reqwest_llm_retry::LlmApiError, usize) {
    let server = MockServer::start().await;
    always(&server, template.insert_header("retry-after-ms", "1")).await;
    let client = client(&server, fast().max_retries(2).build());
    let resp = client.post(url(&server, host, "/v1/test")).body("{}").send().await.unwrap();
    let err = resp.llm_error().cloned().expect("an LlmApiError on every failed response");
    assert_eq!(resp.retry_stats().unwrap().attempts, err.attempts);
    (err, hits(&server).await)
}

#[tokio::test]
async fn the_seed_table() {
    use ErrorKind::*;
    let per_day = json!([{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]);
    let per_minute = json!([{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]}]);
    let table: Vec<(&str, ResponseTemplate, ErrorKind, bool)> = vec![
        (ANTHROPIC, anthropic_error(400, "invalid_request_error", "max_tokens: Field required"), InvalidRequest, false),
        (ANTHROPIC, anthropic_error(401, "authentication_error", "invalid x-api-key"), Authentication, false),
        (ANTHROPIC, anthropic_error(402, "billing_error", "Billing issue"), Billing, false),
        (ANTHROPIC, anthropic_error(403, "permission_error", "Permission denied"), PermissionDenied, false),
        (ANTHROPIC, anthropic_error(404, "not_found_error", "model: claude-x"), NotFound, false),
        (
            ANTHROPIC,
            anthropic_error(413, "request_too_large", "Request exceeds the maximum allowed number of bytes."),
            RequestTooLarge,
            false,
        ),
        (
            ANTHROPIC,
            anthropic_error(429, "rate_limit_error", "Number of requests has exceeded your rate limit"),
            RateLimited,
            true,
        ),
        (ANTHROPIC, anthropic_error(500, "api_error", "Internal server error"), ServerError, true),
        (ANTHROPIC, anthropic_error(529, "overloaded_error", "Overloaded"), Overloaded, true),
        (
            ANTHROPIC,
            anthropic_error(
                400,
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
            ),
            Billing,
            false,
        ),
        (
            ANTHROPIC,
            anthropic_error(400, "invalid_request_error", "prompt is too long: 208656 tokens > 200000 maximum"),
            ContextLengthExceeded,
            false,
        ),
        (
            OPENAI,
            openai_error(400, "invalid_request_error", "", "Invalid value for 'temperature'"),
            InvalidRequest,
            false,
        ),
        (
            OPENAI,
            openai_error(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-abc***xyz"),
            Authentication,
            false,
        ),
        (
            OPENAI,
            openai_error(
                403,
                "permission_error",
                "unsupported_country_region_territory",
                "Country, region, or territory not supported",
            ),
            PermissionDenied,
            false,
        ),
        (
            OPENAI,
            openai_error(404, "invalid_request_error", "model_not_found", "The model `gpt-9` does not exist"),
            NotFound,
            false,
        ),
        (
            OPENAI,
            openai_error(
                429,
                "requests",
                "rate_limit_exceeded",
                "Rate limit reached for gpt-4o on requests per min (RPM)",
            ),
            RateLimited,
            true,
        ),
        (
            OPENAI,
            openai_error(
                429,
                "insufficient_quota",
                "insufficient_quota",
                "You exceeded your current quota, please check your plan and billing details.",
            ),
            QuotaExceeded,
            false,
        ),
        (
            OPENAI,
            openai_error(
                400,
                "invalid_request_error",
                "context_length_exceeded",
                "This model's maximum context length is 8192 tokens.",
            ),
            ContextLengthExceeded,
            false,
        ),
        (
            OPENAI,
            openai_error(
                400,
                "invalid_request_error",
                "content_policy_violation",
                "Your request was rejected by our safety system",
            ),
            ContentFiltered,
            false,
        ),
        (
            OPENAI,
            openai_error(500, "server_error", "", "The server had an error while processing your request"),
            ServerError,
            true,
        ),
        (
            OPENAI,
            openai_error(503, "service_unavailable", "", "The engine is currently overloaded, please try again later"),
            Overloaded,
            true,
        ),
        (
            GEMINI,
            gemini_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", json!([])),
            InvalidRequest,
            false,
        ),
        (
            GEMINI,
            gemini_error(
                400,
                "FAILED_PRECONDITION",
                "Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio.",
                json!([]),
            ),
            Billing,
            false,
        ),
        (GEMINI, gemini_error(403, "PERMISSION_DENIED", "Permission denied", json!([])), PermissionDenied, false),
        (GEMINI, gemini_error(404, "NOT_FOUND", "models/gemini-9 is not found", json!([])), NotFound, false),
        (GEMINI, gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", per_minute), RateLimited, true),
        (GEMINI, gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", per_day), QuotaExceeded, false),
        (GEMINI, gemini_error(500, "INTERNAL", "An internal error has occurred.", json!([])), ServerError, true),
        (GEMINI, gemini_error(503, "UNAVAILABLE", "The model is overloaded.", json!([])), Overloaded, true),
    ];
    for (host, template, kind, retryable) in table {
        let (err, seen) = outcome(host, template).await;
        let context = format!("{host} {} {:?}", err.status, err.message);
        assert_eq!(err.kind, kind, "{context}");
        assert_eq!(err.retryable, retryable, "{context}");
        let attempts = if retryable { 3 } else { 1 };
        assert_eq!((err.attempts as usize, seen), (attempts, attempts), "{context}");
    }
}

#[tokio::test]
async fn statuses_the_official_sdks_retry() {
    for status in [408, 409, 502, 503, 504] {
        let (err, seen) = outcome(OPENAI, json(status, "")).await;
        assert_eq!((err.retryable, seen), (true, 3), "{status}");
    }
    for status in [409, 529, 501] {
        let (err, seen) = outcome("unknown.example", json(status, "")).await;
        assert_eq!((err.retryable, seen), (false, 1), "unknown host, {status}");
    }
}

#[tokio::test]
async fn x_should_retry_overrides_the_table() {
    let (err, seen) = outcome(OPENAI, json(500, "{}").insert_header("x-should-retry", "false")).await;
    assert_eq!((err.kind, err.retryable, seen), (ErrorKind::ServerError, false, 1));
    let (err, seen) =
        outcome(ANTHROPIC, anthropic_error(400, "invalid_request_error", "m").insert_header("x-should-retry", "true"))
            .await;
    assert_eq!((err.kind, err.retryable, seen), (ErrorKind::InvalidRequest, true, 3));
    // Only the exact lower-case values count, as in every official SDK.
    let (_, seen) = outcome(OPENAI, json(500, "{}").insert_header("x-should-retry", "FALSE")).await;
    assert_eq!(seen, 3);
}

#[tokio::test]
async fn retried_then_succeeds_with_stats() {
    let server = MockServer::start().await;
    let script = mock::Sequence::new()
        .then_times(2, mock::anthropic::overloaded().with_header("retry-after-ms", "5"))
        .then(mock::anthropic::ok("Paris."));
    Mock::given(any()).respond_with(script.clone()).mount(&server).await;
    let client = client(&server, fast().build());
    let resp = client.post(url(&server, ANTHROPIC, "/v1/messages")).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.llm_error().is_none());
    let stats = *resp.retry_stats().unwrap();
    assert_eq!(stats.attempts, 3);
    assert!(stats.waited >= std::time::Duration::from_millis(10), "{stats:?}");
    assert_eq!(script.hits(), 3);
    // Every attempt carried the same body.
    for request in server.received_requests().await.unwrap() {
        assert_eq!(request.body, b"{}");
    }
}

#[tokio::test]
async fn user_rules_override_the_tables() {
    let server = MockServer::start().await;
    always(&server, openai_error(503, "service_unavailable", "", "down for maintenance")).await;
    let middleware = fast()
        .rule(
            Provider::OpenAi,
            RetryRule::give_up(ErrorKind::ServerError)
                .status(reqwest::StatusCode::SERVICE_UNAVAILABLE)
                .message_contains("MAINTENANCE")
                .fix("Wait for the maintenance window to end"),
        )
        .build();
    let client = client(&server, middleware);
    let resp = client.post(url(&server, OPENAI, "/v1/chat/completions")).send().await.unwrap();
    let err = resp.llm_error().unwrap();
    assert_eq!((err.kind, err.retryable, err.attempts), (ErrorKind::ServerError, false, 1));
    assert_eq!(err.fix(), "Wait for the maintenance window to end");
}

#[tokio::test]
async fn a_fix_read_at_run_time_is_returned_and_kept_once_per_text() {
    let server = MockServer::start().await;
    always(&server, openai_error(503, "service_unavailable", "", "down for maintenance")).await;
    // As a rule read from a configuration file: an owned hint, dropped once the rule is built.
    async fn fix(server: &MockServer, hint: String) -> &'static str {
        let rule = RetryRule::give_up(ErrorKind::ServerError).message_contains("maintenance").fix(hint);
        let client = client(server, fast().rule(Provider::OpenAi, rule).build());
        let resp = client.post(url(server, OPENAI, "/v1/chat/completions")).send().await.unwrap();
        resp.llm_error().expect("the error attached").fix()
    }
    let from_config = |team: &str| format!("Page the {team} team");
    let first = fix(&server, from_config("gateway")).await;
    assert_eq!(first, "Page the gateway team");
    // The same text again is the same copy, however many rules carry it: rules built in a loop do not grow memory.
    let again = fix(&server, from_config("gateway")).await;
    assert!(std::ptr::eq(first, again), "kept once per distinct text");
    assert_eq!(fix(&server, from_config("storage")).await, "Page the storage team");
}

#[tokio::test]
async fn max_retries_zero_sends_once_and_still_parses() {
    let server = MockServer::start().await;
    always(&server, anthropic_error(529, "overloaded_error", "Overloaded")).await;
    let client = client(&server, fast().max_retries(0).build());
    let resp = client.post(url(&server, ANTHROPIC, "/v1/messages")).send().await.unwrap();
    let err = resp.llm_error().unwrap();
    assert_eq!((err.kind, err.retryable, err.attempts), (ErrorKind::Overloaded, true, 1));
    assert_eq!(hits(&server).await, 1);
}
