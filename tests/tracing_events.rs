//! Every retry is a `tracing` event carrying provider, status, kind, attempt,
//! `http.request.resend_count` and wait. A binary of its own: tracing caches
//! per-callsite interest, so the subscriber must be installed before any event fires.

use std::time::Duration;

use reqwest_llm_retry::LlmRetryMiddleware;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[path = "shared/captured_logs.rs"]
mod captured_logs;
use captured_logs::logs;

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
    let retries: Vec<&str> = text.lines().filter(|l| l.contains("retrying LLM API request")).collect();
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
