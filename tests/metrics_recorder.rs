//! Each metric of the `metrics` feature changes as specified, read with metrics-util's
//! `DebuggingRecorder` installed as the global recorder, as a program installs its exporter.
//! A binary of its own: a process has one global recorder. The tests take turns, and each
//! reads only what its own requests recorded: a snapshot takes what it returns (counters and
//! gauges back to 0, histograms emptied), and every turn starts with one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use reqwest_llm_retry::mock::wiremock::matchers::{any, path};
use reqwest_llm_retry::mock::wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};
use reqwest_llm_retry::{LlmRetryMiddleware, Provider, mock};
use reqwest_middleware::ClientWithMiddleware;
use tokio::sync::{Mutex, MutexGuard};

mod support;
use support::{DEADLINE, client, client_from, fast};

/// Labels, sorted by key.
type Labels = Vec<(String, String)>;

/// What the recorder held, merged over one or more snapshots.
#[derive(Default)]
struct Recorded {
    values: HashMap<(String, Labels), DebugValue>,
    units: HashMap<String, (Option<Unit>, bool)>,
}

impl Recorded {
    /// Adds a snapshot: counters add up, histograms gather, a gauge keeps its last value.
    fn take(&mut self, snapshotter: &Snapshotter) {
        for (key, unit, description, value) in snapshotter.snapshot().into_vec() {
            let (name, labels) = key.key().clone().into_parts();
            let mut labels: Labels = labels.iter().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            labels.sort();
            self.units.insert(name.as_str().to_owned(), (unit, description.is_some()));
            let entry = self.values.entry((name.as_str().to_owned(), labels));
            match (entry, value) {
                (std::collections::hash_map::Entry::Occupied(mut seen), value) => match (seen.get_mut(), value) {
                    (DebugValue::Counter(total), DebugValue::Counter(n)) => *total += n,
                    (DebugValue::Histogram(all), DebugValue::Histogram(more)) => all.extend(more),
                    (last, value) => *last = value,
                },
                (std::collections::hash_map::Entry::Vacant(slot), value) => {
                    slot.insert(value);
                }
            }
        }
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut labels: Labels = labels.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect();
        labels.sort();
        self.values.get(&(name.to_owned(), labels))
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            _ => 0,
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.get(name, labels) {
            Some(DebugValue::Gauge(value)) => Some(value.0),
            _ => None,
        }
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.get(name, labels) {
            Some(DebugValue::Histogram(values)) => values.iter().map(|v| v.0).collect(),
            _ => Vec::new(),
        }
    }

    /// The sum of a counter over all its series.
    fn total(&self, name: &str) -> u64 {
        let counts = self.values.iter().filter(|((n, _), _)| n == name).map(|(_, value)| match value {
            DebugValue::Counter(n) => *n,
            _ => 0,
        });
        counts.sum()
    }

    /// Every series of `name` recorded in this turn: its labels. (A gauge of an earlier turn
    /// reads 0, so a gauge counts when it is not 0.)
    fn series(&self, name: &str) -> Vec<&Labels> {
        let recorded = |value: &DebugValue| match value {
            DebugValue::Counter(n) => *n > 0,
            DebugValue::Histogram(values) => !values.is_empty(),
            DebugValue::Gauge(value) => value.0 != 0.0,
        };
        self.values.iter().filter(|((n, _), value)| n == name && recorded(value)).map(|((_, l), _)| l).collect()
    }
}

/// The global recorder's snapshotter, installed on first use.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("the only recorder of this binary");
        snapshotter
    })
}

/// This test's turn at the recorder, from a clean start; held until the test ends.
async fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::const_new(());
    let guard = TURN.lock().await;
    Recorded::default().take(snapshotter());
    guard
}

/// What was recorded since the turn started (or the last call).
fn recorded() -> Recorded {
    let mut recorded = Recorded::default();
    recorded.take(snapshotter());
    recorded
}

