//! One token limit of one key: what is left of its window, and when it resets.
//!
//! What is left is what a server last said ("`remaining` after the send
//! numbered `seq`"), less what this process has sent since: the tokens this
//! process spent up to that send are its `mark`, so the sends after it are
//! `sent − mark`, whatever order the responses come back in. The server's
//! figure comes from a header on every response, or, where there is none,
//! from a 429's message ("Limit 40000, Used 38112"). Past the reset the
//! window opens whole again.
//!
//! When the next reset is not known (a window rolled and no response has
//! said yet), headers soon tell it; without headers, two ends a 429 told
//! give the window's length, and the ends after them are predicted.

use std::time::Duration;

use crate::clock::Instant;

/// Two told ends closer than this are the same window's.
const SAME_END: Duration = Duration::from_millis(20);

/// One token limit's window, as this process knows it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Window {
    /// The window's size, told by a header or a 429's message.
    pub(super) limit: Option<u64>,
    /// What the server said was left after a send, and this process's spend
    /// up to and including that send.
    remaining: Option<u64>,
    mark: u64,
    /// Sends numbered below this went in a window that has ended.
    floor: u64,
    /// When the window resets, if known.
    pub(super) reset_at: Option<Instant>,
    /// Whether a server told `reset_at` (rather than this process predicting it).
    told: bool,
    /// Whether headers state this limit: then each response tells the reset.
    pub(super) headers: bool,
    /// Taken off what a header says is left: its rounding (Anthropic: to the nearest thousand).
    slack: u64,
    ends: Ends,
}

impl Window {
    /// A window whose header figures are rounded to within `slack`.
    pub(super) fn with_slack(slack: u64) -> Window {
        Window { slack, ..Window::default() }
    }

    /// Tokens left for sends after everything this process spent up to `sent`; `None` when unknown.
    pub(super) fn left(&self, sent: u64) -> Option<u64> {
        let since = sent.saturating_sub(self.mark);
        let slack = if self.headers { self.slack } else { 0 };
        Some(self.remaining?.saturating_sub(since).saturating_sub(slack))
    }

    /// Past the reset, the window opens whole again: the sends after `last_seq`
    /// (spent beyond `sent`) count against it. The next reset is predicted
    /// where no header will tell it.
    pub(super) fn roll(&mut self, now: Instant, sent: u64, last_seq: u64) {
        if self.reset_at.is_none_or(|reset_at| now < reset_at) {
            return;
        }
        self.remaining = self.limit;
        self.mark = sent;
        self.floor = last_seq + 1;
        self.reset_at = if self.headers { None } else { self.ends.next_after(now) };
        self.told = false;
    }

    /// Whether its reset is this process's prediction (no header, no 429 told it).
    pub(super) fn predicted(&self) -> bool {
        !self.headers && !self.told && self.reset_at.is_some()
    }

    /// The window as a store is told of it, after everything this process
    /// spent up to `sent`: its end (told, or predicted), its limit, its length
    /// when measured, and what is used of it (the limit less what is left);
    /// `None` while the limit or the end is unknown.
    pub(super) fn known(&self, sent: u64, now: Instant) -> Option<Known> {
        let limit = self.limit?;
        let (end, told) = match self.reset_at {
            Some(reset_at) => (reset_at, self.told),
            None => (self.ends.next_after(now)?, false),
        };
        let used = self.left(sent).map(|left| limit.saturating_sub(left));
        Some(Known { end, told, length: self.ends.length, limit, used })
    }

    /// A header's figures after the send `seq`, this process having spent
    /// `mark` up to it: `remaining` left, the window resetting in `reset`.
    pub(super) fn read(
        &mut self,
        (seq, mark): (u64, u64),
        limit: Option<u64>,
        remaining: u64,
        reset: Duration,
        now: Instant,
    ) {
        self.headers = true;
        self.limit = limit.or(self.limit);
        let Some(end) = now.checked_add(reset) else { return };
        self.ends.told(end, reset);
        self.take((seq, mark), remaining, Some(end));
    }

