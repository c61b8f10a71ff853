//! One [`reqwest-middleware`](https://docs.rs/reqwest-middleware/0.5) layer that retries LLM
//! API calls the way each provider asks and turns their errors into one typed
//! [`LlmApiError`]: a bot keeps working through rate limits and overloads, and stops at once
//! on what no retry can fix.
//!
//! ```no_run
//! use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(LlmRetryMiddleware::default())
//!     .build();
//! let body = serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 256,
//!     "messages": [{"role": "user", "content": "Hello"}]});
//! let resp = client.post("https://api.anthropic.com/v1/messages").json(&body).send().await?;
//! if let Some(err) = resp.llm_error() {
//!     eprintln!("{} {:?} after {} attempts: {}", err.provider, err.kind, err.attempts, err.message);
//! }
//! # Ok(()) }
//! ```
//!
//! The [`Provider`] comes from the request host (Anthropic, OpenAI, Gemini, Vertex AI, Azure
//! OpenAI, Bedrock and the OpenAI-compatible hosts), a
//! [`host`](LlmRetryMiddlewareBuilder::host) mapping, or a `Provider` in the request's
//! extensions. The final failed response carries an [`LlmApiError`], every response a
//! [`RetryStats`], and the caller still receives the whole body, byte for byte
//! ([`LlmResponseExt`] reads them). A success body reaches you as it arrives; the one
//! exception is an event stream, whose first events are held until its first output (see
//! [Streams](#streams)).
//!
//! # Retry policy
//!
//! The decision is taken on the parsed error, per provider, not on the status alone: a 429
//! rate limit is retried, a 429 `insufficient_quota` is not. `x-should-retry: true|false`
//! from the server overrides the verdict; [`RetryRule`]s added with
//! [`rule`](LlmRetryMiddlewareBuilder::rule) come before the built-in rows. Connection
//! errors and timeouts are retried; the final transport error is reqwest's own, so
//! `is_timeout()` and `is_connect()` keep working. A request whose body cannot be cloned (a
//! stream) is sent once, and its error still parsed, unless it declares a `Content-Length`
//! within [`upload_buffer_limit`](LlmRetryMiddlewareBuilder::upload_buffer_limit): such an
//! upload is read once and resent.
//!
//! This table is rendered from the retry tables themselves (a test keeps it so):
//!
#![doc = include_str!("../docs/what-is-retried.md")]
//!
//! # Streams
//!
//! Providers report overload and rate limits that strike after the status line inside a
//! `200` event stream. For a `text/event-stream` from a known provider, the events before the
//! first output (a text, thinking or tool-call delta) are held, within
//! [`stream_hold_limit`](LlmRetryMiddlewareBuilder::stream_hold_limit) bytes and
//! [`stream_hold_timeout`](LlmRetryMiddlewareBuilder::stream_hold_timeout). An error event
//! there is judged and retried exactly like the same error sent as a status; if it is not
//! retried, the `200` comes back with its bytes intact and the [`LlmApiError`] attached, and
//! [`error_for_llm_status`](LlmResponseExt::error_for_llm_status) returns `Err`. Otherwise the
//! held bytes are replayed unchanged. After output has started nothing is retried; classify a
//! later error event with [`LlmApiError::from_stream_event`].
//! [`streams(false)`](LlmRetryMiddlewareBuilder::streams) turns this off.
//!
//! # Waits
//!
//! When the server says how long (`retry-after-ms`, `retry-after` as seconds or an HTTP
//! date, Gemini `RetryInfo.retryDelay`, a wait in the message, and on a 429 the rate-limit
//! reset headers), the middleware waits that long plus up to 10 % (at most 1 s) of jitter,
//! never less. Otherwise it backs off exponentially from
//! [`base_delay`](LlmRetryMiddlewareBuilder::base_delay), doubling per retry, with up to 25 %
//! jitter, capped at [`max_delay`](LlmRetryMiddlewareBuilder::max_delay); an overload starts
//! at half of `base_delay` (0.5 s by default, as the official SDKs). A server wait above
//! [`max_retry_after`](LlmRetryMiddlewareBuilder::max_retry_after) is not slept: the error
//! comes back at once with `retryable: true` and `retry_after` set. No retry starts after
//! [`max_elapsed`](LlmRetryMiddlewareBuilder::max_elapsed).
//!
//! # Shared rate limits
//!
//! Clones of one middleware share rate-limit state per provider, host and credential (a keyed
//! hash, never the key): after a 429, or once the rate-limit headers say a window is used up,
//! requests with the same key wait for the reset instead of each collecting its own 429, and
//! the `remaining` budget is spent as requests go out. Waits stay within `max_retry_after` and
//! `max_elapsed`. A [`SharedStore`] set with
//! [`shared_store`](LlmRetryMiddlewareBuilder::shared_store) shares the state further
//! ([`MemoryStore`] between middlewares, `RedisStore` across the processes of a fleet, on one
//! node or a Redis Cluster; see [`store`]);
//! [`cooldown(false)`](LlmRetryMiddlewareBuilder::cooldown) turns it off. Every response
//! carrying rate-limit headers gets a [`RateLimits`] snapshot.
//!
//! # Defaults
//!
//! 5 attempts, 1 s base delay, 30 s cap, 60 s largest server wait slept, 300 s in all, 64 KiB
//! of an error body parsed within 10 s, cooldown on, streams watched (16 KiB, 3 s), uploads up
//! to 32 MiB resent, a final 4xx/5xx returned as an `Ok` response. Each is a constant of [`defaults`], and
//! each setter of [`LlmRetryMiddlewareBuilder`] names its own.
//!
//! # Features
//!
//! | Cargo feature | What it adds |
//! |---|---|
//! | `mock` | the `mock` test kit: realistic provider failures as wiremock templates, scripted sequences, clients that reach a mock under the real host name |
//! | `redis` | `RedisStore`: pacing and outages shared by a fleet of processes through Redis (a single node or a Redis Cluster) |
//! | `metrics` | counters, a histogram and gauges of calls, retries, waits, rate-limit headroom and outages, through the [`metrics`](https://docs.rs/metrics) facade (see [Metrics](#metrics)) |
//!
//! All are off by default. The kit's signatures use wiremock 0.6 types and the store's use
//! redis 1 types: each crate is re-exported (`mock::wiremock`, `redis`), and a new major
//! version of either is a new major version of this crate.
//!
//! # Observability
//!
//! The middleware emits `tracing` events (target `reqwest_llm_retry::…`, so
//! `RUST_LOG=reqwest_llm_retry=debug` shows them all). No event carries a header, a URL or a
//! credential.
//!
//! | message | level | fields |
//! |---|---|---|
//! | `retrying LLM API request` | WARN | `provider`, `status`, `kind`, `attempt` (the one that failed), `http.request.resend_count`, `wait_ms`, `request_id` (only when the provider sent one) |
//! | `retrying LLM API request after a transport error` | WARN | `provider`, `kind` (`timeout` or `connect`), `attempt`, `http.request.resend_count`, `wait_ms` |
//! | `LLM API request failed` | DEBUG | `provider`, `status`, `kind`, `attempts`, `retryable` |
//! | `waiting for the shared rate-limit cooldown` | DEBUG | `wait_ms` |
//! | `error event before the first output of a stream` | DEBUG | `provider`, `status` (the status the same error has) |
//! | `provider outage: holding requests, probing with one at a time` | WARN | `host` (`host:port`), `failures` (in a row) |
//! | `provider outage, said by another process sharing the store: holding requests` | WARN | `host` |
//! | `provider outage over: releasing the held requests` | INFO | `host`, `probes`, `lasted_ms` |
//! | `waiting for the provider's outage to end` | DEBUG | `host` |
//! | `falling back to another model` | WARN | `provider`, `from`, `to` (the models), `kind` (what ended the attempts on `from`) |
//! | `not falling back: the request cannot name another model` | DEBUG | `provider`, `from`, `reason` (`signed`, `stream_body` or `no_model`) |
//! | `Redis store unavailable; using the in-memory store` | WARN, at most every 30 s | `error`, `action` (`spend`, `extend`, `outage` or `report_outage`) |
//! | `Redis store call` | TRACE | `action`, `elapsed_us`, `ok` |
//!
//! `provider` and `kind` are [`Provider::name`] and [`ErrorKind::name`] (snake_case);
//! `http.request.resend_count` is OpenTelemetry's name for the number of the resend about to
//! be made (1 for the first retry). [`RetryStats`] on the response gives the same counts to
//! code. There is no per-retry callback: a `tracing` layer that matches the WARN events above
//! sees every retry, with its reason and wait, without a hook in the middleware.
//!
//! ## Metrics
//!
//! With the `metrics` feature, the middleware records through the
//! [`metrics`](https://docs.rs/metrics) facade, so any exporter works (Prometheus,
//! OpenTelemetry, StatsD): install its recorder, and these series appear.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `llm_retry_requests_total` | counter | `provider`, `outcome` | one per call through the middleware; `outcome` is `success` (any status below 400) or the final [`ErrorKind::name`] |
//! | `llm_retry_retries_total` | counter | `provider`, `reason` | one per retry sent; `reason` is the [`ErrorKind::name`] that caused it, or `stream_error` for an error event before a stream's first output |
//! | `llm_retry_wait_seconds` | histogram | `provider`, `cause` | each sleep: `retry` (before a retry), `rate_limit` (held by the shared pacing) or `outage` (held by a provider outage; a held request wakes when a probe returns, and each stretch is one sleep) |
//! | `llm_retry_ratelimit_remaining` | gauge | `provider`, `host`, `limit` | the last remaining count a response's rate-limit headers stated (every response once a budget is below half its limit, one in eight above it); `limit` is `requests`, `tokens`, `input_tokens` or `output_tokens` ([`RateLimits`]) |
//! | `llm_retry_outage` | gauge | `provider`, `host` | 1 while the host is in an outage, else 0 |
//! | `llm_retry_fallbacks_total` | counter | `provider`, `from`, `to` | one per request sent again with a fallback model |
//!
//! A transport error counts as `timeout` when it timed out and as `server_error` when the
//! connection failed (what a gateway in between would have answered), `unknown` otherwise. A
//! request held by an outage until its bound, never sent, ends as `overloaded`.
//!
//! Labels never carry a credential, a path or a body: `host` is the URL's host alone (no port,
//! path, query or user), `from` and `to` the models of a configured fallback. So there is a
//! series per provider, host and model called, never per request or per key. Without the
//! feature nothing is recorded and nothing is paid; with it and no recorder installed, a
//! success costs about 0.6 % more instructions. `examples/prometheus` serves these on a
//! `/metrics` endpoint, and `docs/dashboard.json` in the repository is a Grafana dashboard
//! over them (retries by reason, waits by cause, headroom per host, outage state).
//!
//! # Provider outages
//!
//! Overload is provider-wide, so health is shared per host (across credentials) by the
//! middleware's clones: after 10 failures in a row (overload, 5xx, connect errors,
//! timeouts), requests to that host wait instead of being sent, one at a time goes as a probe,
//! and when a request succeeds the others are released, spread over 250 ms. A request with
//! no other request to the same host under way is sent at once (its own retries probe). No
//! request waits longer than its own retries would have taken; one that waited that long
//! returns its last error response, or, never sent, an
//! `Err(reqwest_middleware::Error::Middleware(..))` holding an [`LlmApiError`] of kind
//! [`Overloaded`](ErrorKind::Overloaded) with `attempts: 0` ([`LlmApiError::find_in`] reaches
//! it). With a [`SharedStore`] ([`MemoryStore`], `RedisStore`), the probe is the fleet's: one
//! at a time for every process, and a
//! success anywhere releases everyone's requests. See
//! [`outage`](LlmRetryMiddlewareBuilder::outage), which turns it off.
//!
//! # Model fallback
//!
//! [`fallback(from, to)`](LlmRetryMiddlewareBuilder::fallback) sends a request for model `from`
//! that ended in an overload, a server error, a timeout or a rate limit to model `to` of the
//! same provider, with only the model changed (the JSON `"model"`, spliced into the original
//! bytes, or the URL for Gemini, Vertex AI, Bedrock and Azure deployments); pairs chain.
//! [`LlmResponseExt::model_fallback`] says which model answered, and keeps the first model's
//! error. Requests signed over their URL or body (AWS SigV4) are not rewritten.
//!
//! # Runtime requirements
//!
//! Tokio: waits are `tokio::time::sleep`, so requests must be sent from within a Tokio
//! runtime with its time driver enabled (`#[tokio::main]` and `#[tokio::test]` enable it), as
//! reqwest itself requires. Dropping a request's future mid-wait cancels it and leaves nothing
//! behind.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

