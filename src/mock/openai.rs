//! OpenAI API (`api.openai.com`) failures.
//!
//! Envelope `{"error":{"message","type","param","code"}}`, request id in
//! `x-request-id`. A rate-limit 429 carries `retry-after`, `retry-after-ms`
//! and the `x-ratelimit-*` headers, whose resets are Go durations (`6m0s`,
//! `644ms`). Azure and the OpenAI-compatible hosts answer successes in the
//! same shape, so [`ok`] serves them too.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use super::{MockFailure, go_duration, whole_ms};
use crate::ErrorKind::{self, *};
use crate::Provider;

/// The request id every template carries in `x-request-id`.
pub const REQUEST_ID: &str = "req_deaa3616cbd15d33b4db96b3ba74d2b4";

/// The body's fields besides the message: `type`, `param`, `code`.
struct Fields<'a> {
    error_type: Option<&'a str>,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

const fn fields<'a>(error_type: Option<&'a str>, param: Option<&'a str>, code: Option<&'a str>) -> Fields<'a> {
    Fields { error_type, param, code }
}

fn error(name: &str, status: u16, kind: ErrorKind, retryable: bool, message: &str, fields: Fields<'_>) -> MockFailure {
    let body = json!({"error": {
        "message": message,
        "type": fields.error_type,
        "param": fields.param,
        "code": fields.code,
    }});
    let mut failure = MockFailure::new(name, Provider::OpenAi, status, kind, retryable)
        .json("application/json", &body)
        .request_id_in("x-request-id", REQUEST_ID)
        .header("openai-processing-ms", 23)
        .header("openai-version", "2020-10-01")
        .claim_message(message);
    if let Some(error_type) = fields.error_type {
        failure = failure.claim_type(error_type);
    }
    if let Some(code) = fields.code {
        failure = failure.claim_code(code);
    }
    failure
}

/// 400 `invalid_request_error` with `message`, no code.
pub fn invalid_request(message: &str) -> MockFailure {
    error(
        "openai::invalid_request",
        400,
        InvalidRequest,
        false,
        message,
        fields(Some("invalid_request_error"), None, None),
    )
}

/// 400 `context_length_exceeded` (`param: messages`): "This model's maximum
/// context length is {maximum} tokens. However, your messages resulted in
/// {tokens} tokens…".
pub fn context_length_exceeded(maximum: u64, tokens: u64) -> MockFailure {
    let message = format!(
        "This model's maximum context length is {maximum} tokens. However, your messages resulted in {tokens} tokens. Please reduce the length of the messages."
    );
    let fields = fields(Some("invalid_request_error"), Some("messages"), Some("context_length_exceeded"));
    error("openai::context_length_exceeded", 400, ContextLengthExceeded, false, &message, fields)
}

/// 400 `content_policy_violation`: the safety system refused the prompt.
pub fn content_policy_violation() -> MockFailure {
    let message = "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.";
    let fields = fields(Some("invalid_request_error"), None, Some("content_policy_violation"));
    error("openai::content_policy_violation", 400, ContentFiltered, false, message, fields)
}

/// 401 `invalid_api_key` "Incorrect API key provided: …".
pub fn invalid_api_key() -> MockFailure {
    let message = "Incorrect API key provided: sk-proj-********************************************1234. You can find your API key at https://platform.openai.com/account/api-keys.";
    let fields = fields(Some("invalid_request_error"), None, Some("invalid_api_key"));
    error("openai::invalid_api_key", 401, Authentication, false, message, fields)
}

/// 403 `unsupported_country_region_territory`.
pub fn unsupported_country() -> MockFailure {
    let message = "Country, region, or territory not supported";
    let fields = fields(Some("request_forbidden"), None, Some("unsupported_country_region_territory"));
    error("openai::unsupported_country", 403, PermissionDenied, false, message, fields)
}

/// 404 `model_not_found` "The model `{model}` does not exist or you do not have access to it."
pub fn model_not_found(model: &str) -> MockFailure {
    let message = format!("The model `{model}` does not exist or you do not have access to it.");
    let fields = fields(Some("invalid_request_error"), None, Some("model_not_found"));
    error("openai::model_not_found", 404, NotFound, false, &message, fields)
}

