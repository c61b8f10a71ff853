//! How long to wait before the next attempt, and whether there is one.
//!
//! The server's wait, when it gives one, is honoured exactly plus a small
//! jitter (so that every client told "1 s" does not return in the same
//! millisecond). Without one, exponential backoff from `base_delay`, doubled
//! per retry and capped at `max_delay`, with up to 25 % added jitter.
//! Overload (Anthropic 529, 503) starts at half of `base_delay` (0.5 s by
//! default), as the official SDKs do: a provider-wide overload is
//! coordinated by the outage state (`health`), which holds the other
//! requests and probes with one, so a longer backoff per request would only
//! add latency to the requests that meet an ordinary, independent fault.
//!
//! A server wait above `max_retry_after` is not slept at all: the error goes
//! back to the caller at once, still marked retryable, with the wait in
//! `retry_after`, so the caller decides (queue the job, switch model) instead
//! of a task frozen for an hour (openai/openai-node#1840).

use std::time::Duration;

use crate::defaults;
use crate::retry_after::secs_f64;

/// The timing knobs of the middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) max_retries: u32,
    pub(crate) base_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) max_retry_after: Duration,
    pub(crate) max_elapsed: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            max_retries: defaults::MAX_RETRIES,
            base_delay: defaults::BASE_DELAY,
            max_delay: defaults::MAX_DELAY,
            max_retry_after: defaults::MAX_RETRY_AFTER,
            max_elapsed: defaults::MAX_ELAPSED,
        }
    }
}

/// What is known after an attempt failed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    /// The classification's verdict, already overridden by `x-should-retry`.
    pub(crate) transient: bool,
    /// Whether the error is an overload (backoff from half the base).
    pub(crate) overloaded: bool,
    /// The wait the server asked for, if any (zero counts as none).
    pub(crate) server_wait: Option<Duration>,
    /// Retries already taken (0 after the first attempt).
    pub(crate) retries_taken: u32,
    /// Time since the first attempt started.
    pub(crate) elapsed: Duration,
    /// Whether the request can be sent again (its body could be cloned).
    pub(crate) can_resend: bool,
}

/// Retry after this long, or give the response to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Retry(Duration),
    Return { retryable: bool },
}

/// Decides, given a uniform random `jitter` in `[0, 1)`.
pub(crate) fn decide(timing: &Timing, attempt: Attempt, jitter: f64) -> Verdict {
    if !attempt.transient {
        return Verdict::Return { retryable: false };
    }
    let server_wait = attempt.server_wait.filter(|w| !w.is_zero());
    let give_up = Verdict::Return { retryable: true };
    if server_wait.is_some_and(|w| w > timing.max_retry_after)
        || attempt.retries_taken >= timing.max_retries
        || !attempt.can_resend
    {
        return give_up;
    }
    let delay = match server_wait {
        Some(wait) => server_delay(wait, jitter),
        None => {
            let base = if attempt.overloaded { timing.base_delay / 2 } else { timing.base_delay };
            backoff_delay(base, timing.max_delay, attempt.retries_taken, jitter)
        }
    };
    if attempt.elapsed.saturating_add(delay) > timing.max_elapsed {
        return give_up;
    }
    Verdict::Retry(delay)
}

/// The server's wait plus up to 10 % (at most 1 s) of jitter.
fn server_delay(wait: Duration, jitter: f64) -> Duration {
    wait.saturating_add(server_jitter(wait).mul_f64(jitter))
}

/// The most jitter added to a server's `wait`: 10 % of it, at most 1 s.
pub(crate) fn server_jitter(wait: Duration) -> Duration {
    (wait / 10).min(Duration::from_secs(1))
}

/// `base · 2^n` capped at `max`, plus up to 25 % jitter, never above `max`.
pub(crate) fn backoff_delay(base: Duration, max: Duration, n: u32, jitter: f64) -> Duration {
    let nominal = base.checked_mul(1u32 << n.min(31)).unwrap_or(max).min(max);
    let jittered = nominal.saturating_add(secs_f64(nominal.as_secs_f64() * 0.25 * jitter).unwrap_or_default());
    jittered.min(max.max(nominal))
}

/// How long a request's retries would take at most: its backoff schedule
/// from `base_delay` (no jitter), counting only the retries that would start
/// within `max_elapsed` (a retry whose wait would end past it is not made).
/// 15 s by default (1 + 2 + 4 + 8); zero when not even the first retry fits.
///
/// The bound on holding a request in an outage: held, it spends no attempt and
/// loads no server, so it may wait as long as its retries would have taken
/// for any transient error (a little less than the 30 s an overload's retries
/// took when they started one doubling later), but never longer.
pub(crate) fn retry_budget(timing: &Timing) -> Duration {
    // Past 40 doublings every step is the same: no loop over a huge `max_retries`.
    let doubling = timing.max_retries.min(40);
    let mut total = Duration::ZERO;
    for n in 0..doubling {
        match total.checked_add(backoff_delay(timing.base_delay, timing.max_delay, n, 0.0)) {
            Some(next) if next <= timing.max_elapsed => total = next,
            _ => return total,
        }
    }
    let steady = backoff_delay(timing.base_delay, timing.max_delay, 40, 0.0);
    let rest = repeated_within(steady, timing.max_retries - doubling, timing.max_elapsed.saturating_sub(total));
    total.saturating_add(rest)
}

