//! Azure OpenAI (`{resource}.openai.azure.com`) failures.
//!
//! OpenAI-like `{"error":{…}}`, but `code` is often the HTTP status as a
//! string, content-filter details sit in `innererror`, and the request id is
//! `apim-request-id`. A 429 says how long to wait in `retry-after`,
//! `retry-after-ms` and its message; "retry after 86400 seconds" is the daily
//! quota. Successes have OpenAI's shape: use [`openai::ok`](super::openai::ok).

use std::time::Duration;

use serde_json::json;

use super::{MockFailure, ceil_secs, decimal_secs, whole_ms};
use crate::ErrorKind::{self, *};
use crate::Provider;

/// The request id every template carries in `apim-request-id`.
pub const REQUEST_ID: &str = "6e5c1a9f-2b7d-4c3e-8f10-9a2b3c4d5e6f";

const JSON: &str = "application/json";

fn error(name: &str, status: u16, kind: ErrorKind, retryable: bool, body: &serde_json::Value) -> MockFailure {
    MockFailure::new(name, Provider::AzureOpenAi, status, kind, retryable)
        .json(JSON, body)
        .request_id_in("apim-request-id", REQUEST_ID)
        .header("x-ms-region", "East US")
}

/// 400 `content_filter` with `innererror.code = ResponsibleAIPolicyViolation`
/// and the per-category `content_filter_result`: the prompt was refused.
pub fn content_filter() -> MockFailure {
    let message = "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766";
    let body = json!({"error": {
        "message": message,
        "type": null,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                "hate": {"filtered": true, "severity": "high"},
                "self_harm": {"filtered": false, "severity": "safe"},
                "sexual": {"filtered": false, "severity": "safe"},
                "violence": {"filtered": true, "severity": "medium"},
                "jailbreak": {"filtered": true, "detected": true},
            },
        },
    }});
    error("azure::content_filter", 400, ContentFiltered, false, &body)
        .claim_code("content_filter")
        .claim_message(message)
}

/// A token-rate 429 asking for `wait`, with Azure's headers.
fn token_limit(name: &str, wait: Duration, kind: ErrorKind, retryable: bool) -> MockFailure {
    let wait = whole_ms(wait);
    let seconds = ceil_secs(wait);
    let message = format!(
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-08-01-preview have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after {seconds} second{}. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
        if seconds == 1 { "" } else { "s" }
    );
    error(name, 429, kind, retryable, &json!({"error": {"code": "429", "message": message}}))
        .header("x-ratelimit-remaining-requests", 59)
        .header("x-ratelimit-remaining-tokens", 0)
        .header("x-rate-limit-reset-tokens", decimal_secs(wait))
        .header("policy-id", "DeploymentRatelimit-Token")
        .retry_after_with_ms(wait)
        .claim_message(message)
}

/// 429 "…exceeded token rate limit… Please retry after {wait} seconds" with
/// `retry-after`, `retry-after-ms` and `x-rate-limit-reset-tokens` (integer
/// seconds as Azure sends them; a sub-second `wait` is written with a
/// fraction, so that a test's wait stays in milliseconds everywhere).
///
/// Azure tells a daily quota only by the length of the wait: from an hour
/// up, this template claims (and is) [`ErrorKind::QuotaExceeded`], like
/// [`daily_quota`].
pub fn rate_limited(wait: Duration) -> MockFailure {
    let daily = wait >= Duration::from_secs(3600);
    let (kind, retryable) = if daily { (QuotaExceeded, false) } else { (RateLimited, true) };
    token_limit("azure::rate_limited", wait, kind, retryable)
}

/// 429 "…Please retry after 86400 seconds": the deployment's daily token
/// quota is used up.
pub fn daily_quota() -> MockFailure {
    token_limit("azure::daily_quota", Duration::from_secs(86_400), QuotaExceeded, false)
}

/// 401 "Access denied due to invalid subscription key or wrong API endpoint…".
pub fn invalid_api_key() -> MockFailure {
    let message = "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.";
    error("azure::invalid_api_key", 401, Authentication, false, &json!({"error": {"code": "401", "message": message}}))
        .claim_message(message)
}

/// 404 `DeploymentNotFound`: no deployment of that name on the resource.
pub fn deployment_not_found() -> MockFailure {
    let message = "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.";
    let body = json!({"error": {"code": "DeploymentNotFound", "message": message}});
    error("azure::deployment_not_found", 404, NotFound, false, &body)
        .claim_code("DeploymentNotFound")
        .claim_message(message)
}

/// Every template above, with `wait` where one is taken.
pub(super) fn all(wait: Duration) -> Vec<MockFailure> {
    vec![content_filter(), rate_limited(wait), daily_quota(), invalid_api_key(), deployment_not_found()]
}
