//! wiremock answers: each provider's error format, and mounting shortcuts.

use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Answers every request with `template`.
pub async fn always(server: &MockServer, template: ResponseTemplate) {
    Mock::given(any()).respond_with(template).mount(server).await;
}

/// Answers the next `times` requests with `template`, before any mock mounted later.
pub async fn first(server: &MockServer, times: u64, template: ResponseTemplate) {
    Mock::given(any()).respond_with(template).up_to_n_times(times).with_priority(1).mount(server).await;
}

pub async fn hits(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

pub fn json(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

pub fn ok() -> ResponseTemplate {
    json(200, r#"{"id":"msg_1","type":"message","content":[{"type":"text","text":"hi"}]}"#)
}

pub fn anthropic_error(status: u16, error_type: &str, message: &str) -> ResponseTemplate {
    let body = serde_json::json!({"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_body_1"});
    json(status, &body.to_string())
}

pub fn openai_error(status: u16, error_type: &str, code: &str, message: &str) -> ResponseTemplate {
    let body = serde_json::json!({"error": {"message": message, "type": error_type, "param": null, "code": code}});
    json(status, &body.to_string())
}

pub fn gemini_error(status: u16, canonical: &str, message: &str, details: serde_json::Value) -> ResponseTemplate {
    let body =
        serde_json::json!({"error": {"code": status, "message": message, "status": canonical, "details": details}});
    json(status, &body.to_string())
}
