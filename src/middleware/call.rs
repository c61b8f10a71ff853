//! One call through the middleware: what it carries from attempt to attempt,
//! and the steps the loop takes with it before a request goes out.

use std::time::Duration;

use crate::clock::Instant;
use reqwest::Request;

use super::chain::{Rerouting, rerouting};
use super::config::Config;
use super::outcome::{Admission, Failure};
use crate::cooldown::{self, Key, Pacer};
use crate::error::RetryStats;
use crate::health::Ticket;
use crate::metrics::{self, PendingRetry};
use crate::provider::Provider;
use crate::redact::Secrets;
use crate::upload::{PATIENCE, buffer};

/// The state of one call, across its attempts.
pub(super) struct Call<'a> {
    pub(super) config: &'a Config,
    pub(super) provider: Provider,
    pub(super) started: Instant,
    /// Requests sent so far, the one in flight included.
    pub(super) attempts: u32,
    /// Time spent waiting: backoff, pacing and outage holds.
    pub(super) waited: Duration,
    /// The key's pacer, when pacing is on.
    pub(super) pacing: Option<(&'a Pacer, Key)>,
    /// The call's place in its host's health: only for a host that has failed before.
    pub(super) ticket: Option<Ticket>,
    /// The last failed response, kept while an outage may hold the call (boxed: rare).
    pub(super) last: Option<Box<Failure>>,
    /// The model chain of a request whose model has a fallback (boxed: rare).
    pub(super) rerouting: Option<Box<Rerouting<'a>>>,
    /// `attempts` when the current model's retry schedule began.
    pub(super) schedule_from: u32,
    /// The retry decided, counted when it is sent.
    pub(super) retry: PendingRetry,
}

/// One attempt: its number, the copy to send next, and what it knows of itself.
pub(super) struct Attempt {
    /// Retries taken before this attempt (0 for the first).
    pub(super) retries_taken: u32,
    /// The copy to send if this attempt fails; `None` when there is no retry
    /// left or the body cannot be sent twice.
    pub(super) pending: Option<Request>,
    /// The credentials of the request sent, when there is no copy to read them from.
    pub(super) sent_secrets: Option<Secrets>,
    /// The pacer's sequence number for this send.
    pub(super) seq: u64,
}

impl<'a> Call<'a> {
    /// The call as it begins, its clock started; [`route`](Self::route) gives it its place.
    pub(super) fn start(config: &'a Config, provider: Provider, request: &Request) -> Self {
        let pacing = config.pacer.as_deref().map(|pacer| (pacer, Key::of(provider, request, pacer.has_store())));
        Call {
            config,
            provider,
            started: Instant::now(),
            attempts: 0,
            waited: Duration::ZERO,
            pacing,
            ticket: None,
            last: None,
            rerouting: None,
            schedule_from: 0,
            retry: PendingRetry::default(),
        }
    }

    /// Reads a streamed upload of known size into memory, once, before its
    /// first attempt, so that it can be resent (`upload`), to the same model
    /// or to a fallback; any other streaming body cannot be cloned, and is
    /// sent once.
    pub(super) async fn buffer_upload(&self, request: &mut Request) {
        let streamed = request.body().is_some_and(|body| body.as_bytes().is_none());
        let resendable = self.config.timing.max_retries > 0 || !self.config.fallbacks.is_empty();
        if streamed && resendable {
            // Boxed, and nothing held across the wait: every request's future would grow.
            Box::pin(buffer(request, self.config.upload_buffer_limit, PATIENCE)).await;
        }
    }

    /// The request's model chain and its place in its host's health, once
    /// its body is in memory: a chain reads the model from the body, and
    /// keeps a copy of the request to rewrite.
    pub(super) fn route(&mut self, request: &Request) {
        self.rerouting = rerouting(self.config, self.provider, request);
        let model = self.rerouting.as_ref().map(|r| r.model());
        self.ticket = self.config.health.as_ref().and_then(|health| health.ticket(request.url(), model));
    }

    /// Makes the copy to resend before `request` is consumed, while a retry is left.
    pub(super) fn prepare(&mut self, request: &Request) -> Attempt {
        let retries_taken = self.attempts - self.schedule_from;
        let pending = (retries_taken < self.config.timing.max_retries).then(|| request.try_clone()).flatten();
        let sent_secrets = pending.is_none().then(|| Secrets::of(request));
        Attempt { retries_taken, pending, sent_secrets, seq: 0 }
    }

    /// Waits for the host's outage and the key's pacing to let the attempt go,
    /// and counts it as sent.
    pub(super) async fn admit(&mut self, attempt: &mut Attempt, request: &Request) -> Admission {
        let timing = &self.config.timing;
        let patient = !self.can_fall_back();
        if let Some(ticket) = &mut self.ticket
            && let Err(held) = Box::pin(ticket.admit(timing, self.started, &mut self.waited, patient)).await
        {
            return Admission::Held(held);
        }
        if let Some((pacer, key)) = &self.pacing {
            // Before the first attempt `started` is now: the clock is not free.
            let now = if attempt.retries_taken == 0 { self.started } else { Instant::now() };
            attempt.seq = match cooldown::admit(pacer, key, request, (self.started, now)) {
                Ok(seq) => seq,
                // Boxed: the waiting machinery would otherwise make every request's future larger.
                Err(admission) => Box::pin(cooldown::pace(admission, timing, self.started, &mut self.waited)).await,
            };
        }
        self.attempts += 1;
        metrics::sending(self.provider, &mut self.retry);
        Admission::Send
    }

    /// Sleeps before the next attempt.
    pub(super) async fn wait(&mut self, wait: Duration) {
        Box::pin(tokio::time::sleep(wait)).await;
        self.waited = self.waited.saturating_add(wait);
    }

    pub(super) fn stats(&self) -> RetryStats {
        RetryStats { attempts: self.attempts, waited: self.waited }
    }

    /// The pacer, key and sequence number of an attempt, for what its response teaches.
    pub(super) fn pacing_of(&self, attempt: &Attempt) -> Option<(&'a Pacer, &Key, u64)> {
        self.pacing.as_ref().map(|(pacer, key)| (*pacer, key, attempt.seq))
    }
}
