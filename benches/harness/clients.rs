//! The clients compared, all built on one `reqwest::Client` whose every host
//! name resolves to 127.0.0.1 and which ignores proxy settings, so no request
//! can leave the machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest_llm_retry::{LlmRetryMiddleware, MemoryStore};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;

use crate::server::{LOOPBACK, Style};

/// Retries every retrying client makes: ours by default, reqwest-retry set to match.
pub const RETRIES: u32 = 4;

/// The clients compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `reqwest::Client`, nothing else.
    Bare,
    /// A `reqwest_middleware` stack whose one middleware only calls `next`.
    Empty,
    /// `reqwest-retry` 0.9 `RetryTransientMiddleware`, default `ExponentialBackoff`, 4 retries.
    ReqwestRetry,
    /// `LlmRetryMiddleware::default()`.
    Ours,
    /// `LlmRetryMiddleware` with the shared rate-limit cooldown turned off.
    OursNoCooldown,
    /// A plain loop over the bare client that sleeps exactly what the server asks.
    Reference,
    /// Four `LlmRetryMiddleware::default()`, requests dealt round-robin: a fleet
    /// of four processes, each on its own.
    FleetApart,
    /// The same four sharing one `MemoryStore`: a fleet sharing Redis, in one process.
    FleetShared,
    /// `LlmRetryMiddleware` with `fallback(PRIMARY_MODEL, FALLBACK_MODEL)`, defaults otherwise.
    OursFallback,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bare => "bare reqwest",
            Kind::Empty => "empty middleware stack",
            Kind::ReqwestRetry => "reqwest-retry 0.9",
            Kind::Ours => "**LlmRetryMiddleware**",
            Kind::OursNoCooldown => "LlmRetryMiddleware, cooldown(false)",
            Kind::Reference => "reference loop",
            Kind::FleetApart => "4 × LlmRetryMiddleware, no store",
            Kind::FleetShared => "**4 × LlmRetryMiddleware, one store**",
            Kind::OursFallback => "**LlmRetryMiddleware, fallback(opus, sonnet)**",
        }
    }

    pub fn plain_name(self) -> &'static str {
        self.name().trim_matches('*')
    }
}

/// Resolves every name to 127.0.0.1: the safety net under `resolve()`.
struct LoopbackOnly;

impl Resolve for LoopbackOnly {
    fn resolve(&self, _name: Name) -> Resolving {
        Box::pin(async {
            let addrs: Addrs = Box::new(std::iter::once(SocketAddr::from((LOOPBACK, 0))));
            Ok(addrs)
        })
    }
}

/// The middleware that does nothing: the floor for any middleware.
#[derive(Debug)]
struct PassThrough;

#[async_trait::async_trait]
impl Middleware for PassThrough {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        next.run(request, extensions).await
    }
}

/// A `reqwest::Client` that can only reach 127.0.0.1.
pub fn loopback_client() -> reqwest::Client {
    let mut builder = reqwest::Client::builder().no_proxy().dns_resolver(Arc::new(LoopbackOnly));
    for style in [Style::OpenAi, Style::Anthropic, Style::Gemini] {
        builder = builder.resolve(style.host(), SocketAddr::from((LOOPBACK, 0)));
    }
    builder.build().expect("reqwest client")
}

/// `http://{real host}:{port}{path}`: the real host, resolved to loopback.
pub fn url(style: Style, port: u16) -> Url {
    Url::parse(&format!("http://{}:{port}{}", style.host(), style.path())).expect("url")
}

/// The model the fallback section's requests name, and the one it falls back to.
pub const PRIMARY_MODEL: &str = "claude-opus-4-1";
pub const FALLBACK_MODEL: &str = "claude-sonnet-4-5";

/// A small Anthropic Messages request for [`PRIMARY_MODEL`].
pub fn primary_model_body() -> Bytes {
    Bytes::from_static(
        br#"{"model":"claude-opus-4-1","max_tokens":16,"messages":[{"role":"user","content":"Say hello."}]}"#,
    )
}

/// A small chat request body.
pub fn request_body() -> Bytes {
    Bytes::from_static(
        br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}"#,
    )
}

/// All clients over one connection pool.
#[derive(Clone)]
pub struct Clients {
    bare: reqwest::Client,
    empty: ClientWithMiddleware,
    retry: ClientWithMiddleware,
    ours: ClientWithMiddleware,
    ours_no_cooldown: ClientWithMiddleware,
    fleet_apart: Arc<[ClientWithMiddleware; 4]>,
    fleet_shared: Arc<[ClientWithMiddleware; 4]>,
    ours_fallback: ClientWithMiddleware,
}

