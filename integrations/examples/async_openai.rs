//! async-openai on reqwest-llm-retry: chat (unary and streaming) and a
//! transcription upload, offline against the crate's mock kit.
//!
//! Run: `cargo run -p reqwest-llm-retry-integrations --example async_openai`
//!
//! The adapter is `reqwest_llm_retry_integrations::MiddlewareService`, about
//! twenty lines in `integrations/src/lib.rs`: copy it. In production, drop
//! the mock: build the reqwest client as usual and keep the default API base.

use std::error::Error;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::audio::{AudioInput, CreateTranscriptionRequestArgs};
use async_openai::types::chat::{ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs};
use futures::StreamExt;
use reqwest_llm_retry::{LlmApiError, LlmRetryMiddleware, Provider, mock};
use reqwest_llm_retry_integrations::{MiddlewareService, sse};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The mock plays the OpenAI API under its real host name.
    let (server, http) = mock::start(Provider::OpenAi).await;
    let chat_script = mock::Sequence::new()
        .then(mock::openai::rate_limited(Duration::from_millis(50)))
        .then(mock::openai::ok("Paris."))
        .then(mock::openai::overloaded().with_header("retry-after-ms", "50"))
        .then(sse::openai_chat("Paris, on the Seine."))
        .then(mock::openai::insufficient_quota());
    let transcription = serde_json::json!({"text": "Hello.", "usage": {"type": "duration", "seconds": 1}});
    let upload_script = mock::Sequence::new()
        .then(mock::openai::overloaded().with_header("retry-after-ms", "50"))
        .then(ResponseTemplate::new(200).set_body_json(transcription));
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(chat_script.clone())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/transcriptions"))
        .respond_with(upload_script.clone())
        .mount(&server)
        .await;

    // The middleware as async-openai's HTTP service; it replaces the
    // built-in retry layer, so add no other. `error_for_status(true)` hands
    // async-openai an `Err` holding the LlmApiError (see `llm_error` below).
    let middleware = LlmRetryMiddleware::builder().error_for_status(true).build();
    let stack = reqwest_middleware::ClientBuilder::new(http.build()?).with(middleware).build();
    let config = OpenAIConfig::new()
        .with_api_key("sk-example")
        .with_api_base(format!("{}/v1", mock::base_url(Provider::OpenAi, &server)));
    let client = Client::with_config(config).with_http_service(MiddlewareService(stack));

    let question = || {
        let message = ChatCompletionRequestUserMessageArgs::default().content("Capital of France?").build()?;
        CreateChatCompletionRequestArgs::default().model("gpt-4o").messages([message.into()]).build()
    };
    let reply = client.chat().create(question()?).await?;
    println!("chat, unary, after a 429:      {}", reply.choices[0].message.content.as_deref().unwrap_or(""));
    let mut request = question()?;
    request.stream = Some(true);
    let mut stream = client.chat().create_stream(request).await?;
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        text.extend(chunk?.choices.into_iter().filter_map(|choice| choice.delta.content));
    }
    println!("chat, streaming, after a 503:  {text}");

    // A multipart upload from memory declares its length: resent after the 503.
    let audio = AudioInput::from_vec_u8("speech.mp3".into(), vec![0x49, 0x44, 0x33, 0x04, 0x00]);
    let request = CreateTranscriptionRequestArgs::default().file(audio).model("whisper-1").build()?;
    let heard = client.audio().transcription().create(request).await?;
    println!("transcription, after a 503:    {}", heard.text);
    println!(
        "requests: chat {}, uploads {} (each failure retried once, by the middleware alone)",
        chat_script.hits(),
        upload_script.hits()
    );

    // A failure retrying cannot fix: one request, and the typed error.
    let err = client.chat().create(question()?).await.expect_err("the quota is gone");
    let api = llm_error(&err).expect("the middleware's error");
    println!("no quota: {api}");
    println!(
        "  kind {:?}, code {:?}, request id {:?}, retryable {}",
        api.kind, api.code, api.request_id, api.retryable
    );
    println!("  fix: {}", api.fix());
    assert_eq!(chat_script.hits(), 5);
    Ok(())
}

/// The `LlmApiError` of a failed async-openai call: `MiddlewareService`
/// boxes the middleware's error into `OpenAIError::Boxed`.
fn llm_error(err: &OpenAIError) -> Option<&LlmApiError> {
    match err {
        OpenAIError::Boxed(inner) => LlmApiError::find_in(inner.as_ref()),
        _ => None,
    }
}
