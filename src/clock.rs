//! The one clock everything that times uses: tokio's, so that a test with a
//! paused clock (`tokio::time::pause`) controls every bound, wait, pacing
//! window and outage hold at once; outside a paused runtime it is the system's
//! monotonic clock.
//!
//! Deadlines are computed with [`later`] (and wall-clock times, which the
//! shared stores keep, with [`wall_later`]), which saturate: a bound built from
//! an absurd setting (`Duration::MAX`) or a hostile server wait is "never",
//! not a panic.

use std::time::{Duration, SystemTime};

pub(crate) use tokio::time::Instant;

/// About a century: "never", for a deadline that would not fit the clock.
pub(crate) const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + by`, or the furthest instant the clock holds near it when that overflows.
pub(crate) fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by).or_else(|| at.checked_add(NEVER)).unwrap_or(at)
}

/// [`later`] on the wall clock: `at + by`, saturating the same way.
pub(crate) fn wall_later(at: SystemTime, by: Duration) -> SystemTime {
    at.checked_add(by).or_else(|| at.checked_add(NEVER)).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_saturates_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::from_secs(1)), now + Duration::from_secs(1));
        assert!(later(now, Duration::MAX) > now + Duration::from_secs(3600 * 24 * 365));
        let wall = SystemTime::now();
        assert_eq!(wall_later(wall, Duration::from_secs(1)), wall + Duration::from_secs(1));
        assert_eq!(wall_later(wall, Duration::MAX), wall + NEVER);
    }
}
