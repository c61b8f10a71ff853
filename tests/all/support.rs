//! Shared helpers: a mock server, clients that resolve real provider hosts to
//! it, and small delays so that no test sleeps for real seconds. Every client
//! has a deadline, so a broken wait bound fails a test instead of hanging it.

use std::time::Duration;

use reqwest_llm_retry::{LlmRetryMiddleware, LlmRetryMiddlewareBuilder, Provider, mock};
use reqwest_middleware::ClientWithMiddleware;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[path = "../shared/counting_dns.rs"]
mod counting_dns;
#[path = "../shared/deadline.rs"]
mod deadline;
pub use counting_dns::CountingDns;
pub use deadline::DEADLINE;

pub const ANTHROPIC: &str = "api.anthropic.com";
pub const OPENAI: &str = "api.openai.com";
pub const GEMINI: &str = "generativelanguage.googleapis.com";

/// Hosts beyond each provider's own (`mock::host`) that tests use; all resolve to the mock server.
const EXTRA_HOSTS: &[&str] = &["llm-gateway.internal", "eu.claude-proxy.example", "unknown.example", "gw.internal"];

/// A builder with millisecond delays instead of the production seconds.
pub fn fast() -> LlmRetryMiddlewareBuilder {
    LlmRetryMiddleware::builder().base_delay(Duration::from_millis(5)).max_delay(Duration::from_millis(40))
}

/// A reqwest client whose provider hosts all resolve to `server`.
pub fn reqwest_client(server: &MockServer) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().no_proxy();
    let provider_hosts = Provider::ALL.iter().map(|p| mock::host(*p));
    for host in provider_hosts.chain(EXTRA_HOSTS.iter().copied()) {
        builder = builder.resolve(host, *server.address());
    }
    builder.build().expect("client")
}

pub fn client(server: &MockServer, middleware: LlmRetryMiddleware) -> ClientWithMiddleware {
    with_deadline(reqwest_client(server), middleware)
}

/// `http` with `middleware`, each request (its retries and waits included) bounded by [`DEADLINE`].
pub fn with_deadline(http: reqwest::Client, middleware: LlmRetryMiddleware) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(http).with(deadline::Deadline).with(middleware).build()
}

/// `http://{host}:{port}{path}` on the mock server.
pub fn url(server: &MockServer, host: &str, path: &str) -> String {
    format!("http://{host}:{}{path}", server.address().port())
}

/// `http://{host}:{port}{path}` for a client that resolves `host` to `addr`.
pub fn url_at(addr: std::net::SocketAddr, host: &str, path: &str) -> String {
    format!("http://{host}:{}{path}", addr.port())
}

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
