//! The middleware: the one async loop that sends, reads, decides and waits.
//!
//! Everything that decides is a pure function elsewhere (`provider`,
//! `parse`, `policy`, `retry_after`, `backoff`); this module only does I/O.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{Extensions, StatusCode};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::backoff::{Attempt, Timing, Verdict, decide};
use crate::body::HeldResponse;
use crate::cooldown::{Admission, CooldownStore, Gate, Key, Pacer, hold, limit_in_message, too_large};
use crate::defaults;
use crate::diagnose::diagnose;
use crate::error::{LlmApiError, RetryStats};
use crate::health::{self, Health, Report, Ticket};
use crate::kind::ErrorKind;
use crate::policy::RetryRule;
use crate::provider::{HostMapping, Provider, normalize_host};
use crate::rate_limits::RateLimits;
use crate::redact::{Secrets, redact_error};
use crate::stream::{self, Start, StreamFormat};
use crate::upload::{PATIENCE, resendable};

/// A `reqwest-middleware` layer that retries LLM API calls the way each
/// provider asks, and attaches a parsed [`LlmApiError`](crate::LlmApiError) to failed responses.
///
/// Defaults, each a constant of [`defaults`](crate::defaults) (see
/// [`LlmRetryMiddleware::builder`] to change them):
///
/// | setting | default | constant |
/// |---|---|---|
/// | [`max_retries`](LlmRetryMiddlewareBuilder::max_retries) | 4 (5 attempts in all) | [`MAX_RETRIES`](defaults::MAX_RETRIES) |
/// | [`base_delay`](LlmRetryMiddlewareBuilder::base_delay) | 1 s, doubled per retry, + up to 25 % | [`BASE_DELAY`](defaults::BASE_DELAY) |
/// | [`max_delay`](LlmRetryMiddlewareBuilder::max_delay) | 30 s | [`MAX_DELAY`](defaults::MAX_DELAY) |
/// | [`max_retry_after`](LlmRetryMiddlewareBuilder::max_retry_after) | 60 s (longer server waits are returned at once) | [`MAX_RETRY_AFTER`](defaults::MAX_RETRY_AFTER) |
/// | [`max_elapsed`](LlmRetryMiddlewareBuilder::max_elapsed) | 300 s | [`MAX_ELAPSED`](defaults::MAX_ELAPSED) |
/// | [`error_body_limit`](LlmRetryMiddlewareBuilder::error_body_limit) | 64 KiB | [`ERROR_BODY_LIMIT`](defaults::ERROR_BODY_LIMIT) |
/// | [`error_body_timeout`](LlmRetryMiddlewareBuilder::error_body_timeout) | 10 s | [`ERROR_BODY_TIMEOUT`](defaults::ERROR_BODY_TIMEOUT) |
/// | [`cooldown`](LlmRetryMiddlewareBuilder::cooldown) | on, in memory | [`COOLDOWN`](defaults::COOLDOWN) |
/// | [`cooldown_store`](LlmRetryMiddlewareBuilder::cooldown_store) | none (the middleware's own memory) | |
/// | [`outage`](LlmRetryMiddlewareBuilder::outage) | on: in a provider outage, one request probes while the others wait | [`OUTAGE`](defaults::OUTAGE) |
/// | [`streams`](LlmRetryMiddlewareBuilder::streams) | on: an error event before a stream's first output is retried | [`STREAMS`](defaults::STREAMS) |
/// | [`stream_hold_limit`](LlmRetryMiddlewareBuilder::stream_hold_limit) | 16 KiB | [`STREAM_HOLD_LIMIT`](defaults::STREAM_HOLD_LIMIT) |
/// | [`stream_hold_timeout`](LlmRetryMiddlewareBuilder::stream_hold_timeout) | 3 s | [`STREAM_HOLD_TIMEOUT`](defaults::STREAM_HOLD_TIMEOUT) |
/// | [`upload_buffer_limit`](LlmRetryMiddlewareBuilder::upload_buffer_limit) | 32 MiB | [`UPLOAD_BUFFER_LIMIT`](defaults::UPLOAD_BUFFER_LIMIT) |
/// | [`error_for_status`](LlmRetryMiddlewareBuilder::error_for_status) | off (a final 4xx/5xx is an `Ok` response) | [`ERROR_FOR_STATUS`](defaults::ERROR_FOR_STATUS) |
///
/// Cloning is cheap and clones share their configuration, their rate-limit state and their
/// provider health.
///
/// ```
/// use reqwest_llm_retry::LlmRetryMiddleware;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(LlmRetryMiddleware::default())
///     .build();
/// ```
#[derive(Debug, Clone, Default)]
pub struct LlmRetryMiddleware {
    config: Arc<Config>,
}

