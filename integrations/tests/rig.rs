//! rig 0.44 on the middleware (`rig_reqwest::ReqwestMiddlewareClient`),
//! offline against the mock kit: what is retried, what is not, the typed
//! error a rig user gets, and that nothing retries twice.

use std::time::Duration;

use futures::StreamExt;
use reqwest_llm_retry::{ErrorKind, LlmApiError, LlmRetryMiddleware, LlmRetryMiddlewareBuilder, Provider, mock};
use reqwest_llm_retry_integrations::sse;
use rig_core::ProviderError;
use rig_core::completion::CompletionRequest;
use rig_core::providers::anthropic::{Anthropic, AnthropicConfig};
use rig_core::providers::openai::{OpenAI, OpenAIConfig};
use rig_core::streaming::{Item, StreamEvent};
use rig_core::transcription::TranscriptionRequestBuilder;
use rig_reqwest::ReqwestMiddlewareClient;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Respond};

/// No test may hang.
const DEADLINE: Duration = Duration::from_secs(20);

fn fast() -> LlmRetryMiddlewareBuilder {
    LlmRetryMiddleware::builder().base_delay(Duration::from_millis(5)).max_delay(Duration::from_millis(20))
}

/// rig's transport: the kit's client (the provider's real host resolved to
/// the mock) under the middleware.
fn transport(provider: Provider, server: &MockServer, middleware: LlmRetryMiddleware) -> ReqwestMiddlewareClient {
    let http = mock::client_builder(provider, server).build().unwrap();
    ReqwestMiddlewareClient::from(reqwest_middleware::ClientBuilder::new(http).with(middleware).build())
}

fn anthropic(server: &MockServer, middleware: LlmRetryMiddleware) -> Anthropic {
    AnthropicConfig::new("sk-ant-test").with_base_url(mock::base_url(Provider::Anthropic, server)).connect(transport(
        Provider::Anthropic,
        server,
        middleware,
    ))
}

fn openai(server: &MockServer, middleware: LlmRetryMiddleware) -> OpenAI {
    OpenAIConfig::new("sk-test")
        .with_base_url(format!("{}/v1", mock::base_url(Provider::OpenAi, server)))
        .connect(transport(Provider::OpenAi, server, middleware))
}

async fn mount(server: &MockServer, route: &str, script: impl Respond + 'static) {
    Mock::given(method("POST")).and(path(route)).respond_with(script).mount(server).await;
}

/// The text of a stream, read to its end.
async fn streamed_text(mut stream: rig_core::streaming::CompletionStream) -> Result<String, ProviderError> {
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        if let Item::Event(StreamEvent::Text { text: fragment, .. }) = item? {
            text.push_str(&fragment);
        }
    }
    Ok(text)
}

/// What a rig user reaches under `error_for_status(true)`: rig wraps the
/// middleware's error as a transport error, without a `source()` link.
fn llm_error(err: &ProviderError) -> Option<&LlmApiError> {
    match err {
        ProviderError::Http(http) => LlmApiError::find_in(&**http),
        _ => None,
    }
}

#[tokio::test]
async fn anthropic_unary_is_retried_after_a_529() {
    let server = MockServer::start().await;
    let script = mock::Sequence::new()
        .then(mock::anthropic::overloaded().with_header("retry-after-ms", "5"))
        .then(mock::anthropic::ok("Paris."));
    mount(&server, "/v1/messages", script.clone()).await;
    let model = anthropic(&server, fast().build()).completion("claude-sonnet-4-5");

    let call = model.call(CompletionRequest::new("Capital of France?"));
    let response = tokio::time::timeout(DEADLINE, call).await.unwrap().unwrap();
    assert_eq!(response.text(), "Paris.");
    assert_eq!(script.hits(), 2, "one 529, then the retry");
}

#[tokio::test]
async fn anthropic_streaming_is_retried_after_a_529() {
    let server = MockServer::start().await;
    let script = mock::Sequence::new()
        .then(mock::anthropic::overloaded().with_header("retry-after-ms", "5"))
        .then(sse::anthropic("Paris, of course."));
    mount(&server, "/v1/messages", script.clone()).await;
    let model = anthropic(&server, fast().build()).completion("claude-sonnet-4-5");

    let stream = model.stream(CompletionRequest::new("Capital of France?")).unwrap();
    let text = tokio::time::timeout(DEADLINE, streamed_text(stream)).await.unwrap().unwrap();
    assert_eq!(text, "Paris, of course.");
    assert_eq!(script.hits(), 2);
}