async fn post(client: &ClientWithMiddleware, url: &str) -> u16 {
    let sent = tokio::time::timeout(DEADLINE, client.post(url).body("{}").send()).await.expect("no hang");
    sent.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_429_then_a_200_counts_one_retry_one_wait_one_success_and_the_headroom() {
    let _turn = turn().await;
    let (server, _) = mock::start(Provider::OpenAi).await;
    let ok = mock::openai::ok("hi")
        .insert_header("x-ratelimit-remaining-requests", "498")
        .insert_header("x-ratelimit-remaining-tokens", "29000");
    let script = mock::Sequence::new().then(mock::openai::rate_limited(Duration::from_millis(20))).then(ok);
    Mock::given(any()).respond_with(script).mount(&server).await;
    let client = client(&server, fast().build());
    let url = format!("{}/v1/chat/completions", mock::base_url(Provider::OpenAi, &server));
    assert_eq!(post(&client, &url).await, 200);

    let seen = recorded();
    let openai = ("provider", "openai");
    assert_eq!(seen.counter("llm_retry_requests_total", &[openai, ("outcome", "success")]), 1);
    assert_eq!(seen.total("llm_retry_requests_total"), 1, "one call, one outcome");
    assert_eq!(seen.counter("llm_retry_retries_total", &[openai, ("reason", "rate_limited")]), 1);
    assert_eq!(seen.total("llm_retry_retries_total"), 1);
    let waits = seen.histogram("llm_retry_wait_seconds", &[openai, ("cause", "retry")]);
    assert!(waits.len() == 1 && (0.02..0.2).contains(&waits[0]), "the server's 20 ms, and a little jitter: {waits:?}");
    let host = ("host", "api.openai.com");
    let remaining = |limit| seen.gauge("llm_retry_ratelimit_remaining", &[openai, host, ("limit", limit)]);
    assert_eq!((remaining("requests"), remaining("tokens")), (Some(498.0), Some(29000.0)), "the last response's");
    assert_eq!(seen.units["llm_retry_wait_seconds"], (Some(Unit::Seconds), true), "described, in seconds");
    assert_eq!(seen.units["llm_retry_requests_total"], (Some(Unit::Count), true));
}

#[tokio::test]
async fn a_quota_error_is_one_failed_call_and_no_retry() {
    let _turn = turn().await;
    let (server, _) = mock::start(Provider::OpenAi).await;
    // An error response's rate-limit headers count too.
    let quota =
        ResponseTemplate::from(mock::openai::insufficient_quota()).insert_header("x-ratelimit-remaining-requests", "3");
    Mock::given(any()).respond_with(quota).mount(&server).await;
    let client = client(&server, fast().build());
    let url = format!("{}/v1/chat/completions", mock::base_url(Provider::OpenAi, &server));
    assert_eq!(post(&client, &url).await, 429);

    let seen = recorded();
    let openai = ("provider", "openai");
    assert_eq!(seen.counter("llm_retry_requests_total", &[openai, ("outcome", "quota_exceeded")]), 1);
    assert_eq!(seen.total("llm_retry_requests_total"), 1);
    assert_eq!(seen.total("llm_retry_retries_total"), 0);
    assert!(seen.series("llm_retry_wait_seconds").is_empty());
    let requests = [openai, ("host", "api.openai.com"), ("limit", "requests")];
    assert_eq!(seen.gauge("llm_retry_ratelimit_remaining", &requests), Some(3.0));
}

#[tokio::test]
async fn a_request_held_by_the_pacing_records_a_rate_limit_wait() {
    let _turn = turn().await;
    let (server, _) = mock::start(Provider::OpenAi).await;
    // The first success spends the window's last request: the next one waits for its reset.
    let spent = mock::openai::ok("hi")
        .insert_header("x-ratelimit-limit-requests", "20")
        .insert_header("x-ratelimit-remaining-requests", "0")
        .insert_header("x-ratelimit-reset-requests", "60ms")
        .insert_header("x-ratelimit-remaining-tokens", "12345");
    Mock::given(any())
        .respond_with(mock::Sequence::new().then(spent).then(mock::openai::ok("hi")))
        .mount(&server)
        .await;
    let client = client(&server, fast().build());
    let url = format!("{}/v1/chat/completions", mock::base_url(Provider::OpenAi, &server));
    assert_eq!(post(&client, &url).await, 200);
    assert_eq!(post(&client, &url).await, 200);

    let seen = recorded();
    let openai = ("provider", "openai");
    let waits = seen.histogram("llm_retry_wait_seconds", &[openai, ("cause", "rate_limit")]);
    assert!(!waits.is_empty() && waits.iter().sum::<f64>() >= 0.04, "held until the reset: {waits:?}");
    assert_eq!(seen.total("llm_retry_retries_total"), 0, "held, not retried");
    assert_eq!(seen.counter("llm_retry_requests_total", &[openai, ("outcome", "success")]), 2);
    let host = ("host", "api.openai.com");
    assert_eq!(seen.gauge("llm_retry_ratelimit_remaining", &[openai, host, ("limit", "tokens")]), Some(12345.0));
}

/// 529 `overloaded_error` until `up`, then 200.
struct Outage(Arc<AtomicBool>);

impl Respond for Outage {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        if self.0.load(Ordering::SeqCst) { mock::anthropic::ok("back") } else { mock::anthropic::overloaded().into() }
    }
}

