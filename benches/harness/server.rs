//! The mock provider: a small hyper 1 server on 127.0.0.1, on a thread and
//! runtime of its own so that it never competes with the clients' executor.
//!
//! One server is started per measurement with one [`Scenario`]; it records
//! when every request arrived and what it answered, which is what the storm
//! figures (requests the server saw, the SVG) are made of.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio::time::Sleep;

/// The address every server binds: loopback, never anything else.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A ~300-byte OpenAI chat completion.
pub const CHAT_COMPLETION: &str = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}"#;

/// How the server's rate-limit and overload answers are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `retry-after-ms`, `retry-after`, `x-ratelimit-reset-requests`; 503 when overloaded.
    OpenAi,
    /// `retry-after` whole seconds, `anthropic-ratelimit-requests-reset` RFC 3339; 529 when overloaded.
    Anthropic,
    /// No header: `google.rpc.RetryInfo.retryDelay` in the body.
    Gemini,
}

impl Style {
    pub fn name(self) -> &'static str {
        match self {
            Style::OpenAi => "OpenAI",
            Style::Anthropic => "Anthropic",
            Style::Gemini => "Gemini",
        }
    }

    /// The real API host; the clients resolve it to 127.0.0.1.
    pub fn host(self) -> &'static str {
        match self {
            Style::OpenAi => "api.openai.com",
            Style::Anthropic => "api.anthropic.com",
            Style::Gemini => "generativelanguage.googleapis.com",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Style::OpenAi => "/v1/chat/completions",
            Style::Anthropic => "/v1/messages",
            Style::Gemini => "/v1beta/models/gemini-2.0-flash:generateContent",
        }
    }
}

/// How a [`Scenario::Custom`] answers: the window counter, the arrival time, the body.
pub type Responder = std::sync::Arc<dyn Fn(&Mutex<(u64, u32)>, Instant, &[u8]) -> Response<Payload> + Send + Sync>;

/// What the server answers.
#[derive(Clone)]
pub enum Scenario {
    /// 200 with [`CHAT_COMPLETION`].
    Ok,
    /// 200 `text/event-stream`: one event at once, the rest after `gap`.
    Sse { gap: Duration },
    /// A fixed window: `limit` requests per `window`, windows counted from
    /// `epoch` (which is `wall_epoch` on the wall clock); over-limit requests
    /// get the provider's 429.
    /// With `bare`, successes carry no rate-limit headers (gateways that strip them, many
    /// OpenAI-compatible hosts): only the 429s say anything.
    Storm { style: Style, limit: u32, window: Duration, epoch: Instant, wall_epoch: SystemTime, bare: bool },
    /// The provider's overload error with probability `p`, decided per
    /// request id (`x-bench-id`) and attempt, so every client meets the same faults.
    Overload { style: Style, p: f64, seed: u64 },
    /// 400 with an HTML body of `bytes` bytes, streamed in 64 KiB chunks.
    BigError { bytes: usize },
    /// The provider's overload error to every request until `until`, then 200.
    Outage { style: Style, until: Instant },
    /// One model's outage: the overload error to the requests whose body names
    /// `model` until `until`, then 200; 200 to every other model throughout.
    ModelOutage { style: Style, model: &'static str, until: Instant },
    /// Answered by a scenario defined elsewhere (the token storms): given the
    /// server's window counter, the arrival time and the request body.
    Custom(Responder),
}

/// One request as the server saw it.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub at: Instant,
    pub status: u16,
    /// It named the model of a [`Scenario::ModelOutage`].
    pub primary: bool,
    /// Its `x-bench-id`, when it had one.
    pub id: Option<u64>,
}

struct State {
    scenario: Scenario,
    log: Mutex<Vec<Seen>>,
    window: Mutex<(u64, u32)>,
    attempts: Mutex<HashMap<u64, u32>>,
}

