//! Which errors each provider says are transient: the retry tables.
//!
//! Why decide on the parsed error and not the status: one status means
//! different things. A 429 is a rate limit (wait and retry) or an exhausted
//! quota (`insufficient_quota`, a Gemini per-day quota, a spend limit), which
//! no retry can fix: retrying it only resends the prompt, burns the caller's
//! time and, for a 1 MB prompt, their bandwidth. A 400 is a bad request or, at
//! Anthropic, an empty credit balance. So each provider has a table of rows;
//! the first row whose conditions all hold gives the [`ErrorKind`], whether to
//! retry, and the hint. User rules come first, then the provider's own signal
//! rows, then signals every provider shares, then the provider's status rows,
//! then the status alone.

use std::time::Duration;

use http::StatusCode;

use crate::kind::ErrorKind;
use crate::parse::ParsedError;
use crate::provider::Provider;
pub use rule::RetryRule;

/// One row of a retry table: conditions, and what they mean.
#[derive(Debug, Clone, Copy)]
struct Row<'a> {
    status: Option<u16>,
    error_type: Option<&'a str>,
    code: Option<&'a str>,
    message: Option<&'a str>,
    min_wait: Option<Duration>,
    kind: ErrorKind,
    retry: bool,
    fix: Option<&'static str>,
}

impl Row<'static> {
    const fn new(kind: ErrorKind, retry: bool) -> Self {
        Row { status: None, error_type: None, code: None, message: None, min_wait: None, kind, retry, fix: None }
    }
    const fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    const fn error_type(mut self, error_type: &'static str) -> Self {
        self.error_type = Some(error_type);
        self
    }
    const fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    const fn message(mut self, message: &'static str) -> Self {
        self.message = Some(message);
        self
    }
    const fn min_wait(mut self, wait: Duration) -> Self {
        self.min_wait = Some(wait);
        self
    }
    const fn fix(mut self, fix: &'static str) -> Self {
        self.fix = Some(fix);
        self
    }
}

/// What a row matches against: the parsed error, lower-cased once.
pub(crate) struct Facts<'a> {
    pub(crate) status: StatusCode,
    pub(crate) parsed: &'a ParsedError,
    pub(crate) message_lower: String,
    pub(crate) server_wait: Option<Duration>,
}

impl<'a> Facts<'a> {
    pub(crate) fn new(status: StatusCode, parsed: &'a ParsedError, server_wait: Option<Duration>) -> Self {
        let message_lower = parsed.message.as_deref().unwrap_or_default().to_lowercase();
        Facts { status, parsed, message_lower, server_wait }
    }
}

impl Row<'_> {
    fn matches(&self, facts: &Facts<'_>) -> bool {
        let contains_ci =
            |haystack: &str, needle: &str| haystack.to_ascii_lowercase().contains(&needle.to_ascii_lowercase());
        self.status.is_none_or(|s| s == facts.status.as_u16())
            && self
                .error_type
                .is_none_or(|t| facts.parsed.error_type.as_deref().is_some_and(|have| have.eq_ignore_ascii_case(t)))
            && self.code.is_none_or(|c| facts.parsed.codes().any(|have| contains_ci(have, c)))
            && self.message.is_none_or(|m| facts.message_lower.contains(&m.to_lowercase()))
            && self.min_wait.is_none_or(|w| facts.server_wait.is_some_and(|have| have >= w))
    }
}

/// The outcome of classification: what the error is and whether it is transient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Classification {
    pub(crate) kind: ErrorKind,
    pub(crate) retry: bool,
    pub(crate) fix: &'static str,
}

use ErrorKind::*;

const HOUR: Duration = Duration::from_secs(3600);

