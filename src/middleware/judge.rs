//! Judging an attempt: a success is finished for the caller; an error status,
//! an error event at a stream's start or a transport error is read, classified
//! and given a verdict, and what it says of the rate limits and the host's
//! health is reported.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use crate::clock::Instant;
use http::StatusCode;
use reqwest::{Request, Response};

use super::call::{Attempt, Call};
use super::config::Config;
use super::outcome::{Failure, Judged, Outcome};
use super::respond::succeeded;
use crate::backoff::{self, Verdict, decide};
use crate::body::HeldResponse;
use crate::cooldown::{Key, Pacer, limit_in_message, too_large};
use crate::diagnose::diagnose;
use crate::error::RetryStats;
use crate::health::{self, Report};
use crate::kind::ErrorKind;
use crate::metrics;
use crate::provider::Provider;
use crate::rate_limits::RateLimits;
use crate::redact::Secrets;
use crate::stream::{self, Start, StreamFormat};

/// An attempt judged now, or once its body is read.
pub(super) enum Judging<'a> {
    Now(Judged),
    Later(Pin<Box<dyn Future<Output = Judged> + Send + 'a>>),
}

/// What judging one attempt's failure needs to know of it.
struct Context<'a> {
    config: &'a Config,
    provider: Provider,
    retries_taken: u32,
    started: Instant,
    /// The copy to send next, when there is one.
    pending: Option<&'a Request>,
    /// The credentials of the request sent, when there is no copy to read them from.
    sent_secrets: Option<Secrets>,
    pacing: Option<(&'a Pacer, &'a Key, u64)>,
}

impl Context<'_> {
    /// The credentials to keep out of the error, read only once an error needs them.
    fn secrets(&mut self) -> Secrets {
        self.sent_secrets.take().unwrap_or_else(|| self.pending.map(Secrets::of).unwrap_or_default())
    }
}

impl<'a> Call<'a> {
    /// Judges what the attempt got back: at once for a success or a transport
    /// error; a body to read first comes back as a future to await, boxed
    /// (reading and parsing would otherwise make every request's future
    /// several kilobytes larger), and so does a success a store must hear of.
    pub(super) fn judge<'s>(
        &'s self,
        sent: reqwest_middleware::Result<Response>,
        attempt: &'s mut Attempt,
    ) -> Judging<'s> {
        match sent {
            Ok(mut response) if !is_error(response.status()) => {
                let stats = self.stats();
                let Some(format) = self.config.stream_format(self.provider, &response) else {
                    // The response is finished in place: moved, it would be copied twice.
                    return match succeeded(self.provider, &mut response, stats, self.pacing_of(attempt)) {
                        None => Judging::Now(Judged::Success(response)),
                        Some(publish) => Judging::Later(Box::pin(async move {
                            publish.tell().await;
                            Judged::Success(response)
                        })),
                    };
                };
                Judging::Later(Box::pin(screen(response, format, self.context(attempt), stats)))
            }
            Ok(response) => Judging::Later(Box::pin(read_error(response, self.context(attempt)))),
            Err(error) => {
                Judging::Now(Judged::Failed(self.transport_verdict(&error, attempt), Outcome::Transport(error)))
            }
        }
    }

    fn context<'s>(&'s self, attempt: &'s mut Attempt) -> Context<'s> {
        Context {
            config: self.config,
            provider: self.provider,
            retries_taken: attempt.retries_taken,
            started: self.started,
            sent_secrets: attempt.sent_secrets.take(),
            pacing: self.pacing_of(attempt),
            pending: attempt.pending.as_ref(),
        }
    }

    /// Reports a judged attempt to its host's health.
    pub(super) fn report(&mut self, mut judged: Judged) -> Judged {
        match &mut judged {
            Judged::Success(response) => {
                self.answered();
                if self.rerouting.is_some() {
                    self.mark_fallback(response);
                }
            }
            Judged::Failed(_, outcome) => self.failed(outcome),
        }
        judged
    }

    fn answered(&mut self) {
        if let Some(ticket) = &mut self.ticket {
            ticket.report(Report::Answered, None, self.config.timing.base_delay);
        }
    }

    /// Reports a failed attempt to its host's health, the host tracked from now on when it was not.
    #[cold]
    fn failed(&mut self, outcome: &Outcome) {
        let Some(health) = &self.config.health else { return };
        let (report, server_wait, url) = match outcome {
            Outcome::Answered(failure) => {
                (health::judge(failure.error.status, failure.error.kind), failure.error.retry_after, failure.held.url())
            }
            Outcome::Transport(error) if error.is_connect() || error.is_timeout() => match error.url() {
                Some(url) => (Report::Failed, None, url),
                None => return,
            },
            Outcome::Transport(_) => return,
        };
        if self.ticket.is_none() && report == Report::Failed {
            self.ticket = health.ticket_after_failure(url, self.model(), self.provider);
        }
        if let Some(ticket) = &mut self.ticket {
            ticket.report(report, server_wait, self.config.timing.base_delay);
        }
    }

    /// Whether to retry after a transport error: connect errors and timeouts only.
    #[cold]
    fn transport_verdict(&self, error: &reqwest_middleware::Error, attempt: &Attempt) -> Verdict {
        let facts = backoff::Attempt {
            transient: error.is_connect() || error.is_timeout(),
            overloaded: false,
            server_wait: None,
            retries_taken: attempt.retries_taken,
            elapsed: self.started.elapsed(),
            can_resend: attempt.pending.is_some(),
        };
        decide(&self.config.timing, facts, rand::random())
    }
}

