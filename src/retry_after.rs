//! How long the server asked us to wait, from every place a provider puts it.
//!
//! Why the server's wait beats our backoff: a rate limiter knows when its
//! window resets, we can only guess. Retrying earlier is a wasted call that
//! may even extend the penalty; retrying much later wastes the caller's time.
//! So every form a provider uses is read, in the order the official SDKs read
//! them: `retry-after-ms`, then `retry-after` (seconds, fractional seconds or
//! an HTTP-date), then a wait in the body (Gemini `RetryInfo.retryDelay`, a
//! "Please retry in 47.4s" message), and only then the rate-limit reset
//! headers, which say when a window resets rather than how long to wait.
//!
//! Every parser here is pure and total: hostile values (negative, NaN,
//! `1e308`, year 99999, 10 KB of digits) give `None`, never a panic or an
//! overflow.
//!
//! Public only for this crate's fuzz targets and property tests, and hidden
//! from the docs: **not part of the API, not covered by semver**; any release
//! may change or remove it. Programs read waits from
//! [`LlmApiError::retry_after`](crate::LlmApiError::retry_after) and
//! [`RateLimits`](crate::RateLimits).

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// The largest wait any parser returns; anything longer is nonsense or a
/// multi-year window, and is reported as this (about 31 years).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(1 << 30);

/// Seconds as a float into a `Duration`: finite and non-negative only, saturating at [`MAX_WAIT`].
pub(crate) fn secs_f64(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).map_or(MAX_WAIT, |d| d.min(MAX_WAIT)))
}

/// Nanoseconds per second.
const NS: u64 = 1_000_000_000;

/// `str::trim`, with the common all-ASCII case answered without decoding chars.
fn trim(s: &str) -> &str {
    let t = s.trim_ascii();
    // Vertical tab and non-ASCII whitespace are Unicode whitespace too.
    let unusual = |b: Option<&u8>| b.is_some_and(|&b| !b.is_ascii() || b == 0x0b);
    if unusual(t.as_bytes().first()) || unusual(t.as_bytes().last()) { t.trim() } else { t }
}

/// A plain decimal number, read exactly: digits with at most one dot, an
/// optional leading `+`; no sign, exponent, `inf` or `nan`, which
/// `str::parse::<f64>` would accept. Integer arithmetic rather than floats:
/// exact, and these run on every response's rate-limit headers.
#[derive(Debug, Clone, Copy)]
struct Decimal {
    /// The integer part; `None` when it overflows.
    int: Option<u64>,
    /// The first 18 fraction digits, as an integer over `scale`.
    frac: u64,
    scale: u64,
}

impl Decimal {
    /// At most 64 characters after trimming and the `+`.
    fn parse(s: &str) -> Option<Decimal> {
        let s = trim(s);
        Decimal::digits(s.strip_prefix('+').unwrap_or(s))
    }

    /// Digits and at most one dot, nothing else; at least one digit.
    fn digits(s: &str) -> Option<Decimal> {
        if s.is_empty() || s.len() > 64 {
            return None;
        }
        let mut number = Decimal { int: Some(0), frac: 0, scale: 1 };
        let (mut dot, mut any) = (false, false);
        for b in s.bytes() {
            match b {
                b'0'..=b'9' => {
                    any = true;
                    let digit = u64::from(b - b'0');
                    if !dot {
                        number.int = number.int.and_then(|n| n.checked_mul(10)?.checked_add(digit));
                    } else if number.scale < 1_000_000_000_000_000_000 {
                        number.frac = number.frac * 10 + digit;
                        number.scale *= 10;
                    }
                }
                b'.' if !dot => dot = true,
                _ => return None,
            }
        }
        any.then_some(number)
    }

    /// This many units of `unit` nanoseconds, in nanoseconds; `None` past `u64`.
    fn nanos(self, unit: u64) -> Option<u64> {
        let whole = self.int?.checked_mul(unit)?;
        if self.frac == 0 {
            return Some(whole);
        }
        // The fraction alone can exceed `u64` before the division.
        let part = u128::from(self.frac) * u128::from(unit) / u128::from(self.scale);
        whole.checked_add(u64::try_from(part).ok()?)
    }
}

/// Nanoseconds as a wait; `None` (overflow) and anything longer saturate at [`MAX_WAIT`].
fn wait(nanos: Option<u64>) -> Duration {
    nanos.map_or(MAX_WAIT, |n| Duration::from_nanos(n).min(MAX_WAIT))
}

