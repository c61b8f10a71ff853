//! The end of each attempt: the decision after a failure, and the response
//! (or error) the caller gets, with its stats, rate limits and error attached.

use std::time::{Duration, SystemTime};

use crate::clock::Instant;
use reqwest::Response;

use super::call::{Attempt, Call};
use super::outcome::{Failure, Outcome, Step};
use crate::backoff::Verdict;
use crate::cooldown::{Key, Pacer};
use crate::error::{LlmApiError, RetryStats};
use crate::health::{self, Held};
use crate::kind::ErrorKind;
use crate::metrics;
use crate::provider::Provider;
use crate::rate_limits::RateLimits;
use crate::redact::redact_error;

impl Call<'_> {
    /// Retry after the verdict's wait, when there is a copy to resend;
    /// otherwise the caller's response or error.
    pub(super) fn decide(&mut self, verdict: Verdict, outcome: Outcome, attempt: Attempt) -> Step {
        match (verdict, attempt.pending) {
            (Verdict::Retry(wait), Some(request)) => {
                if let Some(step) = self.fall_back_in_outage(&outcome) {
                    return step;
                }
                log_retry(self.provider, self.attempts, wait, &outcome);
                self.retry = match &outcome {
                    Outcome::Answered(failure) => {
                        metrics::retried(self.provider, failure.held.status(), failure.error.kind, wait)
                    }
                    Outcome::Transport(error) => metrics::retried_after_transport(self.provider, error, wait),
                };
                // The failed response is dropped here, before the wait, so its
                // connection and buffers are released at once; kept, when read
                // to its end, while an outage may hold the request.
                self.last = match outcome {
                    Outcome::Answered(failure) if failure.held.ended() && self.ticket.is_some() => Some(failure),
                    _ => None,
                };
                Step::Retry { wait, request }
            }
            // `decide` says Retry only when the request can be resent: this is
            // the error's own verdict.
            (Verdict::Retry(_), None) => self.give_up(outcome, None),
            (Verdict::Return { retryable }, _) => self.give_up(outcome, Some(retryable)),
        }
    }

    /// The caller's result for a failure that is not retried: `retryable`
    /// overrides the error's own verdict when the loop gave up for want of
    /// time or attempts.
    #[cold]
    fn give_up(&mut self, outcome: Outcome, retryable: Option<bool>) -> Step {
        if let Some(step) = self.fall_back_after(&outcome, retryable) {
            return step;
        }
        Step::Return(match outcome {
            Outcome::Answered(failure) => self.respond(*failure, retryable),
            Outcome::Transport(error) => {
                metrics::failed_in_transport(self.provider, &error);
                Err(redact_error(error))
            }
        })
    }

    /// A call held by an outage: on to the next model when it has one;
    /// otherwise, held until its bound, its last error response, or the typed
    /// error when it was never answered.
    #[cold]
    pub(super) fn held(&mut self, held: Held) -> Step {
        if let Some(step) = self.fall_back_when_held(held) {
            return step;
        }
        Step::Return(match self.last.take() {
            Some(failure) => self.respond(*failure, Some(true)),
            None => {
                metrics::failed(self.provider, ErrorKind::Overloaded);
                let mut error = health::held_error(self.provider, held, self.attempts);
                if let Some(taken) = self.fallback_taken() {
                    error.set_fallback(taken);
                }
                Err(reqwest_middleware::Error::middleware(error))
            }
        })
    }

    fn respond(&self, failure: Failure, retryable: Option<bool>) -> reqwest_middleware::Result<Response> {
        let mut response = failed_response(failure, retryable, self.stats());
        self.mark_fallback(&mut response);
        if self.config.error_for_status { into_err(response) } else { Ok(response) }
    }
}

/// A cooldown a store has to hear about.
pub(super) struct Publish<'a> {
    pacer: &'a Pacer,
    key: &'a Key,
    wait: Duration,
}

impl Publish<'_> {
    pub(super) async fn tell(self) {
        self.pacer.publish(self.key, self.wait).await;
    }
}

/// Attaches the stats to a success, and feeds its rate-limit headers to the
/// pacer when it asks for them; returns what a store must hear of.
pub(super) fn succeeded<'a>(
    provider: Provider,
    response: &mut Response,
    stats: RetryStats,
    pacing: Option<(&'a Pacer, &'a Key, u64)>,
) -> Option<Publish<'a>> {
    metrics::succeeded(provider);
    // The headroom gauge is fed by the responses the pacer reads: one in
    // eight while every budget has half its window left, else every one.
    let read = pacing.map_or(metrics::ENABLED, |(_, _, seq)| Pacer::reads(seq));
    let pacing = pacing.filter(|_| read);
    let mut publish = None;
    if read {
        let limits = RateLimits::read(response.headers(), SystemTime::now);
        metrics::rate_limits(provider, response.url(), limits.as_ref());
        if let Some((pacer, key, seq)) = pacing
            && let Some(wait) = pacer.observe(key, seq, limits.as_ref(), (None, None), Instant::now())
            && pacer.has_store()
        {
            publish = Some(Publish { pacer, key, wait });
        }
    }
    response.extensions_mut().insert(stats);
    publish
}

/// The warning every retry logs.
#[cold]
fn log_retry(provider: Provider, attempt: u32, wait: Duration, outcome: &Outcome) {
    match outcome {
        Outcome::Answered(failure) => tracing::warn!(
            provider = provider.name(),
            status = failure.error.status.as_u16(),
            kind = failure.error.kind.name(),
            attempt,
            http.request.resend_count = attempt,
            wait_ms = wait.as_millis() as u64,
            // `None` records no field, rather than an empty one.
            request_id = failure.error.request_id.as_deref(),
            "retrying LLM API request"
        ),
        Outcome::Transport(error) => tracing::warn!(
            provider = provider.name(),
            kind = if error.is_timeout() { "timeout" } else { "connect" },
            attempt,
            http.request.resend_count = attempt,
            wait_ms = wait.as_millis() as u64,
            "retrying LLM API request after a transport error"
        ),
    }
}

/// A failed response as the `Err` of [`error_for_status`](super::LlmRetryMiddlewareBuilder::error_for_status):
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
fn failed_response(failure: Failure, retryable: Option<bool>, stats: RetryStats) -> Response {
    let Failure { held, mut error } = failure;
    error.retryable = retryable.unwrap_or(error.retryable);
    error.attempts = stats.attempts;
    metrics::failed(error.provider, error.kind);
    tracing::debug!(
        provider = error.provider.name(),
        status = error.status.as_u16(),
        kind = error.kind.name(),
        attempts = stats.attempts,
        retryable = error.retryable,
        "LLM API request failed"
    );
    let mut response = held.into_response();
    let extensions = response.extensions_mut();
    extensions.insert(stats);
    extensions.insert(error);
    response
}
