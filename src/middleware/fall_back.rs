//! The fall-back step: a request for a model with a fallback whose failure is
//! transient is sent again, naming the next model, with retries of its own.

use std::time::Duration;

use reqwest::Response;

use super::call::Call;
use super::outcome::{Outcome, Step};
use crate::clock::Instant;
use crate::error::LlmApiError;
use crate::fallback::{self, ModelFallback, event, trigger};
use crate::health::{Held, Ticket};
use crate::kind::ErrorKind;
use crate::metrics::PendingRetry;

impl Call<'_> {
    /// The model the request now names, when it is on a chain: the key of its health.
    pub(super) fn model(&self) -> Option<&str> {
        self.rerouting.as_ref().map(|rerouting| rerouting.model())
    }

    /// Whether a model is left to fall back to: such a request is not held by an outage.
    pub(super) fn can_fall_back(&self) -> bool {
        self.rerouting
            .as_ref()
            .is_some_and(|r| self.config.fallbacks.next(r.chain.current(), r.chain.tried()).is_some())
    }

    /// After a failure that is not retried: the next model's request, when the
    /// failure is transient and the chain goes on.
    pub(super) fn fall_back_after(&mut self, outcome: &Outcome, retryable: Option<bool>) -> Option<Step> {
        self.rerouting.as_ref()?;
        let (transient, error) = match outcome {
            Outcome::Answered(failure) => {
                let retryable = retryable.unwrap_or(failure.error.retryable);
                (trigger::after_response(failure.error.kind, retryable), Some(&failure.error))
            }
            Outcome::Transport(error) => (trigger::after_transport(error.is_timeout()), None),
        };
        if !transient {
            return None;
        }
        let (kind, primary) = match error {
            Some(error) => (error.kind, Some(self.final_error(error.clone()))),
            None => (ErrorKind::Timeout, None),
        };
        self.fall_back(kind, primary)
    }

    /// After a failure that would be retried, on a model in an outage: the
    /// next model at once. The retry would only be held and sent on, after a
    /// backoff for nothing, or be the outage's probe again, the caller's
    /// latency spent on probing a model that is down.
    pub(super) fn fall_back_in_outage(&mut self, outcome: &Outcome) -> Option<Step> {
        self.rerouting.as_ref()?;
        if !self.ticket.as_ref().is_some_and(Ticket::in_outage) || !self.can_fall_back() {
            return None;
        }
        self.fall_back_after(outcome, None)
    }

    /// Held by the outage of its model: the next model at once, when there is one.
    pub(super) fn fall_back_when_held(&mut self, held: Held) -> Option<Step> {
        if !self.can_fall_back() {
            return None;
        }
        let primary = match &self.last {
            Some(failure) => self.final_error(failure.error.clone()),
            None => crate::health::held_error(self.provider, held, self.attempts),
        };
        self.fall_back(ErrorKind::Overloaded, Some(primary))
    }

    #[cold]
    fn fall_back(&mut self, kind: ErrorKind, primary: Option<LlmApiError>) -> Option<Step> {
        let provider = self.provider;
        let rerouting = self.rerouting.as_deref_mut()?;
        let from = rerouting.chain.current();
        let to = self.config.fallbacks.next(from, rerouting.chain.tried())?;
        let request = match fallback::locate(provider, &rerouting.source).and_then(|located| located.rewrite(to)) {
            Ok(request) => request,
            Err(refusal) => {
                event::not_falling_back(provider, from, refusal);
                return None;
            }
        };
        rerouting.chain.advance();
        if from == rerouting.chain.requested() {
            rerouting.primary_error = primary;
        }
        event::falling_back(provider, from, to, kind);
        crate::metrics::fell_back(provider, from, to);
        // The next model's own retry schedule, and its own health.
        self.started = Instant::now();
        self.schedule_from = self.attempts;
        self.last = None;
        // The retry it was waiting to send on this model is not sent: the fallback is.
        self.retry = PendingRetry::default();
        self.ticket = self.config.health.as_ref().and_then(|health| health.ticket(request.url(), Some(to)));
        Some(Step::Retry { wait: Duration::ZERO, request })
    }

    /// The error as the caller would have got it from this model.
    fn final_error(&self, mut error: LlmApiError) -> LlmApiError {
        error.attempts = self.attempts;
        error
    }

    /// What the caller is told of a fallback taken: nothing when the request stayed on its model.
    pub(super) fn fallback_taken(&self) -> Option<ModelFallback> {
        let rerouting = self.rerouting.as_deref().filter(|r| r.chain.tried().len() > 1)?;
        Some(ModelFallback::of(&rerouting.chain, rerouting.primary_error.clone()))
    }

    /// Tells a response that came from a fallback model so.
    pub(super) fn mark_fallback(&self, response: &mut Response) {
        if let Some(taken) = self.fallback_taken() {
            if let Some(error) = response.extensions_mut().get_mut::<LlmApiError>() {
                error.set_fallback(taken.clone());
            }
            response.extensions_mut().insert(taken);
        }
    }
}
