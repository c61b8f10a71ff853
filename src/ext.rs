//! Reading what the middleware attached to a response.

use reqwest::Response;

use crate::error::{LlmApiError, RetryStats};
use crate::fallback::ModelFallback;
use crate::provider::Provider;
use std::time::SystemTime;

use crate::rate_limits::RateLimits;

/// What [`LlmRetryMiddleware`](crate::LlmRetryMiddleware) attached to a [`reqwest::Response`].
///
/// Implemented for [`reqwest::Response`] only, and sealed: it cannot be
/// implemented outside this crate, so that adding a method is not a breaking change.
///
/// ```
/// use reqwest_llm_retry::LlmResponseExt;
/// # async fn demo(client: reqwest_middleware::ClientWithMiddleware) -> Result<(), Box<dyn std::error::Error>> {
/// let response = client.post("https://api.openai.com/v1/chat/completions").send().await?;
/// if let Some(stats) = response.retry_stats() {
///     println!("{} attempts, {:?} waiting", stats.attempts, stats.waited);
/// }
/// let response = response.error_for_llm_status()?; // Err(LlmApiError) on 4xx/5xx
/// # Ok(()) }
/// ```
pub trait LlmResponseExt: sealed::Sealed + Sized {
    /// The parsed error, on a 4xx/5xx response that went through the
    /// middleware, or on a `200` stream whose first event was an error.
    fn llm_error(&self) -> Option<&LlmApiError>;

    /// Attempts and time waited, on every response that went through the middleware.
    fn retry_stats(&self) -> Option<&RetryStats>;

    /// The provider's rate-limit headers, read from the response when asked
    /// for: `None` when it carries none. A timestamp reset (Anthropic's) is
    /// measured from the call.
    ///
    /// By value rather than attached to every response: most callers never
    /// ask, and a third extension would make every response's extension map
    /// grow (a rehash and an allocation, a tenth of what a success costs the
    /// middleware).
    fn rate_limits(&self) -> Option<RateLimits>;

    /// Which model answered, on a response the middleware sent to a
    /// fallback model (see
    /// [`fallback`](crate::LlmRetryMiddlewareBuilder::fallback)), whether
    /// the fallback succeeded or failed too; `None` when the model the
    /// request named answered.
    fn model_fallback(&self) -> Option<&ModelFallback>;

    /// `Ok(self)` unless the response failed: the error the middleware
    /// attached (a 4xx/5xx, or a stream that failed before its first output),
    /// else, for a 4xx/5xx the middleware did not see, one built from the
    /// status and the URL's host.
    // The contract returns the error by value, like `error_for_status`; it is
    // built once per failed request, so its size costs nothing that matters.
    #[allow(clippy::result_large_err)]
    fn error_for_llm_status(self) -> Result<Response, LlmApiError>;
}

/// No type outside this crate can implement `LlmResponseExt`, even with every method:
///
/// ```compile_fail,E0277
/// use reqwest_llm_retry::{LlmApiError, LlmResponseExt, ModelFallback, RateLimits, RetryStats};
/// struct Mine;
/// impl LlmResponseExt for Mine {
///     fn llm_error(&self) -> Option<&LlmApiError> { None }
///     fn retry_stats(&self) -> Option<&RetryStats> { None }
///     fn rate_limits(&self) -> Option<RateLimits> { None }
///     fn model_fallback(&self) -> Option<&ModelFallback> { None }
///     fn error_for_llm_status(self) -> Result<reqwest::Response, LlmApiError> { unimplemented!() }
/// }
/// ```
mod sealed {
    /// Keeps [`LlmResponseExt`](super::LlmResponseExt) implemented by `Response` only.
    pub trait Sealed {}
    impl Sealed for reqwest::Response {}
}

impl LlmResponseExt for Response {
    fn llm_error(&self) -> Option<&LlmApiError> {
        self.extensions().get()
    }

    fn retry_stats(&self) -> Option<&RetryStats> {
        self.extensions().get()
    }

    fn rate_limits(&self) -> Option<RateLimits> {
        RateLimits::read(self.headers(), SystemTime::now)
    }

    fn model_fallback(&self) -> Option<&ModelFallback> {
        self.extensions().get()
    }

    #[allow(clippy::result_large_err)]
    fn error_for_llm_status(self) -> Result<Response, LlmApiError> {
        if let Some(error) = self.llm_error() {
            return Err(error.clone());
        }
        let status = self.status();
        if !(status.is_client_error() || status.is_server_error()) {
            return Ok(self);
        }
        let provider = self.url().host_str().map_or(Provider::Unknown, Provider::from_host);
        Err(LlmApiError::from_status(provider, status))
    }
}
