//! The rate-limit headers a provider sends on every response, as one snapshot.
//!
//! Providers say how much of each limit is left and when it resets, on
//! successes as well as on 429s: OpenAI and Groq in `x-ratelimit-*` with Go
//! durations (`6m0s`, `547ms`), Azure in `x-ratelimit-*` or `x-rate-limit-*`
//! with seconds, Cerebras in `x-ratelimit-*-requests-day` /
//! `*-tokens-minute` with fractional seconds, Anthropic in
//! `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-*` with
//! RFC 3339 resets. The middleware reads them to pace requests that share a
//! key, and callers read them from any response with
//! [`LlmResponseExt::rate_limits`](crate::LlmResponseExt::rate_limits) to
//! pace themselves too.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

use crate::retry_after::{parse_reset_timestamp, reset_duration};

/// One limit: its size, what is left, and when it resets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// The size of the limit in its window (`x-ratelimit-limit-*`).
    pub limit: Option<u64>,
    /// What is left in the current window (`x-ratelimit-remaining-*`).
    pub remaining: Option<u64>,
    /// Time until the window resets (`x-ratelimit-reset-*`): from the response
    /// for a duration (`6m0s`, `55`); for a timestamp (Anthropic's RFC 3339
    /// resets), from the time it was read.
    pub reset: Option<Duration>,
}

/// The rate-limit headers of one response, by family.
///
/// Read from a response with
/// [`LlmResponseExt::rate_limits`](crate::LlmResponseExt::rate_limits), or
/// from any headers with [`RateLimits::from_headers`]:
///
/// ```
/// # use reqwest_llm_retry::LlmResponseExt;
/// # async fn demo(resp: reqwest::Response) {
/// if let Some(requests) = resp.rate_limits().and_then(|r| r.requests) {
///     if requests.remaining == Some(0) {
///         println!("window resets in {:?}", requests.reset);
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimits {
    /// Requests per window (Cerebras: per day; Groq: per day).
    pub requests: Option<RateLimit>,
    /// Tokens per window (input and output together).
    pub tokens: Option<RateLimit>,
    /// Input tokens per minute (Anthropic).
    pub input_tokens: Option<RateLimit>,
    /// Output tokens per minute (Anthropic).
    pub output_tokens: Option<RateLimit>,
}

#[derive(Clone, Copy)]
enum Field {
    Limit,
    Remaining,
    Reset,
}

/// How reset values are written.
#[derive(Clone, Copy)]
enum Clock {
    /// `1s`, `6m0s`, `55`, `11.38`: a duration from now.
    Duration,
    /// `2024-03-26T20:00:00Z` or epoch seconds: a point in time.
    Timestamp,
}

/// The families, in the order of [`RateLimits::family_mut`].
#[derive(Clone, Copy)]
enum Family {
    Requests,
    Tokens,
    InputTokens,
    OutputTokens,
}

impl RateLimits {
    /// Reads every rate-limit header family in `headers`; `None` when there is none.
    /// `now` is when the response arrived (resets written as timestamps are measured from it).
    pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Option<RateLimits> {
        RateLimits::read(headers, || now)
    }

    /// [`RateLimits::from_headers`], reading the clock only for a timestamp.
    pub(crate) fn read(headers: &HeaderMap, now: impl Fn() -> SystemTime) -> Option<RateLimits> {
        let mut limits = RateLimits::default();
        let mut found = false;
        // This runs on every response: one pass over the headers, bytes
        // rather than `str`s, and no lookup by name (each would hash it).
        for (name, value) in headers {
            let name = name.as_str().as_bytes();
            // Most headers are none of these: turned away here, without a call.
            if name.len() < SHORTEST_NAME || !matches!(name[0], b'x' | b'a') {
                continue;
            }
            let Some((family, field, clock)) = classify_header(name) else { continue };
            let entry = limits.family_mut(family).get_or_insert_with(RateLimit::default);
            let value = value.as_bytes().trim_ascii();
            match field {
                Field::Limit => entry.limit = entry.limit.or_else(|| integer(value)),
                Field::Remaining => entry.remaining = entry.remaining.or_else(|| integer(value)),
                Field::Reset => {
                    entry.reset = entry.reset.or_else(|| match clock {
                        Clock::Duration => reset_duration(value),
                        Clock::Timestamp => parse_reset_timestamp(std::str::from_utf8(value).ok()?, now()),
                    })
                }
            }
            found = true;
        }
        found.then_some(limits)
    }

    fn family_mut(&mut self, family: Family) -> &mut Option<RateLimit> {
        match family {
            Family::Requests => &mut self.requests,
            Family::Tokens => &mut self.tokens,
            Family::InputTokens => &mut self.input_tokens,
            Family::OutputTokens => &mut self.output_tokens,
        }
    }

