//! Every retry is a `tracing` event carrying provider, status, kind, attempt,
//! `http.request.resend_count`, wait and the request id the provider sent;
//! every fallback one with provider and both models. A binary of its own:
//! tracing caches per-callsite interest, so the subscriber must be installed
//! before any event fires.

use std::time::Duration;

use reqwest_llm_retry::{LlmRetryMiddleware, mock};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

mod support;
use support::logs::logs;

#[tokio::test]
async fn each_retry_is_an_event_with_its_reason_and_wait() {
    let logs = logs();
    let server = MockServer::start().await;
    let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(529)
                .set_body_raw(overloaded, "application/json")
                .insert_header("retry-after-ms", "7"),
        )
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let http = reqwest::Client::builder().no_proxy().resolve("api.anthropic.com", *server.address()).build().unwrap();
    let client = reqwest_middleware::ClientBuilder::new(http)
        .with(LlmRetryMiddleware::builder().base_delay(Duration::from_millis(5)).build())
        .build();
    let url = format!("http://api.anthropic.com:{}/v1/messages", server.address().port());
    assert_eq!(client.post(url).send().await.unwrap().status(), 200);

    let text = logs.text();
    // Anthropic's only: the other test of this binary logs Gemini and OpenAI retries.
    let retries: Vec<&str> =
        text.lines().filter(|l| l.contains("retrying LLM API request") && l.contains("anthropic")).collect();
    assert_eq!(retries.len(), 2, "{text}");
    for (i, line) in retries.iter().enumerate() {
        for field in [
            "provider=\"anthropic\"",
            "status=529",
            "kind=\"overloaded\"",
            &format!("attempt={}", i + 1),
            // OpenTelemetry's name for the number of this resend.
            &format!("http.request.resend_count={}", i + 1),
            "wait_ms=7",
        ] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
        assert!(line.contains("WARN"), "{line}");
    }
}

/// The retry events of one provider, after one request that fails with `failure` once, then succeeds.
async fn retry_lines(logs: &support::logs::Captured, failure: &mock::MockFailure) -> Vec<String> {
    let provider = failure.provider();
    let (server, http) = mock::start(provider).await;
    Mock::given(any())
        .respond_with(mock::Sequence::new().then(failure).then(ResponseTemplate::new(200)))
        .mount(&server)
        .await;
    let client = reqwest_middleware::ClientBuilder::new(http.build().unwrap())
        .with(LlmRetryMiddleware::builder().base_delay(Duration::from_millis(1)).build())
        .build();
    let url = format!("{}/v1/chat/completions", mock::base_url(provider, &server));
    assert_eq!(client.post(url).send().await.unwrap().status(), 200);
    let provider_field = format!("provider=\"{}\"", provider.name());
    let text = logs.text();
    text.lines()
        .filter(|l| l.contains("retrying LLM API request") && l.contains(&provider_field))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_request_id_is_logged_when_the_provider_sends_one_and_left_out_otherwise() {
    let logs = logs();
    // Gemini sends no request id: the event has no `request_id` field, not an empty one.
    let gemini = retry_lines(logs, &mock::gemini::unavailable()).await;
    assert_eq!(gemini.len(), 1, "{gemini:?}");
    assert!(!gemini[0].contains("request_id"), "{}", gemini[0]);

    let failure = mock::openai::server_error();
    let openai = retry_lines(logs, &failure).await;
    assert_eq!(openai.len(), 1, "{openai:?}");
    let id = failure.request_id().expect("the OpenAI fixture sends x-request-id");
    assert!(openai[0].contains(&format!("request_id=\"{id}\"")), "{}", openai[0]);
}

#[tokio::test]
async fn a_fallback_is_a_warning_naming_provider_and_both_models() {
    let logs = logs();
    let server = MockServer::start().await;
    let overloaded = ResponseTemplate::new(529).set_body_raw(
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        "application/json",
    );
    Mock::given(mock::model("claude-opus-4-1")).respond_with(overloaded).mount(&server).await;
    Mock::given(mock::model("claude-sonnet-4-5")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let middleware =
        LlmRetryMiddleware::builder().max_retries(0).fallback("claude-opus-4-1", "claude-sonnet-4-5").build();
    let client = reqwest_middleware::ClientBuilder::new(support::reqwest_client(&server)).with(middleware).build();
    let url = support::url(&server, support::ANTHROPIC, "/v1/messages");
    assert_eq!(client.post(url).body(r#"{"model":"claude-opus-4-1"}"#).send().await.unwrap().status(), 200);

    let text = logs.text();
    let events: Vec<&str> = text.lines().filter(|l| l.contains("falling back to another model")).collect();
    assert_eq!(events.len(), 1, "{text}");
    for field in [
        " WARN ",
        "provider=\"anthropic\"",
        "from=\"claude-opus-4-1\"",
        "to=\"claude-sonnet-4-5\"",
        "kind=\"overloaded\"",
    ] {
        assert!(events[0].contains(field), "{field} missing in {}", events[0]);
    }
}

#[tokio::test]
async fn a_signed_request_whose_model_has_a_fallback_says_why_it_stays_on_its_model() {
    let logs = logs();
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let middleware = LlmRetryMiddleware::builder().fallback("amazon.nova-pro-v1:0", "amazon.nova-lite-v1:0").build();
    let client = reqwest_middleware::ClientBuilder::new(support::reqwest_client(&server)).with(middleware).build();
    let url =
        support::url(&server, "bedrock-runtime.us-east-1.amazonaws.com", "/model/amazon.nova-pro-v1%3A0/converse");
    let signature = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/bedrock/aws4_request, \
                     SignedHeaders=host;x-amz-date, Signature=0123456789abcdef";
    let response = client.post(url).header("authorization", signature).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 200);

    let text = logs.text();
    let events: Vec<&str> = text.lines().filter(|l| l.contains("not falling back")).collect();
    assert_eq!(events.len(), 1, "{text}");
    for field in [" DEBUG ", "provider=\"bedrock\"", "from=\"amazon.nova-pro-v1:0\"", "reason=\"signed\""] {
        assert!(events[0].contains(field), "{field} missing in {}", events[0]);
    }
    assert!(!text.contains("AKIDEXAMPLE") && !text.contains("0123456789abcdef"), "no credential is logged");
}
