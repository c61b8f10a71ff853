//! Google Vertex AI (`{region}-aiplatform.googleapis.com`) failures.
//!
//! The same `google.rpc.Status` envelope as [`gemini`](super::gemini), but a
//! 429 from Dynamic Shared Quota has a different message, a legacy
//! `errors[]` array and no `QuotaFailure` or `RetryInfo`: the wait is the
//! caller's backoff.

use serde_json::json;

use super::MockFailure;
use super::gemini::{deadline_exceeded_for, internal_for, status_error, unavailable_for};
use crate::ErrorKind::*;
use crate::Provider;

/// 429 `RESOURCE_EXHAUSTED` "Resource exhausted. Please try again later…"
/// with `errors[].reason = rateLimitExceeded` (Dynamic Shared Quota).
pub fn resource_exhausted() -> MockFailure {
    let message = "Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.";
    let body = json!({"error": {
        "code": 429,
        "message": message,
        "errors": [{"message": message, "domain": "global", "reason": "rateLimitExceeded"}],
        "status": "RESOURCE_EXHAUSTED",
    }});
    MockFailure::new("vertex::resource_exhausted", Provider::VertexAi, 429, RateLimited, true)
        .json("application/json; charset=UTF-8", &body)
        .claim_type("RESOURCE_EXHAUSTED")
        .claim_message(message)
}

/// 429 `RESOURCE_EXHAUSTED` in its older form, "Resource has been exhausted (e.g. check quota)."
pub fn resource_exhausted_legacy() -> MockFailure {
    let message = "Resource has been exhausted (e.g. check quota).";
    let verdict = (RateLimited, true);
    status_error(
        "vertex::resource_exhausted_legacy",
        Provider::VertexAi,
        429,
        verdict,
        "RESOURCE_EXHAUSTED",
        message,
        vec![],
    )
}

/// 500 `INTERNAL`.
pub fn internal() -> MockFailure {
    internal_for("vertex::internal", Provider::VertexAi)
}

/// 503 `UNAVAILABLE`: the model is overloaded.
pub fn unavailable() -> MockFailure {
    unavailable_for("vertex::unavailable", Provider::VertexAi)
}

/// 504 `DEADLINE_EXCEEDED`.
pub fn deadline_exceeded() -> MockFailure {
    deadline_exceeded_for("vertex::deadline_exceeded", Provider::VertexAi)
}

/// Every template above.
pub(super) fn all() -> Vec<MockFailure> {
    vec![resource_exhausted(), resource_exhausted_legacy(), internal(), unavailable(), deadline_exceeded()]
}