/// `retry-after-ms`: milliseconds, fractional allowed.
pub fn parse_retry_after_ms(value: &str) -> Option<Duration> {
    Some(wait(Decimal::parse(value)?.nanos(1_000_000)))
}

/// `retry-after`: delta-seconds (fractional accepted, as the SDKs do) or an
/// HTTP-date, measured from `now`. A date in the past gives `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Some(secs) = Decimal::parse(value) {
        return Some(wait(secs.nanos(NS)));
    }
    let when = httpdate::parse_http_date(value.trim()).ok()?;
    when.duration_since(now).ok().map(|d| d.min(MAX_WAIT))
}

/// A Go `time.Duration` string as OpenAI and Groq send in `x-ratelimit-reset-*`
/// and messages: `6m0s`, `547ms`, `2m52.8s`, `1h2m3.5s`, `0s`. Also the
/// protobuf Duration of Gemini's `retryDelay` (`"47.434392449s"`).
pub fn parse_go_duration(value: &str) -> Option<Duration> {
    // Go writes a zero duration as a bare `0`; any other number needs a unit.
    duration(value, None)
}

/// A reset value that is either a Go duration (`1s`, `6m0s`) or bare seconds
/// (Azure's `55`, Cerebras's `11.38`).
pub fn parse_reset_duration(value: &str) -> Option<Duration> {
    duration(value, Some(NS))
}

/// [`parse_reset_duration`] of a header's bytes: the forms seen on every
/// response (`6ms`, `1s`, `55`) read without the general parser.
pub(crate) fn reset_duration(value: &[u8]) -> Option<Duration> {
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    // Nine digits of seconds cannot overflow nanoseconds.
    if (1..=9).contains(&digits) {
        let number = value[..digits].iter().fold(0u64, |n, &b| n * 10 + u64::from(b - b'0'));
        let unit = match &value[digits..] {
            b"" | b"s" => Some(NS),
            b"ms" => Some(1_000_000),
            _ => None,
        };
        if let Some(unit) = unit {
            return Some(wait(Some(number * unit)));
        }
    }
    parse_reset_duration(std::str::from_utf8(value).ok()?)
}

/// Go-duration segments (`1h`, `2m`, `3.5s`, …), or one bare number of
/// `bare` nanoseconds; one pass, as this runs on every response's headers.
fn duration(value: &str, bare: Option<u64>) -> Option<Duration> {
    let s = trim(value);
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let mut total = Some(0u64);
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest.bytes().position(|b| !(b.is_ascii_digit() || b == b'.')).unwrap_or(rest.len());
        let number = Decimal::digits(&rest[..number_len])?;
        rest = &rest[number_len..];
        // Digits and dots are ASCII, so this byte offset is a char boundary.
        let unit_len = rest.bytes().position(|b| b.is_ascii_digit() || b == b'.').unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "" if number_len == s.len() => bare.or((s == "0").then_some(0))?,
            "h" => 3600 * NS,
            "m" => 60 * NS,
            "s" => NS,
            "ms" => 1_000_000,
            "us" | "µs" | "μs" => 1_000,
            "ns" => 1,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.and_then(|t| t.checked_add(number.nanos(unit)?));
    }
    Some(wait(total))
}

/// An Anthropic reset: an RFC 3339 timestamp (`2024-03-26T20:00:00Z`) or, for
/// the `unified` family, epoch seconds; measured from `now`. Past gives `None`.
/// A number too small to be an epoch time is taken as seconds from now.
pub fn parse_reset_timestamp(value: &str, now: SystemTime) -> Option<Duration> {
    let value = trim(value);
    if value.len() > 64 {
        return None;
    }
    let when = if let Some(number) = Decimal::parse(value) {
        // Epoch seconds when it looks like a time since 2001, else seconds
        // from now; an epoch time past `u64` nanoseconds (year 2554) is nonsense.
        let nanos = number.nanos(NS)?;
        if nanos < 1_000_000_000 * NS {
            return Some(wait(Some(nanos)));
        }
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(nanos))?
    } else {
        let ts: jiff::Timestamp = value.parse().ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::try_from(ts.as_duration()).ok()?)?
    };
    when.duration_since(now).ok().map(|d| d.min(MAX_WAIT))
}

