//! Building an [`LlmRetryMiddleware`]: every setter, its default and its meaning.

use std::sync::Arc;
use std::time::Duration;

use super::LlmRetryMiddleware;
use super::config::Config;
use crate::cooldown::Pacer;
use crate::defaults;
use crate::health::Health;
use crate::policy::RetryRule;
use crate::provider::{HostMapping, Provider};
use crate::store::SharedStore;

/// Builds an [`LlmRetryMiddleware`]. Every setter says its default, a constant of
/// [`defaults`](crate::defaults); setters are independent and may come in any order.
///
/// ```
/// use std::time::Duration;
/// use reqwest_llm_retry::{LlmRetryMiddleware, Provider};
/// let middleware = LlmRetryMiddleware::builder()
///     .max_retries(2)
///     .base_delay(Duration::from_millis(500))
///     .max_retry_after(Duration::from_secs(120))
///     .host("llm-gateway.internal", Provider::OpenAi)
///     .host("*.anthropic-proxy.example", Provider::Anthropic)
///     .build();
/// ```
#[derive(Debug, Clone)]
pub struct LlmRetryMiddlewareBuilder {
    config: Config,
    /// The `cooldown` switch and the `shared_store`, kept apart until `build`, so that
    /// neither setter undoes the other.
    cooldown: bool,
    store: Option<Arc<dyn SharedStore>>,
    /// The `outage` switch, applied at `build`, so that clones of a builder do not share health.
    outage: bool,
}

impl LlmRetryMiddlewareBuilder {
    pub(super) fn new() -> Self {
        LlmRetryMiddlewareBuilder {
            config: Config::default(),
            cooldown: defaults::COOLDOWN,
            store: None,
            outage: defaults::OUTAGE,
        }
    }

