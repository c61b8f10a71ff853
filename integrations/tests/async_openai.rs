//! async-openai 0.43 on the middleware (`Client::with_http_service` and
//! [`MiddlewareService`]), offline against the mock kit: what is retried,
//! what is not, the typed error an async-openai user gets, uploads, and that
//! nothing retries twice.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::audio::{AudioInput, CreateTranscriptionRequestArgs};
use async_openai::types::chat::{ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs};
use futures::StreamExt;
use reqwest_llm_retry::{ErrorKind, LlmApiError, LlmRetryMiddleware, LlmRetryMiddlewareBuilder, Provider, mock};
use reqwest_llm_retry_integrations::{MiddlewareService, sse};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// No test may hang.
const DEADLINE: Duration = Duration::from_secs(20);

fn fast() -> LlmRetryMiddlewareBuilder {
    LlmRetryMiddleware::builder().base_delay(Duration::from_millis(5)).max_delay(Duration::from_millis(20))
}

/// async-openai with the middleware as its HTTP service, on the mock.
fn client(server: &MockServer, middleware: LlmRetryMiddleware) -> Client<OpenAIConfig> {
    let http = mock::client_builder(Provider::OpenAi, server).build().unwrap();
    let stack = reqwest_middleware::ClientBuilder::new(http).with(middleware).build();
    let config = OpenAIConfig::new()
        .with_api_key("sk-test")
        .with_api_base(format!("{}/v1", mock::base_url(Provider::OpenAi, server)));
    Client::with_config(config).with_http_service(MiddlewareService(stack))
}

async fn mount(server: &MockServer, route: &str, script: mock::Sequence) {
    Mock::given(method("POST")).and(path(route)).respond_with(script).mount(server).await;
}

fn chat(stream: bool) -> async_openai::types::chat::CreateChatCompletionRequest {
    let message = ChatCompletionRequestUserMessageArgs::default().content("Capital of France?").build().unwrap();
    let mut request = CreateChatCompletionRequestArgs::default();
    request.model("gpt-4o").messages([message.into()]);
    if stream {
        request.stream(true);
    }
    request.build().unwrap()
}

/// A 200 transcription as whisper-1 sends it.
fn transcription(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(serde_json::json!({"text": text, "usage": {"type": "duration", "seconds": 1}}))
}

/// What an async-openai user reaches under `error_for_status(true)`.
fn llm_error(err: &OpenAIError) -> Option<&LlmApiError> {
    match err {
        OpenAIError::Boxed(inner) => LlmApiError::find_in(inner.as_ref()),
        _ => None,
    }
}

#[tokio::test]
async fn chat_is_retried_after_a_429_unary_and_streaming() {
    let server = MockServer::start().await;
    let wait = Duration::from_millis(5);
    let script = mock::Sequence::new()
        .then(mock::openai::rate_limited(wait))
        .then(mock::openai::ok("Paris."))
        .then(mock::openai::overloaded().with_header("retry-after-ms", "5"))
        .then(sse::openai_chat("Paris, of course."));
    mount(&server, "/v1/chat/completions", script.clone()).await;
    let client = client(&server, fast().build());

    let response = tokio::time::timeout(DEADLINE, client.chat().create(chat(false))).await.unwrap().unwrap();
    assert_eq!(response.choices[0].message.content.as_deref(), Some("Paris."));
    assert_eq!(script.hits(), 2, "one 429, then the retry");

    let mut stream = tokio::time::timeout(DEADLINE, client.chat().create_stream(chat(true))).await.unwrap().unwrap();
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(DEADLINE, stream.next()).await.unwrap() {
        text.extend(chunk.unwrap().choices.iter().filter_map(|c| c.delta.content.clone()));
    }
    assert_eq!(text, "Paris, of course.");
    assert_eq!(script.hits(), 4, "one 503, then the retry");
}

