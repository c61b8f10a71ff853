//! The capacity learner: how many requests a window admits, and how long a
//! window lasts, for a key whose successes carry no `remaining` count.
//!
//! Why: without a count, every request in flight discovers a full window by
//! itself (Gemini; OpenAI-compatible hosts; gateways that strip headers).
//! What the learner knows comes from what happened, never from extra work on
//! a success:
//!
//! - a 429 numbered `s` in a window opened after send `o` says the window
//!   admitted `s − 1 − o` requests, and that it ends when the 429 says;
//! - two such ends, one window apart, give the window's length;
//! - a `limit` header, or the limit written in a 429 ("Limit 20"), gives
//!   the capacity outright.
//!
//! Once the capacity is known, a window's requests beyond it wait for the
//! window's end. When that end is not known yet, one request at a time goes
//! ahead as a *scout*: its 429 tells the end (one wasted call, not one per
//! request in flight), its success raises the capacity. Every
//! [`PROBE_EVERY`] windows the learner scouts past a full window on purpose,
//! so a raised limit is found again (additive increase, one scout at a time;
//! a 429 sets the capacity back to what the window admitted).
//!
//! What is learned is forgotten after [`FORGET_AFTER`] (or eight windows, if
//! longer) without use, and lives in the key's entry, whose count is bounded.

use std::time::Duration;

use crate::clock::{Instant, later};

/// Every this many windows, scout past a full window to find a raised limit.
pub(super) const PROBE_EVERY: u32 = 16;
/// Learned state unused this long is forgotten (at least eight windows).
pub(super) const FORGET_AFTER: Duration = Duration::from_secs(60);
/// How long a scout may stay unanswered before another goes.
const SCOUT_PATIENCE: Duration = Duration::from_millis(100);
/// How often requests held behind a scout ask again.
const SCOUT_POLL: Duration = Duration::from_millis(5);
/// Two told ends closer than this are the same window's.
const SAME_END: Duration = Duration::from_millis(20);

/// What the learner says before a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Send: the window has room, or nothing is known.
    Go,
    /// Send this one alone past a full window: its answer tells the end or a larger capacity.
    Scout,
    /// The window is full: wait this long, then ask again.
    Wait(Duration),
}

/// What one key's windows have shown.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Learner {
    /// Requests a window admits.
    capacity: Option<u64>,
    /// How long a window lasts.
    window: Option<Duration>,
    /// The latest window end a server told (a 429's wait).
    anchor: Option<Instant>,
    /// The current window's end, told or predicted.
    end: Option<Instant>,
    /// When the current window opened, and the last send number before it.
    opened: Option<Instant>,
    opened_seq: u64,
    /// The scout in flight: its number and when it went.
    scout: Option<(u64, Instant)>,
    /// Windows opened since the last 429 or probe.
    quiet_windows: u32,
    /// Last use, for forgetting.
    used: Option<Instant>,
    /// The longest reset read in headers or wait a 429 gave: the window lasts at least this long.
    longest: Duration,
}

impl Learner {
    /// Whether anything learned is still worth keeping.
    pub(super) fn live(&self, now: Instant) -> bool {
        let keep = self.window.map_or(FORGET_AFTER, |w| (w * 8).max(FORGET_AFTER));
        self.used.is_some_and(|used| now.saturating_duration_since(used) < keep)
    }

    /// Before send `next_seq` (the number it will get): go, scout, or wait.
    pub(super) fn admit(&mut self, now: Instant, next_seq: u64) -> Admit {
        // A key that never saw a limit stops here: nothing more per send than before.
        let Some(capacity) = self.capacity else { return Admit::Go };
        if !self.live(now) {
            *self = Learner::default();
            return Admit::Go;
        }
        self.used = Some(now);
        self.roll(now, next_seq);
        let sent = next_seq.saturating_sub(1).saturating_sub(self.opened_seq);
        if sent < capacity {
            return Admit::Go;
        }
        let probing = self.quiet_windows >= PROBE_EVERY;
        match self.end {
            Some(end) if !probing => Admit::Wait(end.saturating_duration_since(now).saturating_add(self.margin())),
            _ => match self.scout {
                Some((_, went)) if now.saturating_duration_since(went) < SCOUT_PATIENCE => Admit::Wait(SCOUT_POLL),
                _ => {
                    self.scout = Some((next_seq, now));
                    Admit::Scout
                }
            },
        }
    }