impl Clients {
    pub fn new() -> Clients {
        let bare = loopback_client();
        let backoff = ExponentialBackoff::builder().build_with_max_retries(RETRIES);
        let no_cooldown = LlmRetryMiddleware::builder().cooldown(false).build();
        let store = Arc::new(MemoryStore::new());
        let with = |middleware: LlmRetryMiddleware| ClientBuilder::new(bare.clone()).with(middleware).build();
        let fleet_apart = std::array::from_fn(|_| with(LlmRetryMiddleware::default()));
        let fleet_shared =
            std::array::from_fn(|_| with(LlmRetryMiddleware::builder().shared_store(store.clone()).build()));
        Clients {
            fleet_apart: Arc::new(fleet_apart),
            fleet_shared: Arc::new(fleet_shared),
            ours_fallback: with(LlmRetryMiddleware::builder().fallback(PRIMARY_MODEL, FALLBACK_MODEL).build()),
            empty: ClientBuilder::new(bare.clone()).with(PassThrough).build(),
            retry: ClientBuilder::new(bare.clone()).with(RetryTransientMiddleware::new_with_policy(backoff)).build(),
            ours: ClientBuilder::new(bare.clone()).with(LlmRetryMiddleware::default()).build(),
            ours_no_cooldown: ClientBuilder::new(bare.clone()).with(no_cooldown).build(),
            bare,
        }
    }

    /// Sends one POST and returns its response, headers and all (the body unread).
    pub async fn send(&self, kind: Kind, style: Style, url: &Url, body: &Bytes, id: Option<u64>) -> Sent {
        let auth = match style {
            Style::OpenAi => ("authorization", "Bearer sk-bench-0123456789abcdef"),
            Style::Anthropic => ("x-api-key", "sk-ant-bench-0123456789abcdef"),
            Style::Gemini => ("x-goog-api-key", "AIzaBench0123456789abcdef"),
        };
        // One request for every client, built the same way; only who sends it differs.
        let mut request = self
            .bare
            .post(url.clone())
            .header("content-type", "application/json")
            .header(auth.0, auth.1)
            .body(body.clone());
        if let Some(id) = id {
            request = request.header("x-bench-id", id);
        }
        let request = request.build().expect("bench request");
        let stack = match kind {
            Kind::Bare | Kind::Reference => None,
            Kind::Empty => Some(&self.empty),
            Kind::ReqwestRetry => Some(&self.retry),
            Kind::Ours => Some(&self.ours),
            Kind::OursNoCooldown => Some(&self.ours_no_cooldown),
            Kind::FleetApart => Some(&self.fleet_apart[id.unwrap_or(0) as usize % 4]),
            Kind::FleetShared => Some(&self.fleet_shared[id.unwrap_or(0) as usize % 4]),
            Kind::OursFallback => Some(&self.ours_fallback),
        };
        let result = match stack {
            None => self.bare.execute(request).await.map_err(|e| e.to_string()),
            Some(client) => client.execute(request).await.map_err(|e| e.to_string()),
        };
        match result {
            Ok(response) => Sent::Response(response),
            Err(error) => Sent::Failed(error),
        }
    }

    /// One logical request, read to the end: the reference loop retries 429s
    /// sleeping exactly what the server asked; every other client sends once
    /// (its middleware does the retrying).
    pub async fn call(&self, kind: Kind, style: Style, url: &Url, body: &Bytes, id: Option<u64>) -> Outcome {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let response = match self.send(kind, style, url, body, id).await {
                Sent::Response(response) => response,
                Sent::Failed(_) => return Outcome { status: None },
            };
            let status = response.status();
            if kind == Kind::Reference && status == StatusCode::TOO_MANY_REQUESTS && attempts < 100 {
                let headers = response.headers().clone();
                let body = response.bytes().await.unwrap_or_default();
                tokio::time::sleep(reference_wait(style, &headers, &body)).await;
                continue;
            }
            let _ = response.bytes().await;
            return Outcome { status: Some(status) };
        }
    }
}

/// What one send produced.
pub enum Sent {
    Response(reqwest::Response),
    Failed(#[allow(dead_code)] String),
}

/// How a logical request ended.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub status: Option<StatusCode>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.is_success())
    }
}

/// Exactly what the server asked for, read the way that provider's docs say:
/// OpenAI `retry-after-ms`, Anthropic `retry-after` (whole seconds), Gemini
/// `RetryInfo.retryDelay`. One second if the server said nothing readable.
fn reference_wait(style: Style, headers: &http::HeaderMap, body: &[u8]) -> Duration {
    let header =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok());
    let secs = match style {
        Style::OpenAi => header("retry-after-ms").map(|ms| ms / 1000.0),
        Style::Anthropic => header("retry-after"),
        Style::Gemini => serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|value| {
            value["error"]["details"]
                .as_array()?
                .iter()
                .find_map(|detail| detail["retryDelay"].as_str()?.strip_suffix('s')?.parse::<f64>().ok())
        }),
    };
    Duration::from_secs_f64(secs.filter(|s| s.is_finite() && *s >= 0.0).unwrap_or(1.0))
}