/// Signals every provider shares (OpenAI-compatible codes, common messages).
/// Checked after a provider's own signal rows and before its status rows.
const COMMON_SIGNALS: &[Row<'static>] = &[
    Row::new(QuotaExceeded, false)
        .code("insufficient_quota")
        .fix("Check your plan and billing details: the quota is used up, add credit or raise the limit"),
    Row::new(Billing, false).code("credit_balance").fix("Add prepaid credit to the account"),
    Row::new(QuotaExceeded, false)
        .code("spend_limit")
        .fix("A spend limit was reached: raise it or wait for the next billing period"),
    Row::new(QuotaExceeded, false)
        .code("usage_limit")
        .fix("A usage limit was reached: raise it or wait for the next period"),
    Row::new(ContextLengthExceeded, false).code("context_length_exceeded"),
    Row::new(ContentFiltered, false).code("content_filter"),
    Row::new(ContentFiltered, false).code("content_policy_violation"),
    Row::new(ContentFiltered, false).code("ResponsibleAIPolicyViolation"),
    Row::new(NotFound, false).code("model_not_found").fix("Check the model name and that your account can use it"),
    Row::new(Authentication, false).code("invalid_api_key"),
    Row::new(Authentication, false).code("API_KEY_INVALID"),
    Row::new(Billing, false)
        .message("credit balance is too low")
        .fix("Add credit in Plans & Billing of the provider's console"),
    Row::new(QuotaExceeded, false)
        .message("reached your specified api usage limits")
        .fix("Raise the workspace's API usage limit or wait for the limit to reset"),
    // A single request above the tokens-per-minute limit can never succeed.
    Row::new(RequestTooLarge, false)
        .status(429)
        .message("request too large")
        .fix("Reduce the request's input or max output tokens below the per-minute token limit"),
    Row::new(ContextLengthExceeded, false).message("prompt is too long"),
    Row::new(ContextLengthExceeded, false).message("context length"),
    Row::new(ContextLengthExceeded, false).message("context window"),
    Row::new(ContextLengthExceeded, false).message("exceeds the maximum number of tokens"),
    Row::new(ContextLengthExceeded, false).message("input is too long"),
    Row::new(Authentication, false).message("incorrect api key"),
    Row::new(Authentication, false).message("api key not valid"),
    Row::new(ContentFiltered, false).message("content management policy"),
];

const ANTHROPIC: Policy = Policy {
    signals: &[],
    statuses: &[
        Row::new(InvalidRequest, false)
            .status(400)
            .fix("Validate the request body; check the model string and that max_tokens is set"),
        Row::new(Authentication, false)
            .status(401)
            .fix("Check the x-api-key header; regenerate the key in the Anthropic Console"),
        Row::new(Billing, false).status(402).fix("Update payment details in the Anthropic Console"),
        Row::new(PermissionDenied, false)
            .status(403)
            .fix("Check the key's permissions; upgrade the plan if the model needs it"),
        Row::new(NotFound, false).status(404).fix("Verify the URL path and the model name spelling"),
        Row::new(RequestTooLarge, false)
            .status(413)
            .fix("Request body exceeds the 32 MB limit: reduce message content or split it into several requests"),
        Row::new(RateLimited, true)
            .status(429)
            .fix("Back off and retry after retry-after; check your usage tier limits"),
        Row::new(ServerError, true).status(500).fix("Retry with backoff; check status.anthropic.com"),
        Row::new(Timeout, true).status(504).fix("Retry; for long requests use streaming"),
        Row::new(Overloaded, true)
            .status(529)
            .fix("Retry with backoff: the API is overloaded for all users, not your account"),
    ],
};

const OPENAI: Policy = Policy {
    signals: &[],
    statuses: &[
        Row::new(InvalidRequest, false)
            .status(400)
            .fix("Validate the JSON body; check the model supports the requested features"),
        Row::new(Authentication, false)
            .status(401)
            .fix("Verify the API key (regenerate it if needed); check organization settings and the IP allowlist"),
        Row::new(PermissionDenied, false)
            .status(403)
            .fix("Check the key's model access; the country or region may not be supported"),
        Row::new(NotFound, false).status(404).fix("Check the model name; verify the fine-tuned model exists"),
        Row::new(RateLimited, true).status(429).fix("Back off and retry; upgrade the usage tier if it persists"),
        Row::new(ServerError, true).status(500).fix("Retry with backoff; check status.openai.com"),
        Row::new(Overloaded, true).status(503).fix("Wait and retry with longer backoff, or try another model"),
    ],
};

const GOOGLE: Policy = Policy {
    signals: &[
        Row::new(Billing, false)
            .status(400)
            .error_type("FAILED_PRECONDITION")
            .fix("Free tier not available here: enable billing in Google AI Studio"),
        // A per-day quota outlasts any retry; a per-minute one does not.
        Row::new(QuotaExceeded, false)
            .status(429)
            .code("PerDay")
            .fix("The daily quota is used up: wait for the reset or enable billing for higher limits"),
        Row::new(QuotaExceeded, false)
            .status(429)
            .code("Daily")
            .fix("The daily quota is used up: wait for the reset or enable billing for higher limits"),
        Row::new(Billing, false).status(402).fix("The prepaid credit balance is depleted: add credit"),
    ],
    statuses: &[
        Row::new(InvalidRequest, false)
            .status(400)
            .fix("Check the API reference; verify the endpoint version matches the features used"),
        Row::new(PermissionDenied, false)
            .status(403)
            .fix("Verify the key; enable the Gemini API in the Google Cloud Console"),
        Row::new(NotFound, false).status(404).fix("Check the model name; use models.list to see available models"),
        Row::new(RateLimited, true).status(429).fix("Back off and retry; enable billing for higher limits"),
        Row::new(ServerError, true).status(500).fix("Retry; reduce the context size or try Flash instead of Pro"),
        Row::new(Overloaded, true)
            .status(503)
            .fix("Retry with exponential backoff: the service is temporarily overloaded"),
        Row::new(Timeout, true).status(504).fix("Retry with a longer deadline, or reduce the prompt size"),
    ],
};

