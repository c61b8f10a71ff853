//! The test kit (`mock` feature) against the parser and the middleware: every
//! template is classified as the kind it claims, so kit and classifier cannot
//! drift apart; sequences, hit counts and the host-resolving client work.

use std::time::Duration;

use reqwest_llm_retry::mock::{self, Sequence};
use reqwest_llm_retry::{ErrorKind, LlmResponseExt, LlmRetryMiddleware, Provider};
use reqwest_middleware::ClientWithMiddleware;
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer};

mod support;
use support::{client_from, fast};

/// A client for `provider` on `server` (the kit's own), retrying with millisecond backoff.
fn client(provider: Provider, server: &MockServer, max_retries: u32) -> ClientWithMiddleware {
    client_from(mock::client_builder(provider, server), fast().max_retries(max_retries).build())
}

async fn post(client: &ClientWithMiddleware, provider: Provider, server: &MockServer) -> reqwest::Response {
    let url = format!("{}/v1/test", mock::base_url(provider, server));
    client.post(url).body("{}").send().await.expect("the mock answers")
}

#[test]
fn every_template_is_parsed_as_it_claims() {
    let mismatches: Vec<String> =
        mock::catalog().iter().filter_map(|failure| failure.check(&failure.parse()).err()).collect();
    assert!(mismatches.is_empty(), "templates the parser disagrees with:\n{}", mismatches.join("\n"));
}

#[test]
fn the_catalog_covers_every_provider_with_its_own_failures() {
    let catalog = mock::catalog();
    for &provider in Provider::ALL {
        if matches!(provider, Provider::Perplexity | Provider::Unknown) {
            continue; // nothing of their own beyond OpenAI's shape
        }
        assert!(catalog.iter().any(|f| f.provider() == provider), "no template for {provider}");
    }
    for kind in [
        ErrorKind::InvalidRequest,
        ErrorKind::Authentication,
        ErrorKind::Billing,
        ErrorKind::PermissionDenied,
        ErrorKind::NotFound,
        ErrorKind::RequestTooLarge,
        ErrorKind::RateLimited,
        ErrorKind::QuotaExceeded,
        ErrorKind::ContextLengthExceeded,
        ErrorKind::ContentFiltered,
        ErrorKind::ServerError,
        ErrorKind::Overloaded,
        ErrorKind::Timeout,
    ] {
        assert!(catalog.iter().any(|f| f.kind() == kind), "no template of kind {kind}");
    }
}

#[test]
fn templates_carry_what_the_provider_sends() {
    let failure = mock::anthropic::rate_limited(Duration::from_secs(3));
    let headers = failure.headers();
    assert_eq!(headers["retry-after"], "3");
    assert!(headers.get("retry-after-ms").is_none(), "whole seconds need no retry-after-ms");
    assert_eq!(headers["x-should-retry"], "true");
    assert_eq!(headers["request-id"], mock::anthropic::REQUEST_ID);
    assert_eq!(headers["anthropic-ratelimit-requests-remaining"], "0");
    assert!(headers["anthropic-ratelimit-requests-reset"].to_str().unwrap().ends_with('Z'));
    let body: serde_json::Value = serde_json::from_slice(failure.body()).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["request_id"], mock::anthropic::REQUEST_ID);

    let failure = mock::openai::rate_limited(Duration::from_millis(644));
    assert_eq!(failure.headers()["retry-after-ms"], "644");
    assert_eq!(failure.headers()["retry-after"], "1");
    assert_eq!(failure.headers()["x-ratelimit-reset-tokens"], "644ms");
    assert!(failure.message().contains("Please try again in 644ms."));

    let failure = mock::gemini::rate_limited(Duration::from_millis(47_500));
    let body: serde_json::Value = serde_json::from_slice(failure.body()).unwrap();
    let details = body["error"]["details"].as_array().unwrap();
    assert!(details.iter().any(|d| d["retryDelay"] == "47.5s"));
    assert!(details.iter().any(|d| d["@type"] == "type.googleapis.com/google.rpc.QuotaFailure"));

    let failure = mock::gemini::in_array(mock::gemini::unavailable());
    assert!(failure.body().starts_with(b"[{\"error\""));
    failure.assert_matches(&failure.parse());

    let failure = mock::anthropic::overloaded().with_header("x-should-retry", "false");
    assert_eq!(failure.headers().get_all("x-should-retry").iter().count(), 1);
    assert!(!failure.parse().retryable, "the server's x-should-retry wins; claims stay as they were");
    assert!(failure.check(&failure.parse()).unwrap_err().contains("retryable"));
}