mod backoff;
mod body;
mod clock;
mod cooldown;
pub mod defaults;
mod diagnose;
mod error;
mod ext;
mod fallback;
mod health;
mod kind;
mod metrics;
mod middleware;
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub mod mock;
mod parse;
mod policy;
mod provider;
mod rate_limits;
mod redact;
#[doc(hidden)]
pub mod retry_after;
#[doc(hidden)]
pub use stream::read_events as __read_stream_events;
pub mod store;
mod stream;
mod upload;

pub use error::{LlmApiError, RetryStats};
pub use ext::LlmResponseExt;
pub use fallback::ModelFallback;
pub use kind::ErrorKind;
pub use middleware::{LlmRetryMiddleware, LlmRetryMiddlewareBuilder};
pub use policy::RetryRule;
pub use provider::{ParseProviderError, Provider};
pub use rate_limits::{RateLimit, RateLimits};
/// The `redis` crate (major version 1), whose types appear in
/// [`RedisStore`]'s signatures (`RedisResult`, `IntoConnectionInfo`,
/// `aio::ConnectionManager`, `cluster_async::ClusterConnection`):
/// re-exported so that a program builds them with the very version this crate
/// links. A new major version of `redis` is a new major version of this crate.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use store::RedisStore;
pub use store::{MemoryStore, SharedStore};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
