//! The fleet's provider: one fixed window shared by every client, of requests
//! or of tokens, starting at the first request the server sees, answering
//! what does not fit with an OpenAI-style 429; and what it tallies.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wiremock::{Request, Respond, ResponseTemplate};

/// What the server saw: every request, when the first came (windows start
/// there), and each 429's window index and how far into it it fell.
#[derive(Default)]
pub struct Tally {
    pub first: Mutex<Option<Instant>>,
    pub seen: AtomicUsize,
    pub refused: Mutex<Vec<(u64, Duration)>>,
}

/// A fixed window of `limit` units per `length`: what is spent of the
/// current one, from when the first request came.
pub struct Limiter {
    pub limit: u64,
    pub length: Duration,
    /// Successes carry no rate-limit headers (only the 429s say anything).
    pub bare: bool,
    state: Mutex<(Option<Instant>, u64)>,
    pub tally: Tally,
}

/// A successful chat completion.
const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;

impl Limiter {
    pub fn new(limit: u64, length: Duration, bare: bool) -> Self {
        Limiter { limit, length, bare, state: Mutex::new((None, 0)), tally: Tally::default() }
    }

    /// Spends `cost` at `now` if it fits: whether it did, what is used of
    /// the window after, and how long until it resets.
    fn spend(&self, cost: u64, now: Instant) -> (bool, u64, Duration) {
        self.tally.seen.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock().unwrap();
        let mut start = *state.0.get_or_insert_with(|| {
            *self.tally.first.lock().unwrap() = Some(now);
            now
        });
        while now.duration_since(start) >= self.length {
            start += self.length;
            state.1 = 0;
        }
        state.0 = Some(start);
        let fits = state.1 + cost <= self.limit;
        if fits {
            state.1 += cost;
        } else {
            let first = self.tally.first.lock().unwrap().unwrap_or(start);
            let index = (start.duration_since(first).as_nanos() / self.length.as_nanos()) as u64;
            self.tally.refused.lock().unwrap().push((index, now.duration_since(start)));
        }
        (fits, state.1, self.length - now.duration_since(start))
    }
}

/// `x-ratelimit-{limit,remaining,reset}-{family}` on `template`.
fn headers(
    template: ResponseTemplate,
    family: &str,
    (limit, remaining): (u64, u64),
    reset_ms: u128,
) -> ResponseTemplate {
    template
        .insert_header(format!("x-ratelimit-limit-{family}").as_str(), limit.to_string())
        .insert_header(format!("x-ratelimit-remaining-{family}").as_str(), remaining.to_string())
        .insert_header(format!("x-ratelimit-reset-{family}").as_str(), format!("{reset_ms}ms"))
}

/// A 429 with OpenAI's body for `message`, and its wait.
fn refused(kind: &str, message: &str, reset: Duration) -> ResponseTemplate {
    let body =
        serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": "rate_limit_exceeded"}});
    ResponseTemplate::new(429)
        .set_body_raw(body.to_string(), "application/json")
        .insert_header("retry-after-ms", reset.as_millis().max(1).to_string())
        .insert_header("retry-after", reset.as_secs().max(1).to_string())
}

/// A request limit: each request costs one; the 429s carry the headers either way.
pub struct Requests(pub std::sync::Arc<Limiter>);

impl Respond for Requests {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let limiter = &self.0;
        let (fits, used, reset) = limiter.spend(1, Instant::now());
        let reset_ms = reset.as_millis().max(1);
        let figures = (limiter.limit, limiter.limit - used);
        if !fits {
            let template = refused("requests", "Rate limit reached for requests", reset);
            return headers(template, "requests", figures, reset_ms);
        }
        let ok = ResponseTemplate::new(200).set_body_raw(COMPLETION, "application/json");
        if limiter.bare { ok } else { headers(ok, "requests", figures, reset_ms) }
    }
}

/// A token limit: a request costs its prompt's characters / 4 and its
/// `max_tokens`, as OpenAI counts them; the 429 names the limit, what is
/// used and what was asked. Bare, no response carries a rate-limit header.
pub struct Tokens(pub std::sync::Arc<Limiter>);

impl Respond for Tokens {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let limiter = &self.0;
        let requested = cost_of(&request.body);
        let (fits, used, reset) = limiter.spend(requested, Instant::now());
        let reset_ms = reset.as_millis().max(1);
        let template = if fits {
            ResponseTemplate::new(200).set_body_raw(COMPLETION, "application/json")
        } else {
            let limit = limiter.limit;
            let message = format!(
                "Rate limit reached for gpt-4o in organization org-fleet on tokens per min (TPM): Limit {limit}, Used {used}, Requested {requested}. Please try again in {reset_ms}ms."
            );
            refused("tokens", &message, reset)
        };
        if limiter.bare {
            template
        } else {
            headers(template, "tokens", (limiter.limit, limiter.limit - used), reset_ms)
        }
    }
}

/// The output every token request reserves.
pub const MAX_TOKENS: u64 = 256;

/// Request `id`'s prompt length: 400 to 16,000 characters (about 100 to
/// 4,000 tokens), from a fixed sequence, the same in every run.
fn prompt_chars(id: u64) -> u64 {
    let mixed = (id ^ 0x5DEE_CE66).wrapping_mul(6_364_136_223_846_793_005).rotate_right(29);
    400 + mixed % 15_601
}

/// Request `id`'s body in a token storm.
pub fn token_body(id: u64) -> String {
    let prompt: String =
        "the quick brown fox jumps over the lazy dog ".chars().cycle().take(prompt_chars(id) as usize).collect();
    serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}], "max_tokens": MAX_TOKENS})
        .to_string()
}

/// What the server counts of request `id`.
pub fn token_cost(id: u64) -> u64 {
    prompt_chars(id).div_ceil(4) + MAX_TOKENS
}

/// What the server counts of a body it received.
fn cost_of(body: &[u8]) -> u64 {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let chars = value["messages"][0]["content"].as_str().map_or(0, |c| c.chars().count() as u64);
    chars.div_ceil(4) + value["max_tokens"].as_u64().unwrap_or(0)
}
