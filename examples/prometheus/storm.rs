//! What the `prometheus` example runs, shared with its test (`tests/metrics_prometheus.rs`
//! includes this file): a Prometheus recorder, a `/metrics` endpoint on 127.0.0.1, and a short
//! storm through one client and one middleware, as in a program. The mock kit's providers push
//! back in turn: a rate limit (OpenAI), an overload (Anthropic), one model down while its
//! fallback answers (Anthropic's Opus, then Sonnet), then an outage and its recovery (Gemini).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use reqwest_llm_retry::mock::wiremock::matchers::any;
use reqwest_llm_retry::mock::wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};
use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware, Provider, mock};
use reqwest_middleware::ClientWithMiddleware;

/// The buckets of `llm_retry_wait_seconds`, in seconds: from a paced request's few
/// milliseconds to the longest server wait the middleware sleeps (60 s by default).
const WAIT_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

/// Installs the Prometheus recorder as the global recorder (once per process).
pub fn recorder() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("llm_retry_wait_seconds".into()), &WAIT_BUCKETS)?
        .install_recorder()
}

/// Serves `GET /metrics` on 127.0.0.1, on a port of the system's choice.
pub async fn serve(handle: PrometheusHandle) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let response = exposition(&handle, request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::spawn(connection);
        }
    });
    Ok(address)
}

/// The answer to a request for `path`: the exposition text at `/metrics`.
fn exposition(handle: &PrometheusHandle, path: &str) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::default());
    if path != "/metrics" {
        *response.status_mut() = hyper::StatusCode::NOT_FOUND;
        return response;
    }
    // Upkeep drains the histograms' older samples; once a scrape is often enough.
    handle.run_upkeep();
    *response.body_mut() = Full::new(Bytes::from(handle.render()));
    let content_type = hyper::header::HeaderValue::from_static("text/plain; version=0.0.4");
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, content_type);
    response
}

/// What a scraper reads at `/metrics`.
pub async fn scrape(address: SocketAddr) -> reqwest::Result<String> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    client.get(format!("http://{address}/metrics")).send().await?.error_for_status()?.text().await
}

/// One phase of the storm, as its callers saw it.
#[derive(Debug)]
pub struct Phase {
    pub name: &'static str,
    pub provider: Provider,
    pub calls: usize,
    pub successes: usize,
    /// Calls answered by their fallback model.
    pub fallbacks: usize,
    /// ... of which sent straight there, their model in an outage and not asked.
    pub straight: usize,
    /// Requests the mock answered, retries and fallbacks included.
    pub answered: usize,
}

/// The model of the fallback phase, down for a while, and the one it falls back to.
pub const OPUS: &str = "claude-opus-4-1";
pub const SONNET: &str = "claude-sonnet-4-5";

/// The storm: each phase's callers, then what they got.
pub async fn storm() -> Result<Vec<Phase>, reqwest::Error> {
    let openai = Arrivals::start(rate_limited).await;
    let mut anthropic = Arrivals::start(overloaded).await;
    anthropic.model(OPUS, opus).await;
    let gemini = Arrivals::start(outage).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .resolve(mock::host(Provider::OpenAi), *openai.server.address())
        .resolve(mock::host(Provider::Anthropic), *anthropic.server.address())
        .resolve(mock::host(Provider::Gemini), *gemini.server.address())
        .build()?;
    let middleware =
        LlmRetryMiddleware::builder().base_delay(Duration::from_millis(100)).fallback(OPUS, SONNET).build();
    let client = reqwest_middleware::ClientBuilder::new(http).with(middleware).build();

    let chat = format!("{}/v1/chat/completions", mock::base_url(Provider::OpenAi, &openai.server));
    let messages = format!("{}/v1/messages", mock::base_url(Provider::Anthropic, &anthropic.server));
    let generate =
        format!("{}/v1beta/models/gemini-2.5-flash:generateContent", mock::base_url(Provider::Gemini, &gemini.server));
    let phases = [
        ("rate limit", Provider::OpenAi, &openai, &chat, "gpt-4o", 6, 8),
        ("overload", Provider::Anthropic, &anthropic, &messages, SONNET, 6, 6),
        ("fallback", Provider::Anthropic, &anthropic, &messages, OPUS, 4, 4),
        ("outage", Provider::Gemini, &gemini, &generate, "gemini-2.5-flash", 16, 1),
        ("recovery", Provider::Gemini, &gemini, &generate, "gemini-2.5-flash", 16, 2),
    ];
    let mut done = Vec::new();
    for (name, provider, mock, url, model, workers, each) in phases {
        let before = mock.answered();
        let Answers { successes, fallbacks, straight } = callers(&client, url, model, workers, each).await;
        let answered = mock.answered() - before;
        done.push(Phase { name, provider, calls: workers * each, successes, fallbacks, straight, answered });
    }
    Ok(done)
}

