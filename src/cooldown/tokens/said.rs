//! The limit a 429's message names, where no header states it.
//!
//! Gateways strip rate-limit headers, and some hosts never send them; the
//! 429's message still says which limit was hit and how large it is:
//!
//! - OpenAI: "… on tokens per min (TPM): Limit 40000, Used 38112, Requested
//!   3207. Please try again in 1.2s." (requests: "on requests per min (RPM): Limit 20");
//! - Anthropic: "This request would exceed the rate limit for your
//!   organization (…) of 40,000 input tokens per minute." (also "… your
//!   organization's rate limit of 30,000 input tokens per minute (org: …)");
//! - Gemini: "Quota exceeded for metric: …/generate_content_paid_tier_input_token_count, limit: 4000000".

use super::cost::Family;

/// A limit named in a 429's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Said {
    /// The token limit it is, or `None` for a request limit.
    pub(crate) tokens: Option<Family>,
    /// The limit's size in its window.
    pub(crate) limit: u64,
    /// How much of it the window had used (OpenAI's "Used 38112").
    pub(crate) used: Option<u64>,
}

/// The limit a 429's message names, if it names one.
pub(crate) fn limit_in_message(message: &str) -> Option<Said> {
    // ASCII lower-casing keeps byte offsets.
    let lower = message.to_ascii_lowercase();
    let (limit, used) = match number_after_word(&lower, "limit") {
        Some(limit) => (limit, number_after_word(&lower, "used")),
        None => (anthropic_limit(&lower)?, None),
    };
    Some(Said { tokens: family(&lower), limit, used })
}

/// Which token limit the message is about, by the words it uses; `None` for requests.
fn family(lower: &str) -> Option<Family> {
    const WORDS: [(&str, Family); 5] = [
        ("input tokens per", Family::Input),
        ("output tokens per", Family::Output),
        ("tokens per min", Family::Tokens),
        ("(tpm)", Family::Tokens),
        ("token_count", Family::Tokens),
    ];
    WORDS.iter().find(|(words, _)| lower.contains(words)).map(|(_, family)| *family)
}

/// The whole number after `word` (as a word), with an optional colon: "Limit 20", "limit: 15".
fn number_after_word(lower: &str, word: &str) -> Option<u64> {
    let bytes = lower.as_bytes();
    let mut at = 0;
    while let Some(found) = lower[at..].find(word) {
        let start = at + found;
        at = start + word.len();
        if start > 0 && bytes[start - 1].is_ascii_alphanumeric() {
            continue;
        }
        let rest = &bytes[at..];
        let rest = rest.strip_prefix(b":").unwrap_or(rest).trim_ascii_start();
        if let Some(n) = whole_number(rest, false) {
            return Some(n);
        }
    }
    None
}

/// Anthropic's "of 40,000 input tokens per minute": a number with thousands
/// separators after "of", followed by what it counts.
fn anthropic_limit(lower: &str) -> Option<u64> {
    let mut at = 0;
    while let Some(found) = lower[at..].find(" of ") {
        at += found + 4;
        let rest = &lower.as_bytes()[at..];
        let Some(n) = whole_number(rest, true) else { continue };
        let width = rest.iter().take_while(|b| b.is_ascii_digit() || **b == b',').count();
        let unit = rest[width..].trim_ascii_start();
        if [&b"input"[..], b"output", b"tokens", b"requests"].iter().any(|u| unit.starts_with(u)) {
            return Some(n);
        }
    }
    None
}

/// The positive whole number at the start of `text`, ended by a non-alphanumeric
/// byte; with `commas`, thousands separators are skipped.
fn whole_number(text: &[u8], commas: bool) -> Option<u64> {
    let mut n: u64 = 0;
    let mut digits = 0;
    for &b in text {
        match b {
            b'0'..=b'9' => {
                n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                digits += 1;
            }
            b',' if commas && digits > 0 => {}
            b if b.is_ascii_alphanumeric() => return None,
            _ => break,
        }
    }
    (digits > 0 && n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(tokens: Option<Family>, limit: u64, used: Option<u64>) -> Option<Said> {
        Some(Said { tokens, limit, used })
    }

    #[test]
    fn limits_in_each_providers_messages() {
        let table = [
            (
                "Rate limit reached for gpt-4o-mini in organization org-x on requests per min (RPM): Limit 20, Used 20, Requested 1.",
                said(None, 20, Some(20)),
            ),
            (
                "Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 40000, Used 38112, Requested 3207. Please try again in 1.2s.",
                said(Some(Family::Tokens), 40_000, Some(38_112)),
            ),
            (
                "Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested 30601.",
                said(Some(Family::Tokens), 30_000, None),
            ),
            (
                "This request would exceed the rate limit for your organization (0dccdde6-f924) of 40,000 input tokens per minute. For details, refer to: https://docs.anthropic.com/en/api/rate-limits.",
                said(Some(Family::Input), 40_000, None),
            ),
            (
                "This request would exceed your organization's rate limit of 8,000 output tokens per minute (org: 9d50, model: claude-sonnet-4-6).",
                said(Some(Family::Output), 8_000, None),
            ),
            (
                "This request would exceed the rate limit for your organization of 50 requests per minute.",
                said(None, 50, None),
            ),
            (
                "Quota exceeded for metric: x/generate_content_free_tier_requests, limit: 15, model: gemini",
                said(None, 15, None),
            ),
            (
                "Quota exceeded for metric: x/generate_content_paid_tier_input_token_count, limit: 4000000\nPlease retry in 47s.",
                said(Some(Family::Tokens), 4_000_000, None),
            ),
        ];
        for (message, expected) in table {
            assert_eq!(limit_in_message(message), expected, "{message}");
        }
    }

    #[test]
    fn no_limit_without_a_number_that_stands_alone() {
        for message in [
            "rate limit exceeded",
            "limits: 5",
            "limit 99999999999999999999999",
            "limit: 0",
            "limit 20k",
            "a list of 3 items",
            "sublimit 20",
            "of ,000 tokens",
        ] {
            assert_eq!(limit_in_message(message), None, "{message}");
        }
    }
}