#[derive(Debug, Clone)]
struct Config {
    timing: Timing,
    hosts: Vec<(HostMapping, Provider)>,
    rules: Vec<(Provider, RetryRule)>,
    error_body_limit: usize,
    error_body_timeout: Duration,
    upload_buffer_limit: usize,
    error_for_status: bool,
    /// Shared rate-limit state; `None` when turned off.
    pacer: Option<Arc<Pacer>>,
    /// Shared provider health per host; `None` when turned off.
    health: Option<Arc<Health>>,
    /// Whether the start of event streams is watched, and within what bounds.
    streams: bool,
    stream_hold: StreamHold,
}

/// How much of a stream's start may be held, and for how long.
#[derive(Debug, Clone, Copy)]
struct StreamHold {
    limit: usize,
    patience: Duration,
}

impl StreamHold {
    const DEFAULT: StreamHold =
        StreamHold { limit: defaults::STREAM_HOLD_LIMIT, patience: defaults::STREAM_HOLD_TIMEOUT };
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timing: Timing::default(),
            hosts: Vec::new(),
            rules: Vec::new(),
            error_body_limit: defaults::ERROR_BODY_LIMIT,
            error_body_timeout: defaults::ERROR_BODY_TIMEOUT,
            pacer: defaults::COOLDOWN.then(|| Arc::new(Pacer::new(None))),
            health: defaults::OUTAGE.then(|| Arc::new(Health::default())),
            streams: defaults::STREAMS,
            stream_hold: StreamHold::DEFAULT,
            upload_buffer_limit: defaults::UPLOAD_BUFFER_LIMIT,
            error_for_status: defaults::ERROR_FOR_STATUS,
        }
    }
}

impl LlmRetryMiddleware {
    /// A builder starting from the defaults.
    pub fn builder() -> LlmRetryMiddlewareBuilder {
        LlmRetryMiddlewareBuilder {
            config: Config::default(),
            cooldown: defaults::COOLDOWN,
            store: None,
            outage: defaults::OUTAGE,
        }
    }

    /// The provider a request goes to: its `Provider` extension, else a
    /// `host()` mapping, else the URL's host.
    fn provider(&self, request: &Request, extensions: &Extensions) -> Provider {
        if let Some(provider) = extensions.get::<Provider>() {
            return *provider;
        }
        let Some(host) = request.url().host_str() else {
            return Provider::Unknown;
        };
        if self.config.hosts.is_empty() {
            // A parsed URL's host is already lower-case, without a port.
            return Provider::from_normalized_host(host.trim_end_matches('.'));
        }
        let host = normalize_host(host);
        self.config
            .hosts
            .iter()
            .find(|(mapping, _)| mapping.matches(&host))
            .map_or_else(|| Provider::from_host(&host), |&(_, provider)| provider)
    }
}

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
    /// The `cooldown` switch and the `cooldown_store`, kept apart until `build`, so that
    /// neither setter undoes the other.
    cooldown: bool,
    store: Option<Arc<dyn CooldownStore>>,
    /// The `outage` switch, applied at `build`, so that clones of a builder do not share health.
    outage: bool,
}

impl LlmRetryMiddlewareBuilder {
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

    /// No retry starts later than this after the first attempt started.
    ///
    /// Default: 300 s ([`defaults::MAX_ELAPSED`]).
    pub fn max_elapsed(mut self, elapsed: Duration) -> Self {
        self.config.timing.max_elapsed = elapsed;
        self
    }

    /// Maps a host to a provider: an exact host (`"llm-gateway.internal"`) or
    /// every subdomain of a suffix (`"*.corp.example"`). Checked before the
    /// built-in host table, in the order added.
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
    /// before the first attempt, and every retry resends the same bytes.
    /// Bodies without a length, or over the limit, still stream straight
    /// through. A stream that yields more or fewer bytes than it declared,
    /// fails, or has not finished within 10 s (or the request's own
    /// `timeout`, if shorter) is sent once, every byte of it as it came.
    /// Nothing is read when `max_retries` is 0.
    pub fn upload_buffer_limit(mut self, bytes: usize) -> Self {
        self.config.upload_buffer_limit = bytes;
        self
    }