    /// Retries after the first attempt; `0` sends each request once (errors are still parsed).
    ///
    /// Default: 4, so 5 attempts in all ([`defaults::MAX_RETRIES`]).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.config.timing.max_retries = retries;
        self
    }

    /// The first backoff delay when the server gives no wait; doubled per retry, with up
    /// to 25 % jitter added. An overload (529, 503, Groq 498) starts at half of it, as the
    /// official SDKs do: the [`outage`](Self::outage) state, not a longer backoff, protects
    /// a provider that is down.
    ///
    /// Default: 1 s ([`defaults::BASE_DELAY`]): waits of 1, 2, 4, 8 s (overload 0.5, 1, 2, 4 s).
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.config.timing.base_delay = delay;
        self
    }

    /// The largest backoff delay, jitter included (server-given waits are bounded by
    /// `max_retry_after` instead).
    ///
    /// Default: 30 s ([`defaults::MAX_DELAY`]).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.config.timing.max_delay = delay;
        self
    }

    /// The longest server-requested wait that is slept; a longer one returns
    /// the error at once with `retryable: true` and `retry_after` set. A wait that is
    /// slept gets up to 10 % (at most 1 s) of jitter added, never less than asked.
    ///
    /// Default: 60 s ([`defaults::MAX_RETRY_AFTER`]).
    pub fn max_retry_after(mut self, wait: Duration) -> Self {
        self.config.timing.max_retry_after = wait;
        self
    }

    /// No retry starts later than this after the first attempt started. With
    /// a [`fallback`](Self::fallback), each model of a chain counts from its
    /// own first attempt: a chain of n models may take up to n × `max_elapsed`.
    ///
    /// Default: 300 s ([`defaults::MAX_ELAPSED`]).
    pub fn max_elapsed(mut self, elapsed: Duration) -> Self {
        self.config.timing.max_elapsed = elapsed;
        self
    }

    /// Maps a host to a provider: an exact host (`"llm-gateway.internal"`) or
    /// every subdomain of a suffix (`"*.corp.example"`). A pattern given as a
    /// URL (`"https://gw.internal/v1"`, copied from a base-URL setting) means
    /// its host; the port and path play no part. Checked before the built-in
    /// host table, in the order added.
    ///
    /// Default: none; the built-in table knows each provider's public hosts.
    pub fn host(mut self, host: impl Into<String>, provider: Provider) -> Self {
        self.config.hosts.push((HostMapping::parse(&host.into()), provider));
        self
    }

    /// Adds a rule for `provider`, checked before the built-in tables, in the order added.
    ///
    /// Default: none; the built-in tables are in the crate docs' "What is retried".
    pub fn rule(mut self, provider: Provider, rule: RetryRule) -> Self {
        self.config.rules.push((provider, rule));
        self
    }

    /// How much of an error body is read to parse it (the caller still gets all of it).
    ///
    /// Default: 64 KiB ([`defaults::ERROR_BODY_LIMIT`]).
    pub fn error_body_limit(mut self, bytes: usize) -> Self {
        self.config.error_body_limit = bytes;
        self
    }

    /// How long reading an error body for parsing may take. A body that
    /// stalls (with no client timeout, it could wait forever) is judged by
    /// what arrived by then, at least the status and headers, and handed to
    /// the caller with the rest still to come: no byte is lost.
    ///
    /// Default: 10 s ([`defaults::ERROR_BODY_TIMEOUT`]).
    pub fn error_body_timeout(mut self, timeout: Duration) -> Self {
        self.config.error_body_timeout = timeout;
        self
    }

    /// The largest streamed upload that is read into memory to be resent on
    /// retry; 0 turns this off.
    ///
    /// A request body that cannot be cloned (a stream, as client libraries
    /// build multipart uploads) is sent once, unless it declares a
    /// `Content-Length` of at most this many bytes: it is then read once,
    /// before the first attempt, and every retry (or
    /// [`fallback`](Self::fallback)) resends the same bytes.
    /// Bodies without a length, or over the limit, still stream straight
    /// through. A stream that yields more or fewer bytes than it declared,
    /// fails, or has not finished within 10 s (or the request's own
    /// `timeout`, if shorter) is sent once, every byte of it as it came.
    /// Nothing is read when `max_retries` is 0 and no fallback is configured.
    pub fn upload_buffer_limit(mut self, bytes: usize) -> Self {
        self.config.upload_buffer_limit = bytes;
        self
    }

    /// Returns a final 4xx/5xx, or a `200` stream that failed before its
    /// first output (see [`streams`](Self::streams)), as
    /// `Err(reqwest_middleware::Error::Middleware)` holding the
    /// [`LlmApiError`](crate::LlmApiError) (kind, code, request id, `retry_after` and attempts
    /// filled), instead of an `Ok` response with the error attached (off by
    /// default).
    ///
    /// Turn it on when a client library sits on top of this middleware
    /// (rig, async-openai): they read the response and drop its
    /// extensions, but keep an `Err` in their own error's chain, where
    /// [`LlmApiError::find_in`](crate::LlmApiError::find_in) finds it. Transport errors are returned
    /// unchanged either way, and the error body is not kept.
    ///
    /// Two pitfalls with client libraries:
    /// - do not stack a second retry layer (async-openai's
    ///   `OpenAIRetryLayer`, a tower retry, a loop around the call): attempts
    ///   multiply, 2 × 2 = 4 requests for one call;
    /// - do not retry on the library's own verdict: rig's `is_retryable()`
    ///   says yes to every 429, `insufficient_quota` included, and to every
    ///   error this switch returns. Read [`LlmApiError::retryable`](crate::LlmApiError::retryable) instead:
    ///   `false` when retrying cannot help; when `true`, the middleware has
    ///   already spent its retries (see `attempts`), so try again later, not
    ///   in a loop.
    ///
    /// ```
    /// use reqwest_llm_retry::{LlmApiError, LlmRetryMiddleware};
    /// # async fn demo() {
    /// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
    ///     .with(LlmRetryMiddleware::builder().error_for_status(true).build())
    ///     .build();
    /// match client.post("https://api.openai.com/v1/chat/completions").send().await {
    ///     Ok(_response) => { /* 1xx–3xx: read it as usual */ }
    ///     Err(error) => match LlmApiError::find_in(&error) {
    ///         Some(api) => eprintln!("{api} (request id {:?})", api.request_id),
    ///         None => eprintln!("transport error: {error}"),
    ///     },
    /// }
    /// # }
    /// ```
    pub fn error_for_status(mut self, enabled: bool) -> Self {
        self.config.error_for_status = enabled;
        self
    }

    /// Shares rate-limit state between requests with the same provider, host
    /// and credential: after a 429, or once the rate-limit headers say the
    /// window is used up, requests wait for the reset instead of each
    /// collecting its own 429. `false` turns it off, whether or not a
    /// [`shared_store`](Self::shared_store) is set. See [`SharedStore`](crate::SharedStore).
    ///
    /// Default: on ([`defaults::COOLDOWN`]), in the middleware's own memory, shared by its clones.
    pub fn cooldown(mut self, enabled: bool) -> Self {
        self.cooldown = enabled;
        self
    }

    /// Shares pacing and provider health through `store` too: a `RedisStore`
    /// shared by a fleet, or an `Arc<MemoryStore>` shared by several
    /// middlewares. The store is asked before each send and told of each
    /// cooldown. It is used while the [`cooldown`](Self::cooldown) is on,
    /// whichever of the two setters comes first. While the
    /// [`outage`](Self::outage) switch is on, provider outages are shared
    /// through it too (one probe for the fleet).
    ///
    /// Default: none; the cooldown lives in the middleware's own memory.
    pub fn shared_store(mut self, store: impl SharedStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Shares provider health per host, across credentials (on by default,
    /// [`defaults::OUTAGE`]).
    ///
    /// After 10 failures in a row (overload, 5xx, connect errors or
    /// timeouts), the host is in an outage: requests wait instead of being
    /// sent, and one at a time goes as a probe (after a quarter of
    /// `base_delay`, then every half: 0.25 s, then 0.5 s by default, or after the
    /// wait the server asked). When a request succeeds,
    /// the waiting ones are released, spread over 250 ms. Independent faults
    /// do not reach it: at a 30 % fault rate, 10 in a row come once in
    /// 240 000 attempts. A request alone (no other request to that host in
    /// flight or waiting) is never held: its retries are its probes.
    ///
    /// A request is held at most as long as its retries could have taken
    /// (`base_delay` doubled over `max_retries`: 15 s by default, within
    /// `max_elapsed`), and each time at most `max_retry_after`. Held at its
    /// bound, it returns the last error response it got; if it was never
    /// sent, it returns `Err(reqwest_middleware::Error::Middleware(..))`
    /// holding an [`LlmApiError`](crate::LlmApiError) of kind
    /// [`Overloaded`](crate::ErrorKind::Overloaded) (status 503, `retryable:
    /// true`, `attempts: 0`, `retry_after` when the provider gave a wait),
    /// which [`LlmApiError::find_in`](crate::LlmApiError::find_in) finds.
    ///
    /// With a [`shared_store`](Self::shared_store), the outage is the
    /// fleet's: one probe at a time for every process sharing the store
    /// (a lease in the store), a process that sees a failure joins an
    /// outage another has recorded at once, and when any process's request
    /// succeeds, the others hear of it within 100 ms and release theirs.
    /// See [`SharedStore::outage`](crate::SharedStore::outage).
    ///
    /// Entering an outage is a `tracing` warning, leaving it an info event
    /// with the probe count and how long it lasted.
    pub fn outage(mut self, enabled: bool) -> Self {
        self.outage = enabled;
        self
    }

    /// Watches the start of `text/event-stream` responses from known
    /// providers for an error event (on by default).
    ///
    /// Providers report overload and rate limits that strike after the
    /// status line as an error event inside a `200` stream. The events before
    /// the first output-bearing one (a text, thinking or tool-call delta) are
    /// held, at most [`stream_hold_limit`](Self::stream_hold_limit) bytes for
    /// at most [`stream_hold_timeout`](Self::stream_hold_timeout). An error
    /// event among them is judged and retried exactly like the same error
    /// sent as a status; when it is not retried, the `200` is returned with
    /// its bytes intact and the [`LlmApiError`](crate::LlmApiError) attached. Otherwise the held
    /// bytes are replayed unchanged, then the rest. Once output has started,
    /// nothing is retried: classify a later error event with
    /// [`LlmApiError::from_stream_event`](crate::LlmApiError::from_stream_event). `false` passes every stream
    /// through untouched.
    pub fn streams(mut self, enabled: bool) -> Self {
        self.config.streams = enabled;
        self
    }

    /// How many bytes of a stream's start may be held while no output came
    /// (default 16 KiB, [`defaults::STREAM_HOLD_LIMIT`]):
    /// past it, the stream is handed over as it is.
    pub fn stream_hold_limit(mut self, bytes: usize) -> Self {
        self.config.stream_hold.limit = bytes;
        self
    }

    /// How long a stream's start may be held while no output came (default
    /// 3 s, [`defaults::STREAM_HOLD_TIMEOUT`]).
    /// A reasoning model can think for minutes before its first token, and
    /// the caller may want the events that come first (`message_start`,
    /// `response.created`): after this wait the stream is handed over as it
    /// is, and an error after it is no longer retried.
    pub fn stream_hold_timeout(mut self, timeout: Duration) -> Self {
        self.config.stream_hold.patience = timeout;
        self
    }

    /// Sends a request for model `from` that failed on a transient error to
    /// model `to`: the same request to the same provider and host, with only
    /// the model changed, and a retry schedule of its own.
    ///
    /// ```
    /// use reqwest_llm_retry::LlmRetryMiddleware;
    /// let middleware = LlmRetryMiddleware::builder()
    ///     .fallback("claude-opus-4-1", "claude-sonnet-4-5")
    ///     .fallback("claude-sonnet-4-5", "claude-haiku-4-5") // opus → sonnet → haiku
    ///     .build();
    /// ```
    ///
    /// **Rules.**
    /// - *When*: the request for `from` ended in an overload, a server
    ///   error, a timeout or a rate limit, its retries spent or a server wait
    ///   above [`max_retry_after`](Self::max_retry_after) returned at once;
    ///   for a stream, an error event before its first output. Permanent
    ///   errors (invalid request, authentication, billing, quota, context
    ///   length, content filter), `x-should-retry: false`, connection
    ///   failures and models without a fallback are returned as before.
    ///   While `from` is in an outage (health is kept per host and model
    ///   for it), one request at a time probes it, and the others go on at
    ///   once, without waiting for it or backing off.
    /// - *Each model's own schedule*: every model of the chain gets up to
    ///   [`max_retries`](Self::max_retries) + 1 attempts of its own and its own
    ///   [`max_elapsed`](Self::max_elapsed), counted from its first attempt,
    ///   so a chain of n models may take up to n × `max_elapsed`; bound the
    ///   whole call with a timeout of your own if that is too long.
    /// - *Chains*: pairs chain, and a chain ends at a model this request
    ///   already tried, so a cycle (`a → b → a`) sends each model once. A
    ///   second pair for the same `from` replaces the first; a pair with an
    ///   empty name is ignored. Names are compared exactly, as the request
    ///   spells the model once decoded (`\u` escapes, `%3A`).
    /// - *Where the model is*: the JSON body's top-level `"model"` (OpenAI,
    ///   Anthropic, the OpenAI-compatible hosts, Azure's `/openai/v1/`), where
    ///   the new name is spliced into the original bytes: key order, spacing
    ///   and escapes are kept, and a `Content-Length` follows. In the URL for
    ///   Gemini and Vertex AI (`models/{model}:`), Bedrock (`/model/{id}/`,
    ///   percent-encoded as the AWS SDKs do) and Azure deployments
    ///   (`/deployments/{name}/`).
    /// - *Telling the caller*: the response, or the fallback's own error,
    ///   carries a [`ModelFallback`](crate::ModelFallback)
    ///   ([`LlmResponseExt::model_fallback`](crate::LlmResponseExt::model_fallback),
    ///   [`LlmApiError::fallback`](crate::LlmApiError::fallback)) with the requested model's last error;
    ///   [`RetryStats`](crate::RetryStats) counts the attempts on every model, and a `tracing`
    ///   warning `falling back to another model` names both.
    ///
    /// **What it does not do.**
    /// - Fall back to another provider: its request and response would need
    ///   translating, not a new name.
    /// - Rewrite a signed request: a signature over the URL or the body (AWS
    ///   SigV4, `Authorization: AWS4-HMAC-SHA256 …`, or a presigned
    ///   `X-Amz-Signature`) would no longer match, and only the caller can
    ///   sign again. Such a request is handled exactly as without a
    ///   fallback: its host's health, held in an outage like any other (a
    ///   DEBUG event says so; Bedrock API keys are bearer tokens, not
    ///   signatures, and fall back).
    /// - Rewrite a streamed request body, which cannot be copied (a body of
    ///   known length within [`upload_buffer_limit`](Self::upload_buffer_limit)
    ///   is read once, and falls back), or a stream after its first output.
    ///
    /// Default: none; a request stays on the model it names, and the table
    /// costs nothing.
    pub fn fallback(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.config.fallbacks.insert(from.into(), to.into());
        self
    }

    /// The middleware.
    pub fn build(self) -> LlmRetryMiddleware {
        let LlmRetryMiddlewareBuilder { mut config, cooldown, store, outage } = self;
        config.health = outage.then(|| Arc::new(Health::new(store.clone())));
        config.pacer = cooldown.then(|| Arc::new(Pacer::new(store)));
        LlmRetryMiddleware { config: Arc::new(config) }
    }
}
