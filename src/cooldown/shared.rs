//! Asking a fleet's store before a send: what the send spends of its key's
//! shared windows, one request and its estimated tokens, in one store call.
//!
//! This process's own token budgets are asked first: a send that does not
//! fit what this process knows waits in its place without a round trip (what
//! a server last said was left, less this process's sends since, is never
//! less than what the fleet has left). One that fits asks the store, which
//! counts every process's sends; if the store refuses, the request keeps its
//! place among this process's waiters, as when a cooldown holds it.
//!
//! Fair order across a fleet is what is cheap: within a process, requests
//! go in the order they came (the local queue); across processes, whoever
//! asks first once a window opens. A fleet-wide queue would cost a store
//! round trip per waiter per wake-up.

use std::time::{Duration, SystemTime};

use super::tokens::{self, Ask, Known};
use super::{Entry, Key, Pacer};
use crate::clock::Instant;
use crate::store::{Spend, TokenSpend, Window};

impl Pacer {
    /// The wait the store asks for, when there is a store: a cooldown for
    /// `key`, or the end of a window the fleet has spent (requests or
    /// tokens), or of a token budget this process knows to be short. Spends
    /// one request and the request's tokens of the shared windows otherwise.
    pub(crate) async fn shared_wait(&self, key: &Key, ask: &mut Ask<'_>) -> Option<Duration> {
        let (store, text) = (self.store.as_ref()?, key.text()?);
        let spend = match self.spend_of(key, ask, (Instant::now(), SystemTime::now())) {
            Ok(spend) => spend,
            Err(wait) => return Some(wait),
        };
        let until = store.spend(text, spend).await?;
        ask.refused();
        if let Some(tokens) = self.entries().get_mut(&key.id).and_then(|entry| entry.tokens.as_deref_mut()) {
            tokens.hold_place(ask, true);
        }
        // An answer that passed during the round trip is still a "wait": going now would
        // send uncounted, just as the window opens; asking again spends.
        Some(until.duration_since(SystemTime::now()).unwrap_or_default().max(Duration::from_millis(1)))
    }

    /// Tells the store about a cooldown of `wait` from now, set by a
    /// response; and, when this process knows a token window (a 429 names
    /// its limit, what is used and its end), that window too: the cooldown
    /// holds every sender until then, so no send would carry it to the fleet
    /// before the window it describes is over.
    pub(crate) async fn publish(&self, key: &Key, wait: Duration) {
        let (Some(store), Some(text)) = (self.store.as_ref(), key.text()) else { return };
        let Some(until) = SystemTime::now().checked_add(wait) else { return };
        store.extend(text, until).await;
        if let Some(known) = self.token_windows(key, (Instant::now(), SystemTime::now())) {
            store.spend(text, known).await;
        }
    }

    /// The token windows this process knows for `key`, as a [`Spend`] that spends nothing.
    fn token_windows(&self, key: &Key, now: (Instant, SystemTime)) -> Option<Spend> {
        let mut entries = self.entries();
        let tokens = entries.get_mut(&key.id)?.tokens.as_deref_mut()?;
        let [tokens, input_tokens, output_tokens] =
            tokens.known(now.0).map(|known| Some(TokenSpend::new(0, Some(wall_window(known?, now)?))));
        let spend = Spend { tokens, input_tokens, output_tokens, ..Spend::telling() };
        (spend != Spend::telling()).then_some(spend)
    }

    /// What the send asks of the store, from what this process knows (`now`
    /// on both clocks); `Err(wait)` when it does not fit this process's own
    /// token budgets.
    fn spend_of(&self, key: &Key, ask: &mut Ask<'_>, now: (Instant, SystemTime)) -> Result<Spend, Duration> {
        let mut entries = self.entries();
        let entry = entries.get_mut(&key.id);
        let requests = entry.as_deref().and_then(|entry| request_window(entry, now.0));
        let requests = requests
            .and_then(|(limit, (end, told), length)| wall_window(Known { end, told, length, limit, used: None }, now));
        let (tokens, next_seq) = match entry {
            Some(entry) => (entry.tokens.as_deref_mut(), entry.budget.next_seq),
            None => (None, 1),
        };
        let parts = tokens::for_store(tokens, ask, (key.provider, next_seq), now.0)?;
        let [tokens, input_tokens, output_tokens] = parts.map(|part| {
            part.map(|(cost, known)| TokenSpend::new(cost, known.and_then(|known| wall_window(known, now))))
        });
        Ok(Spend { requests, tokens, input_tokens, output_tokens, ..Spend::default() })
    }
}

/// The requests the current window admits, its end (and whether a server
/// told it) and its length, when known: from rate-limit headers, or learned.
fn request_window(entry: &Entry, now: Instant) -> Option<(u64, (Instant, bool), Option<Duration>)> {
    let learner = &entry.learner;
    if !entry.counted {
        return Some((learner.capacity_at(now)?, learner.end_at(now)?, learner.length()));
    }
    let limit = entry.budget.limit?;
    let told = entry.budget.reset_at.filter(|end| *end > now).map(|end| (end, true));
    Some((limit, told.or_else(|| learner.end_at(now))?, learner.length()))
}

/// A window this process knows, on the wall clock a store shares.
fn wall_window(known: Known, (now, wall): (Instant, SystemTime)) -> Option<Window> {
    let window = Window::new(wall.checked_add(known.end.saturating_duration_since(now))?, known.limit);
    let window = if known.told { window.as_told() } else { window };
    let window = known.length.map_or(window, |length| window.with_length(length));
    Some(known.used.map_or(window, |used| window.with_used(used)))
}