    /// Returns a final 4xx/5xx, or a `200` stream that failed before its
    /// first output (see [`streams`](Self::streams)), as
    /// `Err(reqwest_middleware::Error::Middleware)` holding the
    /// [`LlmApiError`] (kind, code, request id, `retry_after` and attempts
    /// filled), instead of an `Ok` response with the error attached (off by
    /// default).
    ///
    /// Turn it on when a client library sits on top of this middleware
    /// (rig, async-openai): they read the response and drop its
    /// extensions, but keep an `Err` in their own error's chain, where
    /// [`LlmApiError::find_in`] finds it. Transport errors are returned
    /// unchanged either way, and the error body is not kept.
    ///
    /// Two pitfalls with client libraries:
    /// - do not stack a second retry layer (async-openai's
    ///   `OpenAIRetryLayer`, a tower retry, a loop around the call): attempts
    ///   multiply, 2 × 2 = 4 requests for one call;
    /// - do not retry on the library's own verdict: rig's `is_retryable()`
    ///   says yes to every 429, `insufficient_quota` included, and to every
    ///   error this switch returns. Read [`LlmApiError::retryable`] instead:
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
    /// [`cooldown_store`](Self::cooldown_store) is set. See [`CooldownStore`].
    ///
    /// Default: on ([`defaults::COOLDOWN`]), in the middleware's own memory, shared by its clones.
    pub fn cooldown(mut self, enabled: bool) -> Self {
        self.cooldown = enabled;
        self
    }

    /// Also keeps cooldowns in `store`, e.g. a `RedisCooldownStore` shared by
    /// a fleet, or an `Arc<MemoryCooldownStore>` shared by several
    /// middlewares. The store is asked before each send and told of each
    /// cooldown. It is used while the [`cooldown`](Self::cooldown) is on,
    /// whichever of the two setters comes first. While the
    /// [`outage`](Self::outage) switch is on, provider outages are shared
    /// through it too (one probe for the fleet).
    ///
    /// Default: none; the cooldown lives in the middleware's own memory.
    pub fn cooldown_store(mut self, store: impl CooldownStore) -> Self {
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
    /// holding an [`LlmApiError`] of kind
    /// [`Overloaded`](crate::ErrorKind::Overloaded) (status 503, `retryable:
    /// true`, `attempts: 0`, `retry_after` when the provider gave a wait),
    /// which [`LlmApiError::find_in`] finds.
    ///
    /// With a [`cooldown_store`](Self::cooldown_store), the outage is the
    /// fleet's: one probe at a time for every process sharing the store
    /// (a lease in the store), a process that sees a failure joins an
    /// outage another has recorded at once, and when any process's request
    /// succeeds, the others hear of it within 100 ms and release theirs.
    /// See [`CooldownStore::outage`].
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
    /// its bytes intact and the [`LlmApiError`] attached. Otherwise the held
    /// bytes are replayed unchanged, then the rest. Once output has started,
    /// nothing is retried: classify a later error event with
    /// [`LlmApiError::from_stream_event`]. `false` passes every stream
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

    /// The middleware.
    pub fn build(self) -> LlmRetryMiddleware {
        let LlmRetryMiddlewareBuilder { mut config, cooldown, store, outage } = self;
        config.health = outage.then(|| Arc::new(Health::new(store.clone())));
        config.pacer = cooldown.then(|| Arc::new(Pacer::new(store)));
        LlmRetryMiddleware { config: Arc::new(config) }
    }
}

impl LlmRetryMiddleware {
    /// The format to watch a success's body with, when it is a stream worth watching.
    fn stream_format(&self, provider: Provider, response: &Response) -> Option<&'static StreamFormat> {
        if !self.config.streams {
            return None;
        }
        stream::watched(provider, response)
    }
}