#[tokio::test]
async fn a_quota_error_is_not_retried_and_reaches_the_user_typed() {
    let server = MockServer::start().await;
    let script = mock::Sequence::new().then(mock::openai::insufficient_quota());
    mount(&server, "/v1/chat/completions", script.clone()).await;
    let client = client(&server, fast().error_for_status(true).build());

    let err = tokio::time::timeout(DEADLINE, client.chat().create(chat(false))).await.unwrap().unwrap_err();
    assert_eq!(script.hits(), 1, "quota: one request");
    let api = llm_error(&err).expect("the LlmApiError, through async-openai");
    mock::openai::insufficient_quota().assert_matches(api);
    assert_eq!((api.kind, api.retryable, api.attempts), (ErrorKind::QuotaExceeded, false, 1));
    assert!(api.request_id.is_some(), "the request id async-openai alone loses");
}

#[tokio::test]
async fn no_double_retrying_the_middleware_replaces_the_builtin_retry() {
    let server = MockServer::start().await;
    let script = mock::Sequence::new().then(mock::openai::overloaded().with_header("retry-after-ms", "1"));
    mount(&server, "/v1/chat/completions", script.clone()).await;
    let client = client(&server, fast().max_retries(2).error_for_status(true).build());

    let err = tokio::time::timeout(DEADLINE, client.chat().create(chat(false))).await.unwrap().unwrap_err();
    let api = llm_error(&err).unwrap();
    assert_eq!((api.kind, api.attempts), (ErrorKind::Overloaded, 3));
    assert_eq!(script.hits(), 3, "1 + max_retries requests, not more");
}

#[tokio::test]
async fn a_transcription_upload_from_memory_is_resent_after_a_503() {
    let server = MockServer::start().await;
    let script = mock::Sequence::new()
        .then(mock::openai::overloaded().with_header("retry-after-ms", "5"))
        .then(transcription("hello"));
    mount(&server, "/v1/audio/transcriptions", script.clone()).await;
    let client = client(&server, fast().build());
    let audio: Vec<u8> = (0..32_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let request = CreateTranscriptionRequestArgs::default()
        .file(AudioInput::from_vec_u8("speech.mp3".into(), audio.clone()))
        .model("whisper-1")
        .build()
        .unwrap();

    let response = tokio::time::timeout(DEADLINE, client.audio().transcription().create(request)).await.unwrap();
    assert_eq!(response.unwrap().text, "hello");
    assert_eq!(script.hits(), 2, "the 503, then the resent upload");
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].body, requests[1].body, "the same bytes each time");
    assert!(requests[1].body.windows(audio.len()).any(|w| w == audio));
}

#[tokio::test]
async fn a_transcription_upload_from_a_file_has_no_length_and_is_sent_once() {
    let server = MockServer::start().await;
    let script = mock::Sequence::new()
        .then(mock::openai::overloaded().with_header("retry-after-ms", "5"))
        .then(transcription("hello"));
    mount(&server, "/v1/audio/transcriptions", script.clone()).await;
    let client = client(&server, fast().error_for_status(true).build());
    let file = std::env::temp_dir().join(format!("reqwest-llm-retry-speech-{}.mp3", std::process::id()));
    std::fs::write(&file, b"ID3 not really audio").unwrap();
    let request = CreateTranscriptionRequestArgs::default()
        .file(AudioInput::from(file.as_path()))
        .model("whisper-1")
        .build()
        .unwrap();

    let result = tokio::time::timeout(DEADLINE, client.audio().transcription().create(request)).await.unwrap();
    std::fs::remove_file(&file).unwrap();
    let err = result.unwrap_err();
    assert_eq!(llm_error(&err).map(|api| (api.kind, api.attempts)), Some((ErrorKind::Overloaded, 1)));
    assert_eq!(script.hits(), 1, "async-openai streams a file without a length: it cannot be resent");
    let requests = server.received_requests().await.unwrap();
    assert!(requests[0].headers.get("content-length").is_none());
}
