//! What went wrong, in provider-neutral terms.

use std::fmt;

/// The class of an LLM API failure, the same for every provider.
///
/// The kind says what the caller should do; whether *this* crate retried it is
/// [`LlmApiError::retryable`](crate::LlmApiError::retryable), which also takes
/// the provider's headers into account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed or names something invalid (400, 422). Never retried.
    InvalidRequest,
    /// The API key is missing, wrong, expired or revoked (401). Never retried.
    Authentication,
    /// No credit, a failed payment, or billing not enabled (402, credit-balance errors). Never retried.
    Billing,
    /// The key may not use this model or resource (403). Never retried.
    PermissionDenied,
    /// Unknown endpoint or model (404). Never retried.
    NotFound,
    /// The request body is larger than the API accepts (413). Never retried.
    RequestTooLarge,
    /// A short-window rate limit (requests or tokens per minute). Retried after the server's wait.
    RateLimited,
    /// A quota that a retry cannot outlast: `insufficient_quota`, a spend limit, a per-day quota. Never retried.
    QuotaExceeded,
    /// The prompt is longer than the model's context window. Never retried.
    ContextLengthExceeded,
    /// A content policy refused the prompt. Never retried.
    ContentFiltered,
    /// An internal error on the provider's side (500, 502, other 5xx). Retried.
    ServerError,
    /// The provider is overloaded for everyone (Anthropic 529, 503, Groq 498). Retried; many
    /// requests to a host in an outage are held while one probes (see `outage` on the builder).
    Overloaded,
    /// The request timed out at the provider or a gateway (408, 504). Retried.
    Timeout,
    /// None of the above.
    Unknown,
}

impl ErrorKind {
    /// The kind an HTTP status means when the body says nothing more.
    pub fn from_status(status: http::StatusCode) -> ErrorKind {
        match status.as_u16() {
            400 | 422 => ErrorKind::InvalidRequest,
            401 => ErrorKind::Authentication,
            402 => ErrorKind::Billing,
            403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            408 | 504 => ErrorKind::Timeout,
            413 => ErrorKind::RequestTooLarge,
            429 => ErrorKind::RateLimited,
            498 | 503 | 529 => ErrorKind::Overloaded,
            500..=599 => ErrorKind::ServerError,
            _ => ErrorKind::Unknown,
        }
    }

    /// A one-line hint for the caller, used when no provider-specific hint applies.
    pub fn fix(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => {
                "Fix the request body before retrying: check the model name, required fields and parameters"
            }
            ErrorKind::Authentication => "Check the API key header; regenerate the key in the provider's console",
            ErrorKind::Billing => "Update payment details or add credit in the provider's console",
            ErrorKind::PermissionDenied => "Check the key's permissions and the account's access to this model",
            ErrorKind::NotFound => "Verify the URL path and the model name",
            ErrorKind::RequestTooLarge => "Reduce the request size or split it into several requests",
            ErrorKind::RateLimited => "Back off and retry after the server's Retry-After; check your usage tier limits",
            ErrorKind::QuotaExceeded => {
                "Check billing and quota; wait for the quota window to reset or upgrade the plan"
            }
            ErrorKind::ContextLengthExceeded => "Reduce the input tokens or use a model with a larger context window",
            ErrorKind::ContentFiltered => "Modify the prompt content; it was refused by a content policy",
            ErrorKind::ServerError => "Retry with backoff; check the provider's status page",
            ErrorKind::Overloaded => {
                "Retry with longer backoff; the overload is transient and not specific to your account"
            }
            ErrorKind::Timeout => "Retry, possibly with a smaller request or a longer timeout",
            ErrorKind::Unknown => "Inspect the status and body; the error was not recognized",
        }
    }

    /// Whether errors of this kind are transient, so that a retry may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::RateLimited | ErrorKind::ServerError | ErrorKind::Overloaded | ErrorKind::Timeout)
    }

    /// A stable snake_case name, as used in logs and by `Display`: the same case
    /// as [`Provider::name`](crate::Provider::name).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Authentication => "authentication",
            ErrorKind::Billing => "billing",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::QuotaExceeded => "quota_exceeded",
            ErrorKind::ContextLengthExceeded => "context_length_exceeded",
            ErrorKind::ContentFiltered => "content_filtered",
            ErrorKind::ServerError => "server_error",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn status_table() {
        let table = [
            (400, ErrorKind::InvalidRequest),
            (401, ErrorKind::Authentication),
            (402, ErrorKind::Billing),
            (403, ErrorKind::PermissionDenied),
            (404, ErrorKind::NotFound),
            (408, ErrorKind::Timeout),
            (409, ErrorKind::Unknown),
            (413, ErrorKind::RequestTooLarge),
            (422, ErrorKind::InvalidRequest),
            (429, ErrorKind::RateLimited),
            (498, ErrorKind::Overloaded),
            (500, ErrorKind::ServerError),
            (502, ErrorKind::ServerError),
            (503, ErrorKind::Overloaded),
            (504, ErrorKind::Timeout),
            (529, ErrorKind::Overloaded),
            (599, ErrorKind::ServerError),
            (418, ErrorKind::Unknown),
        ];
        for (status, kind) in table {
            assert_eq!(ErrorKind::from_status(StatusCode::from_u16(status).unwrap()), kind, "{status}");
        }
    }
}