const AZURE: Policy = Policy {
    signals: &[
        // "Please retry after 86400 seconds" is Azure's daily token quota.
        Row::new(QuotaExceeded, false)
            .status(429)
            .min_wait(HOUR)
            .fix("The deployment's quota is used up for the day: request an increase at aka.ms/oai/quotaincrease"),
    ],
    statuses: &[],
};

const BEDROCK: Policy = Policy {
    signals: &[
        Row::new(RateLimited, true).error_type("ThrottlingException"),
        Row::new(Overloaded, true).error_type("ModelNotReadyException"),
        Row::new(Overloaded, true).error_type("ServiceUnavailableException"),
        Row::new(ServerError, true).error_type("InternalServerException"),
        Row::new(Timeout, true).error_type("ModelTimeoutException"),
        Row::new(ServerError, true).error_type("ModelStreamErrorException"),
        Row::new(QuotaExceeded, false).error_type("ServiceQuotaExceededException"),
        Row::new(InvalidRequest, false).error_type("ValidationException"),
        Row::new(PermissionDenied, false).error_type("AccessDeniedException"),
    ],
    statuses: &[],
};

const GROQ: Policy = Policy {
    signals: &[],
    statuses: &[Row::new(Overloaded, true)
        .status(498)
        .fix("Flex tier capacity exceeded: retry with jitter or use the on-demand tier")],
};

const DEEPSEEK: Policy = Policy {
    signals: &[],
    statuses: &[Row::new(Billing, false).status(402).fix("Insufficient balance: top up the account")],
};

const OPENROUTER: Policy = Policy {
    signals: &[
        // A 402 from the in-flight budget clears when other requests finish.
        Row::new(RateLimited, true).status(402).code("openrouter_in_flight_budget"),
        Row::new(ContentFiltered, false).status(403).code("moderation"),
    ],
    statuses: &[Row::new(Billing, false).status(402).fix("Not enough credits: add credits on OpenRouter")],
};

const TOGETHER: Policy = Policy {
    signals: &[],
    statuses: &[
        Row::new(Billing, false).status(402).fix("The monthly spend limit was reached: raise it or add credit"),
        // Together answers 403 when input tokens plus max_tokens exceed the context length.
        Row::new(ContextLengthExceeded, false).status(403).message("tokens").fix(
            "Input tokens plus max_tokens exceed the model's context length: shorten the prompt or lower max_tokens",
        ),
    ],
};

const FIREWORKS: Policy = Policy {
    signals: &[],
    statuses: &[
        Row::new(Billing, false).status(402).fix("Account not paid or usage limit reached: check billing"),
        Row::new(Unknown, false)
            .status(412)
            .fix("Account suspended or the LoRA failed to load: check the Fireworks dashboard"),
    ],
};

const NONE: Policy = Policy { signals: &[], statuses: &[] };

/// A provider's rows, in the two places they are checked.
#[derive(Debug, Clone, Copy)]
struct Policy {
    signals: &'static [Row<'static>],
    statuses: &'static [Row<'static>],
}

fn policy(provider: Provider) -> Policy {
    match provider {
        Provider::Anthropic => ANTHROPIC,
        Provider::OpenAi => OPENAI,
        Provider::Gemini | Provider::VertexAi => GOOGLE,
        Provider::AzureOpenAi => AZURE,
        Provider::Bedrock => BEDROCK,
        Provider::Groq => GROQ,
        Provider::DeepSeek => DEEPSEEK,
        Provider::OpenRouter => OPENROUTER,
        Provider::Together => TOGETHER,
        Provider::Fireworks => FIREWORKS,
        _ => NONE,
    }
}

/// Statuses retried when nothing more specific matched: what the official SDKs
/// retry for known providers (408, 409, 429, every 5xx), and the conservative
/// generic set for unknown hosts.
fn status_retries(provider: Provider, status: StatusCode) -> bool {
    match provider {
        Provider::Unknown => matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504),
        _ => matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error() || status.as_u16() == 498,
    }
}

