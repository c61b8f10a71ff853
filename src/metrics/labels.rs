//! Label values from what the loop has at hand: small pure functions, tested here.

use http::StatusCode;
use url::Url;

use super::Cause;
use crate::kind::ErrorKind;
use crate::rate_limits::RateLimits;

/// The `outcome` of a call that succeeded.
pub(super) const SUCCESS: &str = "success";
/// The `reason` of a retry caused by an error event inside a `200` stream.
pub(super) const STREAM_ERROR: &str = "stream_error";

impl Cause {
    pub(super) fn label(self) -> &'static str {
        match self {
            Cause::Retry => "retry",
            Cause::RateLimit => "rate_limit",
            Cause::Outage => "outage",
        }
    }
}

/// The kind a transport error counts as: a timeout is a `timeout`, a connect error a
/// `server_error` (what a gateway in between would have answered: 502), anything else
/// `unknown`.
pub(super) fn transport_kind(error: &reqwest_middleware::Error) -> ErrorKind {
    if error.is_timeout() {
        ErrorKind::Timeout
    } else if error.is_connect() {
        ErrorKind::ServerError
    } else {
        ErrorKind::Unknown
    }
}

/// The `reason` of a retry: an error event inside a `200` stream is a `stream_error`
/// whatever its kind (the dashboard tells them from the same errors sent as a status);
/// an error response is its kind.
pub(super) fn retry_reason(response_status: StatusCode, kind: ErrorKind) -> &'static str {
    if response_status.is_success() { STREAM_ERROR } else { kind.name() }
}

/// The `host` label of a URL: its host alone, never its port, path, query or credentials;
/// lower case (as parsed) and without a trailing dot, so one host is one series.
pub(super) fn host(url: &Url) -> Option<&str> {
    url.host_str().map(|host| host.trim_end_matches('.')).filter(|host| !host.is_empty())
}

/// The `limit` label of each family of [`RateLimits`], in the order of [`remaining`].
pub(super) const LIMITS: [&str; 4] = ["requests", "tokens", "input_tokens", "output_tokens"];

/// The `remaining` count of each limit a response stated, with its index in [`LIMITS`].
pub(super) fn remaining(limits: &RateLimits) -> impl Iterator<Item = (usize, u64)> {
    [limits.requests, limits.tokens, limits.input_tokens, limits.output_tokens]
        .into_iter()
        .enumerate()
        .filter_map(|(index, limit)| Some((index, limit?.remaining?)))
}

/// Sets the headroom gauges of a response to `url`.
#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;
    use crate::provider::Provider;
    use crate::rate_limits::RateLimit;

    #[test]
    fn the_host_label_is_the_host_alone() {
        let table = [
            ("https://api.openai.com/v1/chat/completions", Some("api.openai.com")),
            ("https://user:SECRET@API.OpenAI.com:8443/v1/x?key=SECRET#frag", Some("api.openai.com")),
            (
                "https://generativelanguage.googleapis.com./v1beta/models?key=SECRET",
                Some("generativelanguage.googleapis.com"),
            ),
            ("http://127.0.0.1:8080/v1/messages", Some("127.0.0.1")),
            ("http://[::1]:8080/v1/messages", Some("[::1]")),
            ("data:text/plain,SECRET", None),
        ];
        for (url, expected) in table {
            assert_eq!(host(&Url::parse(url).unwrap()), expected, "{url}");
        }
    }

    #[test]
    fn a_retry_is_named_by_its_kind_or_as_a_stream_error() {
        let table = [
            (429, ErrorKind::RateLimited, "rate_limited"),
            (529, ErrorKind::Overloaded, "overloaded"),
            (500, ErrorKind::ServerError, "server_error"),
            (504, ErrorKind::Timeout, "timeout"),
            (200, ErrorKind::Overloaded, "stream_error"),
            (200, ErrorKind::RateLimited, "stream_error"),
        ];
        for (status, kind, reason) in table {
            assert_eq!(retry_reason(StatusCode::from_u16(status).unwrap(), kind), reason, "{status} {kind}");
        }
    }

    #[test]
    fn causes_have_their_documented_labels() {
        let labels = [Cause::Retry, Cause::RateLimit, Cause::Outage].map(Cause::label);
        assert_eq!(labels, ["retry", "rate_limit", "outage"]);
    }

    #[test]
    fn each_stated_remaining_count_is_a_limit() {
        let left = |n| Some(RateLimit { remaining: Some(n), ..RateLimit::default() });
        let limits = RateLimits {
            requests: left(7),
            tokens: Some(RateLimit { limit: Some(100), ..RateLimit::default() }),
            input_tokens: left(0),
            output_tokens: left(u64::MAX),
        };
        let found: Vec<_> = remaining(&limits).map(|(index, left)| (LIMITS[index], left)).collect();
        assert_eq!(found, [("requests", 7), ("input_tokens", 0), ("output_tokens", u64::MAX)]);
        assert_eq!(remaining(&RateLimits::default()).count(), 0);
    }

    /// A series: name, labels (sorted) and value.
    type Series = (String, Vec<(String, String)>, DebugValue);

    /// The series `record` leaves in a fresh recorder.
    fn recorded(record: impl FnOnce()) -> Vec<Series> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, record);
        let mut series: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let (name, labels) = key.key().clone().into_parts();
                let mut labels: Vec<_> = labels.iter().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
                labels.sort();
                (name.as_str().to_owned(), labels, value)
            })
            .collect();
        series.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        series
    }

    fn pairs(labels: &[(&str, &str)]) -> Vec<(String, String)> {
        labels.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    #[test]
    fn a_fallback_counts_once_per_call_with_its_models() {
        let series = recorded(|| {
            super::super::fell_back(Provider::Anthropic, "claude-opus-4-1", "claude-sonnet-4-5");
            super::super::fell_back(Provider::Anthropic, "claude-opus-4-1", "claude-sonnet-4-5");
        });
        let labels = pairs(&[("from", "claude-opus-4-1"), ("provider", "anthropic"), ("to", "claude-sonnet-4-5")]);
        assert_eq!(series, [("llm_retry_fallbacks_total".to_owned(), labels, DebugValue::Counter(2))]);
    }

    #[test]
    fn headroom_is_set_per_limit_under_the_urls_host() {
        let url = Url::parse("https://api.anthropic.com/v1/messages?key=SECRET").unwrap();
        let left = |n| Some(RateLimit { remaining: Some(n), ..RateLimit::default() });
        let limits = RateLimits { requests: left(49), output_tokens: left(8000), ..RateLimits::default() };
        let series = recorded(|| super::super::rate_limits(Provider::Anthropic, &url, Some(&limits)));
        let gauge = |limit, value: f64| {
            let labels = pairs(&[("host", "api.anthropic.com"), ("limit", limit), ("provider", "anthropic")]);
            ("llm_retry_ratelimit_remaining".to_owned(), labels, DebugValue::Gauge(value.into()))
        };
        assert_eq!(series, [gauge("output_tokens", 8000.0), gauge("requests", 49.0)]);
    }
}
