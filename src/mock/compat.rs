//! OpenAI-compatible hosts: each one's special statuses and body quirks.
//!
//! Most answer in OpenAI's `{"error":{…}}` shape (successes too: use
//! [`openai::ok`](super::openai::ok)); Mistral's error is flat
//! (`object:"error"`), OpenRouter's `code` is the HTTP status as a number
//! with details in `metadata`, xAI puts the message in a string `error`.
//! Where a provider documents a status but not its body, the template uses
//! OpenAI's shape and says so.

use std::time::Duration;

use serde_json::{Value, json};

use super::{MockFailure, decimal_secs, go_duration, whole_ms};
use crate::ErrorKind::{self, *};
use crate::Provider;

const JSON: &str = "application/json";

/// An OpenAI-shaped error; claims the message, and the type and code when given.
fn openai_shaped(
    name: &str,
    provider: Provider,
    status: u16,
    (kind, retryable): (ErrorKind, bool),
    message: &str,
    error_type: Option<&str>,
    code: Option<&str>,
) -> MockFailure {
    let body = json!({"error": {"message": message, "type": error_type, "param": null, "code": code}});
    let mut failure =
        MockFailure::new(name, provider, status, kind, retryable).json(JSON, &body).claim_message(message);
    if let Some(error_type) = error_type {
        failure = failure.claim_type(error_type);
    }
    if let Some(code) = code {
        failure = failure.claim_code(code);
    }
    failure
}

// ----- Groq -----

/// The request id the Groq templates carry in `x-request-id`.
pub const GROQ_REQUEST_ID: &str = "req_01jq5h9k2xfd8tq3v3q4yq4v5w";

/// Groq 429 `rate_limit_exceeded` (type `tokens`) with `retry-after` and the
/// `x-ratelimit-*` headers (`-limit-requests` is per day; resets are Go durations).
pub fn groq_rate_limited(wait: Duration) -> MockFailure {
    let wait = whole_ms(wait);
    let message = format!(
        "Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01hqxv0bq3f5v6x7y8z9a0b1c2` service tier `on_demand` on tokens per minute (TPM): Limit 6000, Used 5800, Requested 400. Please try again in {}. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing",
        go_duration(wait)
    );
    let verdict = (RateLimited, true);
    let name = "compat::groq_rate_limited";
    openai_shaped(name, Provider::Groq, 429, verdict, &message, Some("tokens"), Some("rate_limit_exceeded"))
        .request_id_in("x-request-id", GROQ_REQUEST_ID)
        .header("x-ratelimit-limit-requests", 1000)
        .header("x-ratelimit-limit-tokens", 6000)
        .header("x-ratelimit-remaining-requests", 999)
        .header("x-ratelimit-remaining-tokens", 0)
        .header("x-ratelimit-reset-requests", "1m26.4s")
        .header("x-ratelimit-reset-tokens", go_duration(wait))
        .retry_after_headers(wait)
}

/// Groq 413 `rate_limit_exceeded`: one request above the tokens-per-minute limit.
pub fn groq_request_too_large() -> MockFailure {
    let message = "Request too large for model `llama-3.1-8b-instant` in organization `org_01hqxv0bq3f5v6x7y8z9a0b1c2` service tier `on_demand` on tokens per minute (TPM): Limit 6000, Requested 12328, please reduce your message size and try again. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing";
    let verdict = (RequestTooLarge, false);
    let name = "compat::groq_request_too_large";
    openai_shaped(name, Provider::Groq, 413, verdict, message, Some("tokens"), Some("rate_limit_exceeded"))
        .request_id_in("x-request-id", GROQ_REQUEST_ID)
}

/// Groq 498 `capacity_exceeded`: the Flex tier is full; retry with jitter.
/// (Body in OpenAI's shape; message unconfirmed.)
pub fn groq_capacity_exceeded() -> MockFailure {
    let message = "Flex tier capacity exceeded. This is a temporary condition, please try again later.";
    let verdict = (Overloaded, true);
    let name = "compat::groq_capacity_exceeded";
    openai_shaped(name, Provider::Groq, 498, verdict, message, Some("service_unavailable"), Some("capacity_exceeded"))
        .request_id_in("x-request-id", GROQ_REQUEST_ID)
}

// ----- Mistral -----

/// Mistral 429 in its flat shape: `{"object":"error","message":"Rate limit
/// exceeded","type":"rate_limited","code":"1300"}`, no wait header.
pub fn mistral_rate_limited() -> MockFailure {
    let body = json!({"object": "error", "message": "Rate limit exceeded", "type": "rate_limited", "param": null, "code": "1300"});
    MockFailure::new("compat::mistral_rate_limited", Provider::Mistral, 429, RateLimited, true)
        .json(JSON, &body)
        .claim_type("rate_limited")
        .claim_code("1300")
        .claim_message("Rate limit exceeded")
}