/// Whether a status carries an error to parse; 1xx–3xx pass through untouched.
fn is_error(status: StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

/// Waits for the shared cooldown of `key`, within the time bounds, and
/// returns the send's sequence number.
///
/// A request held by the cooldown checks again when it ends, as often as
/// needed: sending it into a window that is still full would only spend one
/// of its attempts on a 429. What bounds the holding is time: the cooldown
/// waits of one attempt add up to at most `max_retry_after`, and none ends
/// past `max_elapsed`; beyond that the request is sent and the server decides.
async fn pace(mut admission: Admission<'_>, timing: &Timing, started: Instant, waited: &mut Duration) -> u64 {
    let mut held = Duration::ZERO;
    loop {
        let wait = match admission.shared_wait().await {
            Some(wait) => wait,
            None => match admission.gate(Instant::now()) {
                Gate::Go(seq) => return seq,
                Gate::Wait(wait) => wait,
            },
        };
        let Some(wait) = hold(wait, held, started.elapsed(), timing, rand::random()) else {
            return admission.force();
        };
        tracing::debug!(wait_ms = wait.as_millis() as u64, "waiting for the shared rate-limit cooldown");
        tokio::time::sleep(wait).await;
        held += wait;
        *waited += wait;
    }
}

/// The send's sequence number when the cooldown lets `request` go now, else
/// its admission, for [`pace`] to hold. Without a store and without a
/// cooldown this is one lock, taken synchronously: it runs before every
/// request. `now` is the time (the clock is not free).
fn admit<'a>(
    pacer: &'a Pacer,
    key: &'a Key,
    request: &'a Request,
    (started, now): (Instant, Instant),
) -> Result<u64, Admission<'a>> {
    let mut admission = Admission::new(pacer, key, request, started);
    if !pacer.has_store()
        && let Gate::Go(seq) = admission.gate(now)
    {
        return Ok(seq);
    }
    Err(admission)
}

/// An attempt's outcome once judged: the failed response with its error and
/// rate limits, or the transport error.
type Outcome = Result<(HeldResponse, LlmApiError, Option<RateLimits>), reqwest_middleware::Error>;

/// Reading a response's body: the success, finished, or the judged failure.
type Reading<'a> =
    Pin<Box<dyn Future<Output = Result<reqwest_middleware::Result<Response>, (Verdict, Outcome)>> + Send + 'a>>;

/// What one attempt knows about itself, for judging its failure.
struct AttemptContext<'a> {
    provider: Provider,
    retries_taken: u32,
    started: Instant,
    /// The copy to send next, when there is one.
    pending: Option<&'a Request>,
    /// The credentials of the request sent, when there is no copy to read them from.
    sent_secrets: Option<Secrets>,
    pacing: Option<(&'a Pacer, &'a Key, u64)>,
}

impl AttemptContext<'_> {
    /// The credentials to keep out of the error, read only once an error needs them.
    fn secrets(&mut self) -> Secrets {
        self.sent_secrets.take().unwrap_or_else(|| self.pending.map(Secrets::of).unwrap_or_default())
    }
}

impl LlmRetryMiddleware {
    /// Reads and judges a 4xx/5xx response.
    async fn judge(&self, response: Response, at: AttemptContext<'_>) -> (Verdict, Outcome) {
        let config = &*self.config;
        let held = HeldResponse::read(response, config.error_body_limit, config.error_body_timeout).await;
        let body = held.prefix(config.error_body_limit);
        let status = held.status();
        self.conclude(held, status, &body, at).await
    }

    /// Holds the start of a stream: the success, finished, when output came
    /// first; an error event there is judged as the same error sent as a status.
    async fn screen(
        &self,
        response: Response,
        format: &StreamFormat,
        at: AttemptContext<'_>,
        stats: RetryStats,
    ) -> Result<reqwest_middleware::Result<Response>, (Verdict, Outcome)> {
        let hold = self.config.stream_hold;
        match stream::hold(response, format, hold.limit, hold.patience).await {
            Start::Clean(response) => Ok(match succeeded(response, stats, at.pacing) {
                (response, None) => Ok(response),
                (response, Some(publish)) => publish.then_return(response).await,
            }),
            Start::Failed(held, error) => {
                tracing::debug!(
                    provider = at.provider.name(),
                    status = error.status.as_u16(),
                    "error event before the first output of a stream"
                );
                Err(self.conclude(held, error.status, &error.body, at).await)
            }
        }
    }

