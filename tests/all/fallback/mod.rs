//! Model fallback through the public API: a request for a model whose
//! failure is transient is sent again naming the next model, wherever the
//! provider puts the model, with every other byte kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest_llm_retry::store::{OutageQuery, OutageTurn};
use reqwest_llm_retry::{ErrorKind, LlmApiError, LlmResponseExt, MemoryStore, SharedStore, mock};
use wiremock::matchers::{any, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::*;

mod requests;
mod schedule;

fn overloaded() -> ResponseTemplate {
    anthropic_error(529, "overloaded_error", "Overloaded").insert_header("retry-after-ms", "1")
}

/// Answers requests naming `model` with `template`.
async fn model_answers(server: &MockServer, model: &str, template: ResponseTemplate) {
    Mock::given(mock::model(model)).respond_with(template).mount(server).await;
}

/// The bodies of the requests the server received for `model`, in order.
async fn bodies_for(server: &MockServer, model: &str) -> Vec<Vec<u8>> {
    let requests = server.received_requests().await.unwrap_or_default();
    let needle = format!(r#""model":"{model}""#);
    let names = |body: &[u8]| String::from_utf8_lossy(body).replace(' ', "").contains(&needle);
    requests.into_iter().filter(|r| names(&r.body)).map(|r| r.body).collect()
}

#[tokio::test]
async fn an_overloaded_model_is_answered_by_its_fallback_with_every_other_byte_kept() {
    let server = MockServer::start().await;
    model_answers(&server, "claude-opus-4-1", overloaded()).await;
    model_answers(&server, "claude-sonnet-4-5", ok()).await;
    let middleware = fast().max_retries(1).fallback("claude-opus-4-1", "claude-sonnet-4-5").build();
    let client = client(&server, middleware);
    // The caller's own spacing, key order and escapes.
    let body = "{ \"max_tokens\" : 64,\n  \"model\":\"claude-opus-4-1\", \"messages\": [{\"role\":\"user\",\"content\":\"caf\\u00e9 \\\"model\\\": \\\"x\\\"\"}] }";
    let response = client.post(url(&server, ANTHROPIC, "/v1/messages")).body(body).send().await.unwrap();

    assert_eq!(response.status(), 200);
    let taken = response.model_fallback().expect("the response says it came from the fallback");
    assert_eq!((taken.requested.as_str(), taken.answered.as_str()), ("claude-opus-4-1", "claude-sonnet-4-5"));
    let primary = taken.primary_error.as_ref().expect("the requested model's last error");
    assert_eq!((primary.kind, primary.status.as_u16(), primary.attempts), (ErrorKind::Overloaded, 529, 2));
    assert_eq!(response.retry_stats().unwrap().attempts, 3, "every attempt, across models");
    let sent = bodies_for(&server, "claude-sonnet-4-5").await;
    let expected = body.replace("\"model\":\"claude-opus-4-1\"", "\"model\":\"claude-sonnet-4-5\"");
    assert_eq!(sent, [expected.into_bytes()], "only the model changed");
}

#[tokio::test]
async fn the_model_is_replaced_where_each_provider_puts_it() {
    // (host, path asked, path of the fallback, from, to)
    let cases = [
        (
            "generativelanguage.googleapis.com",
            "/v1beta/models/gemini-2.5-pro:generateContent",
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "gemini-2.5-pro",
            "gemini-2.5-flash",
        ),
        (
            "us-central1-aiplatform.googleapis.com",
            "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro:streamGenerateContent",
            "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash:streamGenerateContent",
            "gemini-2.5-pro",
            "gemini-2.5-flash",
        ),
        (
            "bedrock-runtime.us-east-1.amazonaws.com",
            "/model/anthropic.claude-opus-4-1-v1%3A0/invoke",
            "/model/anthropic.claude-sonnet-4-5-v1%3A0/invoke",
            "anthropic.claude-opus-4-1-v1:0",
            "anthropic.claude-sonnet-4-5-v1:0",
        ),
        (
            "my-resource.openai.azure.com",
            "/openai/deployments/gpt-4o/chat/completions",
            "/openai/deployments/gpt-4o-mini/chat/completions",
            "gpt-4o",
            "gpt-4o-mini",
        ),
    ];
    for (host, asked, answered, from, to) in cases {
        let server = MockServer::start().await;
        let failing = json(500, r#"{"error":{"code":500,"message":"internal error"}}"#);
        Mock::given(path(asked)).respond_with(failing).mount(&server).await;
        Mock::given(path(answered)).respond_with(ok()).mount(&server).await;
        let client = client(&server, fast().max_retries(0).fallback(from, to).build());
        let body = r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#;
        let response = client
            .post(format!("{}?api-version=2024-10-21", url(&server, host, asked)))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{host}");
        assert_eq!(response.model_fallback().map(|f| f.answered.as_str()), Some(to), "{host}");
        let requests = server.received_requests().await.unwrap();
        let last = requests.last().unwrap();
        assert_eq!(last.url.path(), answered, "{host}");
        assert_eq!(last.url.query(), Some("api-version=2024-10-21"), "{host}: the query is kept");
        assert_eq!(last.body, body.as_bytes(), "{host}: the body is kept");
    }
}

#[tokio::test]
async fn permanent_errors_and_models_without_a_fallback_are_returned_as_before() {
    let server = MockServer::start().await;
    let invalid = anthropic_error(400, "invalid_request_error", "max_tokens: field required");
    model_answers(&server, "claude-opus-4-1", invalid).await;
    model_answers(&server, "claude-haiku-4-5", overloaded()).await;
    model_answers(&server, "claude-sonnet-4-5", ok()).await;
    let middleware = fast().max_retries(1).fallback("claude-opus-4-1", "claude-sonnet-4-5").build();
    let client = client(&server, middleware);
    let ask = |model: &'static str| {
        client.post(url(&server, ANTHROPIC, "/v1/messages")).body(format!(r#"{{"model":"{model}"}}"#)).send()
    };

    let response = ask("claude-opus-4-1").await.unwrap();
    assert_eq!(response.status(), 400, "an invalid request is the caller's to fix");
    assert!(response.model_fallback().is_none());
    assert!(response.llm_error().unwrap().fallback().is_none());

    let response = ask("claude-haiku-4-5").await.unwrap();
    assert_eq!(response.status(), 529, "no fallback configured for this model");
    assert!(response.model_fallback().is_none());
    assert!(bodies_for(&server, "claude-sonnet-4-5").await.is_empty(), "the fallback was never asked");
}

#[tokio::test]
async fn a_chain_is_followed_and_ends_at_a_model_already_tried() {
    let server = MockServer::start().await;
    always(&server, overloaded()).await;
    let middleware = fast()
        .max_retries(1)
        .error_for_status(true)
        .fallback("opus", "sonnet")
        .fallback("sonnet", "haiku")
        .fallback("haiku", "opus")
        .build();
    let client = client(&server, middleware);
    let error = client
        .post(url(&server, ANTHROPIC, "/v1/messages"))
        .body(r#"{"model":"opus"}"#)
        .send()
        .await
        .expect_err("every model is overloaded");

    let api = LlmApiError::find_in(&error).expect("the last model's typed error");
    assert_eq!((api.kind, api.attempts), (ErrorKind::Overloaded, 6), "two attempts on each of three models");
    let taken = api.fallback().expect("the error says where the request went");
    assert_eq!(taken.tried, ["opus", "sonnet", "haiku"]);
    assert_eq!(taken.answered, "haiku");
    assert_eq!(taken.primary_error.as_ref().map(|e| e.kind), Some(ErrorKind::Overloaded), "opus's error is kept");
    assert_eq!(hits(&server).await, 6, "opus is not asked again");
}

#[tokio::test]
async fn a_rate_limit_wait_above_max_retry_after_falls_back_at_once() {
    let server = MockServer::start().await;
    let limited =
        anthropic_error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit")
            .insert_header("retry-after", "3600");
    model_answers(&server, "opus", limited).await;
    model_answers(&server, "sonnet", ok()).await;
    let middleware = fast().fallback("opus", "sonnet").build();
    let response = client(&server, middleware)
        .post(url(&server, ANTHROPIC, "/v1/messages"))
        .body(r#"{"model":"opus"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let primary = response.model_fallback().unwrap().primary_error.clone().unwrap();
    assert_eq!((primary.kind, primary.retry_after), (ErrorKind::RateLimited, Some(Duration::from_secs(3600))));
    assert_eq!(bodies_for(&server, "opus").await.len(), 1, "an hour's wait is not slept, nor retried");
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_output_falls_back() {
    let server = MockServer::start().await;
    let failing = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n\
                   event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let answering = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Paris\"}}\n\n";
    let sse = |body: &str| ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "text/event-stream");
    model_answers(&server, "opus", sse(failing)).await;
    model_answers(&server, "sonnet", sse(answering)).await;
    let middleware = fast().max_retries(0).fallback("opus", "sonnet").build();
    let response = client(&server, middleware)
        .post(url(&server, ANTHROPIC, "/v1/messages"))
        .body(r#"{"model":"opus","stream":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.model_fallback().map(|f| f.answered.clone()), Some("sonnet".into()));
    assert!(response.llm_error().is_none());
    assert_eq!(response.text().await.unwrap(), answering, "the fallback's stream, byte for byte");
}

/// The primary model: overloaded until `up`, answering 30 ms after each request.
#[derive(Clone)]
struct Primary {
    up: Arc<AtomicBool>,
}

impl Respond for Primary {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let answer = if self.up.load(Ordering::SeqCst) { ok() } else { overloaded() };
        answer.set_delay(Duration::from_millis(30))
    }
}

#[tokio::test]
async fn in_a_models_outage_one_request_probes_it_the_others_go_to_the_fallback_and_traffic_returns() {
    let server = MockServer::start().await;
    let up = Arc::new(AtomicBool::new(false));
    Mock::given(mock::model("opus")).respond_with(Primary { up: up.clone() }).mount(&server).await;
    model_answers(&server, "sonnet", ok()).await;
    Mock::given(any()).respond_with(json(404, "{}")).mount(&server).await;
    let middleware = fast().max_retries(0).fallback("opus", "sonnet").build();
    let client = client(&server, middleware);
    let wave = |n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (client, url) = (client.clone(), url(&server, ANTHROPIC, "/v1/messages"));
                tokio::spawn(async move { client.post(url).body(r#"{"model":"opus"}"#).send().await.unwrap() })
            })
            .collect();
        async move {
            let mut answered = Vec::new();
            for task in tasks {
                let response = task.await.unwrap();
                assert_eq!(response.status(), 200, "every request is answered");
                answered.push(response.model_fallback().map_or("opus".to_owned(), |f| f.answered.clone()));
            }
            answered
        }
    };

    // Twelve failures of opus in a row: its outage.
    assert!(wave(12).await.iter().all(|model| model == "sonnet"));
    let before = bodies_for(&server, "opus").await.len();
    assert_eq!(before, 12);
    let answered = wave(20).await;
    let probes = bodies_for(&server, "opus").await.len() - before;
    assert!(probes <= 2, "{probes} requests sent to opus during its outage; one probe at a time was promised");
    assert!(answered.iter().all(|model| model == "sonnet"));

    up.store(true, Ordering::SeqCst);
    let mut back = false;
    for _ in 0..100 {
        if wave(1).await == ["opus"] {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(back, "a probe finds opus answering again");
    assert_eq!(wave(4).await, ["opus"; 4], "traffic is back on opus");
}

/// `n` concurrent requests for opus; the model that answered each.
async fn wave_for_opus(client: &reqwest_middleware::ClientWithMiddleware, url: &str, n: usize) -> Vec<String> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url) = (client.clone(), url.to_owned());
        tasks.spawn(async move { client.post(url).body(r#"{"model":"opus"}"#).send().await.unwrap() });
    }
    let responses = tokio::time::timeout(DEADLINE, tasks.join_all()).await.expect("every request ends");
    responses.iter().map(|r| r.model_fallback().map_or("opus".to_owned(), |f| f.answered.clone())).collect()
}

/// A request for opus, alone.
async fn one_for_opus(client: &reqwest_middleware::ClientWithMiddleware, url: &str) -> reqwest::Response {
    let response = client.post(url).body(r#"{"model":"opus"}"#).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response
}

#[tokio::test]
async fn in_a_models_outage_a_request_alone_goes_to_the_fallback_until_the_probe_is_due() {
    let server = MockServer::start().await;
    model_answers(&server, "opus", overloaded()).await;
    model_answers(&server, "sonnet", ok()).await;
    // The next probe is due a quarter of the base delay after the outage begins: 10 s.
    let middleware = fast().base_delay(Duration::from_secs(40)).fallback("opus", "sonnet").build();
    let client = client(&server, middleware);
    let url = url(&server, ANTHROPIC, "/v1/messages");
    assert!(wave_for_opus(&client, &url, 12).await.iter().all(|model| model == "sonnet"), "opus's outage");
    let before = bodies_for(&server, "opus").await.len();

    for _ in 0..5 {
        let response = one_for_opus(&client, &url).await;
        let primary = response.model_fallback().and_then(|f| f.primary_error.clone()).expect("from the fallback");
        assert_eq!((primary.kind, primary.attempts), (ErrorKind::Overloaded, 0), "opus is not asked");
        let stats = response.retry_stats().unwrap();
        assert_eq!((stats.attempts, stats.waited), (1, Duration::ZERO), "sent to sonnet at once");
    }
    assert_eq!(bodies_for(&server, "opus").await.len(), before, "alone, no request probed before its time");
}

#[tokio::test]
async fn a_failed_probe_of_a_model_in_its_outage_falls_back_at_once_instead_of_retrying_it() {
    let server = MockServer::start().await;
    model_answers(&server, "opus", overloaded()).await;
    model_answers(&server, "sonnet", ok()).await;
    let client = client(&server, fast().fallback("opus", "sonnet").build());
    let url = url(&server, ANTHROPIC, "/v1/messages");
    assert!(wave_for_opus(&client, &url, 12).await.iter().all(|model| model == "sonnet"), "opus's outage");
    let before = bodies_for(&server, "opus").await.len();

    // Requests one at a time until one is the outage's probe (due within 2.5 ms).
    let mut probe = None;
    for _ in 0..200 {
        let response = one_for_opus(&client, &url).await;
        let primary = response.model_fallback().and_then(|f| f.primary_error.clone()).expect("from the fallback");
        if primary.status == 529 {
            probe = Some((response, primary));
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (response, primary) = probe.expect("a request probes opus");
    assert_eq!(primary.attempts, 1, "the failed probe is not retried on opus");
    assert_eq!(bodies_for(&server, "opus").await.len(), before + 1);
    let stats = response.retry_stats().unwrap();
    assert_eq!((stats.attempts, stats.waited), (2, Duration::ZERO), "no backoff before the fallback");
}

/// Opus down for good: 529 at once, save `a`'s requests after its first 12,
/// which hang (its probe holds the fleet's lease while the others are watched).
/// Publishes the count of `a`'s arrivals.
struct OpusDown(tokio::sync::watch::Sender<usize>);

impl Respond for OpusDown {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.headers.contains_key("x-from-b") {
            return overloaded();
        }
        let mut count = 0;
        self.0.send_modify(|n| {
            *n += 1;
            count = *n;
        });
        if count > 12 { overloaded().set_delay(Duration::from_secs(30)) } else { overloaded() }
    }
}

#[tokio::test]
async fn a_models_outage_one_middleware_recorded_sends_anothers_requests_on_after_one_failure() {
    let server = MockServer::start().await;
    let (arrivals, mut from_a) = tokio::sync::watch::channel(0);
    Mock::given(mock::model("opus")).respond_with(OpusDown(arrivals)).mount(&server).await;
    model_answers(&server, "sonnet", ok()).await;
    let store = Arc::new(MemoryStore::new());
    let middleware = || fast().fallback("opus", "sonnet").shared_store(store.clone()).build();
    let a = client(&server, middleware());
    let url = url(&server, ANTHROPIC, "/v1/messages");
    // `a` meets opus's outage, and its probe holds the fleet's lease: the store has it on record.
    let wave = tokio::spawn({
        let url = url.clone();
        async move { wave_for_opus(&a, &url, 12).await }
    });
    let lease = OutageQuery::new(None, Duration::from_secs(10));
    let name = format!("{ANTHROPIC}:{}/opus", server.address().port());
    let recorded = async {
        loop {
            from_a.changed().await.unwrap();
            if matches!(store.outage(&name, lease).await, OutageTurn::Wait(_)) {
                break;
            }
        }
    };
    tokio::time::timeout(DEADLINE, recorded).await.expect("a probes opus under the fleet's lease");

    // Middlewares that never saw opus fail send their requests on after one failure each:
    // `b` one request alone, `c` four at once, then one more, which goes to sonnet at once.
    let (b, c) = (client(&server, middleware()), client(&server, middleware()));
    let send = |client: &reqwest_middleware::ClientWithMiddleware| {
        let request = client.post(&url).header("x-from-b", "1").body(r#"{"model":"opus"}"#);
        async move {
            let response = tokio::time::timeout(DEADLINE, request.send()).await.expect("it ends").unwrap();
            assert_eq!(response.status(), 200);
            let taken = response.model_fallback().expect("answered by sonnet");
            taken.primary_error.as_ref().map_or(0, |e| e.attempts)
        }
    };
    assert_eq!(send(&b).await, 1, "alone, b fails once, then asks the store");
    let four = tokio::join!(send(&c), send(&c), send(&c), send(&c));
    assert_eq!(four, (1, 1, 1, 1), "c's requests fail once each, then ask the store");
    assert_eq!(send(&c).await, 0, "the fleet's outage is now c's own");
    // Kept under the host and the model: the host alone has no outage on record.
    let host = name.trim_end_matches("/opus");
    assert_eq!(store.outage(host, lease).await, OutageTurn::Up, "only opus is down, not {host}");
    wave.abort();
}