/// A wait written in prose inside an error message, as Gemini ("Please retry
/// in 47.434392449s."), OpenAI ("Please try again in 644ms.") and Azure
/// ("Please retry after 20 seconds.", "Try again in 2 seconds.") write it.
pub fn parse_message_wait(message: &str) -> Option<Duration> {
    const PHRASES: [&str; 3] = ["retry in ", "try again in ", "retry after "];
    // Lower-casing ASCII keeps byte offsets identical to the original.
    let lower = message.to_ascii_lowercase();
    PHRASES.iter().find_map(|phrase| {
        let at = lower.find(phrase)? + phrase.len();
        wait_phrase(&lower[at..])
    })
}

/// `47.4s`, `1m30s`, `644ms`, `20 seconds`, `2 minutes` at the start of `text`.
fn wait_phrase(text: &str) -> Option<Duration> {
    let token: &str = text.split(|c: char| c.is_whitespace() || c == ',' || c == ')').next()?;
    let token = token.trim_end_matches('.');
    if let Some(d) = parse_go_duration(token) {
        return Some(d);
    }
    let number = Decimal::parse(token)?;
    let unit = text[token.len()..].trim_start();
    let unit: String = unit.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let unit = match unit.as_str() {
        "ms" | "millisecond" | "milliseconds" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => NS,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * NS,
        "h" | "hour" | "hours" => 3600 * NS,
        _ => return None,
    };
    Some(wait(number.nanos(unit)))
}

