//! Waiting for the pacer: how a request is held until its key's budget lets it go.

use std::time::Duration;

use crate::clock::Instant;

use super::{Gate, Key, Pacer, hold};
use crate::backoff::Timing;
use crate::metrics::{self, Cause};

/// Waits for the shared cooldown of `key`, within the time bounds, and
/// returns the send's sequence number.
///
/// A request held by the cooldown checks again when it ends, as often as
/// needed: sending it into a window that is still full would only spend one
/// of its attempts on a 429. What bounds the holding is time: the cooldown
/// waits of one attempt add up to at most `max_retry_after`, and none ends
/// past `max_elapsed`; beyond that the request is sent and the server decides.
async fn pace(pacer: &Pacer, key: &Key, timing: &Timing, started: Instant, waited: &mut Duration) -> u64 {
    let mut held = Duration::ZERO;
    loop {
        let wait = match pacer.shared_wait(key).await {
            Some(wait) => wait,
            None => match pacer.gate(key, Instant::now()) {
                Gate::Go(seq) => return seq,
                Gate::Wait(wait) => wait,
            },
        };
        let Some(wait) = hold(wait, held, started.elapsed(), timing, rand::random()) else {
            return pacer.force(key);
        };
        tracing::debug!(wait_ms = wait.as_millis() as u64, "waiting for the shared rate-limit cooldown");
        tokio::time::sleep(wait).await;
        metrics::waited(key.provider, Cause::RateLimit, wait);
        held = held.saturating_add(wait);
        *waited = waited.saturating_add(wait);
    }
}

/// The send's sequence number once the cooldown lets it go. Without a store
/// and without a cooldown this is one lock, taken synchronously: it runs
/// before every request. `now` is the time (the clock is not free).
pub(crate) async fn admit(
    pacer: &Pacer,
    key: &Key,
    timing: &Timing,
    (started, now): (Instant, Instant),
    waited: &mut Duration,
) -> u64 {
    if !pacer.has_store()
        && let Gate::Go(seq) = pacer.gate(key, now)
    {
        return seq;
    }
    // Boxed: the waiting machinery would otherwise make every request's future larger.
    Box::pin(pace(pacer, key, timing, started, waited)).await
}
