//! Google Gemini API (`generativelanguage.googleapis.com`) failures.
//!
//! Envelope `google.rpc.Status`: `{"error":{"code","message","status","details"}}`
//! with typed `details` (`RetryInfo`, `QuotaFailure`, `ErrorInfo`, `Help`).
//! No `Retry-After` header and no request id: the wait of a 429 is
//! `RetryInfo.retryDelay` (`"47s"`), and whether it is per minute or per day
//! is in `QuotaFailure.violations[].quotaId`.
//!
//! Every fixture names the model `gemini-2.5-flash` (quota messages and
//! dimensions, `modelVersion`): send test requests to
//! `/v1beta/models/gemini-2.5-flash:generateContent` and the two agree.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use super::{MockFailure, decimal_secs, whole_ms};
use crate::ErrorKind::{self, *};
use crate::Provider;

const JSON: &str = "application/json; charset=UTF-8";

/// The model every fixture names; the demo's requests go to it too.
const MODEL: &str = "gemini-2.5-flash";

/// A `google.rpc.Status` error, for Gemini and Vertex AI alike.
pub(super) fn status_error(
    name: &str,
    provider: Provider,
    status: u16,
    (kind, retryable): (ErrorKind, bool),
    canonical: &str,
    message: &str,
    details: Vec<Value>,
) -> MockFailure {
    let mut error = json!({"code": status, "message": message, "status": canonical});
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    MockFailure::new(name, provider, status, kind, retryable)
        .json(JSON, &json!({"error": error}))
        .claim_type(canonical)
        .claim_message(message)
}

fn gemini(name: &str, status: u16, verdict: (ErrorKind, bool), canonical: &str, message: &str) -> MockFailure {
    status_error(name, Provider::Gemini, status, verdict, canonical, message, Vec::new())
}

/// `retryDelay` as protobuf JSON writes a Duration: decimal seconds and `s`.
fn retry_info(wait: Duration) -> Value {
    json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{}s", decimal_secs(wait))})
}

fn help() -> Value {
    json!({"@type": "type.googleapis.com/google.rpc.Help", "links": [
        {"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}
    ]})
}

fn violation(metric: &str, quota_id: &str, value: &str) -> Value {
    json!({
        "quotaMetric": format!("generativelanguage.googleapis.com/{metric}"),
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": MODEL},
        "quotaValue": value,
    })
}

fn quota_failure(violations: Vec<Value>) -> Value {
    json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations})
}

const PER_MINUTE: &str = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier";
const PER_DAY: &str = "GenerateRequestsPerDayPerProjectPerModel-FreeTier";

/// 400 `INVALID_ARGUMENT` with `message`.
pub fn invalid_argument(message: &str) -> MockFailure {
    gemini("gemini::invalid_argument", 400, (InvalidRequest, false), "INVALID_ARGUMENT", message)
}

