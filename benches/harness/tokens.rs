//! Section 6, token storms: the token limit binds, not the request limit.
//!
//! 400 requests, 16 at a time, each with its own prompt of 400 to 16,000
//! characters (about 100 to 4,000 tokens) and `max_tokens: 256`, against a
//! fixed window of 40,000 tokens (requests unlimited). Windows last 1 s
//! rather than a minute, so that a run takes seconds; everything else keeps
//! its proportions. The server counts a request as its prompt's characters
//! / 4, plus its `max_tokens` where the provider counts the reservation
//! (OpenAI); Anthropic's limit here is on input tokens.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::clients::{Clients, Kind};
use crate::server::{CHAT_COMPLETION, Payload, Scenario, Server, Style, ceil_ms, header, json, rfc3339};
use crate::stats::{fmt_secs, outcome_cells, quantile, wasted_per_success};
use crate::storm::{aligned_start, drive};

/// The report's columns.
pub const COLUMNS: &str = "token storm|client|successes|give-ups|requests the server saw|wasted calls per success|makespan|× lower bound|p50 latency|p99 latency";

/// The output every request reserves.
pub const MAX_TOKENS: u64 = 256;

/// A fixed token window, as the server keeps it.
#[derive(Debug, Clone, Copy)]
pub struct TokenStorm {
    pub style: Style,
    /// Rate-limit headers on every response; without, only the 429's message and wait speak.
    pub headers: bool,
    pub limit: u64,
    pub window: Duration,
    pub epoch: Instant,
    pub wall_epoch: SystemTime,
}

/// The prompt length of request `id`: 400 to 16,000 characters, the same for every client.
fn prompt_chars(id: u64) -> usize {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    400 + (z ^ (z >> 31)) as usize % 15_601
}

/// Request `id`'s body, in the provider's shape.
pub fn body(style: Style, id: u64) -> Bytes {
    let prompt: String = "lorem ipsum dolor sit amet ".chars().cycle().take(prompt_chars(id)).collect();
    let body = match style {
        Style::Anthropic => format!(
            r#"{{"model":"claude-sonnet-4-6","max_tokens":{MAX_TOKENS},"messages":[{{"role":"user","content":"{prompt}"}}]}}"#
        ),
        Style::OpenAi | Style::Gemini => format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{prompt}"}}],"max_tokens":{MAX_TOKENS}}}"#
        ),
    };
    Bytes::from(body)
}

/// What the server counts of request `id`: its prompt at 4 characters a
/// token, and for OpenAI the output it reserves.
fn cost(style: Style, id: u64) -> u64 {
    let input = (prompt_chars(id) as u64).div_ceil(4);
    if style == Style::Anthropic { input } else { input + MAX_TOKENS }
}

/// What the server counts of a body it received.
fn cost_of(style: Style, body: &[u8]) -> u64 {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let chars = value["messages"][0]["content"].as_str().map_or(0, |c| c.chars().count());
    let input = (chars as u64).div_ceil(4);
    let reserved = value["max_tokens"].as_u64().unwrap_or(0);
    if style == Style::Anthropic { input } else { input + reserved }
}

/// The server's answer in a token storm: admitted while the window has room.
pub fn respond(storm: &TokenStorm, window: &Mutex<(u64, u32)>, at: Instant, body: &[u8]) -> Response<Payload> {
    let index = (at.saturating_duration_since(storm.epoch).as_nanos() / storm.window.as_nanos()) as u64;
    let requested = cost_of(storm.style, body);
    let (admitted, used) = {
        let mut current = window.lock().unwrap();
        if current.0 != index {
            *current = (index, 0);
        }
        let fits = u64::from(current.1) + requested <= storm.limit;
        if fits {
            current.1 += requested as u32;
        }
        (fits, u64::from(current.1))
    };
    let offset = storm.window * (index as u32 + 1);
    let wait = (storm.epoch + offset).saturating_duration_since(at);
    let mut response = if admitted {
        json(StatusCode::OK, CHAT_COMPLETION.to_owned())
    } else {
        refused(storm.style, storm.limit, (used, requested), wait)
    };
    if storm.headers {
        token_headers(&mut response, storm, storm.limit - used, wait, storm.wall_epoch + offset);
    }
    response
}

