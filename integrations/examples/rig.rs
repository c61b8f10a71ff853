//! rig on reqwest-llm-retry: Anthropic and OpenAI, unary and streaming,
//! offline against the crate's mock kit.
//!
//! Run: `cargo run -p reqwest-llm-retry-integrations --example rig`
//!
//! In production, drop the mock: build the reqwest client as usual and keep
//! rig's default base URLs. Everything else is as shown.

use std::error::Error;
use std::time::Duration;

use futures::StreamExt;
use reqwest_llm_retry::{LlmApiError, LlmRetryMiddleware, Provider, mock};
use reqwest_llm_retry_integrations::sse;
use rig_core::ProviderError;
use rig_core::completion::CompletionRequest;
use rig_core::providers::anthropic::AnthropicConfig;
use rig_core::providers::openai::OpenAIConfig;
use rig_core::streaming::{CompletionStream, Item, StreamEvent};
use rig_reqwest::ReqwestMiddlewareClient;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The mock plays both APIs under their real host names.
    let server = MockServer::start().await;
    let anthropic_script = mock::Sequence::new()
        .then(mock::anthropic::overloaded().with_header("retry-after-ms", "50"))
        .then(mock::anthropic::ok("Paris."))
        .then(mock::anthropic::overloaded().with_header("retry-after-ms", "50"))
        .then(sse::anthropic("Paris, on the Seine."));
    let openai_script = mock::Sequence::new()
        .then(mock::openai::rate_limited(Duration::from_millis(50)))
        .then(mock::openai::ok("Paris."))
        .then(mock::openai::rate_limited(Duration::from_millis(50)))
        .then(sse::openai_chat("Paris, on the Seine."))
        .then(mock::openai::insufficient_quota());
    Mock::given(method("POST")).and(path("/v1/messages")).respond_with(anthropic_script.clone()).mount(&server).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_script.clone())
        .mount(&server)
        .await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .resolve(mock::host(Provider::Anthropic), *server.address())
        .resolve(mock::host(Provider::OpenAi), *server.address())
        .build()?;

    // One middleware under rig. `error_for_status(true)` hands rig an `Err`
    // holding the LlmApiError, which rig keeps (see `llm_error` below).
    let middleware = LlmRetryMiddleware::builder().error_for_status(true).build();
    let transport =
        ReqwestMiddlewareClient::from(reqwest_middleware::ClientBuilder::new(http).with(middleware).build());
    let anthropic = AnthropicConfig::new("sk-ant-example")
        .with_base_url(mock::base_url(Provider::Anthropic, &server))
        .connect(transport.clone())
        .completion("claude-sonnet-4-5");
    let openai = OpenAIConfig::new("sk-example")
        .with_base_url(format!("{}/v1", mock::base_url(Provider::OpenAi, &server)))
        .connect(transport)
        .chat("gpt-4o");

    let reply = anthropic.call(CompletionRequest::new("Capital of France?")).await?;
    println!("Anthropic, unary, after a 529:      {}", reply.text());
    let reply = read(anthropic.stream(CompletionRequest::new("Capital of France?"))?).await?;
    println!("Anthropic, streaming, after a 529:  {reply}");
    let reply = openai.call("Capital of France?").await?;
    println!("OpenAI, unary, after a 429:         {}", reply.text());
    let reply = read(openai.stream("Capital of France?")?).await?;
    println!("OpenAI, streaming, after a 429:     {reply}");
    println!(
        "requests: Anthropic {}, OpenAI {} (each failure retried once, by the middleware alone)",
        anthropic_script.hits(),
        openai_script.hits()
    );

    // A failure retrying cannot fix: one request, and the typed error.
    let err = openai.call("Capital of France?").await.expect_err("the quota is gone");
    let api = llm_error(&err).expect("the middleware's error");
    println!("OpenAI, no quota: {api}");
    println!("  kind {:?}, code {:?}, request id {:?}", api.kind, api.code, api.request_id);
    println!("  retry? ours: {}, rig's is_retryable(): {} (do not use it)", api.retryable, err.is_retryable());
    println!("  fix: {}", api.fix());
    assert_eq!(openai_script.hits(), 5);
    Ok(())
}

/// The `LlmApiError` of a failed rig call: rig keeps the middleware's error
/// as its transport error, without a `source()` link to it.
fn llm_error(err: &ProviderError) -> Option<&LlmApiError> {
    match err {
        ProviderError::Http(http) => LlmApiError::find_in(&**http),
        _ => None,
    }
}

/// The text of a streamed reply, printed as it arrives.
async fn read(mut stream: CompletionStream) -> Result<String, ProviderError> {
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        if let Item::Event(StreamEvent::Text { text: fragment, .. }) = item? {
            text.push_str(&fragment);
        }
    }
    Ok(text)
}
