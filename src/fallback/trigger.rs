//! Which failures send a request to its fallback model.
//!
//! Only what another model may not share: an overload, a server error, a
//! timeout or a rate limit are per model (Anthropic's overloads hit one model
//! at a time; rate limits are counted per model). A permanent error (a bad
//! request, key, bill, quota, context length or content) would fail the same
//! way on any model, and a connection failure reaches the same host for
//! every model: those are returned as they are.

use crate::kind::ErrorKind;

/// Whether a request that ended in an error response of `kind`, judged
/// `retryable` (the verdict after `x-should-retry` and the caller's rules,
/// still `true` when retries ran out or the server's wait was above
/// `max_retry_after`), goes to its fallback.
pub(crate) fn after_response(kind: ErrorKind, retryable: bool) -> bool {
    retryable && kind.is_transient()
}

/// Whether a request that ended in a transport error goes to its fallback:
/// a timeout (that model was slow), not a connection failure.
pub(crate) fn after_transport(timed_out: bool) -> bool {
    timed_out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_fall_back_and_permanent_ones_do_not() {
        use ErrorKind::*;
        let cases = [
            (Overloaded, true),
            (ServerError, true),
            (Timeout, true),
            (RateLimited, true),
            (InvalidRequest, false),
            (Authentication, false),
            (Billing, false),
            (PermissionDenied, false),
            (NotFound, false),
            (RequestTooLarge, false),
            (QuotaExceeded, false),
            (ContextLengthExceeded, false),
            (ContentFiltered, false),
            (Unknown, false),
        ];
        for (kind, falls_back) in cases {
            assert_eq!(after_response(kind, true), falls_back, "{kind}");
            // `x-should-retry: false` or a rule that gives up: the server or the caller said no.
            assert!(!after_response(kind, false), "{kind} judged not retryable");
        }
        assert!(after_transport(true));
        assert!(!after_transport(false));
    }
}