    /// Takes a server's figure unless it says less than the one held: sends
    /// numbered in one order may reach the server in another, so of one
    /// window's figures the one that leaves the least is the latest. A later
    /// window's figure replaces an earlier window's; an ended window's is ignored.
    fn take(&mut self, (seq, mark): (u64, u64), remaining: u64, end: Option<Instant>) {
        if seq < self.floor {
            return;
        }
        let later = match (self.reset_at, end) {
            (Some(held), Some(end)) => end > held + SAME_END,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let same = match (self.reset_at, end) {
            (Some(held), Some(end)) => end.max(held) - end.min(held) <= SAME_END,
            _ => end.is_none(),
        };
        // What is left now is `remaining − (sent − mark)`: the smaller `remaining + mark`, the less.
        let tighter = self.remaining.is_none_or(|held| remaining.saturating_add(mark) < held.saturating_add(self.mark));
        if later || (same && tighter) {
            (self.mark, self.remaining) = (mark, Some(remaining));
            self.told |= end.is_some();
            self.reset_at = end.or(self.reset_at);
        }
    }

    /// A 429 for the send `seq` whose message names this limit: `used` of
    /// `limit` spent (all of it when not said), the window ending at `end`,
    /// in `wait` (`told`).
    pub(super) fn refused(
        &mut self,
        (seq, mark): (u64, u64),
        limit: u64,
        used: Option<u64>,
        told: Option<(Instant, Duration)>,
    ) {
        self.limit = Some(limit);
        if let Some((end, wait)) = told {
            self.ends.told(end, wait);
        }
        self.take((seq, mark), used.map_or(0, |used| limit.saturating_sub(used)), told.map(|(end, _)| end));
    }
}

/// A token window as this process knows it, for a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::cooldown) struct Known {
    pub(in crate::cooldown) end: Instant,
    pub(in crate::cooldown) told: bool,
    pub(in crate::cooldown) length: Option<Duration>,
    pub(in crate::cooldown) limit: u64,
    pub(in crate::cooldown) used: Option<u64>,
}

/// Window ends a server told, and the window's length once two are apart.
#[derive(Debug, Clone, Copy, Default)]
struct Ends {
    anchor: Option<Instant>,
    length: Option<Duration>,
    /// The longest wait for an end told: no window is shorter.
    longest: Duration,
}

impl Ends {
    /// An end told `wait` ahead: the same window's (kept at the earliest, the
    /// least late), or a later one, which measures the length: whole windows
    /// apart. The first length is taken only from ends surely one window
    /// apart, less than two of the longest wait: a process of a fleet may hear
    /// of one window's end, and of the next only many windows later.
    fn told(&mut self, end: Instant, wait: Duration) {
        self.longest = self.longest.max(wait);
        let Some(anchor) = self.anchor else {
            self.anchor = Some(end);
            return;
        };
        if end.max(anchor) - end.min(anchor) <= SAME_END {
            self.anchor = Some(anchor.min(end));
        } else if end > anchor {
            let apart = end - anchor;
            self.length = match self.length {
                Some(length) => Some(apart.div_f64((apart.as_secs_f64() / length.as_secs_f64()).round().max(1.0))),
                None => Some(apart).filter(|apart| *apart < self.longest * 2),
            };
            self.anchor = Some(end);
        }
    }