#[test]
fn azure_waits_of_an_hour_or_more_are_the_daily_quota() {
    let short = mock::azure::rate_limited(Duration::from_secs(2));
    assert_eq!((short.kind(), short.retryable()), (ErrorKind::RateLimited, true));
    short.assert_matches(&short.parse());
    let long = mock::azure::rate_limited(Duration::from_secs(7200));
    assert_eq!((long.kind(), long.retryable()), (ErrorKind::QuotaExceeded, false));
    long.assert_matches(&long.parse());
}

/// Every template, served by wiremock under its provider's real host, sent
/// once through the middleware: the attached error is the one claimed, and
/// the caller gets the body byte for byte.
#[tokio::test]
async fn every_template_round_trips_through_the_middleware() {
    let server = MockServer::start().await;
    for failure in mock::catalog() {
        // A wait given only as a reset timestamp shrinks as the loop runs;
        // `check` measures it when it reads it.
        server.reset().await;
        Mock::given(any()).respond_with(failure.clone()).mount(&server).await;
        let client = client(failure.provider(), &server, 0);
        let response = post(&client, failure.provider(), &server).await;
        assert_eq!(response.status(), failure.status(), "{}", failure.name());
        let error = response.llm_error().cloned().unwrap_or_else(|| panic!("{}: no LlmApiError", failure.name()));
        failure.assert_matches(&error);
        assert_eq!(error.attempts, 1);
        assert_eq!(response.bytes().await.unwrap(), failure.body(), "{}", failure.name());
    }
}

#[tokio::test]
async fn an_overload_then_success_is_retried_once() {
    let (server, _) = mock::start(Provider::Anthropic).await;
    let script = Sequence::new().then(mock::anthropic::overloaded()).then(mock::anthropic::ok("hello"));
    Mock::given(method("POST")).and(path("/v1/messages")).respond_with(script.clone()).mount(&server).await;
    let client = client(Provider::Anthropic, &server, 3);
    let url = format!("{}/v1/messages", mock::base_url(Provider::Anthropic, &server));
    let response = client.post(url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.retry_stats().map(|s| s.attempts), Some(2));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["content"][0]["text"], "hello");
    assert_eq!(script.hits(), 2, "retried once, then succeeded");
}

#[tokio::test]
async fn the_server_wait_of_each_provider_is_honoured() {
    let wait = Duration::from_millis(30);
    for (provider, failure) in [
        (Provider::OpenAi, mock::openai::rate_limited(wait)),
        (Provider::Anthropic, mock::anthropic::rate_limited(wait)),
        (Provider::Gemini, mock::gemini::rate_limited(wait)),
        (Provider::AzureOpenAi, mock::azure::rate_limited(wait)),
        (Provider::Groq, mock::compat::groq_rate_limited(wait)),
        (Provider::Cerebras, mock::compat::cerebras_rate_limited(wait)),
    ] {
        let server = MockServer::start().await;
        let script = Sequence::new().then_times(2, failure.clone()).then(mock::openai::ok("ok"));
        Mock::given(any()).respond_with(script.clone()).mount(&server).await;
        let response = post(&client(provider, &server, 4), provider, &server).await;
        assert_eq!(response.status(), 200, "{}", failure.name());
        let stats = *response.retry_stats().unwrap();
        assert_eq!(stats.attempts, 3, "{}", failure.name());
        assert!(stats.waited >= 2 * wait, "{}: waited {:?}", failure.name(), stats.waited);
        assert!(stats.waited < Duration::from_secs(1), "{}: waited {:?}", failure.name(), stats.waited);
        assert_eq!(script.hits(), 3);
    }
}