    /// Opens the next window once the current one has ended.
    fn roll(&mut self, now: Instant, next_seq: u64) {
        let Some(end) = self.end.filter(|end| now >= *end) else { return };
        let opened = match self.window.filter(|w| !w.is_zero()) {
            // Whole windows after the last end: the current one opened at the last boundary.
            Some(window) => {
                let passed = (now - end).as_nanos() / window.as_nanos();
                let opened = later(end, window.saturating_mul(u32::try_from(passed).unwrap_or(u32::MAX)));
                self.end = Some(later(opened, window));
                opened
            }
            None => {
                self.end = None;
                end
            }
        };
        self.opened = Some(opened);
        self.opened_seq = next_seq.saturating_sub(1);
        self.quiet_windows = self.quiet_windows.saturating_add(1);
        self.scout = None;
    }

    /// Predicted ends are waited for a little longer: early is a 429 for every request released.
    fn margin(&self) -> Duration {
        self.window.map_or(Duration::ZERO, |w| w / 64) + Duration::from_millis(1)
    }

    /// The end of the window at `now`, and whether a server told it: the
    /// latest told end, or one predicted from it. A prediction errs a little
    /// late rather than early (a window counted as over too early lets a
    /// burst into the old one); a told end is late by a response's latency
    /// already.
    pub(super) fn end_at(&self, now: Instant) -> Option<(Instant, bool)> {
        if let Some(anchor) = self.anchor.filter(|anchor| *anchor > now) {
            return Some((anchor, true));
        }
        // Until two ends are known, the longest wait or reset read is the window's floor.
        let window = self.window.map_or(self.longest, |w| w.max(self.longest));
        let late = window / 32 + Duration::from_millis(2);
        if let Some(end) = self.end.filter(|end| *end > now) {
            return Some((later(end, late), false));
        }
        let (anchor, window) = (self.anchor?, Some(window).filter(|w| !w.is_zero())?);
        let passed = now.checked_duration_since(anchor)?.as_nanos() / window.as_nanos();
        let windows = u32::try_from(passed.saturating_add(1)).unwrap_or(u32::MAX);
        Some((later(later(anchor, window.saturating_mul(windows)), late), false))
    }

    /// The capacity learned, if not forgotten.
    pub(super) fn capacity_at(&self, now: Instant) -> Option<u64> {
        self.capacity.filter(|_| self.live(now))
    }

    /// The window's length, once measured (not only its floor).
    pub(super) fn length(&self) -> Option<Duration> {
        self.window
    }

    /// A window end read in rate-limit headers. The window lasts at least the
    /// longest reset ever read (a response just after a window opens reads
    /// nearly all of it), and at most the shortest gap between two ends (a
    /// window apart, or more); the first is known from the first window on.
    pub(super) fn saw_end(&mut self, end: Instant, now: Instant) {
        self.longest = self.longest.max(end.saturating_duration_since(now));
        match self.anchor {
            Some(anchor) if end <= anchor + SAME_END => {}
            Some(anchor) => {
                let apart = end - anchor;
                self.window = Some(self.window.map_or(apart, |w| w.min(apart)));
                self.anchor = Some(end);
            }
            None => self.anchor = Some(end),
        }
        self.window = Some(self.window.map_or(self.longest, |w| w.max(self.longest))).filter(|w| !w.is_zero());
        self.used = Some(now);
    }

    /// A `limit` header or message: the capacity outright.
    pub(super) fn told_limit(&mut self, limit: u64, now: Instant) {
        if limit > 0 {
            self.capacity = Some(limit);
            self.used = Some(now);
        }
    }