    /// The first end after `now`, predicted from the last told one, a little
    /// late (early would release requests into a window that is still full).
    fn next_after(&self, now: Instant) -> Option<Instant> {
        let (anchor, length) = (self.anchor?, self.length.filter(|l| !l.is_zero())?);
        let late = length / 64 + Duration::from_millis(1);
        let passed = now.checked_duration_since(anchor).map_or(0, |d| d.as_nanos() / length.as_nanos());
        anchor.checked_add(length.checked_mul(u32::try_from(passed + 1).ok()?)? + late)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn what_is_left_is_the_servers_figure_less_the_sends_since() {
        let t0 = Instant::now();
        let mut w = Window::default();
        assert_eq!(w.left(0), None, "unknown until a server says");
        // After send 3 (this process had spent 900 by then) the server says 5 000 left.
        w.read((3, 900), Some(10_000), 5_000, MS(200), t0);
        assert_eq!(w.left(900), Some(5_000));
        assert_eq!(w.left(2_900), Some(3_000), "2 000 sent since");
        // An older send's view arrives late: ignored.
        w.read((2, 600), None, 9_000, MS(200), t0);
        assert_eq!(w.left(2_900), Some(3_000));
        // Past the reset, the whole limit for the sends from now on.
        w.roll(t0 + MS(200), 2_900, 7);
        assert_eq!((w.left(2_900), w.left(3_900)), (Some(10_000), Some(9_000)));
        assert_eq!(w.reset_at, None, "headers will tell the next reset");
        // A send made before the roll answers after it: the old window's figure.
        w.read((7, 2_900), None, 100, MS(1), t0 + MS(201));
        assert_eq!(w.left(3_900), Some(9_000));
        // Rounded figures leave their slack.
        let mut anthropic = Window::with_slack(500);
        anthropic.read((1, 0), Some(40_000), 3_000, MS(500), t0);
        assert_eq!(anthropic.left(0), Some(2_500));
    }

    #[test]
    fn a_429_names_the_limit_and_its_end_and_two_ends_give_the_length() {
        let t0 = Instant::now();
        let mut w = Window::default();
        // "Limit 40000, Used 38112", send 5 (whose own cost is in its mark) refused; over in 1.2 s.
        w.refused((5, 12_000), 40_000, Some(38_112), Some((t0 + MS(1_200), MS(1_200))));
        assert_eq!(w.left(12_000), Some(1_888));
        w.roll(t0 + MS(1_200), 12_000, 9);
        assert_eq!((w.left(12_000), w.reset_at), (Some(40_000), None), "the next end is not known yet");
        // Anthropic says no figure: nothing is left. Its end is one window after the first.
        w.refused((12, 50_000), 40_000, None, Some((t0 + MS(2_201), MS(700))));
        assert_eq!(w.left(50_000), Some(0));
        w.roll(t0 + MS(2_201), 50_000, 14);
        let next = w.reset_at.expect("predicted");
        assert_eq!(next, t0 + MS(2_201) + MS(1_001) + MS(1_001) / 64 + MS(1));
        // Ends of one window, told a few ms apart, are one end.
        let mut ends = Ends::default();
        ends.told(t0 + MS(1_000), MS(900));
        ends.told(t0 + MS(995), MS(800));
        ends.told(t0 + MS(1_010), MS(10));
        assert_eq!((ends.anchor, ends.length), (Some(t0 + MS(995)), None));
        // Three windows apart once the length is known: refined, not tripled.
        ends.told(t0 + MS(1_995), MS(30));
        ends.told(t0 + MS(4_995), MS(30));
        assert_eq!(ends.length, Some(MS(1_000)));
        assert_eq!(ends.next_after(t0 + MS(7_500)), Some(t0 + MS(7_995) + MS(1_000) / 64 + MS(1)));
    }

    #[test]
    fn ends_that_may_be_windows_apart_give_no_first_length() {
        // Heard at 3 ms into one window, then only 12 windows later: 12 s is not a window's length.
        let t0 = Instant::now();
        let mut ends = Ends::default();
        ends.told(t0 + MS(1_000), MS(997));
        ends.told(t0 + MS(13_000), MS(40));
        assert_eq!((ends.anchor, ends.length), (Some(t0 + MS(13_000)), None));
        assert_eq!(ends.next_after(t0 + MS(13_500)), None, "the next reset is not made up");
        // Less than two of the longest wait apart: the next window's end, surely.
        ends.told(t0 + MS(14_000), MS(300));
        assert_eq!(ends.length, Some(MS(1_000)));
    }
}