/// 400 `INVALID_ARGUMENT` "API key not valid…" with `ErrorInfo.reason = API_KEY_INVALID`.
pub fn api_key_invalid() -> MockFailure {
    let message = "API key not valid. Please pass a valid API key.";
    let details = vec![
        json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
               "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}),
        json!({"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message}),
    ];
    let verdict = (Authentication, false);
    status_error("gemini::api_key_invalid", Provider::Gemini, 400, verdict, "INVALID_ARGUMENT", message, details)
        .claim_code("API_KEY_INVALID")
}

/// 400 `FAILED_PRECONDITION`: the free tier is not available in the caller's
/// country; billing must be enabled.
pub fn failed_precondition() -> MockFailure {
    let message = "Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio.";
    gemini("gemini::failed_precondition", 400, (Billing, false), "FAILED_PRECONDITION", message)
}

/// 402 `RESOURCE_EXHAUSTED`: the prepaid credit balance is depleted. (Message unconfirmed.)
pub fn prepaid_credit_depleted() -> MockFailure {
    let message = "Your prepaid credit balance is depleted. Add credit in Google AI Studio to continue.";
    gemini("gemini::prepaid_credit_depleted", 402, (Billing, false), "RESOURCE_EXHAUSTED", message)
}

/// 403 `PERMISSION_DENIED` "The caller does not have permission".
pub fn permission_denied() -> MockFailure {
    gemini(
        "gemini::permission_denied",
        403,
        (PermissionDenied, false),
        "PERMISSION_DENIED",
        "The caller does not have permission",
    )
}

/// 404 `NOT_FOUND` "models/{model} is not found for API version v1beta…".
pub fn not_found(model: &str) -> MockFailure {
    let message = format!(
        "models/{model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
    );
    gemini("gemini::not_found", 404, (NotFound, false), "NOT_FOUND", &message)
}

/// 429 `RESOURCE_EXHAUSTED` for a per-minute quota, with `Help`,
/// `QuotaFailure` and `RetryInfo.retryDelay = wait`, and "Please retry in
/// {wait}s." in the message.
pub fn rate_limited(wait: Duration) -> MockFailure {
    let wait = whole_ms(wait);
    let message = format!(
        "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 15, model: {MODEL}\nPlease retry in {}s.",
        decimal_secs(wait)
    );
    let details = vec![
        help(),
        quota_failure(vec![violation("generate_content_free_tier_requests", PER_MINUTE, "15")]),
        retry_info(wait),
    ];
    let verdict = (RateLimited, true);
    status_error("gemini::rate_limited", Provider::Gemini, 429, verdict, "RESOURCE_EXHAUSTED", &message, details)
        .claim_code(PER_MINUTE)
        .claim_wait(wait)
}

/// 429 `RESOURCE_EXHAUSTED` whose `QuotaFailure` lists a per-day quota (next
/// to the per-minute one), with a `retryDelay` of about 14 hours: the daily
/// quota is gone and no retry today will succeed.
pub fn quota_per_day() -> MockFailure {
    let wait = Duration::from_millis(51_820_638);
    let message = format!(
        "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 200, model: {MODEL}\nPlease retry in 51820.638s."
    );
    let details = vec![
        help(),
        quota_failure(vec![
            violation("generate_content_free_tier_requests", PER_MINUTE, "15"),
            violation("generate_content_free_tier_requests", PER_DAY, "200"),
        ]),
        retry_info(wait),
    ];
    let verdict = (QuotaExceeded, false);
    status_error("gemini::quota_per_day", Provider::Gemini, 429, verdict, "RESOURCE_EXHAUSTED", &message, details)
        .claim_code(PER_DAY)
        .claim_wait(wait)
}

/// 499 `CANCELLED`: the client closed the connection.
pub fn cancelled() -> MockFailure {
    gemini("gemini::cancelled", 499, (Unknown, false), "CANCELLED", "The operation was cancelled.")
}

/// 500 `INTERNAL` "An internal error has occurred…".
pub fn internal() -> MockFailure {
    internal_for("gemini::internal", Provider::Gemini)
}

pub(super) fn internal_for(name: &str, provider: Provider) -> MockFailure {
    let message = "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting";
    status_error(name, provider, 500, (ServerError, true), "INTERNAL", message, Vec::new())
}

/// 503 `UNAVAILABLE` "The model is overloaded. Please try again later."
pub fn unavailable() -> MockFailure {
    unavailable_for("gemini::unavailable", Provider::Gemini)
}

pub(super) fn unavailable_for(name: &str, provider: Provider) -> MockFailure {
    let message = "The model is overloaded. Please try again later.";
    status_error(name, provider, 503, (Overloaded, true), "UNAVAILABLE", message, Vec::new())
}

/// 504 `DEADLINE_EXCEEDED`: the model could not finish in time (often a prompt too large).
pub fn deadline_exceeded() -> MockFailure {
    deadline_exceeded_for("gemini::deadline_exceeded", Provider::Gemini)
}

pub(super) fn deadline_exceeded_for(name: &str, provider: Provider) -> MockFailure {
    let message = "Deadline expired before operation could complete.";
    status_error(name, provider, 504, (Timeout, true), "DEADLINE_EXCEEDED", message, Vec::new())
}

/// `failure` with its body wrapped in a JSON array, as
/// `streamGenerateContent` without `alt=sse` and the OpenAI-compatible
/// endpoint send errors: `[{"error":{…}}]`. The claims are unchanged.
pub fn in_array(failure: MockFailure) -> MockFailure {
    let mut body = Vec::with_capacity(failure.body.len() + 2);
    body.push(b'[');
    body.extend_from_slice(&failure.body);
    body.push(b']');
    MockFailure { name: format!("{} (in an array)", failure.name), body: body.into(), ..failure }
}

/// A 200 `generateContent` response whose one candidate says `text`.
pub fn ok(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "candidates": [{
            "content": {"parts": [{"text": text}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 4, "totalTokenCount": 12},
        "modelVersion": MODEL,
    }))
}

/// A `200` `streamGenerateContent?alt=sse` stream of `text`, in two chunks.
pub fn stream_ok(text: &str) -> ResponseTemplate {
    let (head, tail) = text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i));
    let chunk = |part: &str, finish: Option<&str>| {
        json!({
            "candidates": [{"content": {"parts": [{"text": part}], "role": "model"}, "finishReason": finish, "index": 0}],
            "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 4, "totalTokenCount": 12},
            "modelVersion": MODEL,
        })
        .to_string()
    };
    super::event_stream(None, &[(None, chunk(head, None)), (None, chunk(tail, Some("STOP")))])
}

/// A `200` stream whose first chunk is `{"error":{"code":503,"status":"UNAVAILABLE",…}}`:
/// the same transient failure as a `503`, retried by the middleware.
pub fn stream_unavailable() -> ResponseTemplate {
    let error = json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}});
    super::event_stream(None, &[(None, error.to_string())])
}

/// Every template above, with `wait` where one is taken.
pub(super) fn all(wait: Duration) -> Vec<MockFailure> {
    vec![
        invalid_argument(
            "Invalid JSON payload received. Unknown name \"temprature\" at 'generation_config': Cannot find field.",
        ),
        api_key_invalid(),
        failed_precondition(),
        prepaid_credit_depleted(),
        permission_denied(),
        not_found("gemini-1.0-pro-latest"),
        rate_limited(wait),
        quota_per_day(),
        cancelled(),
        internal(),
        unavailable(),
        deadline_exceeded(),
        in_array(unavailable()),
    ]
}