    /// Send `seq` succeeded; if it was the scout, the window admits at least that many.
    pub(super) fn succeeded(&mut self, seq: u64, now: Instant) {
        if self.scout.is_some_and(|(scout, _)| scout == seq) {
            self.scout = None;
            let admitted = seq.saturating_sub(self.opened_seq);
            self.capacity = self.capacity.max(Some(admitted));
            self.used = Some(now);
        }
    }

    /// Send `seq` got a 429 saying the window ends at `end`.
    pub(super) fn rate_limited(&mut self, seq: u64, end: Instant, now: Instant) {
        if self.scout.is_some_and(|(scout, _)| scout == seq) {
            self.scout = None;
        }
        self.used = Some(now);
        self.longest = self.longest.max(end.saturating_duration_since(now));
        // Sends numbered at or below `opened_seq` went in an earlier window.
        let admitted = (seq > self.opened_seq).then(|| seq - 1 - self.opened_seq);
        let same_window = self.end.is_some_and(|current| current.max(end) - current.min(end) <= SAME_END)
            && self.anchor.is_some_and(|anchor| anchor.max(end) - anchor.min(end) <= SAME_END);
        if same_window {
            // Later 429s of one window: the earliest-numbered one counted best.
            if let Some(admitted) = admitted.filter(|a| *a > 0) {
                self.capacity = Some(self.capacity.map_or(admitted, |c| c.min(admitted)));
            }
            return;
        }
        if let Some(anchor) = self.anchor.filter(|anchor| end > *anchor) {
            let apart = end - anchor;
            self.window = match self.window {
                // Whole windows apart: refine the length.
                Some(window) => {
                    let windows = (apart.as_secs_f64() / window.as_secs_f64()).round().max(1.0);
                    Some(apart.div_f64(windows))
                }
                // One window apart only if this window opened at the anchor and was used from its start.
                None => self.opened.filter(|opened| *opened == anchor).map(|_| apart),
            };
        }
        if let Some(admitted) = admitted.filter(|a| *a > 0) {
            self.capacity = Some(admitted);
        }
        self.anchor = Some(end);
        self.end = Some(end);
        self.quiet_windows = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// A fixed window server: `limit` per `window`, windows from `epoch`.
    struct Server {
        epoch: Instant,
        limit: u64,
        window: Duration,
        counts: std::collections::HashMap<u64, u64>,
    }

    impl Server {
        /// Admits, or the window's end.
        fn hit(&mut self, at: Instant) -> Result<(), Instant> {
            let index = ((at - self.epoch).as_nanos() / self.window.as_nanos()) as u64;
            let count = self.counts.entry(index).or_default();
            *count += 1;
            if *count <= self.limit { Ok(()) } else { Err(self.epoch + self.window * (index as u32 + 1)) }
        }
    }

    /// Drives `learner` with a greedy client (always something to send) for `windows`
    /// windows, one send per millisecond at most, answers at once; returns the 429s per window.
    fn drive(learner: &mut Learner, server: &mut Server, seq: &mut u64, from: Instant, windows: u32) -> Vec<u32> {
        let mut now = from;
        let until = from + server.window * windows;
        let mut rejected = vec![0; windows as usize + 1];
        let mut cooldown = now;
        while now < until {
            if now < cooldown {
                now = cooldown;
                continue;
            }
            match learner.admit(now, *seq + 1) {
                Admit::Wait(wait) => now += wait.max(MS(1)),
                Admit::Go | Admit::Scout => {
                    *seq += 1;
                    match server.hit(now) {
                        Ok(()) => learner.succeeded(*seq, now),
                        Err(end) => {
                            learner.rate_limited(*seq, end, now);
                            rejected[((now - from).as_nanos() / server.window.as_nanos()) as usize] += 1;
                            cooldown = end;
                        }
                    }
                }
            }
        }
        rejected
    }

    fn server(limit: u64, epoch: Instant) -> Server {
        Server { epoch, limit, window: MS(200), counts: Default::default() }
    }

    #[test]
    fn learns_20_per_200_ms_within_two_windows() {
        let epoch = Instant::now();
        let (mut learner, mut server, mut seq) = (Learner::default(), server(20, epoch), 0);
        let rejected = drive(&mut learner, &mut server, &mut seq, epoch, 10);
        assert_eq!(learner.capacity_at(epoch + MS(2000)), Some(20));
        assert_eq!(learner.length(), Some(MS(200)));
        assert!(rejected[..2].iter().all(|r| *r >= 1), "{rejected:?}");
        assert!(rejected[2..].iter().all(|r| *r == 0), "from the third window on, no 429: {rejected:?}");
    }

    #[test]
    fn finds_a_raised_limit_again() {
        let epoch = Instant::now();
        let (mut learner, mut server, mut seq) = (Learner::default(), server(20, epoch), 0);
        drive(&mut learner, &mut server, &mut seq, epoch, 4);
        assert_eq!(learner.capacity_at(epoch + MS(800)), Some(20));
        server.limit = 30;
        let from = epoch + MS(800);
        let rejected = drive(&mut learner, &mut server, &mut seq, from, PROBE_EVERY + 4);
        assert_eq!(learner.capacity_at(from + MS(200) * (PROBE_EVERY + 4)), Some(30));
        // The probe wastes at most one call.
        assert!(rejected.iter().sum::<u32>() <= 1, "{rejected:?}");
        // A lowered limit is followed at once.
        server.limit = 10;
        let from = from + MS(200) * (PROBE_EVERY + 4);
        drive(&mut learner, &mut server, &mut seq, from, 3);
        assert_eq!(learner.capacity_at(from + MS(600)), Some(10));
    }

    #[test]
    fn forgets_after_expiry() {
        let epoch = Instant::now();
        let (mut learner, mut server, mut seq) = (Learner::default(), server(20, epoch), 0);
        drive(&mut learner, &mut server, &mut seq, epoch, 3);
        let last = epoch + MS(600);
        assert_eq!(learner.admit(last, seq + 1), Admit::Go, "a new window");
        assert_eq!(learner.capacity_at(last + FORGET_AFTER - MS(10)), Some(20));
        assert_eq!(learner.capacity_at(last + FORGET_AFTER + MS(1)), None);
        assert!(!learner.live(last + FORGET_AFTER + MS(1)));
        assert_eq!(learner.admit(last + FORGET_AFTER + MS(1), seq + 2), Admit::Go);
    }

    #[test]
    fn a_told_limit_is_the_capacity() {
        let now = Instant::now();
        let mut learner = Learner::default();
        learner.told_limit(3, now);
        assert_eq!(learner.admit(now, 1), Admit::Go);
        learner.admit(now, 2);
        learner.admit(now, 3);
        // The end is unknown: one scout, the others wait for its answer.
        assert_eq!(learner.admit(now, 4), Admit::Scout);
        assert_eq!(learner.admit(now, 5), Admit::Wait(SCOUT_POLL));
    }

    #[test]
    fn headers_give_the_window_from_the_first_one() {
        let now = Instant::now();
        let mut learner = Learner::default();
        // Read just after the window opened: nearly all of it is left.
        learner.saw_end(now + MS(198), now);
        assert_eq!(learner.length(), Some(MS(198)));
        learner.saw_end(now + MS(199), now + MS(150));
        // The next window's end, 201 ms later (a slower response): the window is at most that.
        learner.saw_end(now + MS(399), now + MS(210));
        assert_eq!(learner.length(), Some(MS(198)));
        // Before it passes, the told end; then predicted, a little late.
        assert_eq!(learner.end_at(now + MS(390)), Some((now + MS(399), true)));
        assert_eq!(learner.end_at(now + MS(400)), Some((now + MS(399) + MS(198) + MS(198) / 32 + MS(2), false)));
    }
}