#[tokio::test]
async fn an_outage_sets_its_gauge_while_it_lasts_and_records_the_held_waits() {
    let _turn = turn().await;
    let up = Arc::new(AtomicBool::new(false));
    let (server, _) = mock::start(Provider::Anthropic).await;
    Mock::given(any()).respond_with(Outage(up.clone())).mount(&server).await;
    // Long enough a retry schedule that no request gives up before the test brings the host back.
    let client = client(&server, LlmRetryMiddleware::builder().base_delay(Duration::from_millis(60)).build());
    let url = format!("{}/v1/messages", mock::base_url(Provider::Anthropic, &server));
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (client, url) = (client.clone(), url.clone());
        requests.spawn(async move { post(&client, &url).await });
    }

    let anthropic = ("provider", "anthropic");
    let outage = [anthropic, ("host", "api.anthropic.com")];
    let held = [anthropic, ("cause", "outage")];
    let mut seen = Recorded::default();
    // Down until the outage is entered and requests were held (a failed probe wakes them).
    tokio::time::timeout(DEADLINE, async {
        let mut entered = false;
        while !entered || seen.histogram("llm_retry_wait_seconds", &held).is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
            seen.take(snapshotter());
            entered |= seen.gauge("llm_retry_outage", &outage) == Some(1.0);
        }
    })
    .await
    .expect("the outage is entered, and requests held");
    // Reading a gauge sets it to 0: a mark tells the 0 of the outage's end from that one.
    metrics::gauge!("llm_retry_outage", "provider" => "anthropic", "host" => "api.anthropic.com").set(-1.0);
    up.store(true, Ordering::SeqCst);
    let statuses = tokio::time::timeout(DEADLINE, requests.join_all()).await.expect("no hang");
    assert!(statuses.iter().all(|&status| status == 200), "{statuses:?}");

    seen.take(snapshotter());
    assert_eq!(seen.gauge("llm_retry_outage", &outage), Some(0.0), "left");
    assert!(seen.counter("llm_retry_retries_total", &[anthropic, ("reason", "overloaded")]) >= 10);
    assert_eq!(seen.counter("llm_retry_requests_total", &[anthropic, ("outcome", "success")]), 16);
}

#[tokio::test]
async fn a_call_held_by_an_outage_until_its_bound_ends_as_overloaded_even_never_sent() {
    let _turn = turn().await;
    let (server, _) = mock::start(Provider::Anthropic).await;
    let down = ResponseTemplate::from(mock::anthropic::overloaded()).set_delay(Duration::from_millis(5));
    Mock::given(any()).respond_with(down).mount(&server).await;
    // Retries would take 5 + 10 ms: no request is held longer.
    let client = client(&server, fast().max_retries(2).build());
    let url = format!("{}/v1/messages", mock::base_url(Provider::Anthropic, &server));
    let calls = |n| {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (client, url) = (client.clone(), url.clone());
            requests.spawn(async move { client.post(url).body("{}").send().await.map(|r| r.status().as_u16()) });
        }
        tokio::time::timeout(DEADLINE, requests.join_all())
    };
    // The outage (each returns its 529), then requests held before ever being sent.
    calls(12).await.expect("no hang");
    let later = calls(8).await.expect("no hang");
    assert!(later.iter().any(Result::is_err), "one was held until its bound, never sent: {later:?}");

    let seen = recorded();
    let anthropic = ("provider", "anthropic");
    assert_eq!(seen.counter("llm_retry_requests_total", &[anthropic, ("outcome", "overloaded")]), 20);
    assert_eq!(seen.total("llm_retry_requests_total"), 20);
}

