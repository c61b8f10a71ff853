//! Token limits for tests: request bodies of a given size, a provider with
//! a fixed token window, and the scenario every shared store must pass: two
//! middlewares spending one token window through it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::clients::{OPENAI, client, url};
use super::responses::{ok, openai_error};

/// A chat body of about `tokens` input tokens (4 bytes each) reserving `max_tokens`.
pub fn body(tokens: usize, max_tokens: u64) -> String {
    let head = format!(r#"{{"model":"m","max_tokens":{max_tokens},"messages":[{{"role":"user","content":""#);
    let tail = r#""}]}"#;
    format!("{head}{}{tail}", "x".repeat((tokens * 4).saturating_sub(head.len() + tail.len())))
}

/// A provider with a fixed token window: `limit` tokens per `window`, from
/// its start; a request costs its body's bytes / 4 and its `max_tokens`.
/// Over the limit, OpenAI's 429 with `retry-after-ms`; with `headers`, the
/// token headers on every answer.
pub struct TokenWindow {
    pub epoch: Instant,
    window: Duration,
    limit: u64,
    headers: bool,
    /// The current window's index and the tokens it has admitted.
    used: Mutex<(u128, u64)>,
    /// When each request arrived and what it got.
    log: Log,
}

/// Each request's arrival and status.
pub type Log = Arc<Mutex<Vec<(Instant, u16)>>>;

impl TokenWindow {
    pub fn new(window: Duration, limit: u64, headers: bool) -> (TokenWindow, Log) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let epoch = Instant::now();
        (TokenWindow { epoch, window, limit, headers, used: Mutex::new((0, 0)), log: log.clone() }, log)
    }
}

impl Respond for TokenWindow {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let now = Instant::now();
        let json: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let cost = (request.body.len() as u64).div_ceil(4) + json["max_tokens"].as_u64().unwrap_or(0);
        let index = (now - self.epoch).as_nanos() / self.window.as_nanos();
        let reset = (self.epoch + self.window * (index as u32 + 1)) - now;
        let reset_ms = reset.as_nanos().div_ceil(1_000_000);
        let mut used = self.used.lock().unwrap();
        if used.0 != index {
            *used = (index, 0);
        }
        let fits = used.1 + cost <= self.limit;
        let template = if fits {
            used.1 += cost;
            ok()
        } else {
            let message = format!(
                "Rate limit reached for gpt-4o in organization org-test on tokens per min (TPM): Limit {}, Used {}, Requested {cost}. Please try again in {reset_ms}ms.",
                self.limit, used.1
            );
            openai_error(429, "tokens", "rate_limit_exceeded", &message)
                .insert_header("retry-after-ms", reset_ms.to_string())
        };
        self.log.lock().unwrap().push((now, if fits { 200 } else { 429 }));
        if !self.headers {
            return template;
        }
        template
            .insert_header("x-ratelimit-limit-tokens", self.limit.to_string())
            .insert_header("x-ratelimit-remaining-tokens", (self.limit - used.1).to_string())
            .insert_header("x-ratelimit-reset-tokens", format!("{reset_ms}ms"))
    }
}

pub fn rejected(log: &Mutex<Vec<(Instant, u16)>>) -> usize {
    log.lock().unwrap().iter().filter(|(_, status)| *status == 429).count()
}

/// Two middlewares (two processes of a fleet, or two clients of one) that
/// share a store spend one token window between them: a request that fits
/// what its own middleware knows, but not what the other has spent, waits
/// for the next window instead of collecting a 429.
pub async fn two_middlewares_share_a_token_window(a: LlmRetryMiddleware, b: LlmRetryMiddleware) {
    let server = MockServer::start().await;
    let window = Duration::from_millis(400);
    let (provider, log) = TokenWindow::new(window, 10_000, true);
    let epoch = provider.epoch;
    Mock::given(wiremock::matchers::any()).respond_with(provider).mount(&server).await;
    let (a, b) = (client(&server, a), client(&server, b));
    let target = url(&server, OPENAI, "/v1/chat/completions");
    let send = |client: &reqwest_middleware::ClientWithMiddleware, tokens| {
        let request = client.post(&target).bearer_auth("sk-shared").body(body(tokens, 0));
        async move { request.send().await.unwrap() }
    };
    // Start just after a window opens: everything below happens within it.
    let next = (epoch.elapsed().as_nanos() / window.as_nanos()) as u32 + 1;
    tokio::time::sleep_until((epoch + window * next + Duration::from_millis(5)).into()).await;
    // Each learns the token window from one answer; then each sends 4 000 at once.
    for client in [&a, &b] {
        assert_eq!(send(client, 10).await.status(), 200);
    }
    for client in [&a, &b] {
        let response = send(client, 4_000).await;
        assert_eq!(response.retry_stats().unwrap().waited, Duration::ZERO);
    }
    // `a` last heard 5 980 left, and has sent nothing since: 3 000 fit what it knows. But `b`
    // spent 4 000 since, and 1 980 are left: it waits for the next window.
    let held = send(&a, 3_000).await;
    assert_eq!((held.status().as_u16(), held.retry_stats().unwrap().attempts), (200, 1));
    assert!(held.retry_stats().unwrap().waited > window / 2, "{:?}", held.retry_stats());
    assert_eq!(rejected(&log), 0, "a request was sent that the window could not admit");
}
