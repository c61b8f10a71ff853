//! Turning an error response (status, headers, body prefix) into an [`LlmApiError`].
//!
//! The pure heart of the middleware: parse the body, find the server's wait,
//! classify with the provider's table, apply `x-should-retry`, and keep
//! credentials out of every string that leaves.

use std::time::SystemTime;

use http::{HeaderMap, StatusCode};

use crate::error::LlmApiError;
use crate::parse::{ParsedError, clip, parse_error_body};
use crate::policy::{Facts, RetryRule, classify};
use crate::provider::Provider;
use crate::rate_limits::RateLimits;
use crate::redact::Secrets;
use crate::retry_after::{header_wait, parse_message_wait};

/// The public ways in to `diagnose`, for errors that did not go through the middleware.
impl LlmApiError {
    /// Parses and classifies an error response that did not go through the
    /// middleware: an error event inside an SSE stream, a response from
    /// another client, a recorded fixture. Uses the built-in tables;
    /// `attempts` is 1 and `retryable` is the error's own verdict.
    ///
    /// ```
    /// use reqwest_llm_retry::{ErrorKind, LlmApiError, Provider};
    /// let body = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
    /// let err = LlmApiError::parse(Provider::OpenAi, http::StatusCode::TOO_MANY_REQUESTS, &http::HeaderMap::new(), body);
    /// assert_eq!(err.kind, ErrorKind::QuotaExceeded);
    /// assert!(!err.retryable);
    /// ```
    pub fn parse(provider: Provider, status: StatusCode, headers: &http::HeaderMap, body: &[u8]) -> LlmApiError {
        let secrets = Secrets::default();
        diagnose(provider, status, headers, body, &[], &secrets, SystemTime::now())
    }

    /// Classifies one event of a provider's stream: `Some` when the event's
    /// `data` is an error (Anthropic `event: error`, an OpenAI `{"error":…}`
    /// chunk, an OpenAI Responses `error` or `response.failed` event, a
    /// Gemini `{"error":…}` chunk), judged exactly as the same error sent as
    /// a status; `None` for any other event.
    ///
    /// The middleware retries an error event that comes before the stream's
    /// first output. One that comes after it is the caller's: a retry would
    /// repeat output the caller already has. `status` is the status the
    /// provider gives the same error (`529` for Anthropic's
    /// `overloaded_error`), `attempts` is 1.
    ///
    /// ```
    /// use reqwest_llm_retry::{ErrorKind, LlmApiError, Provider};
    /// let data = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    /// let err = LlmApiError::from_stream_event(Provider::Anthropic, data).unwrap();
    /// assert_eq!((err.kind, err.status.as_u16(), err.retryable), (ErrorKind::Overloaded, 529, true));
    /// assert!(LlmApiError::from_stream_event(Provider::Anthropic, r#"{"type":"ping"}"#).is_none());
    /// ```
    pub fn from_stream_event(provider: Provider, data: impl AsRef<[u8]>) -> Option<LlmApiError> {
        let error = crate::stream::error_in(data.as_ref())?;
        Some(LlmApiError::parse(provider, error.status, &http::HeaderMap::new(), &error.body))
    }
}

/// Diagnoses one error response. `retryable` is the error's own verdict
/// (table, then `x-should-retry`); the retry loop may still give up for
/// reasons of time or attempts. `attempts` is 1.
pub(crate) fn diagnose(
    provider: Provider,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    rules: &[(Provider, RetryRule)],
    secrets: &Secrets,
    now: SystemTime,
) -> LlmApiError {
    // A body still compressed (the client does not decode that encoding) is
    // bytes, not text: the status speaks for it.
    let body = if is_encoded(headers) { &[][..] } else { body };
    let mut parsed = parse_error_body(body, status.as_u16());
    if let Some(error_type) = header_error_type(headers) {
        parsed.error_type = Some(error_type);
    }
    let message = parsed.message.as_deref().unwrap_or_default();
    // The reset headers say when a window resets, not how long to wait:
    // only a 429 without any explicit wait falls back to them.
    let reset_hint = || RateLimits::from_headers(headers, now)?.wait_hint();
    let server_wait = header_wait(headers, now)
        .or(parsed.retry_delay)
        .or_else(|| parse_message_wait(message))
        .or_else(|| if status == StatusCode::TOO_MANY_REQUESTS { reset_hint() } else { None });
    let class = classify(provider, &Facts::new(status, &parsed, server_wait), rules);
    let message = match parsed.message.as_deref() {
        Some(m) if !m.is_empty() => secrets.redact(m),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    LlmApiError {
        provider,
        status,
        kind: class.kind,
        error_type: parsed.error_type.as_deref().map(|t| secrets.redact(t)),
        code: parsed.code.as_deref().map(|c| secrets.redact(c)),
        message,
        request_id: request_id(headers, &parsed).map(|id| secrets.redact(&id)),
        retry_after: server_wait,
        retryable: should_retry_header(headers).unwrap_or(class.retry),
        attempts: 1,
        fix: class.fix,
        fallback: None,
    }
}

/// Whether `Content-Encoding` names an encoding other than `identity`: reqwest
/// removes the header when it decodes the body, so one still present means the
/// bytes are compressed.
fn is_encoded(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::CONTENT_ENCODING).iter().any(|value| {
        value
            .to_str()
            .map_or(true, |v| v.split(',').any(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity")))
    })
}

/// The server's explicit verdict, exact lower-case as every official SDK compares it.
fn should_retry_header(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry").map(http::HeaderValue::as_bytes) {
        Some(b"true") => Some(true),
        Some(b"false") => Some(false),
        _ => None,
    }
}

/// Anthropic `request-id`, OpenAI `x-request-id`, Azure `apim-request-id`,
/// Bedrock `x-amzn-requestid`, else the body's `request_id`.
const REQUEST_ID_HEADERS: &[&str] = &["request-id", "x-request-id", "apim-request-id", "x-amzn-requestid"];

fn request_id(headers: &HeaderMap, parsed: &ParsedError) -> Option<String> {
    REQUEST_ID_HEADERS
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok())
        .map(|id| clip(id.trim(), 128))
        .filter(|id| !id.is_empty())
        .or_else(|| parsed.request_id.clone())
}

/// Bedrock names its error in a header: `ThrottlingException:http://internal…`,
/// cut at `:` and after `#` as the AWS SDKs do.
fn header_error_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("x-amzn-errortype")?.to_str().ok()?;
    let name = value.split(':').next()?;
    let name = name.rsplit('#').next()?.trim();
    (!name.is_empty()).then(|| clip(name, 128))
}