// ----- DeepSeek -----

/// DeepSeek 402 "Insufficient Balance": top up the account; never retried.
pub fn deepseek_insufficient_balance() -> MockFailure {
    let verdict = (Billing, false);
    let name = "compat::deepseek_insufficient_balance";
    openai_shaped(
        name,
        Provider::DeepSeek,
        402,
        verdict,
        "Insufficient Balance",
        Some("unknown_error"),
        Some("invalid_request_error"),
    )
}

/// DeepSeek 503 "Server Overloaded". (Body in OpenAI's shape.)
pub fn deepseek_overloaded() -> MockFailure {
    let verdict = (Overloaded, true);
    openai_shaped(
        "compat::deepseek_overloaded",
        Provider::DeepSeek,
        503,
        verdict,
        "Server Overloaded",
        Some("server_error"),
        None,
    )
}

// ----- OpenRouter -----

/// An OpenRouter error: numeric `code` (the status, so not a claimed code) and optional `metadata`.
fn openrouter(
    name: &str,
    status: u16,
    (kind, retryable): (ErrorKind, bool),
    message: &str,
    metadata: Option<Value>,
) -> MockFailure {
    let mut error = json!({"code": status, "message": message});
    if let Some(metadata) = metadata {
        error["metadata"] = metadata;
    }
    MockFailure::new(name, Provider::OpenRouter, status, kind, retryable)
        .json(JSON, &json!({"error": error}))
        .claim_message(message)
}

/// OpenRouter 402: not enough credits for the request.
pub fn openrouter_insufficient_credits() -> MockFailure {
    let message = "Insufficient credits. Add more using https://openrouter.ai/settings/credits";
    openrouter("compat::openrouter_insufficient_credits", 402, (Billing, false), message, None)
}

/// OpenRouter 402 with `metadata.limit_source = openrouter_in_flight_budget`
/// and `retry-after`: too much in flight for the budget, clears when other
/// requests finish. (Message unconfirmed.)
pub fn openrouter_in_flight_budget(wait: Duration) -> MockFailure {
    let message = "Too many requests in flight for your remaining credit. Please retry shortly.";
    let metadata = json!({"limit_source": "openrouter_in_flight_budget"});
    openrouter("compat::openrouter_in_flight_budget", 402, (RateLimited, true), message, Some(metadata))
        .retry_after_headers(wait)
}

/// OpenRouter 403: the input was flagged by moderation (`metadata.reasons`, `flagged_input`).
pub fn openrouter_moderation() -> MockFailure {
    let message = "openai/gpt-4o requires moderation on OpenAI. Your input was flagged for \"violence\". No credits were charged.";
    let metadata = json!({
        "reasons": ["violence"],
        "flagged_input": "…how to build a…",
        "provider_name": "OpenAI",
        "model_slug": "openai/gpt-4o",
    });
    openrouter("compat::openrouter_moderation", 403, (ContentFiltered, false), message, Some(metadata))
}

/// OpenRouter 502 "Provider returned error" with the upstream's own body in
/// `metadata.raw` (here Anthropic's overload), which the parser reads as the
/// real error.
pub fn openrouter_upstream_error() -> MockFailure {
    let raw = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let metadata = json!({"provider_name": "Anthropic", "raw": raw});
    openrouter("compat::openrouter_upstream_error", 502, (ServerError, true), "Provider returned error", Some(metadata))
        .claim_type("overloaded_error")
        .claim_message("Overloaded")
}

/// OpenRouter 503: no provider meets the routing requirements right now.
pub fn openrouter_no_provider() -> MockFailure {
    let message = "No allowed providers are available for the selected model.";
    openrouter("compat::openrouter_no_provider", 503, (Overloaded, true), message, None)
}

// ----- Together -----

/// Together 402: the monthly spend limit is reached. (Body in OpenAI's shape; message unconfirmed.)
pub fn together_spend_limit() -> MockFailure {
    let message = "You have reached your monthly spend limit. Increase it in your billing settings to continue.";
    openai_shaped(
        "compat::together_spend_limit",
        Provider::Together,
        402,
        (Billing, false),
        message,
        Some("invalid_request_error"),
        None,
    )
}

