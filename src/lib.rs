//! ```no_run
//! # use reqwest_llm_retry::{LlmRetryMiddleware, LlmResponseExt};
//! # async fn demo(body: serde_json::Value) -> Result<(), Box<dyn std::error::Error>> {
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(LlmRetryMiddleware::default())
//!     .build();
//! let resp = client.post("https://api.anthropic.com/v1/messages").json(&body).send().await?;
//! if let Some(err) = resp.llm_error() {
//!     eprintln!("{} {:?} after {} attempts: {}", err.provider, err.kind, err.attempts, err.message);
//! }
//! # Ok(()) }
//! ```
//!
//! `reqwest-llm-retry` is one [`reqwest_middleware`] layer that makes a
//! reqwest program behave correctly when an LLM API fails:
//!
//! - it knows the [`Provider`] from the request host (Anthropic, OpenAI,
//!   Gemini, Vertex AI, Azure OpenAI, Bedrock and the OpenAI-compatible hosts),
//!   or from a per-request `Provider` extension;
//! - it retries exactly what that provider says is transient, deciding on the
//!   parsed error and not the status alone (a 429 rate limit is retried, a
//!   429 `insufficient_quota` is not), and honours `x-should-retry`;
//! - it waits as long as the server asks (`retry-after-ms`, `retry-after`,
//!   Gemini `RetryInfo`, rate-limit reset headers), else backs off
//!   exponentially with jitter, and never sleeps past `max_retry_after` or
//!   `max_elapsed`;
//! - it attaches a typed [`LlmApiError`] to the final failed response, and
//!   [`RetryStats`] to every response, while the caller still receives the
//!   whole body, byte for byte. Success bodies (SSE streams) are never touched.
//!
//! | Provider | Retried | Never retried |
//! |---|---|---|
//! | Anthropic | 408, 409, 429, 5xx incl. 529 | 400 (incl. credit balance), 401, 402, 403, 404, 413, spend limits |
//! | OpenAI | 408, 409, 429 rate limits, 5xx | 400, 401, 403, 404, 429 `insufficient_quota` and spend limits, context length |
//! | Gemini / Vertex AI | 408, 409, 429 per-minute, 5xx | 400 (incl. `FAILED_PRECONDITION`), 403, 404, 429 per-day quota |
//! | Unknown hosts | 408, 429, 500, 502, 503, 504 | everything else |
//!
//! Transport errors: connection failures and timeouts are retried with
//! backoff; the final error is returned unchanged, so `is_timeout()` and
//! `is_connect()` keep working.
//!
//! Clones of one middleware share rate-limit state per provider, host and
//! credential: after a 429, or once the rate-limit headers say a window is
//! used up, requests with the same key wait for the reset instead of each
//! collecting its own 429 (see [`CooldownStore`]). Every response carrying
//! rate-limit headers gets a [`RateLimits`] snapshot.
//!
//! | Cargo feature | What it adds |
//! |---|---|
//! | `mock` | the `mock` module: realistic provider failures as wiremock templates, scripted sequences, clients that reach a mock under the real host name |
//! | `redis` | `RedisCooldownStore`: cooldowns shared by a fleet of processes through Redis |
#![doc = concat!("\n\n", "Configuration: see [`LlmRetryMiddleware::builder`].")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

mod backoff;
mod body;
mod cooldown;
mod diagnose;
mod error;
mod ext;
mod kind;
mod middleware;
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub mod mock;
mod parse;
mod policy;
mod provider;
mod rate_limits;
mod redact;
#[cfg(feature = "redis")]
mod redis_store;
pub mod retry_after;
mod upload;

pub use cooldown::{CooldownStore, MemoryCooldownStore};
pub use error::{LlmApiError, RetryStats};
pub use ext::LlmResponseExt;
pub use kind::ErrorKind;
pub use middleware::{
    DEFAULT_ERROR_BODY_LIMIT, DEFAULT_ERROR_BODY_TIMEOUT, DEFAULT_UPLOAD_BUFFER_LIMIT, LlmRetryMiddleware,
    LlmRetryMiddlewareBuilder,
};
pub use policy::RetryRule;
pub use provider::Provider;
pub use rate_limits::{RateLimit, RateLimits};
#[cfg(feature = "redis")]
pub use redis_store::RedisCooldownStore;

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