/// `wait` repeated `times`, as many times as fit within `limit`.
pub(crate) fn repeated_within(wait: Duration, times: u32, limit: Duration) -> Duration {
    if wait.is_zero() {
        return Duration::ZERO;
    }
    let fit = (limit.as_nanos() / wait.as_nanos()).min(u128::from(times));
    // `fit · wait <= limit`, so it fits a `Duration`.
    wait.saturating_mul(u32::try_from(fit).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt() -> Attempt {
        Attempt {
            transient: true,
            overloaded: false,
            server_wait: None,
            retries_taken: 0,
            elapsed: Duration::ZERO,
            can_resend: true,
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_doubles_and_caps() {
        let (base, max) = (S(1), S(30));
        let waits: Vec<_> = (0..7).map(|n| backoff_delay(base, max, n, 0.0)).collect();
        assert_eq!(waits, [S(1), S(2), S(4), S(8), S(16), S(30), S(30)]);
        assert_eq!(backoff_delay(base, max, 1, 0.999), Duration::from_secs_f64(2.0 + 0.4995));
        assert_eq!(backoff_delay(base, max, 4, 0.999), S(20).min(Duration::from_secs_f64(16.0 * 1.24975)));
        assert_eq!(backoff_delay(base, max, 5, 0.999), S(30), "never above the cap");
        assert_eq!(backoff_delay(base, max, u32::MAX, 0.5), S(30), "no overflow");
    }

    #[test]
    fn server_wait_is_honoured_with_small_jitter() {
        let t = Timing::default();
        let v = decide(&t, Attempt { server_wait: Some(S(5)), ..attempt() }, 0.0);
        assert_eq!(v, Verdict::Retry(S(5)));
        let Verdict::Retry(d) = decide(&t, Attempt { server_wait: Some(S(5)), ..attempt() }, 0.999) else { panic!() };
        assert!(d >= S(5) && d < Duration::from_millis(5500));
        let Verdict::Retry(d) = decide(&t, Attempt { server_wait: Some(S(60)), ..attempt() }, 0.999) else { panic!() };
        assert!(d >= S(60) && d < S(61), "jitter at most 1 s");
    }

    #[test]
    fn zero_server_wait_falls_back_to_backoff() {
        let v = decide(&Timing::default(), Attempt { server_wait: Some(Duration::ZERO), ..attempt() }, 0.0);
        assert_eq!(v, Verdict::Retry(S(1)));
    }

    #[test]
    fn gives_up_without_sleeping() {
        let t = Timing::default();
        let cases = [
            (Attempt { transient: false, ..attempt() }, Verdict::Return { retryable: false }),
            (Attempt { server_wait: Some(S(61)), ..attempt() }, Verdict::Return { retryable: true }),
            (Attempt { retries_taken: 4, ..attempt() }, Verdict::Return { retryable: true }),
            (Attempt { can_resend: false, ..attempt() }, Verdict::Return { retryable: true }),
            (Attempt { elapsed: Duration::from_millis(299_001), ..attempt() }, Verdict::Return { retryable: true }),
        ];
        for (a, want) in cases {
            assert_eq!(decide(&t, a, 0.0), want, "{a:?}");
        }
        assert_eq!(decide(&t, Attempt { server_wait: Some(S(60)), ..attempt() }, 0.0), Verdict::Retry(S(60)));
        assert_eq!(
            decide(&t, Attempt { elapsed: S(299), ..attempt() }, 0.0),
            Verdict::Retry(S(1)),
            "ends exactly at max_elapsed"
        );
    }

    #[test]
    fn overload_backs_off_from_half_the_base() {
        let t = Timing::default();
        let overloaded = |retries_taken| Attempt { overloaded: true, retries_taken, ..attempt() };
        let waits: Vec<_> = (0..4).map(|n| decide(&t, overloaded(n), 0.0)).collect();
        let ms = |ms| Verdict::Retry(Duration::from_millis(ms));
        assert_eq!(waits, [ms(500), ms(1000), ms(2000), ms(4000)], "as the SDKs: 0.5, 1, 2, 4 s");
    }

    #[test]
    fn retry_budget_is_the_whole_schedule_within_max_elapsed() {
        assert_eq!(retry_budget(&Timing::default()), S(15));
        let short = Timing { max_elapsed: S(10), ..Timing::default() };
        assert_eq!(retry_budget(&short), S(7), "1 + 2 + 4: the fourth retry would start past 10 s");
        let absurd = Timing { base_delay: Duration::MAX, max_delay: Duration::MAX, ..Timing::default() };
        assert_eq!(retry_budget(&absurd), Duration::ZERO, "no retry would be made at all");
        let steady = Timing { max_retries: 1000, max_delay: S(2), max_elapsed: S(101), ..Timing::default() };
        assert_eq!(retry_budget(&steady), S(101), "1 + 2 + 2 + … within 101 s");
        let none = Timing { max_retries: 0, ..Timing::default() };
        assert_eq!(retry_budget(&none), Duration::ZERO);
        let huge = Timing { max_retries: u32::MAX, max_elapsed: Duration::MAX, ..Timing::default() };
        assert!(retry_budget(&huge) > S(1_000_000), "no overflow, no long loop");
    }
}