/// Whether a status carries an error to parse; 1xx–3xx pass through untouched.
fn is_error(status: StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

/// Reads and judges a 4xx/5xx response.
async fn read_error(response: Response, at: Context<'_>) -> Judged {
    let config = at.config;
    let held = HeldResponse::read(response, config.error_body_limit, config.error_body_timeout).await;
    let body = held.prefix(config.error_body_limit);
    let status = held.status();
    conclude(held, status, &body, at).await
}

/// Holds the start of a stream: the success, finished, when output came
/// first; an error event there is judged as the same error sent as a status.
async fn screen(response: Response, format: &StreamFormat, at: Context<'_>, stats: RetryStats) -> Judged {
    let hold = at.config.stream_hold;
    match stream::hold(response, format, hold.limit, hold.patience).await {
        Start::Clean(mut response) => {
            if let Some(publish) = succeeded(at.provider, &mut response, stats, at.pacing) {
                publish.tell().await;
            }
            Judged::Success(response)
        }
        Start::Failed(held, error) => {
            tracing::debug!(
                provider = at.provider.name(),
                status = error.status.as_u16(),
                "error event before the first output of a stream"
            );
            conclude(held, error.status, &error.body, at).await
        }
    }
}

/// Classifies an error, decides whether and when to retry, and feeds a
/// rate limit to the pacer.
async fn conclude(held: HeldResponse, status: StatusCode, body: &[u8], mut at: Context<'_>) -> Judged {
    let config = at.config;
    let now = SystemTime::now();
    let secrets = at.secrets();
    let mut error = diagnose(at.provider, status, held.headers(), body, &config.rules, &secrets, now);
    let facts = backoff::Attempt {
        transient: error.retryable,
        overloaded: error.kind == ErrorKind::Overloaded,
        server_wait: error.retry_after,
        retries_taken: at.retries_taken,
        elapsed: at.started.elapsed(),
        can_resend: at.pending.is_some(),
    };
    let mut verdict = decide(&config.timing, facts, rand::random());
    let limits = RateLimits::from_headers(held.headers(), now);
    metrics::rate_limits(at.provider, held.url(), limits.as_ref());
    if let Some((pacer, key, seq)) = at.pacing {
        // Only a rate limit is about this key; overload is everyone's.
        let cooled = (error.kind == ErrorKind::RateLimited).then_some(error.retry_after).flatten();
        let said_limit = cooled.and_then(|_| limit_in_message(&error.message));
        // Larger than the whole token limit: no retry can help, and the window is not spent.
        let body = at.pending.and_then(|request| request.body()?.as_bytes());
        let too_large = too_large(at.provider, said_limit, body);
        let (cooled, said_limit) = if too_large { (None, None) } else { (cooled, said_limit) };
        if let Some(wait) = pacer.observe(key, seq, limits.as_ref(), (cooled, said_limit), Instant::now()) {
            pacer.publish(key, wait).await;
        }
        if too_large {
            (error.kind, error.retryable, verdict) =
                (ErrorKind::RequestTooLarge, false, Verdict::Return { retryable: false });
        }
    }
    Judged::Failed(verdict, Outcome::Answered(Box::new(Failure { held, error })))
}
