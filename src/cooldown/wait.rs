//! Waiting for the pacer: how a request is held until its key's budgets let it go.

use std::time::Duration;

use reqwest::Request;

use super::{Admission, Gate, Key, Pacer, hold};
use crate::backoff::Timing;
use crate::clock::Instant;
use crate::metrics::{self, Cause};

/// Waits for the shared cooldown of `key`, within the time bounds, and
/// returns the send's sequence number.
///
/// A request held by the cooldown checks again when it ends, as often as
/// needed: sending it into a window that is still full would only spend one
/// of its attempts on a 429. What bounds the holding is time: the cooldown
/// waits of one attempt add up to at most `max_retry_after`, and none ends
/// past `max_elapsed`; beyond that the request is sent and the server decides.
pub(crate) async fn pace(
    mut admission: Admission<'_>,
    timing: &Timing,
    started: Instant,
    waited: &mut Duration,
) -> u64 {
    let mut held = Duration::ZERO;
    loop {
        let wait = match admission.shared_wait().await {
            Some(wait) => wait,
            None => match admission.gate(Instant::now()) {
                Gate::Go(seq) => return seq,
                Gate::Wait(wait) => wait,
            },
        };
        let Some(wait) = hold(wait, held, started.elapsed(), timing, admission.spread()) else {
            return admission.force();
        };
        tracing::debug!(wait_ms = wait.as_millis() as u64, "waiting for the shared rate-limit cooldown");
        tokio::time::sleep(wait).await;
        metrics::waited(admission.provider(), Cause::RateLimit, wait);
        held = held.saturating_add(wait);
        *waited = waited.saturating_add(wait);
    }
}

/// The send's sequence number when the cooldown lets `request` go now, else
/// its admission, for [`pace`] to hold. Without a store and without a
/// cooldown this is one lock, taken synchronously: it runs before every
/// request. `now` is the time (the clock is not free).
pub(crate) fn admit<'a>(
    pacer: &'a Pacer,
    key: &'a Key,
    request: &'a Request,
    (started, now): (Instant, Instant),
) -> Result<u64, Admission<'a>> {
    let mut admission = Admission::new(pacer, key, request, started);
    if !pacer.has_store()
        && let Gate::Go(seq) = admission.gate(now)
    {
        return Ok(seq);
    }
    Err(admission)
}
