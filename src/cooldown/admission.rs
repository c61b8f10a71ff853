//! One attempt's way through the pacer: asked before each send, across its
//! waits, with what it costs and its place among the requests waiting for
//! tokens. Dropped (sent, or its future dropped mid-wait), it gives that place up.

use std::time::Duration;

use crate::clock::Instant;

use reqwest::Request;

use super::tokens::Ask;
use super::{Gate, Key, Pacer};

/// An attempt waiting to be sent under `key`'s pacing.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    pacer: &'a Pacer,
    key: &'a Key,
    ask: Ask<'a>,
}

impl<'a> Admission<'a> {
    /// The attempt that sends `request`, which first asked at `since` (a
    /// retry keeps its place before later requests); its body is read only
    /// if a token budget needs it.
    pub(crate) fn new(pacer: &'a Pacer, key: &'a Key, request: &'a Request, since: Instant) -> Self {
        Admission { pacer, key, ask: Ask::new(request.body().and_then(reqwest::Body::as_bytes), since) }
    }

    /// Go, or how long to wait first, by what this process knows.
    /// The provider whose limits these are.
    pub(crate) fn provider(&self) -> crate::provider::Provider {
        self.key.provider
    }

    pub(crate) fn gate(&mut self, now: Instant) -> Gate {
        self.pacer.gate(self.key, &mut self.ask, now)
    }

    /// The wait a store asks for, when there is one (see [`Pacer::shared_wait`]).
    pub(crate) async fn shared_wait(&mut self) -> Option<Duration> {
        self.pacer.shared_wait(self.key, &mut self.ask).await
    }

    /// Where this attempt goes among those its hold releases together, in
    /// `[0, 1)` (see [`hold`](super::hold)): a waiter for tokens by its place
    /// in line, the first exactly at the reset; any other at random.
    pub(crate) fn spread(&self) -> f64 {
        let place = self.ask.ticket.and_then(|ticket| self.pacer.place(self.key, ticket));
        place.map_or_else(rand::random, |(place, predicted)| {
            let apart = if predicted { PILOTED_APART } else { RELEASED_APART };
            (place as f64 / apart).min(0.99)
        })
    }

    /// Sends regardless of the budgets: the wait was too long to honour.
    pub(crate) fn force(&mut self) -> u64 {
        self.pacer.force(self.key, &mut self.ask)
    }
}

/// Waiters for tokens are released in line, this many to the hold's whole
/// spread (50 µs apart for a wait of a second or more): all of them before
/// the first has its answer, so that no request sent after that answer (a
/// task's next one, here or in another process) takes what they wait for,
/// and the one that has waited longest is not released last.
const RELEASED_APART: f64 = 1000.0;

/// At a reset this process predicts (no header tells it), 50 to the hold's
/// whole spread (1 ms apart for a wait of a second or more): the first goes
/// alone for as long as a refusal takes to come back, so that a prediction
/// gone early (a length measured a millisecond short, twenty windows on)
/// costs one 429, whose told end holds the others and corrects the length,
/// not one for every waiter.
const PILOTED_APART: f64 = 50.0;

impl Pacer {
    /// How many waiters for `key`'s tokens are ahead of the one holding
    /// `ticket`, if it waits in line, and whether the reset it waits for is
    /// this process's prediction.
    pub(super) fn place(&self, key: &Key, ticket: u64) -> Option<(usize, bool)> {
        let (place, predicted) = self.entries().get(&key.id)?.tokens.as_deref()?.place(ticket)?;
        // With a store, what releases waiters is the fleet's window, past its guard.
        Some((place, predicted && !self.has_store()))
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ask.ticket.take() {
            self.pacer.leave(self.key, ticket);
        }
    }
}
