//! Property tests for the public parsers: no panic, no overflow, bounded
//! output whatever the input, and round-trips where a value has a canonical
//! text form. The `cargo fuzz` targets in `fuzz/` run the same parsers
//! coverage-guided; these run in every `cargo test`.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode};
use proptest::prelude::*;
use reqwest_llm_retry::retry_after::{
    parse_go_duration, parse_message_wait, parse_reset_duration, parse_reset_timestamp, parse_retry_after,
    parse_retry_after_ms,
};
use reqwest_llm_retry::{LlmApiError, Provider};
use serde_json::{Value, json};

/// The largest wait any parser reports (about 31 years).
const MAX_WAIT: Duration = Duration::from_secs(1 << 30);
/// The parser keeps at most 2 KiB of message; redaction of `key=` values may lengthen it.
const MAX_MESSAGE: usize = 8 * 1024;

fn close(got: Option<Duration>, want: Duration) -> bool {
    got.is_some_and(|g| g.abs_diff(want) <= Duration::from_micros(1))
}

/// Any instant from 1970 to about 2100, whole seconds.
fn instant() -> impl Strategy<Value = SystemTime> {
    (0u64..4_100_000_000).prop_map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// Text made mostly of the characters the parsers look for, plus anything.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9.+\\- ]{0,80}",
        "[0-9.hmsuµn]{0,40}",
        "[0-9:TZ+\\-.]{0,40}",
        "(Please )?(retry in|try again in|retry after) [0-9.]{0,30}(s|ms| seconds| minutes|m|h)?",
        "\\PC{0,200}",
        any::<String>(),
    ]
}

fn provider() -> impl Strategy<Value = Provider> {
    (0..Provider::ALL.len()).prop_map(|i| Provider::ALL[i])
}

fn error_status() -> impl Strategy<Value = StatusCode> {
    (400u16..600).prop_map(|s| StatusCode::from_u16(s).unwrap())
}