/// Together 403: input tokens plus `max_tokens` exceed the model's context length.
pub fn together_context_too_long() -> MockFailure {
    let message = "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 8193. Given: 8000 `inputs` tokens and 512 `max_new_tokens`";
    let verdict = (ContextLengthExceeded, false);
    let name = "compat::together_context_too_long";
    openai_shaped(name, Provider::Together, 403, verdict, message, Some("invalid_request_error"), None)
}

/// Together 503 "Engine Overloaded". (Body in OpenAI's shape.)
pub fn together_overloaded() -> MockFailure {
    let verdict = (Overloaded, true);
    openai_shaped(
        "compat::together_overloaded",
        Provider::Together,
        503,
        verdict,
        "Engine Overloaded",
        Some("server_error"),
        None,
    )
}

// ----- Fireworks -----

/// Fireworks 402: the account is not paid up or hit its usage limit. (Body in OpenAI's shape.)
pub fn fireworks_payment_required() -> MockFailure {
    let message = "Account is not paid up or has reached its usage limit. Check billing in the Fireworks dashboard.";
    openai_shaped(
        "compat::fireworks_payment_required",
        Provider::Fireworks,
        402,
        (Billing, false),
        message,
        Some("invalid_request_error"),
        None,
    )
}

/// Fireworks 412: the account is suspended or a LoRA failed to load. (Body in OpenAI's shape.)
pub fn fireworks_precondition_failed() -> MockFailure {
    let message = "Account suspended or LoRA adapter failed to load.";
    openai_shaped(
        "compat::fireworks_precondition_failed",
        Provider::Fireworks,
        412,
        (Unknown, false),
        message,
        Some("invalid_request_error"),
        None,
    )
}

// ----- Cerebras -----

/// Cerebras 429 whose wait is only in `x-ratelimit-reset-tokens-minute`
/// (float seconds, with `x-ratelimit-remaining-tokens-minute: 0`) and the
/// per-day request family beside it.
pub fn cerebras_rate_limited(wait: Duration) -> MockFailure {
    let wait = whole_ms(wait);
    let body = json!({"message": "Rate limit exceeded", "type": "rate_limit_error", "param": null, "code": "rate_limit_error"});
    MockFailure::new("compat::cerebras_rate_limited", Provider::Cerebras, 429, RateLimited, true)
        .json(JSON, &body)
        .header("x-ratelimit-limit-requests-day", 14_400)
        .header("x-ratelimit-limit-tokens-minute", 60_000)
        .header("x-ratelimit-remaining-requests-day", 14_399)
        .header("x-ratelimit-remaining-tokens-minute", 0)
        .header("x-ratelimit-reset-requests-day", "33011.4")
        .header("x-ratelimit-reset-tokens-minute", decimal_secs(wait))
        .claim_type("rate_limit_error")
        .claim_code("rate_limit_error")
        .claim_message("Rate limit exceeded")
        .claim_wait(wait)
}

/// Cerebras 402 Payment Required. (Body in OpenAI's shape.)
pub fn cerebras_payment_required() -> MockFailure {
    let message = "Payment required: add a payment method to continue.";
    openai_shaped(
        "compat::cerebras_payment_required",
        Provider::Cerebras,
        402,
        (Billing, false),
        message,
        Some("invalid_request_error"),
        None,
    )
}

// ----- xAI -----

/// xAI 400 for an incorrect API key, in xAI's flat shape
/// `{"code":"Client specified an invalid argument","error":"Incorrect API key provided: …"}`.
pub fn xai_incorrect_api_key() -> MockFailure {
    let message = "Incorrect API key provided: xa***hQ. You can obtain an API key from https://console.x.ai.";
    let code = "Client specified an invalid argument";
    MockFailure::new("compat::xai_incorrect_api_key", Provider::XAi, 400, Authentication, false)
        .json(JSON, &json!({"code": code, "error": message}))
        .claim_code(code)
        .claim_message(message)
}

/// Every template above, with `wait` where one is taken.
pub(super) fn all(wait: Duration) -> Vec<MockFailure> {
    vec![
        groq_rate_limited(wait),
        groq_request_too_large(),
        groq_capacity_exceeded(),
        mistral_rate_limited(),
        deepseek_insufficient_balance(),
        deepseek_overloaded(),
        openrouter_insufficient_credits(),
        openrouter_in_flight_budget(wait),
        openrouter_moderation(),
        openrouter_upstream_error(),
        openrouter_no_provider(),
        together_spend_limit(),
        together_context_too_long(),
        together_overloaded(),
        fireworks_payment_required(),
        fireworks_precondition_failed(),
        cerebras_rate_limited(wait),
        cerebras_payment_required(),
        xai_incorrect_api_key(),
    ]
}