/// A running server; dropping it stops it.
pub struct Server {
    pub port: u16,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(scenario: Scenario) -> Server {
        let listener = std::net::TcpListener::bind(SocketAddr::from((LOOPBACK, 0))).expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(State {
            scenario,
            log: Mutex::new(Vec::with_capacity(4096)),
            window: Mutex::new((0, 0)),
            attempts: Mutex::new(HashMap::new()),
        });
        let (stop, stopped) = oneshot::channel();
        let served = state.clone();
        let thread = std::thread::Builder::new()
            .name("mock-provider".into())
            .spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("server runtime");
                runtime.block_on(serve(listener, served, stopped));
            })
            .expect("server thread");
        Server { port, state, stop: Some(stop), thread: Some(thread) }
    }

    /// How many times each request id (`x-bench-id`) arrived, in the scenarios that count them.
    pub fn attempts(&self) -> HashMap<u64, u32> {
        self.state.attempts.lock().unwrap().clone()
    }

    /// Every request seen so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: std::net::TcpListener, state: Arc<State>, mut stopped: oneshot::Receiver<()>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(state.clone(), request));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        }
    }
}

async fn handle(state: Arc<State>, request: http::Request<Incoming>) -> Result<Response<Payload>, Infallible> {
    let at = Instant::now();
    let id = request.headers().get("x-bench-id").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    // Read the request body, as a real server does, so the connection stays reusable.
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let primary = matches!(&state.scenario, Scenario::ModelOutage { model, .. } if names_model(&body, model));
    let response = match &state.scenario {
        Scenario::Ok => {
            // What api.openai.com sends with every answer.
            let mut response = json(StatusCode::OK, CHAT_COMPLETION.to_owned());
            limit_headers(&mut response, Style::OpenAi, 10_000, 9_999, Duration::from_millis(6), SystemTime::now());
            header(&mut response, "x-ratelimit-limit-tokens", "10000000".into());
            header(&mut response, "x-ratelimit-remaining-tokens", "9999985".into());
            header(&mut response, "x-ratelimit-reset-tokens", "0s".into());
            header(&mut response, "openai-processing-ms", "412".into());
            header(&mut response, "x-request-id", "req_bench_ok".into());
            response
        }
        Scenario::Sse { gap } => sse(*gap),
        Scenario::Storm { style, limit, window, epoch, wall_epoch, bare } => {
            let index = (at.saturating_duration_since(*epoch).as_nanos() / window.as_nanos()) as u64;
            let admitted = {
                let mut current = state.window.lock().unwrap();
                if current.0 != index {
                    *current = (index, 0);
                }
                current.1 += 1;
                (current.1 <= *limit).then(|| *limit - current.1)
            };
            let reset_offset = *window * (index as u32 + 1);
            let wait = (*epoch + reset_offset).saturating_duration_since(at);
            match admitted {
                Some(remaining) => {
                    let mut response = json(StatusCode::OK, CHAT_COMPLETION.to_owned());
                    if !*bare {
                        limit_headers(&mut response, *style, *limit, remaining, wait, *wall_epoch + reset_offset);
                    }
                    response
                }
                None => rate_limited(*style, *limit, wait, *wall_epoch + reset_offset),
            }
        }
        Scenario::Overload { style, p, seed } => {
            let id = id.unwrap_or(u64::MAX);
            let attempt = {
                let mut attempts = state.attempts.lock().unwrap();
                let n = attempts.entry(id).or_insert(0);
                *n += 1;
                *n
            };
            if unit(*seed, id, attempt) < *p {
                overloaded(*style)
            } else {
                json(StatusCode::OK, CHAT_COMPLETION.to_owned())
            }
        }
        Scenario::BigError { bytes } => big_error(*bytes),
        Scenario::Custom(respond) => respond(&state.window, at, &body),
        Scenario::Outage { style, until } => {
            *state.attempts.lock().unwrap().entry(id.unwrap_or(u64::MAX)).or_insert(0) += 1;
            if at < *until { overloaded(*style) } else { json(StatusCode::OK, CHAT_COMPLETION.to_owned()) }
        }
        Scenario::ModelOutage { style, until, .. } => {
            if primary && at < *until {
                overloaded(*style)
            } else {
                json(StatusCode::OK, CHAT_COMPLETION.to_owned())
            }
        }
    };
    state.log.lock().unwrap().push(Seen { at, status: response.status().as_u16(), primary, id });
    Ok(response)
}