/// Classifies an error response: user rules, then the provider's signal rows,
/// the shared signal rows, the provider's status rows, and the status alone.
pub(crate) fn classify(provider: Provider, facts: &Facts<'_>, user_rules: &[(Provider, RetryRule)]) -> Classification {
    let policy = policy(provider);
    let user = user_rules.iter().filter(|(p, _)| *p == provider).map(|(_, rule)| rule.row());
    let builtin = policy.signals.iter().chain(COMMON_SIGNALS).chain(policy.statuses).copied();
    user.chain(builtin).find(|row| row.matches(facts)).map_or_else(
        || {
            let kind = ErrorKind::from_status(facts.status);
            Classification { kind, retry: status_retries(provider, facts.status), fix: kind.fix() }
        },
        |row| Classification { kind: row.kind, retry: row.retry, fix: row.fix.unwrap_or_else(|| row.kind.fix()) },
    )
}

#[cfg(test)]
mod retry_table;
mod rule;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_error_body;

    fn run(provider: Provider, status: u16, body: &str, wait: Option<Duration>) -> Classification {
        let parsed = parse_error_body(body.as_bytes(), status);
        let facts = Facts::new(StatusCode::from_u16(status).unwrap(), &parsed, wait);
        classify(provider, &facts, &[])
    }

    #[test]
    fn a_hint_read_at_run_time_is_kept_once_per_text() {
        let rule = |hint: String| RetryRule::give_up(ErrorKind::ServerError).fix(hint);
        let (a, b) = (rule("Page the gateway team".to_owned()), rule(["Page the", "gateway team"].join(" ")));
        let (a, b) = (a.row().fix.unwrap(), b.row().fix.unwrap());
        assert_eq!(a, "Page the gateway team");
        assert!(std::ptr::eq(a, b), "the same text is kept once");
        let parsed = parse_error_body(b"{}", 503);
        let facts = Facts::new(StatusCode::SERVICE_UNAVAILABLE, &parsed, None);
        let rules = [(Provider::OpenAi, rule("Page the gateway team".to_owned()))];
        assert_eq!(classify(Provider::OpenAi, &facts, &rules).fix, "Page the gateway team");
    }

    #[test]
    fn seed_table() {
        use Provider::*;
        let anth = |t: &str| format!(r#"{{"type":"error","error":{{"type":"{t}","message":"m"}}}}"#);
        let oai = |t: &str, c: &str| format!(r#"{{"error":{{"message":"m","type":"{t}","param":null,"code":"{c}"}}}}"#);
        let goog = |code: u16, s: &str| format!(r#"{{"error":{{"code":{code},"message":"m","status":"{s}"}}}}"#);
        let table: Vec<(Provider, u16, String, ErrorKind, bool)> = vec![
            (Anthropic, 400, anth("invalid_request_error"), InvalidRequest, false),
            (Anthropic, 401, anth("authentication_error"), Authentication, false),
            (Anthropic, 402, anth("billing_error"), Billing, false),
            (Anthropic, 403, anth("permission_error"), PermissionDenied, false),
            (Anthropic, 404, anth("not_found_error"), NotFound, false),
            (Anthropic, 413, anth("request_too_large"), RequestTooLarge, false),
            (Anthropic, 429, anth("rate_limit_error"), RateLimited, true),
            (Anthropic, 500, anth("api_error"), ServerError, true),
            (Anthropic, 529, anth("overloaded_error"), Overloaded, true),
            (OpenAi, 400, oai("invalid_request_error", ""), InvalidRequest, false),
            (OpenAi, 401, oai("invalid_request_error", "invalid_api_key"), Authentication, false),
            (OpenAi, 403, oai("permission_error", ""), PermissionDenied, false),
            (OpenAi, 404, oai("invalid_request_error", "model_not_found"), NotFound, false),
            (OpenAi, 429, oai("requests", "rate_limit_exceeded"), RateLimited, true),
            (OpenAi, 429, oai("insufficient_quota", "insufficient_quota"), QuotaExceeded, false),
            (OpenAi, 429, oai("insufficient_quota", "credit_balance_exhausted"), Billing, false),
            (OpenAi, 429, oai("", "organization_spend_limit_exceeded"), QuotaExceeded, false),
            (OpenAi, 400, oai("invalid_request_error", "context_length_exceeded"), ContextLengthExceeded, false),
            (OpenAi, 500, oai("server_error", ""), ServerError, true),
            (OpenAi, 503, oai("service_unavailable", ""), Overloaded, true),
            (Gemini, 400, goog(400, "INVALID_ARGUMENT"), InvalidRequest, false),
            (Gemini, 400, goog(400, "FAILED_PRECONDITION"), Billing, false),
            (Gemini, 403, goog(403, "PERMISSION_DENIED"), PermissionDenied, false),
            (Gemini, 404, goog(404, "NOT_FOUND"), NotFound, false),
            (Gemini, 429, goog(429, "RESOURCE_EXHAUSTED"), RateLimited, true),
            (Gemini, 500, goog(500, "INTERNAL"), ServerError, true),
            (Gemini, 503, goog(503, "UNAVAILABLE"), Overloaded, true),
            (VertexAi, 504, goog(504, "DEADLINE_EXCEEDED"), Timeout, true),
        ];
        for (provider, status, body, kind, retry) in table {
            let got = run(provider, status, &body, None);
            assert_eq!((got.kind, got.retry), (kind, retry), "{provider} {status} {body}");
        }
    }

    #[test]
    fn statuses_the_sdks_retry() {
        for status in [408, 409, 502, 504, 520] {
            assert!(run(Provider::OpenAi, status, "", None).retry, "{status}");
            assert!(run(Provider::Anthropic, status, "", None).retry, "{status}");
        }
        for status in [400, 401, 402, 403, 404, 413, 422] {
            assert!(!run(Provider::OpenAi, status, "", None).retry, "{status}");
        }
    }

    #[test]
    fn unknown_hosts_get_the_conservative_set() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(run(Provider::Unknown, status, "", None).retry, "{status}");
        }
        for status in [409, 501, 529, 400] {
            assert!(!run(Provider::Unknown, status, "", None).retry, "{status}");
        }
        let quota = r#"{"error":{"code":"insufficient_quota","message":"m"}}"#;
        assert_eq!(run(Provider::Unknown, 429, quota, None).kind, QuotaExceeded);
    }

    #[test]
    fn gemini_daily_quota_is_terminal_and_minute_quota_retries() {
        let body = |id: &str| {
            format!(
                r#"{{"error":{{"code":429,"message":"m","status":"RESOURCE_EXHAUSTED","details":[{{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{{"quotaId":"{id}"}}]}}]}}}}"#
            )
        };
        let daily = run(Provider::Gemini, 429, &body("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), None);
        assert_eq!((daily.kind, daily.retry), (QuotaExceeded, false));
        let minute = run(Provider::Gemini, 429, &body("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"), None);
        assert_eq!((minute.kind, minute.retry), (RateLimited, true));
    }

    #[test]
    fn anthropic_billing_and_context_messages() {
        let credit = r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}"#;
        assert_eq!(run(Provider::Anthropic, 400, credit, None).kind, Billing);
        let long = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208656 tokens > 200000 maximum"}}"#;
        assert_eq!(run(Provider::Anthropic, 400, long, None).kind, ContextLengthExceeded);
        let spend = r#"{"type":"error","error":{"type":"rate_limit_error","message":"m","details":{"error_code":"enforced_spend_limit_reached"}}}"#;
        assert_eq!(
            run(Provider::Anthropic, 429, spend, None),
            Classification { kind: QuotaExceeded, retry: false, fix: COMMON_SIGNALS[2].fix.unwrap() }
        );
    }

    #[test]
    fn azure_daily_wait_is_a_quota() {
        let body = r#"{"error":{"code":"429","message":"Please retry after 86400 seconds."}}"#;
        let daily = run(Provider::AzureOpenAi, 429, body, Some(Duration::from_secs(86_400)));
        assert_eq!((daily.kind, daily.retry), (QuotaExceeded, false));
        let short = run(Provider::AzureOpenAi, 429, body, Some(Duration::from_secs(2)));
        assert_eq!((short.kind, short.retry), (RateLimited, true));
    }

    #[test]
    fn fixes_carry_the_reference_column() {
        assert!(run(Provider::Anthropic, 413, "", None).fix.contains("32 MB"));
        assert!(run(Provider::Gemini, 404, "", None).fix.contains("models.list"));
        assert!(run(Provider::OpenAi, 503, "", None).fix.contains("another model"));
    }

    #[test]
    fn user_rules_come_first_and_only_for_their_provider() {
        let rules = vec![(
            Provider::OpenAi,
            RetryRule::give_up(ServerError).status(StatusCode::INTERNAL_SERVER_ERROR).fix("nope"),
        )];
        let parsed = parse_error_body(b"", 500);
        let facts = Facts::new(StatusCode::INTERNAL_SERVER_ERROR, &parsed, None);
        assert_eq!(
            classify(Provider::OpenAi, &facts, &rules),
            Classification { kind: ServerError, retry: false, fix: "nope" }
        );
        assert!(classify(Provider::Anthropic, &facts, &rules).retry);
    }
}