/// Arbitrary JSON, nested a few levels, with the keys the parser reads.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("error".to_owned()),
        Just("message".to_owned()),
        Just("type".to_owned()),
        Just("code".to_owned()),
        Just("status".to_owned()),
        Just("details".to_owned()),
        Just("@type".to_owned()),
        Just("retryDelay".to_owned()),
        Just("violations".to_owned()),
        Just("quotaId".to_owned()),
        Just("metadata".to_owned()),
        Just("innererror".to_owned()),
        Just("request_id".to_owned()),
        Just("errors".to_owned()),
        Just("reason".to_owned()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(Value::from("type.googleapis.com/google.rpc.RetryInfo")),
        Just(Value::from("type.googleapis.com/google.rpc.QuotaFailure")),
        header_text().prop_map(Value::from),
        "\\{\"error\":\\{\"message\":\"[a-z ]{0,10}\"\\}\\}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn check_bounded(error: &LlmApiError, provider: Provider, status: StatusCode) {
    assert_eq!((error.provider, error.status, error.attempts), (provider, status, 1));
    assert!(!error.message.is_empty(), "a message is always given");
    assert!(error.message.len() <= MAX_MESSAGE, "message of {} bytes", error.message.len());
    assert!(!error.message.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "{:?}", error.message);
    for field in [&error.error_type, &error.code, &error.request_id].into_iter().flatten() {
        assert!(field.len() <= 1024, "{field:?}");
    }
    assert!(error.retry_after.is_none_or(|d| d <= MAX_WAIT));
    assert!(!error.fix().is_empty());
    let _ = (error.to_string(), format!("{error:?}"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn header_parsers_never_panic_and_stay_bounded(text in header_text(), now in instant()) {
        let waits = [
            parse_retry_after_ms(&text),
            parse_retry_after(&text, now),
            parse_go_duration(&text),
            parse_reset_duration(&text),
            parse_reset_timestamp(&text, now),
            parse_message_wait(&text),
        ];
        for wait in waits.into_iter().flatten() {
            prop_assert!(wait <= MAX_WAIT, "{wait:?} from {text:?}");
        }
    }

    #[test]
    fn huge_numbers_saturate_instead_of_overflowing(digits in "[1-9][0-9]{15,45}", frac in "[0-9]{0,3}") {
        let number = if frac.is_empty() { digits.clone() } else { format!("{digits}.{frac}") };
        let now = SystemTime::now();
        prop_assert_eq!(parse_retry_after(&number, now), Some(MAX_WAIT));
        prop_assert_eq!(parse_reset_duration(&number), Some(MAX_WAIT));
        prop_assert!(parse_retry_after_ms(&number).is_some_and(|d| d <= MAX_WAIT));
        let (hours, prose) = (format!("{number}h"), format!("retry in {number} hours"));
        prop_assert!(parse_go_duration(&hours).is_none_or(|d| d == MAX_WAIT));
        prop_assert!(parse_message_wait(&prose).is_none_or(|d| d == MAX_WAIT));
    }

    #[test]
    fn negative_and_non_finite_values_are_not_waits(n in 0.001f64..1e9, word in "(nan|NaN|inf|-inf|infinity|1e9|0x10)") {
        let now = SystemTime::now();
        let negative = format!("-{n}");
        for text in [negative.as_str(), word.as_str()] {
            prop_assert_eq!(parse_retry_after_ms(text), None);
            prop_assert_eq!(parse_retry_after(text, now), None);
            prop_assert_eq!(parse_reset_duration(text), None);
            prop_assert_eq!(parse_go_duration(text), None);
        }
    }

    #[test]
    fn retry_after_ms_round_trips(millis in 0u64..1_000_000_000_000) {
        prop_assert!(close(parse_retry_after_ms(&millis.to_string()), Duration::from_millis(millis)));
        let fractional = format!(" {millis}.5 ");
        prop_assert!(close(parse_retry_after_ms(&fractional), Duration::from_micros(millis * 1000 + 500)));
    }

    #[test]
    fn retry_after_seconds_and_dates_round_trip(secs in 0u64..100_000_000, now in instant()) {
        prop_assert_eq!(parse_retry_after(&secs.to_string(), now), Some(Duration::from_secs(secs)));
        let later = now + Duration::from_secs(secs);
        let date = httpdate::fmt_http_date(later);
        let want = if secs == 0 { Some(Duration::ZERO) } else { Some(Duration::from_secs(secs)) };
        prop_assert_eq!(parse_retry_after(&date, now), want, "{}", date);
        if secs > 0 && now >= SystemTime::UNIX_EPOCH + Duration::from_secs(secs) {
            let past = httpdate::fmt_http_date(now - Duration::from_secs(secs));
            prop_assert_eq!(parse_retry_after(&past, now), None, "a past date is no wait: {}", past);
        }
    }

    #[test]
    fn go_durations_round_trip(h in 0u64..10_000, m in 0u64..60, s in 0u64..60, frac in 0u32..1000, ms in 0u64..1000) {
        let want = Duration::from_secs(h * 3600 + m * 60 + s) + Duration::from_millis(u64::from(frac));
        // The forms Go's Duration::String() writes: `1h2m3.5s`, `6m0s`, `3.5s`, `547ms`.
        let text = match (h, m) {
            (0, 0) => format!("{s}.{frac:03}s"),
            (0, _) => format!("{m}m{s}.{frac:03}s"),
            _ => format!("{h}h{m}m{s}.{frac:03}s"),
        };
        prop_assert!(close(parse_go_duration(&text), want), "{}", text);
        prop_assert!(close(parse_reset_duration(&text), want), "{}", text);
        let (millis, micros) = (format!("{ms}ms"), format!("{ms}µs"));
        prop_assert!(close(parse_go_duration(&millis), Duration::from_millis(ms)));
        prop_assert!(close(parse_go_duration(&micros), Duration::from_micros(ms)));
    }

    #[test]
    fn bare_reset_seconds_round_trip(secs in 0u64..1_000_000, centis in 0u64..100) {
        // Azure sends integers, Cerebras float seconds.
        prop_assert_eq!(parse_reset_duration(&secs.to_string()), Some(Duration::from_secs(secs)));
        let want = Duration::from_millis(secs * 1000 + centis * 10);
        let text = format!("{secs}.{centis:02}");
        prop_assert!(close(parse_reset_duration(&text), want));
    }

    #[test]
    fn rfc3339_and_epoch_resets_round_trip(secs in 1u64..10_000_000, now in instant()) {
        let later = now + Duration::from_secs(secs);
        let since_epoch = later.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        let stamp = jiff::Timestamp::from_second(since_epoch.as_secs() as i64).unwrap();
        prop_assert_eq!(parse_reset_timestamp(&stamp.to_string(), now), Some(Duration::from_secs(secs)), "{}", stamp);
        if since_epoch.as_secs() >= 1_000_000_000 {
            prop_assert_eq!(parse_reset_timestamp(&since_epoch.as_secs().to_string(), now), Some(Duration::from_secs(secs)));
        }
        let now_secs = now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        if let Some(earlier) = now_secs.checked_sub(secs) {
            let earlier = jiff::Timestamp::from_second(earlier as i64).unwrap();
            prop_assert_eq!(parse_reset_timestamp(&earlier.to_string(), now), None, "past reset {}", earlier);
        }
    }

    #[test]
    fn message_waits_round_trip(secs in 0u64..100_000, nanos in 0u32..1_000_000_000, prefix in "[A-Za-z ,.:*]{0,60}") {
        // Gemini writes protobuf durations with up to nine fractional digits.
        let text = format!("{prefix}\nPlease retry in {secs}.{nanos:09}s.");
        prop_assert!(close(parse_message_wait(&text), Duration::new(secs, nanos)), "{}", text);
        let azure = format!("{prefix} Please retry after {secs} seconds. Please go here");
        prop_assert_eq!(parse_message_wait(&azure), Some(Duration::from_secs(secs)));
    }

    #[test]
    fn error_parse_never_panics_on_bytes(provider in provider(), status in error_status(), body in prop::collection::vec(any::<u8>(), 0..4096)) {
        check_bounded(&LlmApiError::parse(provider, status, &HeaderMap::new(), &body), provider, status);
    }

    #[test]
    fn error_parse_never_panics_on_json(provider in provider(), status in error_status(), value in json_value(), wrap in 0..4usize) {
        // Bare, in an OpenAI envelope, in Gemini's array, and as JSON inside a message string.
        let value = match wrap {
            0 => value,
            1 => json!({ "error": value }),
            2 => json!([{ "error": value }]),
            _ => json!({ "error": { "message": value.to_string() } }),
        };
        let body = serde_json::to_vec(&value).unwrap();
        check_bounded(&LlmApiError::parse(provider, status, &HeaderMap::new(), &body), provider, status);
    }

    #[test]
    fn every_cut_of_a_real_payload_still_parses(cut in 0usize..600, provider in provider()) {
        let body = br#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.\nPlease retry in 47.434392449s.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"47s"}]}}"#;
        let prefix = &body[..cut.min(body.len())];
        let status = StatusCode::TOO_MANY_REQUESTS;
        let error = LlmApiError::parse(provider, status, &HeaderMap::new(), prefix);
        check_bounded(&error, provider, status);
        // Once the message string arrived whole, it is what the caller sees.
        if cut >= 150 {
            prop_assert!(error.message.starts_with("You exceeded your current quota"), "{:?}", error.message);
        }
    }

    #[test]
    fn any_header_values_give_a_bounded_error(values in prop::collection::vec(header_text(), 7), provider in provider()) {
        let names = ["retry-after-ms", "retry-after", "x-ratelimit-reset-requests", "x-rate-limit-reset-tokens",
            "anthropic-ratelimit-tokens-reset", "x-ratelimit-remaining-requests", "x-should-retry"];
        let mut headers = HeaderMap::new();
        for (name, value) in names.iter().zip(&values) {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(*name, value);
            }
        }
        let status = StatusCode::TOO_MANY_REQUESTS;
        check_bounded(&LlmApiError::parse(provider, status, &headers, b""), provider, status);
    }
}

/// Stream text made of the framing the event reader handles: fields, line
/// ends of every kind, comments, JSON that is or is not an error.
fn stream_text() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just("event: error".to_owned()),
        Just("event: content_block_delta".to_owned()),
        Just("event: response.failed".to_owned()),
        Just(": OPENROUTER PROCESSING".to_owned()),
        Just(r#"data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.to_owned()),
        Just(r#"data: {"error":{"code":503,"status":"UNAVAILABLE"}}"#.to_owned()),
        Just(r#"data: {"choices":[{"delta":{"content":"hi"}}]}"#.to_owned()),
        Just("data: [DONE]".to_owned()),
        Just(String::new()),
        "data:[ -~]{0,40}",
        "\\PC{0,40}",
    ];
    let end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
    prop::collection::vec((line, end), 0..24).prop_map(|lines| {
        lines.into_iter().flat_map(|(line, end)| [line, end.to_owned()]).collect::<String>().into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn stream_events_do_not_depend_on_where_the_body_is_cut(
        provider in provider(),
        body in stream_text(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let whole = reqwest_llm_retry::__read_stream_events(provider, &[&body]);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for cut in at {
            chunks.push(&body[from..cut]);
            from = cut;
        }
        chunks.push(&body[from..]);
        prop_assert_eq!(reqwest_llm_retry::__read_stream_events(provider, &chunks), whole.clone());
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        prop_assert_eq!(reqwest_llm_retry::__read_stream_events(provider, &bytes), whole.clone());
        for (_, data, seen) in &whole {
            if let Some(status) = seen.strip_prefix("error ") {
                let status: u16 = status.parse().unwrap();
                prop_assert!((400..600).contains(&status));
                if let Some(error) = LlmApiError::from_stream_event(provider, data) {
                    prop_assert_eq!(error.status.as_u16(), status);
                }
            }
        }
    }
}

#[test]
fn absurd_inputs_from_the_issue() {
    let now = SystemTime::now();
    let long_digits = "9".repeat(100_000);
    let absurd = [
        "",
        " ",
        "-1",
        "-0",
        "+",
        ".",
        "1e308",
        "1e-308",
        "NaN",
        "inf",
        "0x1F",
        "١٢٣", // Arabic-Indic digits
        "Wed, 21 Oct 99999 07:28:00 GMT",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "Mon, 32 Foo 2024 99:99:99 GMT",
        "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "18446744073709551616",
        "184467440737095516160000000000ms",
        "1h1h1h1h1h",
        "999999999999999999h",
        "µ",
        "1µ",
        "1.2.3s",
        long_digits.as_str(),
    ];
    for text in absurd {
        for wait in [
            parse_retry_after_ms(text),
            parse_retry_after(text, now),
            parse_go_duration(text),
            parse_reset_duration(text),
            parse_reset_timestamp(text, now),
            parse_message_wait(&format!("Please retry in {text}")),
        ]
        .into_iter()
        .flatten()
        {
            assert!(wait <= MAX_WAIT, "{text:.40}: {wait:?}");
        }
    }
    assert_eq!(parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now), None, "past date");
    assert_eq!(parse_retry_after("-1", now), None);
    assert_eq!(parse_retry_after("1e308", now), None, "exponents are not delta-seconds");
}

/// Absurd server waits and absurd settings through the middleware: Duration
/// arithmetic saturates, nothing sleeps past `max_elapsed`, nothing panics.
/// On tokio's paused clock, which only the middleware's sleeps move: a wait
/// misread as days would show as days, at no cost in real time.
#[tokio::test(start_paused = true)]
async fn absurd_waits_and_settings_never_overflow_or_oversleep() {
    use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware};
    use wiremock::matchers::header;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    let waits = [
        "99999999999999999999",
        "1e308",
        "-5",
        "nan",
        "0",
        "Wed, 21 Oct 99999 07:28:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Thu, 01 Jan 1970 00:00:00 GMT",
    ];
    for (i, wait) in waits.iter().enumerate() {
        Mock::given(header("x-case", i.to_string()))
            .respond_with(ResponseTemplate::new(503).insert_header("retry-after", *wait))
            .mount(&server)
            .await;
    }
    let url = format!("http://api.openai.com:{}/v1/chat/completions", server.address().port());
    let willing = LlmRetryMiddleware::builder()
        .max_retries(2)
        .base_delay(Duration::from_millis(5))
        .max_delay(Duration::from_millis(20))
        .max_retry_after(Duration::MAX);
    for (i, wait) in waits.iter().enumerate() {
        let client = crate::support::paused_client(&server, crate::support::paused(willing.clone()));
        let started = tokio::time::Instant::now();
        let response = client.get(&url).header("x-case", i.to_string()).send().await.unwrap();
        // Nothing but its backoff: 5 + 10 ms, plus at most 25 %.
        assert!(started.elapsed() <= Duration::from_millis(19), "{wait}: slept {:?}", started.elapsed());
        let error = response.llm_error().unwrap();
        assert!(error.retry_after.is_none_or(|d| d <= MAX_WAIT), "{wait}");
        if error.retry_after.is_some_and(|d| d > Duration::from_secs(300)) {
            // Longer than max_elapsed (300 s): returned at once, still retryable.
            assert_eq!((error.attempts, error.retryable), (1, true), "{wait}");
        } else {
            assert_eq!(error.attempts, 3, "{wait}: not a wait, so backoff and retry");
        }
    }

    // Settings at the limits of Duration.
    let extreme = LlmRetryMiddleware::builder()
        .max_retries(u32::MAX)
        .base_delay(Duration::MAX)
        .max_delay(Duration::MAX)
        .max_retry_after(Duration::MAX)
        .max_elapsed(Duration::from_millis(200));
    let started = tokio::time::Instant::now();
    let response = crate::support::paused_client(&server, crate::support::paused(extreme))
        .get(&url)
        .header("x-case", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO, "slept");
    let error = response.llm_error().unwrap();
    assert_eq!((error.attempts, error.retryable), (1, true), "a Duration::MAX backoff cannot fit in 200 ms");
}
