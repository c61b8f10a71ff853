//! Every provider row of `shared/reference/providers.md`, one real-shaped
//! payload each, sent through the middleware under the provider's real host
//! name (resolved to a local wiremock), so detection, parsing and the retry
//! tables are all exercised together.

use std::time::Duration;

use reqwest_llm_retry::{ErrorKind, LlmApiError, LlmResponseExt, Provider};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;
use ErrorKind::*;

struct Row {
    host: &'static str,
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    kind: ErrorKind,
    retryable: bool,
    error_type: Option<&'static str>,
    code: Option<&'static str>,
    retry_after: Option<Duration>,
    message: Option<&'static str>,
}

fn row(host: &'static str, status: u16, body: &str, kind: ErrorKind, retryable: bool) -> Row {
    Row {
        host,
        status,
        headers: Vec::new(),
        body: body.to_owned(),
        kind,
        retryable,
        error_type: None,
        code: None,
        retry_after: None,
        message: None,
    }
}

impl Row {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Row {
        self.headers.push((name, value.into()));
        self
    }
    fn error_type(mut self, error_type: &'static str) -> Row {
        self.error_type = Some(error_type);
        self
    }
    fn code(mut self, code: &'static str) -> Row {
        self.code = Some(code);
        self
    }
    fn wait(mut self, wait: Duration) -> Row {
        self.retry_after = Some(wait);
        self
    }
    fn message(mut self, message: &'static str) -> Row {
        self.message = Some(message);
        self
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn anthropic(kind: &str, message: &str) -> String {
    format!(
        r#"{{"type":"error","error":{{"type":"{kind}","message":"{message}"}},"request_id":"req_011CWdepJvA2D819tdYYq4h7"}}"#
    )
}

fn openai(message: &str, kind: &str, code: &str) -> String {
    format!(r#"{{"error":{{"message":"{message}","type":"{kind}","param":null,"code":"{code}"}}}}"#)
}

fn google(code: u16, status: &str, message: &str, details: &str) -> String {
    format!(r#"{{"error":{{"code":{code},"message":"{message}","status":"{status}","details":[{details}]}}}}"#)
}

fn quota_failure(id: &str) -> String {
    format!(
        r#"{{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"{id}","quotaDimensions":{{"location":"global","model":"gemini-2.0-flash"}},"quotaValue":"15"}}]}}"#
    )
}

fn rows() -> Vec<Row> {
    let in_30s = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30)).to_string();
    vec![
        // Anthropic, §3.1
        row(ANTHROPIC, 400, &anthropic("invalid_request_error", "messages: at least one message is required"), InvalidRequest, false)
            .error_type("invalid_request_error"),
        row(ANTHROPIC, 400, &anthropic("invalid_request_error", "prompt is too long: 208656 tokens > 200000 maximum"), ContextLengthExceeded, false),
        row(ANTHROPIC, 400, &anthropic("invalid_request_error", "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."), Billing, false)
            .header("x-should-retry", "false"),
        row(ANTHROPIC, 400, &anthropic("invalid_request_error", "You have reached your specified API usage limits. You will regain access on 2026-10-01 at 00:00 UTC."), QuotaExceeded, false),
        row(ANTHROPIC, 401, &anthropic("authentication_error", "invalid x-api-key"), Authentication, false),
        row(ANTHROPIC, 402, &anthropic("billing_error", "Your payment method was declined."), Billing, false),
        row(ANTHROPIC, 403, &anthropic("permission_error", "Your API key does not have permission to use the specified resource."), PermissionDenied, false),
        row(ANTHROPIC, 404, &anthropic("not_found_error", "model: claude-9"), NotFound, false),
        row(ANTHROPIC, 413, &anthropic("request_too_large", "Request exceeds the maximum allowed number of bytes."), RequestTooLarge, false),
        row(ANTHROPIC, 429, &anthropic("rate_limit_error", "This request would exceed the rate limit for your organization of 50 input tokens per minute."), RateLimited, true)
            .header("retry-after", "20").header("x-should-retry", "true").wait(secs(20)),
        row(ANTHROPIC, 429, r#"{"type":"error","error":{"type":"rate_limit_error","message":"You have reached your monthly spend limit.","details":{"error_code":"enforced_spend_limit_reached"}}}"#, QuotaExceeded, false)
            .code("enforced_spend_limit_reached"),
        row(ANTHROPIC, 429, &anthropic("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"), RateLimited, true)
            .header("anthropic-ratelimit-input-tokens-remaining", "0").header("anthropic-ratelimit-input-tokens-reset", in_30s).wait(secs(30)),
        row(ANTHROPIC, 500, &anthropic("api_error", "Internal server error"), ServerError, true),
        row(ANTHROPIC, 504, &anthropic("timeout_error", "Request timeout"), Timeout, true),
        row(ANTHROPIC, 529, &anthropic("overloaded_error", "Overloaded"), Overloaded, true).header("x-should-retry", "true").message("Overloaded"),
        // OpenAI, §3.2
        row(OPENAI, 400, r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 8227 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#, ContextLengthExceeded, false)
            .code("context_length_exceeded"),
        row(OPENAI, 404, &openai("The model `gpt-4-32k` does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"), NotFound, false),
        row(OPENAI, 401, &openai("Incorrect API key provided: sk-proj-****abcd. You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"), Authentication, false),
        row(OPENAI, 403, &openai("Country, region, or territory not supported", "request_forbidden", "unsupported_country_region_territory"), PermissionDenied, false),
        row(OPENAI, 429, &openai("Request too large for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Requested 31538. The input or output tokens must be reduced in order to run successfully.", "tokens", "rate_limit_exceeded"), RequestTooLarge, false),
        row(OPENAI, 429, &openai("Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again in 644ms.", "tokens", "rate_limit_exceeded"), RateLimited, true)
            .header("x-ratelimit-reset-tokens", "644ms").header("x-ratelimit-remaining-tokens", "63").wait(Duration::from_millis(644)),
        row(OPENAI, 429, &openai("Please reduce your rate of requests.", "rate_limit_error", "slow_down"), RateLimited, true),
        row(OPENAI, 429, &openai("You exceeded your current quota, please check your plan and billing details.", "insufficient_quota", "insufficient_quota"), QuotaExceeded, false),
        row(OPENAI, 429, &openai("Your credit balance is exhausted.", "insufficient_quota", "credit_balance_exhausted"), Billing, false),
        row(OPENAI, 429, &openai("Organization usage limit exceeded.", "insufficient_quota", "organization_usage_limit_exceeded"), QuotaExceeded, false),
        row(OPENAI, 429, &openai("Organization spend limit exceeded.", "insufficient_quota", "organization_spend_limit_exceeded"), QuotaExceeded, false),
        row(OPENAI, 429, &openai("Project spend limit exceeded.", "insufficient_quota", "project_spend_limit_exceeded"), QuotaExceeded, false),
        row(OPENAI, 429, &openai("Rate limit reached for requests", "requests", "rate_limit_exceeded"), RateLimited, true)
            .header("x-ratelimit-remaining-requests", "0").header("x-ratelimit-reset-requests", "6m0s").wait(secs(360)),
        row(OPENAI, 400, &openai("Your request was rejected as a result of our safety system.", "invalid_request_error", "content_policy_violation"), ContentFiltered, false),
        row(OPENAI, 500, &openai("The server had an error while processing your request. Sorry about that!", "server_error", ""), ServerError, true),
        row(OPENAI, 503, &openai("The engine is currently overloaded, please try again later.", "service_unavailable_error", "server_is_overloaded"), Overloaded, true),
        // Gemini and Vertex AI, §3.3
        row(GEMINI, 400, &google(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unknown name \\\"foo\\\": Cannot find field.", ""), InvalidRequest, false)
            .error_type("INVALID_ARGUMENT"),
        row(GEMINI, 400, &google(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", r#"{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}}"#), Authentication, false),
        row(GEMINI, 400, &google(400, "FAILED_PRECONDITION", "Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio.", ""), Billing, false),
        row(GEMINI, 402, &google(402, "RESOURCE_EXHAUSTED", "Your prepaid credit balance is depleted.", ""), Billing, false),
        row(GEMINI, 403, &google(403, "PERMISSION_DENIED", "You do not have permission to access tuned model tunedModels/x.", ""), PermissionDenied, false),
        row(GEMINI, 404, &google(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta.", ""), NotFound, false),
        row(GEMINI, 429, &google(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", &format!(r#"{},{{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"47s"}}"#, quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"))), RateLimited, true)
            .wait(secs(47)).code("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
        row(GEMINI, 429, &google(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", &format!(r#"{},{},{{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"51820.638305887s"}}"#, quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"), quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier"))), QuotaExceeded, false)
            .code("GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
        row(GEMINI, 429, &google(429, "RESOURCE_EXHAUSTED", "Quota exceeded for metric: generate_content_paid_tier_input_token_count, limit: 4000000\\nPlease retry in 3.5s.", ""), RateLimited, true)
            .wait(Duration::from_millis(3500)),
        row(GEMINI, 499, &google(499, "CANCELLED", "The operation was cancelled.", ""), Unknown, false),
        row(GEMINI, 500, &google(500, "INTERNAL", "An internal error has occurred.", ""), ServerError, true),
        row(GEMINI, 503, &google(503, "UNAVAILABLE", "The model is overloaded. Please try again later.", ""), Overloaded, true),
        row(GEMINI, 504, &google(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.", ""), Timeout, true),
        row(GEMINI, 400, r#"[{"error":{"code":400,"message":"Invalid value at 'messages[0].role'","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"messages[0].role"}]}]}}]"#, InvalidRequest, false)
            .error_type("INVALID_ARGUMENT").message("Invalid value at 'messages[0].role'"),
        row(VERTEX, 429, r#"{"error":{"code":429,"message":"Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.","errors":[{"message":"Resource exhausted.","domain":"global","reason":"rateLimitExceeded"}],"status":"RESOURCE_EXHAUSTED"}}"#, RateLimited, true)
            .error_type("RESOURCE_EXHAUSTED"),
        // Azure OpenAI, §3.4
        row(AZURE, 429, r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-08-01-preview have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 86400 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}"#, QuotaExceeded, false)
            .wait(secs(86_400)),
        row(AZURE, 429, r#"{"error":{"code":"429","message":"Rate limit is exceeded. Try again in 2 seconds."}}"#, RateLimited, true)
            .header("retry-after", "2").wait(secs(2)),
        row(AZURE, 429, r#"{"error":{"code":"429","message":"Your request exceeds the maximum usage size allowed during peak load. Please retry after 20 seconds."}}"#, RateLimited, true)
            .wait(secs(20)),
        row(AZURE, 429, r#"{"error":{"code":"RateLimitReached","message":"Rate limit reached."}}"#, RateLimited, true)
            .header("x-rate-limit-reset-tokens", "55").header("x-ratelimit-remaining-tokens", "0").wait(secs(55)),
        row(AZURE, 400, r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"},"jailbreak":{"filtered":true,"detected":true}}}}}"#, ContentFiltered, false)
            .code("content_filter"),
        // OpenAI-compatible hosts, §3.5
        row("api.groq.com", 429, &openai("Rate limit reached for model `llama-3.3-70b-versatile` on tokens per minute (TPM): Limit 6000, Used 5500, Requested 800.", "tokens", "rate_limit_exceeded"), RateLimited, true)
            .header("retry-after", "7").header("x-ratelimit-reset-tokens", "7.66s").wait(secs(7)),
        row("api.groq.com", 498, &openai("Flex tier capacity exceeded. Please try again later.", "capacity_exceeded", "capacity_exceeded"), Overloaded, true),
        row("api.groq.com", 404, &openai("The model `llama-9` does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"), NotFound, false),
        row("api.mistral.ai", 429, r#"{"object":"error","message":"Rate limit exceeded","type":"rate_limited","param":null,"code":"1300"}"#, RateLimited, true)
            .error_type("rate_limited").code("1300").message("Rate limit exceeded"),
        row("api.mistral.ai", 422, r#"{"object":"error","message":{"detail":[{"type":"missing","loc":["body","model"],"msg":"Field required"}]},"type":"invalid_request_error","param":null,"code":null}"#, InvalidRequest, false),
        row("api.mistral.ai", 429, r#"{"message":"Requests rate limit exceeded"}"#, RateLimited, true).message("Requests rate limit exceeded"),
        row("api.deepseek.com", 402, &openai("Insufficient Balance", "unknown_error", "invalid_request_error"), Billing, false),
        row("api.deepseek.com", 503, &openai("Server overloaded, please try again later.", "server_error", ""), Overloaded, true),
        row("api.deepseek.com", 422, &openai("Invalid parameters: temperature must be <= 2", "invalid_request_error", ""), InvalidRequest, false),
        row("openrouter.ai", 402, r#"{"error":{"code":402,"message":"This request requires more credits, or fewer max_tokens. You requested up to 4096 tokens, but can only afford 1000."}}"#, Billing, false),
        row("openrouter.ai", 402, r#"{"error":{"code":402,"message":"Too many requests in flight for your budget.","metadata":{"limit_source":"openrouter_in_flight_budget"}}}"#, RateLimited, true)
            .header("retry-after", "1").wait(secs(1)),
        row("openrouter.ai", 403, r#"{"error":{"code":403,"message":"Input was flagged by moderation.","metadata":{"reasons":["harassment"],"flagged_input":"…","provider_name":"OpenAI","model_slug":"openai/gpt-4o"}}}"#, ContentFiltered, false),
        row("openrouter.ai", 429, r#"{"error":{"code":429,"message":"Rate limit exceeded: free-models-per-min."}}"#, RateLimited, true),
        row("openrouter.ai", 502, r#"{"error":{"code":502,"message":"Provider returned error","metadata":{"provider_name":"Anthropic","raw":"upstream connect error"}}}"#, ServerError, true)
            .message("Provider returned error: upstream connect error"),
        row("api.x.ai", 400, r#"{"code":"Client specified an invalid argument","error":"Incorrect API key provided: xa***kd. You can obtain an API key from https://console.x.ai."}"#, Authentication, false),
        row("api.together.xyz", 402, &openai("Credit limit exceeded: your monthly spend limit has been reached.", "credit_limit", ""), Billing, false),
        row("api.together.xyz", 403, &openai("Input validation error: `inputs` tokens + `max_new_tokens` must be <= 8193. Given: 8000 `inputs` tokens and 512 `max_new_tokens`", "invalid_request_error", ""), ContextLengthExceeded, false),
        row("api.together.xyz", 503, &openai("Engine Overloaded", "server_error", ""), Overloaded, true),
        row("api.fireworks.ai", 402, r#"{"error":{"object":"error","type":"payment_required","message":"Account is not paid or usage limit reached."}}"#, Billing, false),
        row("api.fireworks.ai", 408, r#"{"error":{"object":"error","type":"request_timeout","message":"Request timed out."}}"#, Timeout, true),
        row("api.fireworks.ai", 412, r#"{"error":{"object":"error","type":"precondition_failed","message":"Account suspended."}}"#, Unknown, false),
        row("api.cerebras.ai", 429, r#"{"message":"Tokens per minute limit exceeded - too many tokens processed.","type":"too_many_tokens_error","param":"quota","code":"token_quota_exceeded"}"#, RateLimited, true)
            .header("x-ratelimit-reset-tokens-minute", "11.38").header("x-ratelimit-remaining-tokens-minute", "0")
            .header("x-ratelimit-reset-requests-day", "33011.4").header("x-ratelimit-remaining-requests-day", "14000")
            .wait(Duration::from_millis(11_380)).error_type("too_many_tokens_error"),
        row("api.cerebras.ai", 402, r#"{"message":"Payment required","type":"payment_required_error","param":null,"code":"payment_required"}"#, Billing, false),
        row("api.cerebras.ai", 503, r#"{"message":"Service unavailable","type":"service_unavailable_error","param":null,"code":"service_unavailable"}"#, Overloaded, true),
        row("api.perplexity.ai", 401, r#"<html><head><title>401 Authorization Required</title></head><body></body></html>"#, Authentication, false)
            .message("401 Authorization Required"),
        row("api.perplexity.ai", 429, &openai("Rate limit exceeded", "rate_limit_exceeded", ""), RateLimited, true),
        // AWS Bedrock, §3.6
        row(BEDROCK, 429, r#"{"message":"Too many tokens, please wait before trying again."}"#, RateLimited, true)
            .header("x-amzn-ErrorType", "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/")
            .header("x-amzn-RequestId", "5b3a6c1e-0000-4000-8000-000000000000").error_type("ThrottlingException"),
        row(BEDROCK, 429, r#"{"message":"Model is not ready for inference."}"#, Overloaded, true).header("x-amzn-ErrorType", "ModelNotReadyException"),
        row(BEDROCK, 503, r#"{"message":"Too many connections, please wait before trying again."}"#, Overloaded, true).header("x-amzn-ErrorType", "ServiceUnavailableException"),
        row(BEDROCK, 400, r#"{"message":"Malformed input request: #: required key [messages] not found"}"#, InvalidRequest, false).header("x-amzn-ErrorType", "ValidationException"),
        row(BEDROCK, 403, r#"{"message":"You don't have access to the model with the specified model ID."}"#, PermissionDenied, false).header("x-amzn-ErrorType", "AccessDeniedException"),
        row(BEDROCK, 424, r#"{"message":"Model stream error."}"#, ServerError, true).header("x-amzn-ErrorType", "ModelStreamErrorException"),
        row(BEDROCK, 408, r#"{"message":"Model timed out."}"#, Timeout, true).header("x-amzn-ErrorType", "ModelTimeoutException"),
    ]
}

#[tokio::test]
async fn every_reference_row_is_classified() {
    let server = MockServer::start().await;
    let rows = rows();
    let mut builder = reqwest::Client::builder();
    for (i, row) in rows.iter().enumerate() {
        let mut template = ResponseTemplate::new(row.status).set_body_raw(row.body.clone(), "application/json");
        for (name, value) in &row.headers {
            template = template.insert_header(*name, value.as_str());
        }
        Mock::given(path(format!("/row/{i}"))).respond_with(template).mount(&server).await;
        builder = builder.resolve(row.host, *server.address());
    }
    let http = builder.build().unwrap();
    let mut failures = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        // One attempt each: `retryable` is then the table's verdict, unchanged by retries.
        let client = reqwest_middleware::ClientBuilder::new(http.clone()).with(fast().max_retries(0).build()).build();
        let url = format!("http://{}:{}/row/{i}", row.host, server.address().port());
        let response = client.get(url).send().await.unwrap();
        let error = response.llm_error().unwrap().clone();
        // What the middleware attached is what the public parser says.
        let mut headers = http::HeaderMap::new();
        for (name, value) in &row.headers {
            headers.insert(*name, value.parse().unwrap());
        }
        let status = http::StatusCode::from_u16(row.status).unwrap();
        let parsed = LlmApiError::parse(Provider::from_host(row.host), status, &headers, row.body.as_bytes());
        let close = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => a.abs_diff(b) <= Duration::from_secs(2),
            _ => a == b,
        };
        let ok = error.provider == Provider::from_host(row.host)
            && error.provider != Provider::Unknown
            && error.kind == row.kind
            && error.retryable == row.retryable
            && (parsed.kind, parsed.retryable) == (error.kind, error.retryable)
            && row.error_type.is_none_or(|t| error.error_type.as_deref() == Some(t))
            && row.code.is_none_or(|c| error.code.as_deref() == Some(c))
            && row.message.is_none_or(|m| error.message == m)
            && (row.retry_after.is_none() || close(error.retry_after, row.retry_after))
            && !error.message.is_empty();
        if !ok {
            failures.push(format!(
                "row {i} {} {}: want {:?} retryable={} type={:?} code={:?} wait={:?}\n   got {error:?}",
                row.host, row.status, row.kind, row.retryable, row.error_type, row.code, row.retry_after
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} rows wrong:\n{}", failures.len(), rows.len(), failures.join("\n"));
}

/// OpenRouter (and Azure streaming) report errors after generation started
/// inside a 200: the middleware never buffers or retries a success, and the
/// caller can still parse the body with the public parser.
#[tokio::test]
async fn openrouter_200_with_an_error_passes_through_untouched() {
    let body = r#"{"id":"gen-1","choices":[{"finish_reason":"error","message":{"content":""}}],"error":{"code":502,"message":"Provider returned error","metadata":{"provider_name":"Anthropic","raw":"overloaded"}}}"#;
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .mount(&server)
        .await;
    let response = client_to("openrouter.ai", *server.address(), fast().max_retries(2).build())
        .get(format!("http://openrouter.ai:{}/api/v1/chat/completions", server.address().port()))
        .send()
        .await
        .unwrap();
    assert!(response.llm_error().is_none());
    assert_eq!(response.retry_stats().unwrap().attempts, 1);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes, body.as_bytes());
    let error = LlmApiError::parse(Provider::OpenRouter, http::StatusCode::OK, &http::HeaderMap::new(), &bytes);
    assert_eq!(error.message, "Provider returned error: overloaded");
    assert_eq!(error.code.as_deref(), Some("502"), "the numeric code is kept when it is not the HTTP status");
    assert!(!error.retryable, "a 200 is never retried");
}

#[tokio::test(start_paused = true)]
async fn azure_daily_quota_returns_at_once_without_sleeping() {
    let server = MockServer::start().await;
    let body = r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation have exceeded token rate limit. Please retry after 86400 seconds."}}"#;
    Mock::given(path("/openai/deployments/gpt-4o/chat/completions"))
        .respond_with(
            ResponseTemplate::new(429).insert_header("retry-after", "86400").set_body_raw(body, "application/json"),
        )
        .mount(&server)
        .await;
    // Even a middleware willing to sleep for days gives up on a daily quota.
    let middleware = paused(fast().max_retries(2).max_retry_after(Duration::MAX).max_elapsed(Duration::MAX));
    let started = tokio::time::Instant::now();
    let response = paused_client(&server, middleware)
        .get(format!("http://{AZURE}:{}/openai/deployments/gpt-4o/chat/completions", server.address().port()))
        .send()
        .await
        .unwrap();
    // tokio's paused clock moves only when the middleware sleeps: it did not.
    assert_eq!(started.elapsed(), Duration::ZERO, "slept");
    let error = response.llm_error().unwrap();
    assert_eq!((error.kind, error.retryable, error.attempts), (QuotaExceeded, false, 1));
    assert_eq!(error.retry_after, Some(secs(86_400)));
}
