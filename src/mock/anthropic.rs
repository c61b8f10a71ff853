//! Anthropic Messages API (`api.anthropic.com`) failures.
//!
//! Envelope `{"type":"error","error":{"type":…,"message":…},"request_id":…}`
//! with the same id in the `request-id` header. 429 and 529 carry
//! `x-should-retry: true`; a 429 carries `retry-after` and the
//! `anthropic-ratelimit-*` headers, whose resets are RFC 3339 timestamps.

use std::time::Duration;

use serde_json::json;
use wiremock::ResponseTemplate;

use super::{MockFailure, rfc3339_after};
use crate::ErrorKind::{self, *};
use crate::Provider;

/// The request id every template carries, in the header and the body.
pub const REQUEST_ID: &str = "req_011CWdepJvA2D819tdYYq4h7";

const JSON: &str = "application/json";

fn error(name: &str, status: u16, kind: ErrorKind, retryable: bool, error_type: &str, message: &str) -> MockFailure {
    let body = json!({"type": "error", "error": {"type": error_type, "message": message}, "request_id": REQUEST_ID});
    MockFailure::new(name, Provider::Anthropic, status, kind, retryable)
        .json(JSON, &body)
        .request_id_in("request-id", REQUEST_ID)
        .claim_type(error_type)
        .claim_message(message)
}

/// 400 `invalid_request_error` with `message`.
pub fn invalid_request(message: &str) -> MockFailure {
    error("anthropic::invalid_request", 400, InvalidRequest, false, "invalid_request_error", message)
}

/// 400 `invalid_request_error` "prompt is too long: {tokens} tokens > {maximum} maximum".
pub fn prompt_too_long(tokens: u64, maximum: u64) -> MockFailure {
    let message = format!("prompt is too long: {tokens} tokens > {maximum} maximum");
    error("anthropic::prompt_too_long", 400, ContextLengthExceeded, false, "invalid_request_error", &message)
}

/// 400 `invalid_request_error` "Your credit balance is too low…": out of
/// credit, sent as a 400 and not a 402.
pub fn credit_balance_too_low() -> MockFailure {
    error(
        "anthropic::credit_balance_too_low",
        400,
        Billing,
        false,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
    )
}

/// 400 `invalid_request_error` "You have reached your specified API usage
/// limits…": the workspace's own spend limit.
pub fn usage_limit_reached() -> MockFailure {
    error(
        "anthropic::usage_limit_reached",
        400,
        QuotaExceeded,
        false,
        "invalid_request_error",
        "You have reached your specified API usage limits. You will regain access on 2026-11-01 at 00:00 UTC.",
    )
}

/// 401 `authentication_error` "invalid x-api-key".
pub fn authentication() -> MockFailure {
    error("anthropic::authentication", 401, Authentication, false, "authentication_error", "invalid x-api-key")
}

/// 402 `billing_error`.
pub fn billing() -> MockFailure {
    error(
        "anthropic::billing",
        402,
        Billing,
        false,
        "billing_error",
        "Your payment method failed. Please update your payment details in the Anthropic Console.",
    )
}

/// 403 `permission_error` "Permission denied".
pub fn permission_denied() -> MockFailure {
    error("anthropic::permission_denied", 403, PermissionDenied, false, "permission_error", "Permission denied")
}

/// 404 `not_found_error` "model: {model}".
pub fn not_found(model: &str) -> MockFailure {
    error("anthropic::not_found", 404, NotFound, false, "not_found_error", &format!("model: {model}"))
}

/// 413 `request_too_large`, as the edge sends it before the API sees the
/// request: no `type:"error"` envelope and no request id.
pub fn request_too_large() -> MockFailure {
    let message = "Request exceeds the maximum size";
    let body = json!({"error": {"type": "request_too_large", "message": message}});
    MockFailure::new("anthropic::request_too_large", Provider::Anthropic, 413, RequestTooLarge, false)
        .json(JSON, &body)
        .claim_type("request_too_large")
        .claim_message(message)
}