#[tokio::test]
async fn a_fallback_counts_once_with_its_provider_and_models() {
    let _turn = turn().await;
    let (server, _) = mock::start(Provider::Anthropic).await;
    Mock::given(mock::model("claude-opus-4-1")).respond_with(mock::anthropic::overloaded()).mount(&server).await;
    Mock::given(mock::model("claude-sonnet-4-5")).respond_with(mock::anthropic::ok("hi")).mount(&server).await;
    let middleware = fast().max_retries(1).fallback("claude-opus-4-1", "claude-sonnet-4-5").build();
    let client = client(&server, middleware);
    let url = format!("{}/v1/messages", mock::base_url(Provider::Anthropic, &server));
    let request = client.post(url).body(r#"{"model":"claude-opus-4-1","max_tokens":16}"#).send();
    assert_eq!(tokio::time::timeout(DEADLINE, request).await.expect("no hang").unwrap().status(), 200);

    let seen = recorded();
    let anthropic = ("provider", "anthropic");
    let models = [anthropic, ("from", "claude-opus-4-1"), ("to", "claude-sonnet-4-5")];
    assert_eq!(seen.counter("llm_retry_fallbacks_total", &models), 1);
    assert_eq!(seen.total("llm_retry_fallbacks_total"), 1);
    assert_eq!(seen.counter("llm_retry_retries_total", &[anthropic, ("reason", "overloaded")]), 1, "opus's own retry");
    assert_eq!(seen.counter("llm_retry_requests_total", &[anthropic, ("outcome", "success")]), 1, "one call");
    assert_eq!(seen.total("llm_retry_requests_total"), 1);
    assert_eq!(seen.units["llm_retry_fallbacks_total"], (Some(Unit::Count), true));
}

#[tokio::test]
async fn a_retry_that_an_outage_sends_to_the_fallback_instead_is_no_retry() {
    let _turn = turn().await;
    let (server, _) = mock::start(Provider::Anthropic).await;
    // Opus's 529s ask for 20 ms: the first failures' retries come once its outage has begun.
    let overloaded = ResponseTemplate::from(mock::anthropic::overloaded()).insert_header("retry-after-ms", "20");
    Mock::given(mock::model("claude-opus-4-1")).respond_with(overloaded).mount(&server).await;
    Mock::given(mock::model("claude-sonnet-4-5")).respond_with(mock::anthropic::ok("hi")).mount(&server).await;
    // The outage's first probe is due a quarter of the base delay after it begins: 1 s.
    let middleware = LlmRetryMiddleware::builder().base_delay(Duration::from_secs(4));
    let middleware = middleware.fallback("claude-opus-4-1", "claude-sonnet-4-5").build();
    let client = client(&server, middleware);
    let url = format!("{}/v1/messages", mock::base_url(Provider::Anthropic, &server));
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let request = client.post(&url).body(r#"{"model":"claude-opus-4-1"}"#).send();
        requests.spawn(async move { request.await.unwrap().status().as_u16() });
    }
    let statuses = tokio::time::timeout(DEADLINE, requests.join_all()).await.expect("no hang");
    assert_eq!(statuses, [200; 12]);

    let seen = recorded();
    let to_opus = server.received_requests().await.unwrap().iter().filter(|r| r.body.ends_with(b"4-1\"}")).count();
    let anthropic = ("provider", "anthropic");
    let waited = seen.histogram("llm_retry_wait_seconds", &[anthropic, ("cause", "retry")]).len();
    let retries = seen.total("llm_retry_retries_total") as usize;
    assert!(waited > retries, "some retries were waited for, then went to sonnet: {waited} waits, {retries} retries");
    assert_eq!(retries, to_opus - 12, "a retry is a request sent to opus again");
    assert_eq!(seen.total("llm_retry_fallbacks_total"), 12);
}

#[tokio::test]
async fn the_outage_of_a_model_on_a_chain_is_labelled_with_its_host_alone() {
    let _turn = turn().await;
    let (server, _) = mock::start(Provider::Bedrock).await;
    // Bedrock's model ids hold a colon, which the host label must not take for a port's.
    let (opus, sonnet) = ("anthropic.claude-opus-4-1-v1:0", "anthropic.claude-sonnet-4-5-v1:0");
    let down = path("/model/anthropic.claude-opus-4-1-v1%3A0/invoke");
    Mock::given(down).respond_with(mock::bedrock::service_unavailable()).mount(&server).await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200).set_body_string("{}")).mount(&server).await;
    let client = client(&server, fast().max_retries(0).fallback(opus, sonnet).build());
    let url = format!("{}/model/anthropic.claude-opus-4-1-v1%3A0/invoke", mock::base_url(Provider::Bedrock, &server));
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (client, url) = (client.clone(), url.clone());
        requests.spawn(async move { post(&client, &url).await });
    }
    let statuses = tokio::time::timeout(DEADLINE, requests.join_all()).await.expect("no hang");
    assert!(statuses.iter().all(|&status| status == 200), "every request answered by the fallback: {statuses:?}");

    let seen = recorded();
    let bedrock = ("provider", "bedrock");
    let outage = [bedrock, ("host", "bedrock-runtime.us-east-1.amazonaws.com")];
    assert_eq!(seen.gauge("llm_retry_outage", &outage), Some(1.0), "opus's outage, under its host");
    assert_eq!(seen.series("llm_retry_outage").len(), 1, "{:?}", seen.series("llm_retry_outage"));
    assert_eq!(seen.counter("llm_retry_fallbacks_total", &[bedrock, ("from", opus), ("to", sonnet)]), 12);
}