#[tokio::test]
async fn quota_and_billing_failures_are_not_retried() {
    for failure in [
        mock::openai::insufficient_quota(),
        mock::anthropic::credit_balance_too_low(),
        mock::anthropic::spend_limit_reached(),
        mock::gemini::quota_per_day(),
        mock::azure::daily_quota(),
        mock::compat::deepseek_insufficient_balance(),
    ] {
        let server = MockServer::start().await;
        let script = Sequence::new().then(failure.clone()).then(mock::openai::ok("never reached"));
        Mock::given(any()).respond_with(script.clone()).mount(&server).await;
        let response = post(&client(failure.provider(), &server, 4), failure.provider(), &server).await;
        assert_eq!(script.hits(), 1, "{} must not be retried", failure.name());
        failure.assert_matches(response.llm_error().unwrap());
        let stats = response.retry_stats().unwrap();
        assert_eq!((stats.attempts, stats.waited), (1, Duration::ZERO), "{}", failure.name());
    }
}

#[tokio::test]
async fn exhausted_retries_return_the_last_failure_as_claimed() {
    let (server, _) = mock::start(Provider::Gemini).await;
    let script = Sequence::new().then(mock::gemini::unavailable());
    Mock::given(any()).respond_with(script.clone()).mount(&server).await;
    let response = post(&client(Provider::Gemini, &server, 2), Provider::Gemini, &server).await;
    assert_eq!(script.hits(), 3, "the last response repeats once the script is exhausted");
    let error = response.llm_error().unwrap();
    mock::gemini::unavailable().assert_matches(error);
    assert_eq!(error.attempts, 3);
}

#[tokio::test]
async fn sequences_play_in_order_then_repeat_or_fall_back() {
    let server = MockServer::start().await;
    let script = Sequence::new()
        .then(mock::openai::server_error())
        .then_times(2, mock::openai::overloaded())
        .then_always(mock::openai::ok("later"));
    Mock::given(any()).respond_with(script.clone()).mount(&server).await;
    let plain = mock::client_builder(Provider::OpenAi, &server).build().unwrap();
    let url = format!("{}/v1/chat/completions", mock::base_url(Provider::OpenAi, &server));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(plain.post(&url).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [500, 503, 503, 200, 200]);
    assert_eq!(script.hits(), 5);
    assert_eq!(script.hit_counter().load(std::sync::atomic::Ordering::SeqCst), 5);

    server.reset().await;
    let empty = Sequence::new();
    Mock::given(any()).respond_with(empty.clone()).mount(&server).await;
    assert_eq!(plain.post(&url).send().await.unwrap().status(), 500);
    assert_eq!(empty.hits(), 1);
}

#[tokio::test]
async fn the_client_reaches_the_mock_under_the_real_host() {
    let (server, builder) = mock::start(Provider::AzureOpenAi).await;
    Mock::given(any()).respond_with(mock::azure::content_filter()).mount(&server).await;
    let base = mock::base_url(Provider::AzureOpenAi, &server);
    assert_eq!(base, format!("http://my-resource.openai.azure.com:{}", server.address().port()));
    let client = client_from(builder, LlmRetryMiddleware::default());
    let response = client.post(format!("{base}/openai/deployments/gpt-4o/chat/completions")).send().await.unwrap();
    let error = response.error_for_llm_status().unwrap_err();
    assert_eq!(error.provider, Provider::AzureOpenAi, "detected from the real host name");
    mock::azure::content_filter().assert_matches(&error);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].headers["host"], format!("my-resource.openai.azure.com:{}", server.address().port()));
}

