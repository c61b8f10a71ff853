//! Every header and wait parser, fed arbitrary text and an arbitrary clock.
//!
//! Invariants: no panic, no overflow, every wait bounded (about 31 years);
//! the same text as response headers through `LlmApiError::parse` yields an error.
#![no_main]

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use reqwest_llm_retry::retry_after::{
    parse_go_duration, parse_message_wait, parse_reset_duration, parse_reset_timestamp, parse_retry_after,
    parse_retry_after_ms,
};
use reqwest_llm_retry::{LlmApiError, Provider, RateLimits};

const MAX_WAIT: Duration = Duration::from_secs(1 << 30);

const WAIT_HEADERS: [&str; 10] = [
    "retry-after-ms",
    "retry-after",
    "x-ratelimit-reset-requests",
    "x-rate-limit-reset-tokens",
    "anthropic-ratelimit-tokens-reset",
    "x-ratelimit-remaining-requests",
    "x-should-retry",
    "x-ratelimit-limit-tokens-minute",
    "anthropic-ratelimit-input-tokens-remaining",
    "x-ratelimit-reset-requests-day",
];

fuzz_target!(|data: &[u8]| {
    let Some((clock, text)) = data.split_first_chunk::<8>() else { return };
    // Any instant, from before the epoch to far in the future.
    let offset = Duration::from_secs(u64::from_le_bytes(*clock) >> 20);
    let now = if clock[0] & 1 == 0 {
        SystemTime::UNIX_EPOCH.checked_add(offset)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(offset)
    };
    let now = now.unwrap_or(SystemTime::UNIX_EPOCH);
    let text = String::from_utf8_lossy(text);

    let waits = [
        parse_retry_after_ms(&text),
        parse_retry_after(&text, now),
        parse_retry_after(&text, SystemTime::now()),
        parse_go_duration(&text),
        parse_reset_duration(&text),
        parse_reset_timestamp(&text, now),
        parse_reset_timestamp(&text, SystemTime::now()),
        parse_message_wait(&text),
    ];
    for wait in waits.into_iter().flatten() {
        assert!(wait <= MAX_WAIT, "{wait:?} from {text:?}");
    }

    // The same text as every header that carries a wait, split on newlines.
    let mut headers = HeaderMap::new();
    for (name, value) in WAIT_HEADERS.iter().zip(text.split('\n').cycle()) {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
    if let Some(limits) = RateLimits::from_headers(&headers, now) {
        assert!(limits.iter().all(|l| l.reset.is_none_or(|d| d <= MAX_WAIT)), "{limits:?}");
        assert!(limits.exhausted_for().is_none_or(|d| d <= MAX_WAIT));
    }
    for provider in [Provider::OpenAi, Provider::Anthropic, Provider::AzureOpenAi, Provider::Gemini] {
        let error = LlmApiError::parse(provider, StatusCode::TOO_MANY_REQUESTS, &headers, text.as_bytes());
        assert!(error.retry_after.is_none_or(|d| d <= MAX_WAIT));
        let _ = (error.to_string(), format!("{error:?}"));
    }
});
