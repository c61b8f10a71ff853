//! Every default of [`LlmRetryMiddlewareBuilder`](crate::LlmRetryMiddlewareBuilder), in one
//! place: [`LlmRetryMiddleware::default()`](crate::LlmRetryMiddleware) and the builder start
//! from these, and each setter's docs name its constant.
//!
//! The timing defaults follow the common strategy of the official SDKs: 5 attempts, 1 s base,
//! 30 s cap, 60 s largest server wait honoured.
//!
//! What is not configurable, and why:
//!
//! - **jitter on a server wait**: up to 10 % of it, at most 1 s, is added, so that the clients
//!   told "retry in 1 s" do not all return in the same millisecond; never less than asked;
//! - **jitter on backoff**: up to 25 % is added to `base · 2ⁿ`, never above `max_delay`;
//! - **overload backoff**: an overload (Anthropic 529, a 503, Groq 498) with no server wait
//!   starts at half of `base_delay` (0.5 s, 1 s, 2 s, 4 s by default), as the official SDKs
//!   do (Anthropic's and OpenAI's start at 0.5 s). A provider-wide overload is met by the
//!   [`outage`](crate::LlmRetryMiddlewareBuilder::outage) state, which holds requests and
//!   probes with one: a longer backoff per request would only add latency to requests that
//!   meet an independent fault;
//! - **outage detection and probing**: 10 failures in a row, probes every 0.25 s then 0.5 s,
//!   release spread over 250 ms (see [`outage`](crate::LlmRetryMiddlewareBuilder::outage)).
//!
//! A `RedisStore`'s own defaults (key prefix, call
//! timeout) are constants of that type.

use std::time::Duration;

/// [`max_retries`](crate::LlmRetryMiddlewareBuilder::max_retries): 4 retries, so 5 attempts in all.
pub const MAX_RETRIES: u32 = 4;

/// [`base_delay`](crate::LlmRetryMiddlewareBuilder::base_delay): 1 s, doubled per retry.
pub const BASE_DELAY: Duration = Duration::from_secs(1);

/// [`max_delay`](crate::LlmRetryMiddlewareBuilder::max_delay): 30 s, the largest backoff.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// [`max_retry_after`](crate::LlmRetryMiddlewareBuilder::max_retry_after): 60 s, the longest
/// server wait that is slept.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// [`max_elapsed`](crate::LlmRetryMiddlewareBuilder::max_elapsed): 300 s after the first
/// attempt, no retry starts.
pub const MAX_ELAPSED: Duration = Duration::from_secs(300);

/// [`error_body_limit`](crate::LlmRetryMiddlewareBuilder::error_body_limit): 64 KiB of an error
/// body are read to parse it.
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// [`error_body_timeout`](crate::LlmRetryMiddlewareBuilder::error_body_timeout): 10 s to read
/// that prefix.
pub const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// [`cooldown`](crate::LlmRetryMiddlewareBuilder::cooldown): shared rate-limit state is on.
pub const COOLDOWN: bool = true;

/// [`outage`](crate::LlmRetryMiddlewareBuilder::outage): shared provider health is on; in an
/// outage, one request probes while the others wait, within their own retry bounds.
pub const OUTAGE: bool = true;

/// [`streams`](crate::LlmRetryMiddlewareBuilder::streams): the start of an event stream is
/// watched for an error event.
pub const STREAMS: bool = true;

/// [`stream_hold_limit`](crate::LlmRetryMiddlewareBuilder::stream_hold_limit): 16 KiB of a
/// stream's start may be held while no output came.
pub const STREAM_HOLD_LIMIT: usize = 16 * 1024;

/// [`stream_hold_timeout`](crate::LlmRetryMiddlewareBuilder::stream_hold_timeout): 3 s, how long
/// a stream's start may be held while no output came.
pub const STREAM_HOLD_TIMEOUT: Duration = Duration::from_secs(3);

/// [`upload_buffer_limit`](crate::LlmRetryMiddlewareBuilder::upload_buffer_limit): 32 MiB, the
/// largest stream body with a `Content-Length` that is read once to be resent on retry.
pub const UPLOAD_BUFFER_LIMIT: usize = 32 * 1024 * 1024;

/// [`error_for_status`](crate::LlmRetryMiddlewareBuilder::error_for_status): off, a final
/// 4xx/5xx is an `Ok` response carrying its `LlmApiError`.
pub const ERROR_FOR_STATUS: bool = false;