    /// Classifies an error, decides whether and when to retry, and feeds a
    /// rate limit to the cooldown.
    async fn conclude(
        &self,
        held: HeldResponse,
        status: StatusCode,
        body: &[u8],
        mut at: AttemptContext<'_>,
    ) -> (Verdict, Outcome) {
        let config = &*self.config;
        let now = SystemTime::now();
        let secrets = at.secrets();
        let judged = diagnose(at.provider, status, held.headers(), body, &config.rules, &secrets, now);
        let attempt = Attempt {
            transient: judged.retryable,
            overloaded: judged.kind == ErrorKind::Overloaded,
            server_wait: judged.retry_after,
            retries_taken: at.retries_taken,
            elapsed: at.started.elapsed(),
            can_resend: at.pending.is_some(),
        };
        let mut verdict = decide(&config.timing, attempt, rand::random());
        let limits = RateLimits::from_headers(held.headers(), now);
        let mut judged = judged;
        if let Some((pacer, key, seq)) = at.pacing {
            // Only a rate limit is about this key; overload is everyone's.
            let cooled = (judged.kind == ErrorKind::RateLimited).then_some(judged.retry_after).flatten();
            let said_limit = cooled.and_then(|_| limit_in_message(&judged.message));
            // Larger than the whole token limit: no retry can help, and the window is not spent.
            let body = at.pending.and_then(|request| request.body()?.as_bytes());
            let too_large = too_large(at.provider, said_limit, body);
            let (cooled, said_limit) = if too_large { (None, None) } else { (cooled, said_limit) };
            if let Some(wait) = pacer.observe(key, seq, limits.as_ref(), (cooled, said_limit), Instant::now()) {
                pacer.publish(key, wait).await;
            }
            if too_large {
                (judged.kind, judged.retryable, verdict) =
                    (ErrorKind::RequestTooLarge, false, Verdict::Return { retryable: false });
            }
        }
        (verdict, Ok((held, judged, limits)))
    }
}

/// The future [`Middleware::handle`] returns.
type HandleFuture<'a> = Pin<Box<dyn Future<Output = reqwest_middleware::Result<Response>> + Send + 'a>>;

// Written out rather than with `#[async_trait]`, whose expansion keeps a
// second copy of every argument in the future: the request alone is 264
// bytes, and a future above 1 KiB is allocated off the allocator's fast path
// on every request.
impl Middleware for LlmRetryMiddleware {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        mut request: Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> HandleFuture<'async_trait>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let config = &*self.config;
            let provider = self.provider(&request, extensions);
            let started = Instant::now();
            let mut waited = Duration::ZERO;
            let mut attempts = 0u32;
            let pacing = config.pacer.as_deref().map(|pacer| (pacer, Key::of(provider, &request, pacer.has_store())));
            // Only for a host that has failed before; boxed, the last failure kept while one may be held.
            let mut ticket = config.health.as_ref().and_then(|health| health.ticket(request.url()));
            let mut last: Option<Box<Failure>> = None;

