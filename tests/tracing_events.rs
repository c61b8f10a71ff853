//! Every retry is a `tracing` event carrying provider, status, kind, attempt,
//! `http.request.resend_count`, wait and the request id the provider sent. A binary of its own: tracing caches per-callsite interest, so the
//! subscriber must be installed before any event fires.

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
