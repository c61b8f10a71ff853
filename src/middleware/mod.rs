//! The middleware: one async loop of named steps that admits, sends, judges,
//! decides, and waits or returns.
//!
//! Everything that decides is a pure function elsewhere (`provider`,
//! `diagnose`, `policy`, `retry_after`, `backoff`), and the shared state
//! answers questions (`cooldown`, `health`); this module only does I/O, in
//! steps named for what they do: [`call`] (the call's state, admission and
//! waits), [`judge`] (reading and judging a response), [`respond`] (the
//! decision and what the caller gets). [`builder`] and [`config`] hold the
//! settings.

mod builder;
mod call;
mod chain;
mod config;
mod fall_back;
mod judge;
mod outcome;
mod respond;

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

pub use builder::LlmRetryMiddlewareBuilder;
use call::Call;
use config::Config;
use judge::Judging;
use outcome::{Admission, Judged};

/// A `reqwest-middleware` layer that retries LLM API calls the way each
/// provider asks, and attaches a parsed [`LlmApiError`](crate::LlmApiError) to failed responses.
///
/// Defaults, each a constant of [`defaults`](crate::defaults) (see
/// [`LlmRetryMiddleware::builder`] to change them):
///
/// | setting | default | constant |
/// |---|---|---|
/// | [`max_retries`](LlmRetryMiddlewareBuilder::max_retries) | 4 (5 attempts in all) | [`MAX_RETRIES`](crate::defaults::MAX_RETRIES) |
/// | [`base_delay`](LlmRetryMiddlewareBuilder::base_delay) | 1 s, doubled per retry, + up to 25 % | [`BASE_DELAY`](crate::defaults::BASE_DELAY) |
/// | [`max_delay`](LlmRetryMiddlewareBuilder::max_delay) | 30 s | [`MAX_DELAY`](crate::defaults::MAX_DELAY) |
/// | [`max_retry_after`](LlmRetryMiddlewareBuilder::max_retry_after) | 60 s (longer server waits are returned at once) | [`MAX_RETRY_AFTER`](crate::defaults::MAX_RETRY_AFTER) |
/// | [`max_elapsed`](LlmRetryMiddlewareBuilder::max_elapsed) | 300 s | [`MAX_ELAPSED`](crate::defaults::MAX_ELAPSED) |
/// | [`error_body_limit`](LlmRetryMiddlewareBuilder::error_body_limit) | 64 KiB | [`ERROR_BODY_LIMIT`](crate::defaults::ERROR_BODY_LIMIT) |
/// | [`error_body_timeout`](LlmRetryMiddlewareBuilder::error_body_timeout) | 10 s | [`ERROR_BODY_TIMEOUT`](crate::defaults::ERROR_BODY_TIMEOUT) |
/// | [`cooldown`](LlmRetryMiddlewareBuilder::cooldown) | on, in memory | [`COOLDOWN`](crate::defaults::COOLDOWN) |
/// | [`shared_store`](LlmRetryMiddlewareBuilder::shared_store) | none (the middleware's own memory) | |
/// | [`outage`](LlmRetryMiddlewareBuilder::outage) | on: in a provider outage, one request probes while the others wait | [`OUTAGE`](crate::defaults::OUTAGE) |
/// | [`streams`](LlmRetryMiddlewareBuilder::streams) | on: an error event before a stream's first output is retried | [`STREAMS`](crate::defaults::STREAMS) |
/// | [`stream_hold_limit`](LlmRetryMiddlewareBuilder::stream_hold_limit) | 16 KiB | [`STREAM_HOLD_LIMIT`](crate::defaults::STREAM_HOLD_LIMIT) |
/// | [`stream_hold_timeout`](LlmRetryMiddlewareBuilder::stream_hold_timeout) | 3 s | [`STREAM_HOLD_TIMEOUT`](crate::defaults::STREAM_HOLD_TIMEOUT) |
/// | [`upload_buffer_limit`](LlmRetryMiddlewareBuilder::upload_buffer_limit) | 32 MiB | [`UPLOAD_BUFFER_LIMIT`](crate::defaults::UPLOAD_BUFFER_LIMIT) |
/// | [`error_for_status`](LlmRetryMiddlewareBuilder::error_for_status) | off (a final 4xx/5xx is an `Ok` response) | [`ERROR_FOR_STATUS`](crate::defaults::ERROR_FOR_STATUS) |
/// | [`fallback`](LlmRetryMiddlewareBuilder::fallback) | none: a request stays on the model it names | |
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

impl LlmRetryMiddleware {
    /// A builder starting from the defaults.
    pub fn builder() -> LlmRetryMiddlewareBuilder {
        LlmRetryMiddlewareBuilder::new()
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
            let mut call = Call::start(config, config.provider(&request, extensions), &request);
            call.buffer_upload(&mut request).await;
            call.route(&request);
            loop {
                let mut attempt = call.prepare(&request);
                let step = match call.admit(&mut attempt, &request).await {
                    Admission::Held(held) => call.held(held),
                    Admission::Send => {
                        let sent = next.clone().run(request, extensions).await;
                        let judged = match call.judge(sent, &mut attempt) {
                            Judging::Now(judged) => judged,
                            Judging::Later(reading) => reading.await,
                        };
                        match call.report(judged) {
                            Judged::Success(response) => return Ok(response),
                            Judged::Failed(verdict, outcome) => call.decide(verdict, outcome, attempt),
                        }
                    }
                };
                let wait;
                (wait, request) = match step.resend() {
                    ControlFlow::Continue(next) => next,
                    ControlFlow::Break(result) => return result,
                };
                call.wait(wait).await;
            }
        })
    }
}