const RATE_LIMIT_MESSAGE: &str = "This request would exceed the rate limit for your organization \
(5b1a2f0e-7c3d-4e8f-9a6b-2d4c8e1f0a3b) of 50 requests per minute. For details, refer to: \
https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. \
Please reduce the prompt length or the maximum tokens requested, or try again later. You may also \
contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase.";

/// The `anthropic-ratelimit-*` headers of a 429 whose request limit resets
/// after `wait`, claimed as a reset timestamp.
fn rate_limit_headers(failure: MockFailure, wait: Duration) -> MockFailure {
    let (at, reset) = rfc3339_after(wait);
    failure
        .claim_reset_at(at)
        .header("anthropic-ratelimit-requests-limit", 50)
        .header("anthropic-ratelimit-requests-remaining", 0)
        .header("anthropic-ratelimit-requests-reset", &reset)
        .header("anthropic-ratelimit-tokens-limit", 38_000)
        .header("anthropic-ratelimit-tokens-remaining", 36_500)
        .header("anthropic-ratelimit-tokens-reset", &reset)
        .header("anthropic-ratelimit-input-tokens-limit", 30_000)
        .header("anthropic-ratelimit-input-tokens-remaining", 29_000)
        .header("anthropic-ratelimit-input-tokens-reset", &reset)
        .header("anthropic-ratelimit-output-tokens-limit", 8_000)
        .header("anthropic-ratelimit-output-tokens-remaining", 7_500)
        .header("anthropic-ratelimit-output-tokens-reset", &reset)
        .header("x-should-retry", "true")
}

/// 429 `rate_limit_error` with `retry-after` (and `retry-after-ms` for a
/// sub-second `wait`), the `anthropic-ratelimit-*` headers and
/// `x-should-retry: true`.
pub fn rate_limited(wait: Duration) -> MockFailure {
    let failure = error("anthropic::rate_limited", 429, RateLimited, true, "rate_limit_error", RATE_LIMIT_MESSAGE);
    rate_limit_headers(failure, wait).retry_after_headers(wait)
}

/// 429 `rate_limit_error` without `retry-after`, as the API sometimes sent it
/// (anthropic-sdk-typescript#357): the wait is only in the
/// `anthropic-ratelimit-requests-reset` timestamp, `wait` from when this
/// template was built: mount it soon after building it, as its
/// [`retry_after`](MockFailure::retry_after) shrinks with time.
pub fn rate_limited_without_retry_after(wait: Duration) -> MockFailure {
    let name = "anthropic::rate_limited_without_retry_after";
    let failure = error(name, 429, RateLimited, true, "rate_limit_error", RATE_LIMIT_MESSAGE);
    rate_limit_headers(failure, wait)
}

/// 429 `rate_limit_error` with `error.details.error_code =
/// enforced_spend_limit_reached` and no `retry-after`: the monthly spend cap,
/// which no retry outlasts. (Shape from third-party reports.)
pub fn spend_limit_reached() -> MockFailure {
    let message = "You have reached your monthly spend limit. Raise it in the Anthropic Console to continue.";
    let body = json!({
        "type": "error",
        "error": {"type": "rate_limit_error", "message": message, "details": {"error_code": "enforced_spend_limit_reached"}},
        "request_id": REQUEST_ID,
    });
    MockFailure::new("anthropic::spend_limit_reached", Provider::Anthropic, 429, QuotaExceeded, false)
        .json(JSON, &body)
        .request_id_in("request-id", REQUEST_ID)
        .claim_type("rate_limit_error")
        .claim_code("enforced_spend_limit_reached")
        .claim_message(message)
}

/// 500 `api_error` "Internal server error".
pub fn api_error() -> MockFailure {
    error("anthropic::api_error", 500, ServerError, true, "api_error", "Internal server error")
}