/// `retry-after-ms`, else `retry-after`: the wait the headers ask for.
/// Unparseable values are skipped, so a broken `retry-after-ms` falls through.
pub(crate) fn header_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    text("retry-after-ms")
        .and_then(parse_retry_after_ms)
        .or_else(|| text("x-ms-retry-after-ms").and_then(parse_retry_after_ms))
        .or_else(|| text("retry-after").and_then(|v| parse_retry_after(v, now)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn retry_after_ms_table() {
        let table = [
            ("250", ms(250)),
            ("1.5", Some(Duration::from_micros(1500))),
            (" 20 ", ms(20)),
            ("0", ms(0)),
            ("-5", None),
            ("nan", None),
            ("inf", None),
            ("1e3", None),
            ("", None),
            ("12abc", None),
            (".", None),
            ("1.2.3", None),
        ];
        for (input, want) in table {
            assert_eq!(parse_retry_after_ms(input), want, "{input:?}");
        }
    }

    #[test]
    fn seconds_as_floats() {
        assert_eq!(secs_f64(0.5), ms(500));
        assert_eq!(secs_f64(0.0), Some(Duration::ZERO));
        assert_eq!(secs_f64(1e300), Some(MAX_WAIT));
        for nonsense in [-1.0, -0.001, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(secs_f64(nonsense), None, "{nonsense}");
        }
    }

    #[test]
    fn values_are_trimmed_as_str_trim_does() {
        // ASCII spaces take the fast path; a vertical tab or Unicode space at either end, the slow one.
        for value in [" 20 ", "\u{b}20", "20\u{b}", "\u{a0}20", "20\u{2003}", "\t20\r\n"] {
            assert_eq!(parse_retry_after_ms(value), ms(20), "{value:?}");
            assert_eq!(parse_go_duration(&value.replace("20", "20ms")), ms(20), "{value:?}");
        }
    }

    #[test]
    fn values_up_to_64_characters_are_read() {
        let digits = format!("{}1", "0".repeat(63));
        assert_eq!(parse_retry_after_ms(&digits), ms(1), "64 characters");
        assert_eq!(parse_retry_after_ms(&format!("0{digits}")), None, "65 characters");
        let segments = "1s".repeat(32);
        assert_eq!(parse_go_duration(&segments), Some(Duration::from_secs(32)), "64 characters");
        assert_eq!(parse_go_duration(&format!("1s{segments}")), None, "66 characters");
        assert_eq!(parse_go_duration(&"1s".repeat(5000)), None, "10 KB");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("5", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("0.25", now), ms(250));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), None, "past date");
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("99999999999999999999999999999999", now), Some(MAX_WAIT));
        assert_eq!(parse_retry_after(&"9".repeat(10_000), now), None);
    }

    #[test]
    fn go_durations() {
        let table = [
            ("1s", ms(1000)),
            ("6m0s", ms(360_000)),
            ("547ms", ms(547)),
            ("2m52.8s", ms(172_800)),
            ("1h2m3.5s", ms(3_723_500)),
            ("0s", ms(0)),
            ("0", ms(0)),
            ("47.434392449s", Some(Duration::new(47, 434_392_449))),
            ("250us", Some(Duration::from_micros(250))),
            ("500ns", Some(Duration::from_nanos(500))),
            ("1s5", None),
            ("-1s", None),
            ("1", None),
            ("s", None),
            ("1x", None),
            ("1.s", ms(1000)),
            ("", None),
        ];
        for (input, want) in table {
            let got = parse_go_duration(input);
            match (got, want) {
                (Some(g), Some(w)) => assert!(g.abs_diff(w) < Duration::from_micros(1), "{input}: {g:?} vs {w:?}"),
                _ => assert_eq!(got, want, "{input}"),
            }
        }
        assert_eq!(parse_reset_duration("55"), Some(Duration::from_secs(55)));
        assert_eq!(parse_reset_duration("11.38"), ms(11_380));
        assert_eq!(parse_reset_duration("1s"), ms(1000));
        assert_eq!(parse_reset_duration("1m30"), None, "a bare number only on its own");
    }

    #[test]
    fn rfc3339_and_epoch_resets() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_711_483_200); // 2024-03-26T20:00:00Z
        assert_eq!(parse_reset_timestamp("2024-03-26T20:00:07Z", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_reset_timestamp("2024-03-26T21:00:07+01:00", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_reset_timestamp("2024-03-26T19:59:00Z", now), None);
        assert_eq!(parse_reset_timestamp("1711483210", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_reset_timestamp("tomorrow", now), None);
        assert_eq!(parse_reset_timestamp("30", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_reset_timestamp("1e300", now), None);
        assert_eq!(parse_reset_timestamp(&"9".repeat(60), now), None);
        let padded = format!("{}1711483210", "0".repeat(54));
        assert_eq!(parse_reset_timestamp(&padded, now), Some(Duration::from_secs(10)), "64 characters");
        assert_eq!(parse_reset_timestamp(&format!("0{padded}"), now), None, "65 characters");
    }

    #[test]
    fn message_waits() {
        let table = [
            ("… limit: 4000000\nPlease retry in 47.434392449s.", Some(Duration::new(47, 434_392_449))),
            ("Used 29937, Requested 385. Please try again in 644ms.", ms(644)),
            ("Rate limit is exceeded. Try again in 2 seconds.", ms(2000)),
            ("Please retry after 86400 seconds. Please go here", ms(86_400_000)),
            ("Please try again in 1m30s.", ms(90_000)),
            ("Rate limited (please retry in 20s)", ms(20_000)),
            ("Please retry in 3s, then slower", ms(3_000)),
            ("Please try again in 500 milliseconds.", ms(500)),
            ("Please retry after 2 minutes.", ms(120_000)),
            ("Please retry after 1.5 min", ms(90_000)),
            ("Please retry after 1 hour.", ms(3_600_000)),
            ("Please try again later.", None),
            ("retry in", None),
            ("", None),
        ];
        for (input, want) in table {
            let got = parse_message_wait(input);
            match (got, want) {
                (Some(g), Some(w)) => assert!(g.abs_diff(w) < Duration::from_micros(1), "{input}: {g:?}"),
                _ => assert_eq!(got, want, "{input}"),
            }
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn header_wait_precedence() {
        let now = SystemTime::now();
        let both = headers(&[("retry-after-ms", "1500"), ("retry-after", "5")]);
        assert_eq!(header_wait(&both, now), ms(1500));
        let broken_ms = headers(&[("retry-after-ms", "soon"), ("retry-after", "5")]);
        assert_eq!(header_wait(&broken_ms, now), ms(5000));
        assert_eq!(header_wait(&headers(&[]), now), None);
        // Azure's own millisecond header, before `retry-after` and after the standard one.
        let azure = headers(&[("x-ms-retry-after-ms", "250"), ("retry-after", "1")]);
        assert_eq!(header_wait(&azure, now), ms(250));
        let both_ms = headers(&[("retry-after-ms", "40"), ("x-ms-retry-after-ms", "250")]);
        assert_eq!(header_wait(&both_ms, now), ms(40));
    }

    proptest::proptest! {
        /// The fast path reads what the general parser reads, or defers to it.
        #[test]
        fn reset_bytes_read_as_the_general_parser_reads(
            text in "[0-9]{0,12}(\\.[0-9]{1,3})?(ms|s|m|h|us|x|)|[0-9]{1,4}m[0-9]{1,2}s|\\+?[0-9 ]{0,6}"
        ) {
            proptest::prop_assert_eq!(reset_duration(text.as_bytes()), parse_reset_duration(&text));
        }
    }
}