    /// Every family present.
    pub fn iter(&self) -> impl Iterator<Item = &RateLimit> {
        [&self.requests, &self.tokens, &self.input_tokens, &self.output_tokens].into_iter().flatten()
    }

    /// Whether every family present has a limit and half of it left.
    pub(crate) fn roomy(&self) -> bool {
        self.iter().all(|l| matches!((l.limit, l.remaining), (Some(limit), Some(left)) if left >= limit / 2))
    }

    /// When a family is used up (`remaining: 0`), the time until the last
    /// such family resets: no request can succeed before then.
    pub fn exhausted_for(&self) -> Option<Duration> {
        self.iter().filter(|l| l.remaining == Some(0)).filter_map(|l| l.reset).max()
    }

    /// The wait a 429 without `retry-after` implies: until the exhausted
    /// families reset, else the earliest reset of all (we cannot tell which
    /// limit was hit, and the earliest is the first chance to succeed).
    pub(crate) fn wait_hint(&self) -> Option<Duration> {
        self.exhausted_for().or_else(|| self.iter().filter_map(|l| l.reset).min())
    }
}

/// A count: ASCII digits with an optional `+`, as `str::parse::<u64>` reads them.
fn integer(value: &[u8]) -> Option<u64> {
    let digits = value.strip_prefix(b"+").unwrap_or(value);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        (digit < 10).then_some(())?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The length of the shortest name read, `x-ratelimit-reset-tokens`.
const SHORTEST_NAME: usize = 24;

/// `x-ratelimit-remaining-requests` → (requests, Remaining, Duration);
/// `anthropic-ratelimit-input-tokens-reset` → (input tokens, Reset, Timestamp).
///
/// Runs on every header of every response, so it dispatches on bytes at
/// fixed places rather than searching: most names are rejected by their
/// length or first byte.
#[inline(never)]
fn classify_header(name: &[u8]) -> Option<(Family, Field, Clock)> {
    if name.len() < SHORTEST_NAME {
        return None;
    }
    match name[0] {
        b'x' => {
            // `x-ratelimit-{field}-{family}` (`x-rate-limit-` on Azure).
            let rest = name.strip_prefix(b"x-ratelimit-").or_else(|| name.strip_prefix(b"x-rate-limit-"))?;
            let (field, family_at) = match rest.get(..3)? {
                b"lim" if rest.starts_with(b"limit-") => (Field::Limit, 6),
                b"rem" if rest.starts_with(b"remaining-") => (Field::Remaining, 10),
                b"res" if rest.starts_with(b"reset-") => (Field::Reset, 6),
                _ => return None,
            };
            Some((family(&rest[family_at..])?, field, Clock::Duration))
        }
        b'a' => {
            // `anthropic-ratelimit-{family}-{field}`; families contain dashes.
            let rest = name.strip_prefix(b"anthropic-ratelimit-")?;
            let (field, field_len) = match *rest.last()? {
                b't' if rest.ends_with(b"-limit") => (Field::Limit, 6),
                b'g' if rest.ends_with(b"-remaining") => (Field::Remaining, 10),
                b't' if rest.ends_with(b"-reset") => (Field::Reset, 6),
                _ => return None,
            };
            Some((family(&rest[..rest.len() - field_len])?, field, Clock::Timestamp))
        }
        _ => None,
    }
}

/// `requests-day`, `tokens-minute`, `tokens_usage_based` belong to their base family.
fn family(name: &[u8]) -> Option<Family> {
    // Each arm compares with its own constant, which compiles to a few loads
    // rather than a call to `memcmp`.
    match name.first()? {
        b'r' if name.starts_with(b"requests") => Some(Family::Requests),
        b't' if name.starts_with(b"tokens") => Some(Family::Tokens),
        b'i' if name.starts_with(b"input-tokens") => Some(Family::InputTokens),
        b'o' if name.starts_with(b"output-tokens") => Some(Family::OutputTokens),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn openai_and_groq() {
        let h = headers(&[
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-limit-tokens", "150000"),
            ("x-ratelimit-remaining-tokens", "149984"),
            ("x-ratelimit-reset-tokens", "6m0s"),
            ("x-request-id", "req_1"),
        ]);
        let r = RateLimits::from_headers(&h, SystemTime::now()).unwrap();
        assert_eq!(r.requests, Some(RateLimit { limit: Some(60), remaining: Some(0), reset: Some(MS(1000)) }));
        assert_eq!(
            r.tokens,
            Some(RateLimit { limit: Some(150_000), remaining: Some(149_984), reset: Some(MS(360_000)) })
        );
        assert_eq!(r.exhausted_for(), Some(MS(1000)));
        assert_eq!(r.wait_hint(), Some(MS(1000)));
    }

    #[test]
    fn anthropic_families_and_timestamps() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_711_483_200); // 2024-03-26T20:00:00Z
        let h = headers(&[
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-requests-reset", "2024-03-26T20:00:02Z"),
            ("anthropic-ratelimit-input-tokens-remaining", "0"),
            ("anthropic-ratelimit-input-tokens-reset", "2024-03-26T20:00:30Z"),
            ("anthropic-ratelimit-output-tokens-limit", "8000"),
        ]);
        let r = RateLimits::from_headers(&h, now).unwrap();
        assert_eq!(r.requests.unwrap().reset, Some(MS(2000)));
        assert_eq!(r.input_tokens.unwrap().remaining, Some(0));
        assert_eq!(r.output_tokens.unwrap().limit, Some(8000));
        assert_eq!(r.exhausted_for(), Some(MS(30_000)));
    }

    #[test]
    fn azure_and_cerebras_seconds() {
        let h = headers(&[("x-rate-limit-reset-tokens", "55"), ("x-ratelimit-remaining-tokens", "0")]);
        assert_eq!(RateLimits::from_headers(&h, SystemTime::now()).unwrap().exhausted_for(), Some(MS(55_000)));
        let h = headers(&[
            ("x-ratelimit-limit-requests-day", "14400"),
            ("x-ratelimit-remaining-requests-day", "14399"),
            ("x-ratelimit-reset-requests-day", "33011.4"),
            ("x-ratelimit-remaining-tokens-minute", "0"),
            ("x-ratelimit-reset-tokens-minute", "11.38"),
        ]);
        let r = RateLimits::from_headers(&h, SystemTime::now()).unwrap();
        assert_eq!(r.requests.unwrap().limit, Some(14_400));
        assert_eq!(r.exhausted_for(), Some(MS(11_380)));
    }

    #[test]
    fn nonsense_and_absence() {
        assert_eq!(RateLimits::from_headers(&headers(&[("content-type", "json")]), SystemTime::now()), None);
        let h = headers(&[("x-ratelimit-remaining-tokens", "-1"), ("x-ratelimit-reset-tokens", "0")]);
        let r = RateLimits::from_headers(&h, SystemTime::now()).unwrap();
        assert_eq!(r.tokens, Some(RateLimit { limit: None, remaining: None, reset: Some(Duration::ZERO) }));
        assert_eq!(r.exhausted_for(), None);
        let h = headers(&[("x-ratelimit-remaining-bananas", "0"), ("anthropic-ratelimit-x", "1")]);
        assert_eq!(RateLimits::from_headers(&h, SystemTime::now()), None);
    }

    proptest::proptest! {
        #[test]
        fn counts_read_as_str_parse_reads_them(text in "[+0-9a ]{0,24}|[0-9]{18,22}") {
            proptest::prop_assert_eq!(integer(text.as_bytes()), text.parse::<u64>().ok());
        }
    }

    /// The definition `classify_header` reads fast: a prefix, then `{field}-{family}`
    /// split at the first dash (`x-`), or `{family}-{field}` at the last (`anthropic-`).
    fn classify_by_definition(name: &str) -> Option<(u8, u8, bool)> {
        let fields = ["limit", "remaining", "reset"];
        let families = ["requests", "tokens", "input-tokens", "output-tokens"];
        let field = |f: &str| fields.iter().position(|x| *x == f).map(|i| i as u8);
        let family = |f: &str| families.iter().position(|x| f.starts_with(x)).map(|i| i as u8);
        if let Some(rest) = name.strip_prefix("x-ratelimit-").or_else(|| name.strip_prefix("x-rate-limit-")) {
            let (f, fam) = rest.split_once('-')?;
            return Some((family(fam)?, field(f)?, true));
        }
        let (fam, f) = name.strip_prefix("anthropic-ratelimit-")?.rsplit_once('-')?;
        Some((family(fam)?, field(f)?, false))
    }

    proptest::proptest! {
        // Cheap, and each prefix, order and suffix is then drawn many times over.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        #[test]
        fn header_names_classify_by_their_definition(
            name in "(x-ratelimit-|x-rate-limit-|anthropic-ratelimit-|x-ratelimi|)\
                     (limit|remaining|reset|requests|tokens|input-tokens|output-tokens|[a-z]{1,3})-\
                     (limit|remaining|reset|requests|tokens|input-tokens|output-tokens|[a-z]{1,3})\
                     (|-day|-minute|_usage_based|s|-)"
        ) {
            let fast = classify_header(name.as_bytes()).map(|(family, field, clock)| {
                (family as u8, field as u8, matches!(clock, Clock::Duration))
            });
            proptest::prop_assert_eq!(fast, classify_by_definition(&name));
        }
    }
}
