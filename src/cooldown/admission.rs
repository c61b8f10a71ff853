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

    /// Sends regardless of the budgets: the wait was too long to honour.
    pub(crate) fn force(&mut self) -> u64 {
        self.pacer.force(self.key, &mut self.ask)
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ask.ticket.take() {
            self.pacer.leave(self.key, ticket);
        }
    }
}