/// Each provider's 429 for a token limit, with its wait.
fn refused(style: Style, limit: u64, (used, requested): (u64, u64), wait: Duration) -> Response<Payload> {
    let ms = ceil_ms(wait).max(1);
    let (body, mut response);
    match style {
        Style::Anthropic => {
            let limit = thousands(limit);
            body = format!(
                r#"{{"type":"error","error":{{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization of {limit} input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later."}},"request_id":"req_011CBenchTokens"}}"#
            );
            response = json(StatusCode::TOO_MANY_REQUESTS, body);
            header(&mut response, "retry-after", ms.div_ceil(1000).to_string());
        }
        Style::OpenAi | Style::Gemini => {
            body = format!(
                r#"{{"error":{{"message":"Rate limit reached for gpt-4o in organization org-bench on tokens per min (TPM): Limit {limit}, Used {used}, Requested {requested}. Please try again in {ms}ms. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}}}"#
            );
            response = json(StatusCode::TOO_MANY_REQUESTS, body);
            header(&mut response, "retry-after-ms", ms.to_string());
            header(&mut response, "retry-after", ms.div_ceil(1000).to_string());
        }
    }
    response
}

/// `40,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// OpenAI's `x-ratelimit-*-tokens` (exact, reset as a duration), or
/// Anthropic's input-token headers (rounded to the nearest thousand, reset
/// as an RFC 3339 time to the second).
fn token_headers(
    response: &mut Response<Payload>,
    storm: &TokenStorm,
    remaining: u64,
    wait: Duration,
    reset_at: SystemTime,
) {
    match storm.style {
        Style::Anthropic => {
            header(response, "anthropic-ratelimit-input-tokens-limit", storm.limit.to_string());
            header(
                response,
                "anthropic-ratelimit-input-tokens-remaining",
                ((remaining + 500) / 1000 * 1000).to_string(),
            );
            header(response, "anthropic-ratelimit-input-tokens-reset", rfc3339(reset_at));
        }
        Style::OpenAi | Style::Gemini => {
            header(response, "x-ratelimit-limit-tokens", storm.limit.to_string());
            header(response, "x-ratelimit-remaining-tokens", remaining.to_string());
            header(response, "x-ratelimit-reset-tokens", format!("{}ms", ceil_ms(wait)));
        }
    }
}

/// One client in one token storm.
#[derive(Debug, Clone)]
pub struct TokenRun {
    pub kind: Kind,
    pub successes: u64,
    pub give_ups: u64,
    pub seen: usize,
    pub makespan: Duration,
    /// Total tokens ÷ the limit, in windows.
    pub lower_bound: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl TokenRun {
    pub fn wasted_per_success(&self) -> f64 {
        wasted_per_success(self.seen, self.successes)
    }

    pub fn ratio(&self) -> f64 {
        self.makespan.as_secs_f64() / self.lower_bound.as_secs_f64()
    }

    /// Its row in the report, after the scenario's name.
    pub fn cells(&self) -> Vec<String> {
        let mut cells =
            outcome_cells(self.kind, (self.successes, self.give_ups, self.seen), self.makespan, self.ratio(), 3);
        cells.extend([fmt_secs(self.p50.as_secs_f64()), fmt_secs(self.p99.as_secs_f64())]);
        cells
    }
}

/// `n` requests against `limit` tokens per `window`, each client on a fresh server.
pub async fn storm(
    style: Style,
    headers: bool,
    (limit, window): (u64, Duration),
    n: u64,
    kinds: &[Kind],
) -> Vec<TokenRun> {
    let total: u64 = (0..n).map(|id| cost(style, id)).sum();
    let lower_bound = window.mul_f64(total as f64 / limit as f64);
    let mut runs = Vec::new();
    for &kind in kinds {
        let (epoch, wall_epoch) = aligned_start(window);
        let tokens = TokenStorm { style, headers, limit, window, epoch, wall_epoch };
        let server = Server::start(Scenario::Custom(std::sync::Arc::new(move |counter, at, body| {
            respond(&tokens, counter, at, body)
        })));
        let done = drive(&Clients::new(), (kind, style), server.port, n, epoch, body).await;
        let successes = done.iter().filter(|d| d.outcome.ok()).count() as u64;
        let mut latencies: Vec<f64> = done.iter().map(|d| (d.finished - d.started).as_secs_f64()).collect();
        let finished = done.iter().map(|d| d.finished).max().unwrap_or(epoch);
        runs.push(TokenRun {
            kind,
            successes,
            give_ups: n - successes,
            seen: server.seen().len(),
            makespan: finished.saturating_duration_since(epoch),
            lower_bound,
            p50: Duration::from_secs_f64(quantile(&mut latencies, 0.5)),
            p99: Duration::from_secs_f64(quantile(&mut latencies, 0.99)),
        });
    }
    runs
}