/// What callers got: see [`Phase`].
#[derive(Default)]
struct Answers {
    successes: usize,
    fallbacks: usize,
    straight: usize,
}

/// `workers` callers at once, each sending `each` requests for `model` one after the other.
async fn callers(client: &ClientWithMiddleware, url: &str, model: &str, workers: usize, each: usize) -> Answers {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (client, url) = (client.clone(), url.to_owned());
        let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"Hello"}}]}}"#);
        tasks.spawn(async move {
            let mut answers = Answers::default();
            for _ in 0..each {
                let sent = client.post(&url).header("content-type", "application/json").body(body.clone()).send().await;
                let Ok(response) = sent else { continue };
                answers.successes += usize::from(response.status().is_success());
                if let Some(taken) = response.model_fallback() {
                    answers.fallbacks += 1;
                    answers.straight += usize::from(taken.primary_error.as_ref().is_some_and(|e| e.attempts == 0));
                }
            }
            answers
        });
    }
    let mut all = Answers::default();
    for answers in tasks.join_all().await {
        all.successes += answers.successes;
        all.fallbacks += answers.fallbacks;
        all.straight += answers.straight;
    }
    all
}

/// A mock provider answering by arrival: the `n`th request gets `script(n)`; and the `n`th
/// request for a model scripted apart, that model's `script(n)`.
struct Arrivals {
    server: MockServer,
    counts: Vec<Arc<AtomicUsize>>,
}

struct Script(Arc<AtomicUsize>, fn(usize) -> ResponseTemplate);

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        (self.1)(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

impl Arrivals {
    async fn start(script: fn(usize) -> ResponseTemplate) -> Arrivals {
        let server = MockServer::start().await;
        let count = Arc::new(AtomicUsize::new(0));
        Mock::given(any()).respond_with(Script(count.clone(), script)).mount(&server).await;
        Arrivals { server, counts: vec![count] }
    }

    /// Answers the requests naming `model` (`mock::model`) by their own arrivals.
    async fn model(&mut self, model: &str, script: fn(usize) -> ResponseTemplate) {
        let count = Arc::new(AtomicUsize::new(0));
        let scripted = Mock::given(mock::model(model)).respond_with(Script(count.clone(), script));
        scripted.with_priority(1).mount(&self.server).await;
        self.counts.push(count);
    }

    fn answered(&self) -> usize {
        self.counts.iter().map(|count| count.load(Ordering::SeqCst)).sum()
    }
}

/// Requests left of a window of 100, as the `n`th answer states it.
fn left(n: usize) -> usize {
    100usize.saturating_sub(n + 1)
}

/// OpenAI: every 4th answer a 429 (tokens used up for 40 ms); the others spend the window.
fn rate_limited(n: usize) -> ResponseTemplate {
    let response = match n % 4 {
        3 => ResponseTemplate::from(mock::openai::rate_limited(Duration::from_millis(40))),
        _ => mock::openai::ok("Hello!").insert_header("x-ratelimit-remaining-tokens", 30_000 - 500 * n.min(59)),
    };
    response.insert_header("x-ratelimit-limit-requests", 100).insert_header("x-ratelimit-remaining-requests", left(n))
}

/// Anthropic: every 3rd answer a 529; the others state each of its limits.
fn overloaded(n: usize) -> ResponseTemplate {
    if n % 3 == 1 {
        return mock::anthropic::overloaded().into();
    }
    mock::anthropic::ok("Hello!")
        .insert_header("anthropic-ratelimit-requests-limit", 100)
        .insert_header("anthropic-ratelimit-requests-remaining", left(n))
        .insert_header("anthropic-ratelimit-tokens-remaining", 90_000 - 1_000 * n.min(89))
        .insert_header("anthropic-ratelimit-input-tokens-remaining", 40_000 - 400 * n.min(99))
        .insert_header("anthropic-ratelimit-output-tokens-remaining", 8_000 - 80 * n.min(99))
}

/// Anthropic's Opus: overloaded for its first 10 answers (an outage of the model), then back;
/// its calls are answered by Sonnet meanwhile.
fn opus(n: usize) -> ResponseTemplate {
    if n < 10 { mock::anthropic::overloaded().into() } else { mock::anthropic::ok("Hello from Opus!") }
}

/// Gemini: down (503 `UNAVAILABLE`) for the first 30 answers, then back.
fn outage(n: usize) -> ResponseTemplate {
    if n < 30 { mock::gemini::unavailable().into() } else { mock::gemini::ok("Hello!") }
}