#[tokio::test]
async fn an_error_event_before_a_streams_output_is_a_stream_error_retry() {
    let _turn = turn().await;
    let (server, _) = mock::start(Provider::Anthropic).await;
    let script =
        mock::Sequence::new().then(mock::anthropic::stream_overloaded()).then(mock::anthropic::stream_ok("hi"));
    Mock::given(any()).respond_with(script).mount(&server).await;
    let client = client(&server, fast().build());
    let url = format!("{}/v1/messages", mock::base_url(Provider::Anthropic, &server));
    assert_eq!(post(&client, &url).await, 200);

    let seen = recorded();
    let anthropic = ("provider", "anthropic");
    assert_eq!(seen.counter("llm_retry_retries_total", &[anthropic, ("reason", "stream_error")]), 1);
    assert_eq!(seen.total("llm_retry_retries_total"), 1);
    assert_eq!(seen.counter("llm_retry_requests_total", &[anthropic, ("outcome", "success")]), 1);
}

#[tokio::test]
async fn transport_errors_count_as_timeout_or_as_server_error_for_a_refused_connection() {
    let _turn = turn().await;
    let middleware = fast().max_retries(1).build();
    let client = client_from(reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(100)), middleware);
    // A port nothing listens on: bound, then let go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let refused = client.post(format!("http://{closed}/v1/chat/completions")).with_extension(Provider::OpenAi);
    assert!(tokio::time::timeout(DEADLINE, refused.send()).await.expect("no hang").unwrap_err().is_connect());
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2))).mount(&server).await;
    let slow = client.post(format!("{}/v1/messages", server.uri())).with_extension(Provider::Anthropic);
    assert!(tokio::time::timeout(DEADLINE, slow.send()).await.expect("no hang").unwrap_err().is_timeout());

    let seen = recorded();
    let (openai, anthropic) = (("provider", "openai"), ("provider", "anthropic"));
    assert_eq!(seen.counter("llm_retry_retries_total", &[openai, ("reason", "server_error")]), 1);
    assert_eq!(seen.counter("llm_retry_requests_total", &[openai, ("outcome", "server_error")]), 1);
    assert_eq!(seen.counter("llm_retry_retries_total", &[anthropic, ("reason", "timeout")]), 1);
    assert_eq!(seen.counter("llm_retry_requests_total", &[anthropic, ("outcome", "timeout")]), 1);
}