/// Whether a JSON body's `model` field is `model` (the harness's bodies are compact).
fn names_model(body: &[u8], model: &str) -> bool {
    let needle = format!(r#""model":"{model}""#);
    body.windows(needle.len()).any(|window| window == needle.as_bytes())
}

/// A uniform number in `[0, 1)` from (seed, id, attempt): SplitMix64.
fn unit(seed: u64, id: u64, attempt: u32) -> f64 {
    let mut z = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(attempt).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

pub fn json(status: StatusCode, body: String) -> Response<Payload> {
    let mut response = Response::new(Payload::Full(Some(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response
}

pub fn header(response: &mut Response<Payload>, name: &'static str, value: String) {
    response.headers_mut().insert(name, HeaderValue::from_str(&value).expect("header value"));
}

/// The request-limit headers OpenAI and Anthropic send with every answer (Gemini sends none).
fn limit_headers(
    response: &mut Response<Payload>,
    style: Style,
    limit: u32,
    remaining: u32,
    wait: Duration,
    reset_at: SystemTime,
) {
    match style {
        Style::OpenAi => {
            header(response, "x-ratelimit-limit-requests", limit.to_string());
            header(response, "x-ratelimit-remaining-requests", remaining.to_string());
            header(response, "x-ratelimit-reset-requests", format!("{}ms", ceil_ms(wait)));
        }
        Style::Anthropic => {
            header(response, "anthropic-ratelimit-requests-limit", limit.to_string());
            header(response, "anthropic-ratelimit-requests-remaining", remaining.to_string());
            header(response, "anthropic-ratelimit-requests-reset", rfc3339(reset_at));
        }
        Style::Gemini => {}
    }
}

/// Milliseconds, rounded up: a server never tells a client to come back early.
pub fn ceil_ms(wait: Duration) -> u64 {
    wait.as_nanos().div_ceil(1_000_000) as u64
}

/// The 429 each provider sends when a request is over the limit.
fn rate_limited(style: Style, limit: u32, wait: Duration, reset_at: SystemTime) -> Response<Payload> {
    let ms = ceil_ms(wait).max(1);
    match style {
        Style::OpenAi => {
            let body = format!(
                r#"{{"error":{{"message":"Rate limit reached for gpt-4o-mini in organization org-bench on requests per min (RPM): Limit {limit}, Used {limit}, Requested 1. Please try again in {ms}ms. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"requests","param":null,"code":"rate_limit_exceeded"}}}}"#
            );
            let mut response = json(StatusCode::TOO_MANY_REQUESTS, body);
            header(&mut response, "retry-after-ms", ms.to_string());
            header(&mut response, "retry-after", ms.div_ceil(1000).to_string());
            header(&mut response, "x-ratelimit-limit-requests", limit.to_string());
            header(&mut response, "x-ratelimit-remaining-requests", "0".into());
            header(&mut response, "x-ratelimit-reset-requests", format!("{ms}ms"));
            header(&mut response, "x-request-id", "req_bench_openai".into());
            response
        }
        Style::Anthropic => {
            let body = format!(
                r#"{{"type":"error","error":{{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization of {limit} requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."}},"request_id":"req_011CBenchAnthropic"}}"#
            );
            let mut response = json(StatusCode::TOO_MANY_REQUESTS, body);
            header(&mut response, "retry-after", ms.div_ceil(1000).to_string());
            header(&mut response, "anthropic-ratelimit-requests-limit", limit.to_string());
            header(&mut response, "anthropic-ratelimit-requests-remaining", "0".into());
            header(&mut response, "anthropic-ratelimit-requests-reset", rfc3339(reset_at));
            header(&mut response, "request-id", "req_011CBenchAnthropic".into());
            header(&mut response, "x-should-retry", "true".into());
            response
        }
        Style::Gemini => {
            let secs = ms as f64 / 1000.0;
            let body = format!(
                r#"{{"error":{{"code":429,"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: {limit}, model: gemini-2.0-flash\nPlease retry in {secs:.3}s.","status":"RESOURCE_EXHAUSTED","details":[{{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaDimensions":{{"location":"global","model":"gemini-2.0-flash"}},"quotaValue":"{limit}"}}]}},{{"@type":"type.googleapis.com/google.rpc.Help","links":[{{"description":"Learn more about Gemini API quotas","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}}]}},{{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"{secs:.3}s"}}]}}}}"#
            );
            json(StatusCode::TOO_MANY_REQUESTS, body)
        }
    }
}

/// A UTC timestamp to the whole second, as Anthropic sends it: `2024-03-26T20:00:07Z`.
pub fn rfc3339(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    jiff::Timestamp::from_second(secs as i64).map_or_else(|_| "1970-01-01T00:00:00Z".into(), |t| t.to_string())
}

/// Anthropic's 529 or OpenAI's 503; neither says how long to wait.
fn overloaded(style: Style) -> Response<Payload> {
    match style {
        Style::Anthropic => {
            let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CBenchOverloaded"}"#;
            let mut response = json(StatusCode::from_u16(529).expect("529"), body.into());
            header(&mut response, "request-id", "req_011CBenchOverloaded".into());
            header(&mut response, "x-should-retry", "true".into());
            response
        }
        Style::OpenAi | Style::Gemini => {
            let body = r#"{"error":{"message":"That model is currently overloaded with other requests. You can retry your request, or contact us through our help center at help.openai.com if the error persists.","type":"server_error","param":null,"code":null}}"#;
            let mut response = json(StatusCode::SERVICE_UNAVAILABLE, body.into());
            header(&mut response, "x-request-id", "req_bench_overloaded".into());
            response
        }
    }
}

fn sse(gap: Duration) -> Response<Payload> {
    let chunk = |content: &str| {
        Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
        ))
    };
    let first = chunk("");
    let rest: VecDeque<Bytes> = ["Hello", "!", " How", " can", " I", " help", "?"]
        .into_iter()
        .map(chunk)
        .chain([Bytes::from_static(b"data: [DONE]\n\n")])
        .collect();
    let mut response =
        Response::new(Payload::Sse { first: Some(first), gap: Some(Box::pin(tokio::time::sleep(gap))), rest });
    response.headers_mut().insert("content-type", HeaderValue::from_static("text/event-stream"));
    response
}

fn big_error(bytes: usize) -> Response<Payload> {
    let head = "<html><head><title>400 Bad Request</title></head><body><h1>400 Bad Request</h1><p>Request header or cookie too large</p>";
    let mut chunk = String::with_capacity(64 * 1024);
    chunk.push_str(head);
    while chunk.len() < 64 * 1024 {
        chunk.push_str("<!-- padding -->");
    }
    chunk.truncate(64 * 1024);
    let mut response = Response::new(Payload::Big { chunk: Bytes::from(chunk), left: bytes });
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response.headers_mut().insert("content-type", HeaderValue::from_static("text/html"));
    response
}

/// The response bodies the server sends.
pub enum Payload {
    Full(Option<Bytes>),
    Sse { first: Option<Bytes>, gap: Option<Pin<Box<Sleep>>>, rest: VecDeque<Bytes> },
    Big { chunk: Bytes, left: usize },
}

impl http_body::Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let data = |bytes: Bytes| Poll::Ready(Some(Ok(Frame::data(bytes))));
        match self.get_mut() {
            Payload::Full(body) => body.take().map_or(Poll::Ready(None), data),
            Payload::Sse { first, gap, rest } => {
                if let Some(first) = first.take() {
                    return data(first);
                }
                if let Some(sleep) = gap {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    *gap = None;
                }
                rest.pop_front().map_or(Poll::Ready(None), data)
            }
            Payload::Big { chunk, left } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                let n = (*left).min(chunk.len());
                *left -= n;
                data(chunk.slice(..n))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Payload::Full(body) => body.is_none(),
            Payload::Sse { first, rest, .. } => first.is_none() && rest.is_empty(),
            Payload::Big { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Payload::Full(body) => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
            Payload::Sse { .. } => SizeHint::new(),
            Payload::Big { left, .. } => SizeHint::with_exact(*left as u64),
        }
    }
}