/// 429 `rate_limit_exceeded` (type `tokens`) with `retry-after`,
/// `retry-after-ms`, the `x-ratelimit-*` headers (tokens reset after
/// `wait`) and "Please try again in {wait}" in the message.
pub fn rate_limited(wait: Duration) -> MockFailure {
    let wait = whole_ms(wait);
    let message = format!(
        "Rate limit reached for gpt-4o in organization org-3kTq5Yx2NvBm8pLr on tokens per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again in {}. Visit https://platform.openai.com/account/rate-limits to learn more.",
        go_duration(wait)
    );
    let fields = fields(Some("tokens"), None, Some("rate_limit_exceeded"));
    error("openai::rate_limited", 429, RateLimited, true, &message, fields)
        .header("x-ratelimit-limit-requests", 500)
        .header("x-ratelimit-limit-tokens", 30_000)
        .header("x-ratelimit-remaining-requests", 499)
        .header("x-ratelimit-remaining-tokens", 0)
        .header("x-ratelimit-reset-requests", "120ms")
        .header("x-ratelimit-reset-tokens", go_duration(wait))
        .retry_after_with_ms(wait)
}

/// 429 `rate_limit_exceeded` "Request too large for gpt-4o … on tokens per
/// min (TPM): Limit 30000, Requested 31538": one request above the per-minute
/// token limit, which no wait can fix.
pub fn request_too_large() -> MockFailure {
    let message = "Request too large for gpt-4o in organization org-3kTq5Yx2NvBm8pLr on tokens per min (TPM): Limit 30000, Requested 31538. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.";
    let fields = fields(Some("tokens"), None, Some("rate_limit_exceeded"));
    error("openai::request_too_large", 429, RequestTooLarge, false, message, fields)
}

/// 429 `slow_down`: traffic ramped up too fast. (Code from a third-party
/// summary of the docs; message unconfirmed.)
pub fn slow_down() -> MockFailure {
    let message = "Please reduce the rate at which you are sending requests; your traffic increased too quickly.";
    error(
        "openai::slow_down",
        429,
        RateLimited,
        true,
        message,
        fields(Some("rate_limit_error"), None, Some("slow_down")),
    )
}

/// 429 `insufficient_quota` "You exceeded your current quota…": no retry helps.
pub fn insufficient_quota() -> MockFailure {
    let message = "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.";
    let fields = fields(Some("insufficient_quota"), None, Some("insufficient_quota"));
    error("openai::insufficient_quota", 429, QuotaExceeded, false, message, fields)
}

/// 429 `credit_balance_exhausted`: no prepaid credit left. (Message unconfirmed.)
pub fn credit_balance_exhausted() -> MockFailure {
    let message = "Your credit balance is exhausted. Purchase credits in the billing settings to continue.";
    let fields = fields(Some("insufficient_quota"), None, Some("credit_balance_exhausted"));
    error("openai::credit_balance_exhausted", 429, Billing, false, message, fields)
}

/// 429 `organization_spend_limit_exceeded`. (Type and message unconfirmed.)
pub fn spend_limit_exceeded() -> MockFailure {
    let message = "Your organization has reached its monthly spend limit. Raise the limit in the billing settings.";
    let fields = fields(Some("insufficient_quota"), None, Some("organization_spend_limit_exceeded"));
    error("openai::spend_limit_exceeded", 429, QuotaExceeded, false, message, fields)
}

/// 429 `organization_usage_limit_exceeded`. (Type and message unconfirmed.)
pub fn usage_limit_exceeded() -> MockFailure {
    let message = "Your organization has reached its usage limit for this period.";
    let fields = fields(Some("insufficient_quota"), None, Some("organization_usage_limit_exceeded"));
    error("openai::usage_limit_exceeded", 429, QuotaExceeded, false, message, fields)
}

/// 500 `server_error` "The server had an error while processing your request…".
pub fn server_error() -> MockFailure {
    let message = "The server had an error while processing your request. Sorry about that!";
    error("openai::server_error", 500, ServerError, true, message, fields(Some("server_error"), None, None))
}

/// 503 `server_is_overloaded` "The engine is currently overloaded, please try again later."
pub fn overloaded() -> MockFailure {
    let message = "The engine is currently overloaded, please try again later.";
    let fields = fields(Some("service_unavailable_error"), None, Some("server_is_overloaded"));
    error("openai::overloaded", 503, Overloaded, true, message, fields)
}

/// The body of a 200 Chat Completions response whose one choice says `text`.
fn chat_completion(text: &str) -> Value {
    json!({
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1_741_570_283,
        "model": "gpt-4o-2024-08-06",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    })
}

/// A 200 Chat Completions response whose one choice says `text`.
pub fn ok(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).insert_header("x-request-id", REQUEST_ID).set_body_json(chat_completion(text))
}

fn chunk(delta: serde_json::Value, finish_reason: Option<&str>) -> String {
    json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
    })
    .to_string()
}