#[tokio::test]
async fn openai_unary_and_streaming_are_retried_after_a_429() {
    let server = MockServer::start().await;
    let wait = Duration::from_millis(5);
    let script = mock::Sequence::new()
        .then(mock::openai::rate_limited(wait))
        .then(mock::openai::ok("Paris."))
        .then(mock::openai::rate_limited(wait))
        .then(sse::openai_chat("Paris, of course."));
    mount(&server, "/v1/chat/completions", script.clone()).await;
    let model = openai(&server, fast().build()).chat("gpt-4o");

    let response = tokio::time::timeout(DEADLINE, model.call("Capital of France?")).await.unwrap().unwrap();
    assert_eq!(response.text(), "Paris.");
    assert_eq!(script.hits(), 2);
    let stream = model.stream("Capital of France?").unwrap();
    let text = tokio::time::timeout(DEADLINE, streamed_text(stream)).await.unwrap().unwrap();
    assert_eq!(text, "Paris, of course.");
    assert_eq!(script.hits(), 4);
}

#[tokio::test]
async fn a_quota_error_is_not_retried_and_reaches_the_user_typed() {
    let server = MockServer::start().await;
    let script = mock::Sequence::new().then(mock::openai::insufficient_quota());
    mount(&server, "/v1/chat/completions", script.clone()).await;
    let model = openai(&server, fast().error_for_status(true).build()).chat("gpt-4o");

    let err = tokio::time::timeout(DEADLINE, model.call("Hi")).await.unwrap().unwrap_err();
    assert_eq!(script.hits(), 1, "quota: one request");
    let api = llm_error(&err).expect("the LlmApiError, through rig");
    mock::openai::insufficient_quota().assert_matches(api);
    assert_eq!(
        (api.kind, api.code.as_deref(), api.attempts),
        (ErrorKind::QuotaExceeded, Some("insufficient_quota"), 1)
    );
    assert!(api.request_id.is_some());
    // The pitfall the README warns of: rig's own verdict says "retry".
    assert!(err.is_retryable(), "rig says retryable; LlmApiError::retryable says {}", api.retryable);
}

#[tokio::test]
async fn the_typed_error_of_a_stream_after_its_retries() {
    let server = MockServer::start().await;
    let script = mock::Sequence::new().then(mock::anthropic::overloaded().with_header("retry-after-ms", "1"));
    mount(&server, "/v1/messages", script.clone()).await;
    let model =
        anthropic(&server, fast().max_retries(2).error_for_status(true).build()).completion("claude-sonnet-4-5");

    let stream = model.stream(CompletionRequest::new("Hi")).unwrap();
    let err = tokio::time::timeout(DEADLINE, streamed_text(stream)).await.unwrap().unwrap_err();
    let api = llm_error(&err).expect("the LlmApiError, in-band");
    assert_eq!((api.kind, api.attempts), (ErrorKind::Overloaded, 3));
    assert_eq!(script.hits(), 3, "no second retry layer: 1 + max_retries requests");
}

#[tokio::test]
async fn without_the_switch_rig_keeps_what_rebuilds_the_error() {
    let server = MockServer::start().await;
    mount(&server, "/v1/messages", mock::anthropic::credit_balance_too_low()).await;
    let model = anthropic(&server, fast().build()).completion("claude-sonnet-4-5");

    let err = tokio::time::timeout(DEADLINE, model.call("Hi")).await.unwrap().unwrap_err();
    assert!(llm_error(&err).is_none());
    let status = err.provider_response_status().unwrap();
    let headers = err.provider_response_headers().unwrap();
    let body = err.provider_response_body().unwrap();
    let api = LlmApiError::parse(Provider::Anthropic, status, headers, body.as_bytes());
    mock::anthropic::credit_balance_too_low().assert_matches(&api);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_transcription_upload_is_resent_after_a_503_with_identical_bytes() {
    let server = MockServer::start().await;
    let transcription = serde_json::json!({"text": "hello", "usage": {"type": "duration", "seconds": 1}});
    let script = mock::Sequence::new()
        .then(mock::openai::overloaded().with_header("retry-after-ms", "5"))
        .then(wiremock::ResponseTemplate::new(200).set_body_json(transcription));
    mount(&server, "/v1/audio/transcriptions", script.clone()).await;
    let model = openai(&server, fast().build()).transcription("whisper-1");
    let audio: Vec<u8> = (0..32_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let request = TranscriptionRequestBuilder::new(audio.clone()).filename("speech.mp3".to_owned()).build();

    let response = tokio::time::timeout(DEADLINE, model.call(request)).await.unwrap().unwrap();
    assert_eq!(response.text, "hello");
    assert_eq!(script.hits(), 2, "rig's multipart form declares its length: resent");
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].body, requests[1].body, "the same bytes each time");
    assert!(requests[1].body.windows(audio.len()).any(|w| w == audio));
}
