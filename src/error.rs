//! The typed error attached to every failed response, and the retry statistics.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::kind::ErrorKind;
use crate::provider::Provider;

/// A parsed LLM API error: what the provider said, and what this crate made of it.
///
/// Found on the final non-success response with
/// [`LlmResponseExt::llm_error`](crate::LlmResponseExt::llm_error), or returned by
/// [`LlmResponseExt::error_for_llm_status`](crate::LlmResponseExt::error_for_llm_status).
///
/// `message` comes from the server, cleaned of control characters, bounded in
/// length, and with any credential the request carried replaced by `[REDACTED]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LlmApiError {
    /// The provider that answered.
    pub provider: Provider,
    /// The HTTP status of the final response.
    pub status: StatusCode,
    /// What went wrong, in provider-neutral terms.
    pub kind: ErrorKind,
    /// The provider's own type or status string (`rate_limit_error`, `RESOURCE_EXHAUSTED`).
    pub error_type: Option<String>,
    /// The provider's finer code (`insufficient_quota`, a Gemini quota id).
    pub code: Option<String>,
    /// The provider's message, or what could be read of the body.
    pub message: String,
    /// The request id the provider assigned (`request-id`, `x-request-id`, …): quote it to support.
    pub request_id: Option<String>,
    /// How long the provider asked the caller to wait, if it said.
    pub retry_after: Option<Duration>,
    /// This crate's verdict: a later retry may succeed.
    pub retryable: bool,
    /// Requests sent, this one included.
    pub attempts: u32,
    pub(crate) fix: &'static str,
}

impl LlmApiError {
    /// A one-line hint on what to do about this error.
    pub fn fix(&self) -> &'static str {
        self.fix
    }

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
        let secrets = crate::redact::Secrets::default();
        crate::diagnose::diagnose(provider, status, headers, body, &[], &secrets, std::time::SystemTime::now())
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

    /// An error known only by its status, for responses the middleware did not see.
    pub(crate) fn from_status(provider: Provider, status: StatusCode) -> LlmApiError {
        let kind = ErrorKind::from_status(status);
        LlmApiError {
            provider,
            status,
            kind,
            error_type: None,
            code: None,
            message: status.canonical_reason().unwrap_or("unrecognized status").to_owned(),
            request_id: None,
            retry_after: None,
            retryable: kind.is_transient(),
            attempts: 1,
            fix: kind.fix(),
        }
    }
}

impl fmt::Display for LlmApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} returned {} ({})", self.provider, self.status.as_u16(), self.kind)?;
        match (&self.error_type, &self.code) {
            (Some(error_type), Some(code)) if error_type != code => write!(f, " {error_type}/{code}")?,
            (Some(name), _) | (None, Some(name)) => write!(f, " {name}")?,
            (None, None) => {}
        }
        let plural = if self.attempts == 1 { "" } else { "s" };
        write!(f, " after {} attempt{plural}", self.attempts)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for LlmApiError {}

/// How many requests the middleware sent and how long it slept, on every
/// response that passed through it, success or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RetryStats {
    /// Requests sent, the one that produced this response included.
    pub attempts: u32,
    /// Total time slept between attempts.
    pub waited: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_reads_as_one_line_summary() {
        let mut err = LlmApiError::from_status(Provider::OpenAi, StatusCode::TOO_MANY_REQUESTS);
        err.error_type = Some("insufficient_quota".into());
        err.code = Some("insufficient_quota".into());
        err.message = "You exceeded your current quota".into();
        err.attempts = 1;
        assert_eq!(
            err.to_string(),
            "OpenAI returned 429 (rate_limited) insufficient_quota after 1 attempt: You exceeded your current quota"
        );
        err.code = Some("GenerateRequestsPerDay".into());
        err.attempts = 3;
        assert!(err.to_string().contains(" insufficient_quota/GenerateRequestsPerDay after 3 attempts: "));
    }
}