            loop {
                // A block, so that nothing of the attempt is kept in the
                // future while it sleeps but the request to send next.
                let wait = {
                    attempts += 1;
                    let retries_taken = attempts - 1;
                    // A clone for the next attempt, made before this one consumes the
                    // request; a streaming body cannot be cloned and is sent once,
                    // unless it is an upload of known size (`upload`).
                    let may_retry = retries_taken < config.timing.max_retries;
                    let mut pending = if may_retry { request.try_clone() } else { None };
                    if may_retry && pending.is_none() {
                        // Boxed, and no temporary held across the wait: every request's future would grow.
                        pending = Box::pin(resendable(&mut request, config.upload_buffer_limit, PATIENCE)).await;
                    }
                    let secrets_of_last = pending.is_none().then(|| Secrets::of(&request));
                    if let Some(ticket) = &mut ticket
                        && let Err(held) = Box::pin(ticket.admit(&config.timing, started, &mut waited)).await
                    {
                        let stats = RetryStats { attempts: attempts - 1, waited };
                        return held_at_bound(provider, held, last, stats, config);
                    }
                    let seq = match &pacing {
                        Some((pacer, key)) => {
                            // Before the first attempt `started` is now.
                            let now = if retries_taken == 0 { started } else { Instant::now() };
                            match admit(pacer, key, &request, (started, now)) {
                                Ok(seq) => seq,
                                // Boxed: the waiting machinery would otherwise make every request's future larger.
                                Err(admission) => Box::pin(pace(admission, &config.timing, started, &mut waited)).await,
                            }
                        }
                        None => 0,
                    };
                    // A macro, not a closure: a closure would be kept in the future across the send.
                    macro_rules! at {
                        () => {
                            AttemptContext {
                                provider,
                                retries_taken,
                                started,
                                pending: pending.as_ref(),
                                sent_secrets: secrets_of_last,
                                pacing: pacing.as_ref().map(|(pacer, key)| (*pacer, key, seq)),
                            }
                        };
                    }
                    // The body is read, when it must be, after the match on the
                    // response: inside it, the response would be kept in the
                    // future twice across the read.
                    let reading: Reading<'_> = match next.clone().run(request, extensions).await {
                        Ok(response) if !is_error(response.status()) => {
                            let stats = RetryStats { attempts, waited };
                            let Some(format) = self.stream_format(provider, &response) else {
                                if let Some(ticket) = &mut ticket {
                                    ticket.report(Report::Answered, None, config.timing.base_delay);
                                }
                                let pacing = pacing.as_ref().map(|(pacer, key)| (*pacer, key, seq));
                                return match succeeded(response, stats, pacing) {
                                    (response, None) => Ok(response),
                                    // Boxed, as the store's call is rare and its future large.
                                    (response, Some(publish)) => Box::pin(publish.then_return(response)).await,
                                };
                            };
                            Box::pin(self.screen(response, format, at!(), stats))
                        }
                        Ok(response) => {
                            let at = at!();
                            Box::pin(async move { Err(self.judge(response, at).await) })
                        }
                        Err(error) => {
                            let verdict = transport_verdict(&config.timing, &error, retries_taken, started, &pending);
                            Box::pin(std::future::ready(Err((verdict, Err(error)))))
                        }
                    };
                    // Boxed: reading and parsing a body would otherwise make
                    // every request's future several kilobytes larger.
                    let (verdict, outcome) = match reading.await {
                        Ok(done) => {
                            if let Some(ticket) = &mut ticket {
                                ticket.report(Report::Answered, None, config.timing.base_delay);
                            }
                            return done;
                        }
                        Err(judged) => judged,
                    };
                    if let Some(health) = &config.health {
                        report_failure(health, &mut ticket, &outcome, config.timing.base_delay);
                    }
                    match (verdict, outcome, pending) {
                        (Verdict::Retry(wait), outcome, Some(next_request)) => {
                            log_retry(provider, attempts, wait, &outcome);
                            // The failed response is dropped here, before the wait, so its
                            // connection and buffers are released at once; kept, when read
                            // to its end, while an outage may hold the request.
                            last = keep_for_outage(outcome, ticket.as_ref());
                            request = next_request;
                            wait
                        }
                        (verdict, Ok((held, judged, limits)), _) => {
                            let stats = RetryStats { attempts, waited };
                            let response = failed_response(held, judged, limits, verdict, stats);
                            return if config.error_for_status { into_err(response) } else { Ok(response) };
                        }
                        (_, Err(error), _) => return Err(redact_error(error)),
                    }
                };
                Box::pin(tokio::time::sleep(wait)).await;
                waited += wait;
            }
        })
    }
}

/// A failed response, judged.
type Failure = (HeldResponse, LlmApiError, Option<RateLimits>);

/// Reports a failed attempt to its host's health, the host tracked from now on when it was not.
#[cold]
fn report_failure(health: &Health, ticket: &mut Option<Ticket>, outcome: &Outcome, base_delay: Duration) {
    let (report, server_wait, url) = match outcome {
        Ok((held, judged, _)) => (health::judge(judged.status, judged.kind), judged.retry_after, Some(held.url())),
        Err(error) if error.is_connect() || error.is_timeout() => (Report::Failed, None, error.url()),
        Err(_) => return,
    };
    if ticket.is_none() && report == Report::Failed {
        *ticket = url.and_then(|url| health.ticket_after_failure(url));
    }
    if let Some(ticket) = ticket {
        ticket.report(report, server_wait, base_delay);
    }
}

/// The failed response to return if the request is then held until its bound:
/// kept only for a host that has failed, and only when read to its end (its
/// connection is then free).
#[cold]
fn keep_for_outage(outcome: Outcome, ticket: Option<&Ticket>) -> Option<Box<Failure>> {
    match outcome {
        Ok(failure) if failure.0.ended() && ticket.is_some() => Some(Box::new(failure)),
        _ => None,
    }
}

