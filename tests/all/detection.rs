//! The provider comes from the request extension, then `host()` mappings, then the URL host.

use reqwest_llm_retry::{ErrorKind, LlmResponseExt, Provider, mock};
use wiremock::MockServer;

use crate::support::*;

#[tokio::test]
async fn every_built_in_host_is_detected_on_the_wire() {
    let server = MockServer::start().await;
    always(&server, json(418, "{}")).await;
    let client = client(&server, fast().build());
    // Each provider's usual host (Azure and Vertex under a resource or region name).
    let table = Provider::ALL.iter().map(|p| (mock::host(*p), *p));
    for (host, provider) in table {
        let resp = client.post(url(&server, host, "/v1/x")).send().await.unwrap();
        let err = resp.llm_error().expect("error attached");
        assert_eq!(err.provider, provider, "{host}");
    }
}

#[tokio::test]
async fn custom_mappings_beat_the_table_and_the_extension_beats_both() {
    let server = MockServer::start().await;
    // 529 is retried for Anthropic but not by the generic policy: the attempt count shows the provider.
    always(&server, anthropic_error(529, "overloaded_error", "Overloaded").insert_header("retry-after-ms", "1")).await;
    let middleware = fast()
        .max_retries(1)
        .host("llm-gateway.internal", Provider::Anthropic)
        .host("*.claude-proxy.example", Provider::Anthropic)
        .host(OPENAI, Provider::Anthropic)
        // Copied from a base URL setting: the host is what counts.
        .host("https://gw.internal:8443/v1/", Provider::Anthropic)
        .build();
    let client = client(&server, middleware);

    for host in ["llm-gateway.internal", "eu.claude-proxy.example", OPENAI, "gw.internal"] {
        let resp = client.post(url(&server, host, "/v1/messages")).send().await.unwrap();
        let err = resp.llm_error().unwrap();
        assert_eq!((err.provider, err.kind, err.attempts), (Provider::Anthropic, ErrorKind::Overloaded, 2), "{host}");
    }

    let resp = client
        .post(url(&server, "llm-gateway.internal", "/v1/messages"))
        .with_extension(Provider::Unknown)
        .send()
        .await
        .unwrap();
    let err = resp.llm_error().unwrap();
    assert_eq!((err.provider, err.attempts, err.retryable), (Provider::Unknown, 1, false));
}

#[tokio::test]
async fn a_per_request_provider_reaches_a_mock_on_a_bare_address() {
    let server = MockServer::start().await;
    always(&server, openai_error(429, "insufficient_quota", "insufficient_quota", "You exceeded your current quota"))
        .await;
    let client = client(&server, fast().build());
    let resp = client
        .post(format!("{}/v1/chat/completions", server.uri()))
        .with_extension(Provider::OpenAi)
        .send()
        .await
        .unwrap();
    let err = resp.llm_error().unwrap();
    assert_eq!((err.provider, err.kind), (Provider::OpenAi, ErrorKind::QuotaExceeded));
}