#[tokio::test]
async fn requests_are_matched_by_the_model_they_name_where_their_provider_puts_it() {
    let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-v1:0";
    let encoded_arn =
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-opus-4-v1%3A0";
    // Provider, path, body, the model the request names.
    let cases: [(Provider, String, &str, &str); 6] = [
        (
            Provider::Anthropic,
            "/v1/messages".into(),
            r#"{"max_tokens":64,"model":"claude-opus-4-1"}"#,
            "claude-opus-4-1",
        ),
        // A `"model"` quoted in a message, or nested, is not the model.
        (
            Provider::OpenAi,
            "/v1/chat/completions".into(),
            r#"{"messages":[{"role":"user","content":"{\"model\":\"gpt-4o-mini\"}"}],"metadata":{"model":"gpt-4o-mini"},"model":"gpt-4o"}"#,
            "gpt-4o",
        ),
        (
            Provider::Gemini,
            "/v1beta/models/gemini-2.5-pro:generateContent".into(),
            r#"{"contents":[]}"#,
            "gemini-2.5-pro",
        ),
        (Provider::Bedrock, format!("/model/{encoded_arn}/converse"), r#"{"messages":[]}"#, arn),
        // Azure routes by the deployment; the body's model is not read.
        (
            Provider::AzureOpenAi,
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21".into(),
            r#"{"model":"gpt-4o-mini-prod"}"#,
            "gpt-4o-prod",
        ),
        (
            Provider::AzureOpenAi,
            "/openai/v1/chat/completions".into(),
            r#"{"model":"gpt-4o-mini-prod"}"#,
            "gpt-4o-mini-prod",
        ),
    ];
    // Names close to the model's, mounted first: wiremock answers with the first match.
    let decoys =
        ["gpt-4o-mini", "gpt-4o-mini-prod", "gpt-4o", "gemini-2.5", "claude-opus-4", "us.anthropic.claude-opus-4-v1:0"];
    for (provider, path, body, model) in cases {
        let (server, client) = mock::start(provider).await;
        for decoy in decoys.iter().filter(|decoy| **decoy != model) {
            Mock::given(mock::model(*decoy)).respond_with(wiremock::ResponseTemplate::new(409)).mount(&server).await;
        }
        let named = Sequence::new().then(wiremock::ResponseTemplate::new(200));
        Mock::given(mock::model(model)).respond_with(named.clone()).mount(&server).await;
        let url = format!("{}{path}", mock::base_url(provider, &server));
        let response = client.build().unwrap().post(url).body(body).send().await.unwrap();
        assert_eq!(response.status(), 200, "{provider} {path}: matched as {model}");
        assert_eq!(named.hits(), 1);
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_or_names_no_model_matches_no_model() {
    let (server, client) = mock::start(Provider::OpenAi).await;
    Mock::given(mock::model("gpt-4o")).respond_with(wiremock::ResponseTemplate::new(200)).mount(&server).await;
    let url = format!("{}/v1/chat/completions", mock::base_url(Provider::OpenAi, &server));
    let client = client.build().unwrap();
    for body in
        [r#"{"model":"gpt-4o""#, r#"{"model":"gpt-4o","model":"gpt-4o"}"#, r#"{"input":{"model":"gpt-4o"}}"#, ""]
    {
        let response = client.post(&url).body(body).send().await.unwrap();
        assert_eq!(response.status(), 404, "{body:?} must match nothing");
    }
    assert_eq!(format!("{:?}", mock::model("gpt-4o")), r#"model("gpt-4o")"#);
    assert_eq!(mock::model("gpt-4o").name(), "gpt-4o");
}

#[tokio::test]
async fn model_a_overloaded_and_model_b_answering_are_scripted_per_model() {
    let (server, _) = mock::start(Provider::Anthropic).await;
    let opus = Sequence::new().then(mock::anthropic::overloaded());
    let sonnet = Sequence::new().then(mock::anthropic::ok("Paris."));
    for (model, script) in [("claude-opus-4-1", &opus), ("claude-sonnet-4-5", &sonnet)] {
        let mock = Mock::given(method("POST")).and(path("/v1/messages")).and(mock::model(model));
        mock.respond_with(script.clone()).mount(&server).await;
    }
    let client = client(Provider::Anthropic, &server, 2);
    let url = format!("{}/v1/messages", mock::base_url(Provider::Anthropic, &server));
    let ask = |model: &str| client.post(&url).body(format!(r#"{{"model":"{model}","max_tokens":64}}"#)).send();
    let overloaded = ask("claude-opus-4-1").await.unwrap();
    mock::anthropic::overloaded().assert_matches(overloaded.llm_error().unwrap());
    assert_eq!(opus.hits(), 3, "the first model is overloaded on every attempt");
    let answered = ask("claude-sonnet-4-5").await.unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(sonnet.hits(), 1);
}