/// A request held by an outage until its bound: its last error response, or the typed error.
#[cold]
fn held_at_bound(
    provider: Provider,
    held: health::Held,
    last: Option<Box<Failure>>,
    stats: RetryStats,
    config: &Config,
) -> reqwest_middleware::Result<Response> {
    let Some(failure) = last else { return Err(health::held_error(provider, held, stats.attempts)) };
    let (held, judged, limits) = *failure;
    let response = failed_response(held, judged, limits, Verdict::Return { retryable: true }, stats);
    if config.error_for_status { into_err(response) } else { Ok(response) }
}

/// A cooldown a store has to hear about.
struct Publish<'a> {
    pacer: &'a Pacer,
    key: &'a Key,
    wait: Duration,
}

impl Publish<'_> {
    async fn then_return(self, response: Response) -> reqwest_middleware::Result<Response> {
        self.pacer.publish(self.key, self.wait).await;
        Ok(response)
    }
}

/// Attaches the rate limits and the stats to a success, and feeds its
/// rate-limit headers to the cooldown; returns what a store must hear of.
fn succeeded<'a>(
    mut response: Response,
    stats: RetryStats,
    pacing: Option<(&'a Pacer, &'a Key, u64)>,
) -> (Response, Option<Publish<'a>>) {
    let limits = RateLimits::read(response.headers(), SystemTime::now);
    let mut publish = None;
    if let Some((pacer, key, seq)) = pacing
        && let Some(wait) = pacer.observe(key, seq, limits.as_ref(), (None, None), Instant::now())
        && pacer.has_store()
    {
        publish = Some(Publish { pacer, key, wait });
    }
    let extensions = response.extensions_mut();
    if let Some(limits) = limits {
        extensions.insert(limits);
    }
    extensions.insert(stats);
    (response, publish)
}

/// Whether to retry after a transport error: connect errors and timeouts only.
#[cold]
fn transport_verdict(
    timing: &Timing,
    error: &reqwest_middleware::Error,
    retries_taken: u32,
    started: Instant,
    pending: &Option<Request>,
) -> Verdict {
    let attempt = Attempt {
        transient: error.is_connect() || error.is_timeout(),
        overloaded: false,
        server_wait: None,
        retries_taken,
        elapsed: started.elapsed(),
        can_resend: pending.is_some(),
    };
    decide(timing, attempt, rand::random())
}

/// The warning every retry logs.
#[cold]
fn log_retry(provider: Provider, attempt: u32, wait: Duration, outcome: &Outcome) {
    match outcome {
        Ok((_, judged, _)) => tracing::warn!(
            provider = provider.name(),
            status = judged.status.as_u16(),
            kind = judged.kind.name(),
            attempt,
            wait_ms = wait.as_millis() as u64,
            request_id = judged.request_id.as_deref().unwrap_or(""),
            "retrying LLM API request"
        ),
        Err(error) => tracing::warn!(
            provider = provider.name(),
            kind = if error.is_timeout() { "timeout" } else { "connect" },
            attempt,
            wait_ms = wait.as_millis() as u64,
            "retrying LLM API request after a transport error"
        ),
    }
}

/// A failed response as the `Err` of [`LlmRetryMiddlewareBuilder::error_for_status`]:
/// its attached [`LlmApiError`], the response (and its connection) dropped.
#[cold]
fn into_err(mut response: Response) -> reqwest_middleware::Result<Response> {
    match response.extensions_mut().remove::<LlmApiError>() {
        Some(error) => Err(reqwest_middleware::Error::middleware(error)),
        None => Ok(response),
    }
}

/// The response returned for a final 4xx/5xx, with everything attached.
#[cold]
fn failed_response(
    held: HeldResponse,
    judged: LlmApiError,
    limits: Option<RateLimits>,
    verdict: Verdict,
    stats: RetryStats,
) -> Response {
    // `decide` only says Retry when there is a request to resend.
    let retryable = match verdict {
        Verdict::Return { retryable } => retryable,
        Verdict::Retry(_) => judged.retryable,
    };
    let mut error = judged;
    error.retryable = retryable;
    error.attempts = stats.attempts;
    tracing::debug!(
        provider = error.provider.name(),
        status = error.status.as_u16(),
        kind = error.kind.name(),
        attempts = stats.attempts,
        retryable,
        "LLM API request failed"
    );
    let mut response = held.into_response();
    let extensions = response.extensions_mut();
    if let Some(limits) = limits {
        extensions.insert(limits);
    }
    extensions.insert(stats);
    extensions.insert(error);
    response
}
