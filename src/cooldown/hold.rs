//! How long a request may be held before it is sent: the pacer's wait, spread
//! a little, within the retry bounds.

use std::time::Duration;

use crate::backoff::Timing;

/// The hold for a pacer's `wait`, with `spread` (in `[0, 1)`) of a little
/// extra so that the requests released together do not land in the same
/// millisecond; `None` when it would take this attempt's holds (`held` so
/// far) past `max_retry_after`, or the request (`elapsed` since its start)
/// past `max_elapsed`: then the request is sent and the server decides.
pub(crate) fn hold(
    wait: Duration,
    held: Duration,
    elapsed: Duration,
    timing: &Timing,
    spread: f64,
) -> Option<Duration> {
    let extra = (wait / 20).min(Duration::from_millis(50)).mul_f64(spread.clamp(0.0, 1.0));
    let wait = wait.saturating_add(extra);
    let within =
        held.saturating_add(wait) <= timing.max_retry_after && elapsed.saturating_add(wait) <= timing.max_elapsed;
    within.then_some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn timing(max_retry_after: u64, max_elapsed: u64) -> Timing {
        Timing {
            max_retry_after: Duration::from_millis(max_retry_after),
            max_elapsed: Duration::from_millis(max_elapsed),
            ..Timing::default()
        }
    }

    proptest! {
        /// Whatever the pacer asks, one attempt's holds add up to at most
        /// `max_retry_after`, and none ends past `max_elapsed`.
        #[test]
        fn no_hold_goes_past_the_bounds(
            waits in proptest::collection::vec(0u64..5_000_000, 1..40),
            spreads in proptest::collection::vec(0.0f64..1.0, 40),
            started_ms in 0u64..400_000,
            max_retry_after in 0u64..120_000,
            max_elapsed in 0u64..600_000,
        ) {
            let timing = timing(max_retry_after, max_elapsed);
            let (mut held, mut elapsed) = (Duration::ZERO, Duration::from_millis(started_ms));
            for (wait, spread) in waits.iter().zip(&spreads) {
                let wait = Duration::from_micros(*wait);
                let Some(hold) = hold(wait, held, elapsed, &timing, *spread) else { break };
                prop_assert!(hold >= wait, "never shorter than asked");
                held += hold;
                elapsed += hold;
                prop_assert!(held <= timing.max_retry_after);
                prop_assert!(elapsed <= timing.max_elapsed);
            }
        }
    }

    #[test]
    fn a_hold_within_the_bounds_is_the_wait_and_a_little() {
        let timing = timing(60_000, 300_000);
        let hold = hold(Duration::from_millis(200), Duration::ZERO, Duration::ZERO, &timing, 0.5).unwrap();
        assert!(hold >= Duration::from_millis(200) && hold <= Duration::from_millis(210), "{hold:?}");
        let too_long = Duration::from_millis(60_001);
        assert_eq!(super::hold(too_long, Duration::ZERO, Duration::ZERO, &timing, 0.0), None);
        let late = Duration::from_millis(299_900);
        assert_eq!(super::hold(Duration::from_millis(200), Duration::ZERO, late, &timing, 0.0), None);
    }
}