fn chat_stream(data: &[String]) -> ResponseTemplate {
    let events: Vec<_> = data.iter().map(|data| (None, data.clone())).collect();
    super::event_stream(Some(("x-request-id", REQUEST_ID)), &events)
}

const OVERLOADED_CHUNK: &str = r#"{"error":{"message":"The server is overloaded. Please try again later.","type":"server_error","param":null,"code":"server_is_overloaded"}}"#;

/// A `200` Chat Completions stream (`"stream": true`) of `text`: a role
/// chunk with empty content, a content chunk, a finish chunk, `[DONE]`.
pub fn stream_ok(text: &str) -> ResponseTemplate {
    chat_stream(&[
        chunk(json!({"role": "assistant", "content": "", "refusal": null}), None),
        chunk(json!({"content": text}), None),
        chunk(json!({}), Some("stop")),
        "[DONE]".to_owned(),
    ])
}

/// A `200` Chat Completions stream whose first chunk is
/// `{"error":{"type":"server_error","code":"server_is_overloaded",…}}`: the
/// same transient failure as a `503`, retried by the middleware.
pub fn stream_overloaded() -> ResponseTemplate {
    chat_stream(&[OVERLOADED_CHUNK.to_owned()])
}

/// A `200` Chat Completions stream that sends `text`, then an
/// `server_is_overloaded` error chunk: not retried, as the caller already
/// has output.
pub fn stream_overloaded_after(text: &str) -> ResponseTemplate {
    chat_stream(&[
        chunk(json!({"role": "assistant", "content": "", "refusal": null}), None),
        chunk(json!({"content": text}), None),
        OVERLOADED_CHUNK.to_owned(),
    ])
}

fn responses_stream(events: &[(&str, String)]) -> ResponseTemplate {
    let events: Vec<_> = events.iter().map(|(name, data)| (Some(*name), data.clone())).collect();
    super::event_stream(Some(("x-request-id", REQUEST_ID)), &events)
}

fn response_object(status: &str, error: serde_json::Value) -> serde_json::Value {
    json!({"id": "resp_67ccd2bed1ec8190b14f964abc054267", "object": "response", "status": status, "model": "gpt-4.1-2025-04-14", "output": [], "error": error})
}

/// A `200` Responses API stream (`"stream": true`) of `text`:
/// `response.created`, `response.output_text.delta`, `response.completed`.
pub fn responses_stream_ok(text: &str) -> ResponseTemplate {
    responses_stream(&[
        ("response.created", json!({"type": "response.created", "sequence_number": 0, "response": response_object("in_progress", serde_json::Value::Null)}).to_string()),
        ("response.output_text.delta", json!({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": text}).to_string()),
        ("response.completed", json!({"type": "response.completed", "sequence_number": 2, "response": response_object("completed", serde_json::Value::Null)}).to_string()),
    ])
}

/// A `200` Responses API stream that fails before any output with
/// `event: error` of `code` (`server_is_overloaded`, `rate_limit_exceeded`,
/// …): judged as the same error sent as a status.
pub fn responses_stream_error(code: &str, message: &str) -> ResponseTemplate {
    responses_stream(&[
        ("response.created", json!({"type": "response.created", "sequence_number": 0, "response": response_object("in_progress", serde_json::Value::Null)}).to_string()),
        ("error", json!({"type": "error", "code": code, "message": message, "param": null, "sequence_number": 1}).to_string()),
    ])
}

/// A `200` Responses API stream that ends in `response.failed` with
/// `server_error` before any output: retried like a `500`.
pub fn responses_stream_failed() -> ResponseTemplate {
    let error = json!({"code": "server_error", "message": "The model failed to generate a response."});
    responses_stream(&[
        ("response.created", json!({"type": "response.created", "sequence_number": 0, "response": response_object("in_progress", serde_json::Value::Null)}).to_string()),
        ("response.failed", json!({"type": "response.failed", "sequence_number": 1, "response": response_object("failed", error)}).to_string()),
    ])
}

/// Every template above, with `wait` where one is taken.
pub(super) fn all(wait: Duration) -> Vec<MockFailure> {
    vec![
        invalid_request("Invalid value for 'temperature': must be between 0 and 2."),
        context_length_exceeded(8192, 8227),
        content_policy_violation(),
        invalid_api_key(),
        unsupported_country(),
        model_not_found("gpt-4-32k"),
        rate_limited(wait),
        request_too_large(),
        slow_down(),
        insufficient_quota(),
        credit_balance_exhausted(),
        spend_limit_exceeded(),
        usage_limit_exceeded(),
        server_error(),
        overloaded(),
    ]
}