/// 504 `timeout_error`.
pub fn timeout() -> MockFailure {
    error("anthropic::timeout", 504, Timeout, true, "timeout_error", "Request timed out")
}

/// 529 `overloaded_error` "Overloaded" with `x-should-retry: true`: the API is
/// overloaded for everyone, not your account.
pub fn overloaded() -> MockFailure {
    error("anthropic::overloaded", 529, Overloaded, true, "overloaded_error", "Overloaded")
        .header("x-should-retry", "true")
}

/// A 200 Messages API response whose one text block is `text`.
pub fn ok(text: &str) -> ResponseTemplate {
    let body = json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 6},
    });
    ResponseTemplate::new(200).insert_header("request-id", REQUEST_ID).set_body_json(body)
}

const MESSAGE_START: &str = r#"{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#;
const BLOCK_START: &str = r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#;
const PING: &str = r#"{"type": "ping"}"#;

fn text_delta(text: &str) -> String {
    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}).to_string()
}

fn stream_error(error_type: &str, message: &str) -> String {
    json!({"type": "error", "error": {"type": error_type, "message": message}, "request_id": REQUEST_ID}).to_string()
}

fn stream(events: &[(&str, String)]) -> ResponseTemplate {
    let events: Vec<_> = events.iter().map(|(name, data)| (Some(*name), data.clone())).collect();
    super::event_stream(Some(("request-id", REQUEST_ID)), &events)
}

/// A `200` Messages stream (`"stream": true`) whose one text block is
/// `text`: `message_start`, `content_block_start`, `ping`, one
/// `content_block_delta`, then the stop events.
pub fn stream_ok(text: &str) -> ResponseTemplate {
    stream(&[
        ("message_start", MESSAGE_START.to_owned()),
        ("content_block_start", BLOCK_START.to_owned()),
        ("ping", PING.to_owned()),
        ("content_block_delta", text_delta(text)),
        ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#.to_owned()),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":6}}"#
                .to_owned(),
        ),
        ("message_stop", r#"{"type":"message_stop"}"#.to_owned()),
    ])
}

/// A `200` stream that fails with `event: error` `overloaded_error` after
/// `message_start` and `ping`, before any output: the same transient
/// failure as a `529`, retried by the middleware.
pub fn stream_overloaded() -> ResponseTemplate {
    stream_failed_before_output("overloaded_error", "Overloaded")
}

/// A `200` stream that fails with `event: error` of `error_type`
/// (`api_error`, `rate_limit_error`, `invalid_request_error`, …) after
/// `message_start` and `ping`, before any output: judged as the same error
/// sent as a status.
pub fn stream_failed_before_output(error_type: &str, message: &str) -> ResponseTemplate {
    stream(&[
        ("message_start", MESSAGE_START.to_owned()),
        ("ping", PING.to_owned()),
        ("error", stream_error(error_type, message)),
    ])
}

/// A `200` stream that sends `text`, then fails with `event: error`
/// `overloaded_error`: the caller already has output, so it is not retried.
pub fn stream_overloaded_after(text: &str) -> ResponseTemplate {
    stream(&[
        ("message_start", MESSAGE_START.to_owned()),
        ("content_block_start", BLOCK_START.to_owned()),
        ("content_block_delta", text_delta(text)),
        ("error", stream_error("overloaded_error", "Overloaded")),
    ])
}

/// Every template above, with `wait` where one is taken.
pub(super) fn all(wait: Duration) -> Vec<MockFailure> {
    vec![
        invalid_request("max_tokens: Field required"),
        prompt_too_long(208_656, 200_000),
        credit_balance_too_low(),
        usage_limit_reached(),
        authentication(),
        billing(),
        permission_denied(),
        not_found("claude-3-opus-2024"),
        request_too_large(),
        rate_limited(wait),
        rate_limited_without_retry_after(wait),
        spend_limit_reached(),
        api_error(),
        timeout(),
        overloaded(),
    ]
}
