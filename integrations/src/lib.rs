//! `reqwest-llm-retry` inside the client libraries people use: rig and
//! async-openai. The examples (`examples/`) and tests (`tests/`) of this
//! package run offline against the crate's mock kit; this library holds what
//! they share:
//!
//! - [`MiddlewareService`], the adapter that puts a
//!   `reqwest_middleware::ClientWithMiddleware` under async-openai (copy it:
//!   it is the whole adapter);
//! - [`sse`], successful streamed replies in each provider's format, for the
//!   mock server.
//!
//! How to wire each library, and the pitfalls, are in the README's
//! "Integrations" section.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use reqwest_middleware::ClientWithMiddleware;

/// async-openai's HTTP service on a `reqwest_middleware` client, for
/// `async_openai::Client::with_http_service`.
///
/// It replaces async-openai's own retry layer: do not add
/// `OpenAIRetryLayer` (or any tower retry) around it, or attempts multiply.
/// A transport error stays `OpenAIError::Reqwest`; any other error of the
/// middleware (the `LlmApiError` of `error_for_status(true)`) is boxed whole
/// into `OpenAIError::Boxed`, where `LlmApiError::find_in` finds it:
///
/// ```
/// # use async_openai::error::OpenAIError;
/// # use reqwest_llm_retry::LlmApiError;
/// fn llm_error(err: &OpenAIError) -> Option<&LlmApiError> {
///     match err {
///         OpenAIError::Boxed(inner) => LlmApiError::find_in(inner.as_ref()),
///         _ => None,
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct MiddlewareService(pub ClientWithMiddleware);

impl tower::Service<HttpRequestFactory> for MiddlewareService {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OpenAIError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let client = self.0.clone();
        Box::pin(async move {
            // Built once: the middleware resends it (uploads of known size included).
            let request = factory.build().await?;
            client.execute(request).await.map_err(|error| match error {
                reqwest_middleware::Error::Reqwest(error) => OpenAIError::Reqwest(error),
                error => OpenAIError::Boxed(Box::new(error)),
            })
        })
    }
}

/// Successful streamed replies (`text/event-stream`) as each provider sends
/// them, saying `text` in two deltas.
pub mod sse {
    use wiremock::ResponseTemplate;

    fn stream(body: String) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_raw(body.into_bytes(), "text/event-stream")
    }

    /// `text` cut in two, so a stream has more than one delta.
    fn halves(text: &str) -> (&str, &str) {
        let mut middle = text.len() / 2;
        while !text.is_char_boundary(middle) {
            middle += 1;
        }
        text.split_at(middle)
    }

    /// An Anthropic Messages stream.
    pub fn anthropic(text: &str) -> ResponseTemplate {
        let (first, second) = halves(text);
        let events = [
            (
                "message_start",
                serde_json::json!({"type": "message_start", "message": {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": first}}),
            ),
            (
                "content_block_delta",
                serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": second}}),
            ),
            ("content_block_stop", serde_json::json!({"type": "content_block_stop", "index": 0})),
            (
                "message_delta",
                serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 6}}),
            ),
            ("message_stop", serde_json::json!({"type": "message_stop"})),
        ];
        stream(events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect())
    }

    /// An OpenAI Chat Completions stream, ending in `[DONE]`.
    pub fn openai_chat(text: &str) -> ResponseTemplate {
        let (first, second) = halves(text);
        let chunk = |delta: serde_json::Value, finish: Option<&str>| serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_735_000_000, "model": "gpt-4o-2024-08-06", "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        let chunks = [
            chunk(serde_json::json!({"role": "assistant", "content": ""}), None),
            chunk(serde_json::json!({"content": first}), None),
            chunk(serde_json::json!({"content": second}), None),
            chunk(serde_json::json!({}), Some("stop")),
        ];
        let mut body: String = chunks.iter().map(|chunk| format!("data: {chunk}\n\n")).collect();
        body.push_str("data: [DONE]\n\n");
        stream(body)
    }
}
