//! The typed error attached to every failed response, and the retry statistics.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::fallback::ModelFallback;
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
    /// The status the failure carries: the response's own status; for an error
    /// event inside a `200` stream, the status the provider sends the same error
    /// with (529 for Anthropic's `overloaded_error`); for a request held by an
    /// outage and never sent, 503.
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
    /// Requests sent for this call, across fallback models; 0 when it was held
    /// by an outage and never sent.
    pub attempts: u32,
    pub(crate) fix: &'static str,
    /// Set when the request went to a fallback model: boxed, as it is rare
    /// and holds the requested model's own error.
    pub(crate) fallback: Option<Box<ModelFallback>>,
}

impl LlmApiError {
    /// A one-line hint on what to do about this error.
    pub fn fix(&self) -> &'static str {
        self.fix
    }

    /// When this error came from a fallback model (see
    /// [`fallback`](crate::LlmRetryMiddlewareBuilder::fallback)): the model
    /// the request named, the one that failed last, and the requested
    /// model's own last error. `None` when the request stayed on its model.
    ///
    /// The same [`ModelFallback`] is on the failed response
    /// ([`LlmResponseExt::model_fallback`](crate::LlmResponseExt::model_fallback));
    /// this one also travels with the error returned alone by
    /// [`error_for_status`](crate::LlmRetryMiddlewareBuilder::error_for_status)
    /// and [`error_for_llm_status`](crate::LlmResponseExt::error_for_llm_status).
    pub fn fallback(&self) -> Option<&ModelFallback> {
        self.fallback.as_deref()
    }

    /// Records that this error came from a fallback model.
    pub(crate) fn set_fallback(&mut self, fallback: ModelFallback) {
        self.fallback = Some(Box::new(fallback));
    }

    /// The `LlmApiError` inside an error from any library that keeps the
    /// error chain: `error` itself, or any error its `source()` chain leads
    /// to, looking inside `reqwest_middleware::Error::Middleware` on the
    /// way (its `source()` skips the error it holds).
    ///
    /// The middleware returns such an error for a final 4xx/5xx under
    /// [`error_for_status`](crate::LlmRetryMiddlewareBuilder::error_for_status).
    /// A library that wraps it without a `source()` link needs one step by
    /// hand:
    ///
    /// | library | its error | the `LlmApiError` |
    /// |---|---|---|
    /// | reqwest-middleware | `reqwest_middleware::Error` | `LlmApiError::find_in(&err)` |
    /// | rig 0.44 | `rig_core::ProviderError` | `match &err { ProviderError::Http(http) => LlmApiError::find_in(&**http), _ => None }` |
    /// | async-openai 0.43 | `OpenAIError` | `match &err { OpenAIError::Boxed(inner) => LlmApiError::find_in(inner.as_ref()), _ => None }` |
    ///
    /// (async-openai's `Boxed` holds what the service adapter returned: box
    /// the `reqwest_middleware::Error` whole.) Without the switch, rig keeps
    /// the failed response's status, headers and body, and
    /// `LlmApiError::parse(provider, status, headers, body)` rebuilds the
    /// error, without `attempts`.
    ///
    /// ```
    /// use reqwest_llm_retry::{ErrorKind, LlmApiError, Provider};
    /// let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    /// let api = LlmApiError::parse(Provider::Anthropic, http::StatusCode::from_u16(529).unwrap(), &http::HeaderMap::new(), body);
    /// let err = reqwest_middleware::Error::middleware(api);
    /// // However deep a library buries it:
    /// let buried: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
    /// let found = LlmApiError::find_in(buried.as_ref()).unwrap();
    /// assert_eq!(found.kind, ErrorKind::Overloaded);
    /// ```
    pub fn find_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a LlmApiError> {
        // Bounded: a `source()` that leads back to itself must not hang the caller.
        const MAX_LINKS: usize = 64;
        let mut link = Some(error);
        for _ in 0..MAX_LINKS {
            let error = link?;
            if let Some(found) = error.downcast_ref::<LlmApiError>() {
                return Some(found);
            }
            link = match error.downcast_ref::<reqwest_middleware::Error>() {
                Some(reqwest_middleware::Error::Middleware(inner)) => Some(inner.as_ref()),
                _ => error.source(),
            };
        }
        None
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
            fallback: None,
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
        if let Some(fallback) = &self.fallback {
            write!(f, " ({fallback})")?;
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

    /// A library error that keeps its cause as `source()`, as rig's transport error does.
    #[derive(Debug)]
    struct Wrapped(Box<dyn std::error::Error + Send + Sync>);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("library error")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    /// An error whose `source()` is itself.
    #[derive(Debug)]
    struct Loop;

    impl fmt::Display for Loop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loop")
        }
    }

    impl std::error::Error for Loop {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self)
        }
    }

    #[test]
    fn find_in_reaches_the_error_through_wrappers_and_the_middleware_error() {
        let mut api = LlmApiError::from_status(Provider::OpenAi, StatusCode::TOO_MANY_REQUESTS);
        api.request_id = Some("req_42".into());
        api.attempts = 3;
        assert_eq!(LlmApiError::find_in(&api), Some(&api), "the error itself");

        let middleware = reqwest_middleware::Error::middleware(api.clone());
        assert_eq!(LlmApiError::find_in(&middleware), Some(&api), "inside Error::Middleware");
        let twice = Wrapped(Box::new(Wrapped(Box::new(reqwest_middleware::Error::middleware(api.clone())))));
        assert_eq!(LlmApiError::find_in(&twice), Some(&api), "down a source() chain");

        let other = reqwest_middleware::Error::middleware(std::io::Error::other("no"));
        assert_eq!(LlmApiError::find_in(&other), None);
        assert_eq!(LlmApiError::find_in(&Wrapped(Box::new(std::io::Error::other("no")))), None);
        assert_eq!(LlmApiError::find_in(&Loop), None, "a looping chain ends");
    }

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