#[tokio::test]
async fn no_label_carries_a_credential_a_path_or_a_query() {
    let _turn = turn().await;
    let (server, _) = mock::start(Provider::Gemini).await;
    let headroom = |template: ResponseTemplate| template.insert_header("x-ratelimit-remaining-requests", "7");
    let limited: ResponseTemplate = mock::gemini::rate_limited(Duration::from_millis(10)).into();
    let script = mock::Sequence::new().then(headroom(limited)).then(headroom(mock::gemini::ok("hi")));
    Mock::given(any()).respond_with(script).mount(&server).await;
    let client = client(&server, fast().build());
    let port = server.address().port();
    let url = format!(
        "http://user:SECRET-PASSWORD@generativelanguage.googleapis.com:{port}/v1beta/models/gemini-2.5-flash:generateContent?key=SECRET-QUERY-KEY"
    );
    let request = client
        .post(url)
        .header("authorization", "Bearer SECRET-BEARER-TOKEN")
        .header("x-goog-api-key", "SECRET-HEADER-KEY")
        .body("{}")
        .send();
    assert_eq!(tokio::time::timeout(DEADLINE, request).await.expect("no hang").unwrap().status(), 200);

    let seen = recorded();
    assert_eq!(seen.total("llm_retry_retries_total"), 1, "the 429 was retried");
    let gemini = ("provider", "gemini");
    let host = ("host", "generativelanguage.googleapis.com");
    assert_eq!(seen.gauge("llm_retry_ratelimit_remaining", &[gemini, host, ("limit", "requests")]), Some(7.0));
    for (key, value) in seen.values.keys().flat_map(|(_, labels)| labels) {
        assert!(!value.contains("SECRET"), "{key}={value}");
        for piece in ["/", "?", "=", "@", ":", "v1beta", "gemini-2.5-flash", &port.to_string()] {
            assert!(!value.contains(piece), "{key}={value} holds {piece:?}");
        }
    }
    for labels in seen.series("llm_retry_ratelimit_remaining") {
        assert!(labels.contains(&(host.0.into(), host.1.into())), "{labels:?}");
    }
}

/// Answers OpenAI successes whose `x-ratelimit-remaining-requests` counts down from `from`,
/// one a response, of a limit of 1,000.
struct Counting {
    from: u64,
    answered: std::sync::atomic::AtomicU64,
}

impl Respond for Counting {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.answered.fetch_add(1, Ordering::SeqCst);
        mock::openai::ok("hi")
            .insert_header("x-ratelimit-limit-requests", "1000")
            .insert_header("x-ratelimit-remaining-requests", (self.from - n).to_string().as_str())
            .insert_header("x-ratelimit-reset-requests", "60s")
    }
}

/// Sends `n` requests one at a time through a fresh middleware and server, and returns the
/// headroom gauge after each, with the remaining count each response stated.
async fn headroom_after_each(from: u64, n: u64, middleware: LlmRetryMiddleware) -> Vec<(Option<f64>, u64)> {
    let (server, _) = mock::start(Provider::OpenAi).await;
    Mock::given(any()).respond_with(Counting { from, answered: 0.into() }).mount(&server).await;
    let client = client(&server, middleware);
    let url = format!("{}/v1/chat/completions", mock::base_url(Provider::OpenAi, &server));
    let mut gauges = Vec::new();
    for i in 0..n {
        assert_eq!(post(&client, &url).await, 200);
        let labels = [("provider", "openai"), ("host", "api.openai.com"), ("limit", "requests")];
        gauges.push((recorded().gauge("llm_retry_ratelimit_remaining", &labels), from - i));
    }
    gauges
}

#[tokio::test]
async fn the_headroom_gauge_is_at_most_8_responses_behind_above_half_and_exact_below() {
    let _turn = turn().await;
    // Above half the limit: the gauge may lag, by fewer than 8 responses, and never goes up.
    // (A snapshot takes a gauge's value: one not set since the last snapshot reads 0.)
    let mut last = f64::MAX;
    for (gauge, stated) in headroom_after_each(900, 40, fast().build()).await {
        let gauge = gauge.filter(|g| *g != 0.0).unwrap_or(last);
        assert!(gauge >= stated as f64 && gauge - (stated as f64) < 8.0, "{gauge} after {stated}");
        assert!(gauge <= last, "{gauge} after {last}");
        last = gauge;
    }
    // Below half: every response.
    for (gauge, stated) in headroom_after_each(400, 20, fast().build()).await {
        assert_eq!(gauge, Some(stated as f64));
    }
    // Without pacing, every response too.
    for (gauge, stated) in headroom_after_each(900, 20, fast().cooldown(false).build()).await {
        assert_eq!(gauge, Some(stated as f64));
    }
}
