//! The health of one provider host, as a pure state machine: every method
//! takes the time, so tests drive it with a fake clock.
//!
//! # When is it an outage?
//!
//! After a run of [`RUN`] failures in a row (overload, any 5xx, a connect
//! error or a timeout; any other answer ends the run), each within
//! [`RUN_GAP`] of the one before. A run and not a rate, because:
//!
//! - ordinary noise does not reach it: with independent faults at a rate
//!   `p`, a given attempt starts such a run with probability `(1 − p)·p¹⁰`,
//!   4·10⁻⁶ at `p = 0.3` (once in 240 000 attempts, and then the first probe
//!   succeeds with probability 0.7 and ends it). Google SRE's client-side
//!   throttling (K = 2) only throttles beyond a 50 % failure rate; there a
//!   run of 10 starts once in 2 000 attempts, and a real outage (every
//!   attempt failing) reaches it at once;
//! - it needs no window of timestamps: one counter, one instant, and memory
//!   that never grows;
//! - at 50 requests/s it is reached within 0.2 s of an outage's start.
//!
//! A request alone cannot reach it (5 attempts by default): the outage state
//! only coordinates many requests.
//!
//! # In the outage
//!
//! Requests wait instead of being sent; one at a time goes as a probe, on
//! [`probe_interval`]'s schedule. Any success (a probe's, or a request's
//! sent before the outage began) ends it: the requests that were waiting
//! are then given release times spread evenly over [`RELEASE_SPREAD`].

use std::time::Duration;

use crate::clock::{Instant, later};

/// Failures in a row that make an outage.
pub(crate) const RUN: u32 = 10;

/// A failure more than this after the previous one starts a new run: ten
/// failures spread over an hour say little about the provider now.
pub(crate) const RUN_GAP: Duration = Duration::from_secs(10);

/// The interval over which the requests held by an outage are released.
pub(crate) const RELEASE_SPREAD: Duration = Duration::from_millis(250);

/// What an attempt said about the provider's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// Overload, a 5xx, a connect error or a timeout.
    Failed,
    /// Any other answer: the provider is up.
    Answered,
}

/// Who asks whether it may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asker {
    /// A request that would wait for an outage's end.
    Patient,
    /// A patient request that has waited for this outage: due a release slot.
    Held,
    /// A request that can go elsewhere (a fallback model): never held, it
    /// probes only when the probe is due, even alone, and goes elsewhere otherwise.
    Elsewhere,
}

impl Asker {
    pub(crate) fn of(patient: bool, held: bool) -> Asker {
        match (patient, held) {
            (false, _) => Asker::Elsewhere,
            (true, true) => Asker::Held,
            (true, false) => Asker::Patient,
        }
    }
}

/// What a request should do before sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Send now; `probe` when it is the outage's probe.
    Go { probe: bool },
    /// Send at this instant (a release slot): do not ask again.
    GoAt(Instant),
    /// Wait until then, or until woken, and ask again; `None` while a probe is in flight.
    Wait(Option<Instant>),
}

/// A change worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Entered {
        failures: u32,
    },
    /// Entered because another process sharing the store says the host is down.
    Joined,
    Left {
        probes: u32,
        lasted: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Outage {
    since: Instant,
    probes: u32,
    probing: bool,
    next_probe: Instant,
    /// The longest wait a failure in the outage asked for.
    server_wait: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Release {
    start: Instant,
    count: u32,
    given: u32,
}

/// The health of one host.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    run: u32,
    last_failure: Option<Instant>,
    outage: Option<Outage>,
    release: Option<Release>,
    /// Requests with a ticket: in flight, backing off or waiting.
    active: u32,
    /// Requests waiting for the outage to end.
    waiting: u32,
}

/// The wait before the next probe after `probes` failed ones: from half the
/// first overload backoff (`base_delay / 4`), doubled once, then steady at
/// `base_delay / 2` (0.25 s, then 0.5 s, by default). Kept short: a provider
/// back is noticed within half a second, and one request every half second
/// is no load for a provider that is down.
pub(crate) fn probe_interval(base_delay: Duration, probes: u32) -> Duration {
    let first = base_delay / 4;
    first.saturating_mul(1 << probes.min(1))
}

impl Tracker {
    #[cfg(test)]
    fn in_outage(&self) -> bool {
        self.outage.is_some()
    }

    /// A request starts counting as active (in flight or waiting).
    pub(crate) fn join(&mut self) {
        self.active = self.active.saturating_add(1);
    }

    /// A request is done, or its probe was abandoned (its future dropped).
    pub(crate) fn leave(&mut self, probing: bool, now: Instant) {
        self.active = self.active.saturating_sub(1);
        if probing && let Some(outage) = &mut self.outage {
            outage.probing = false;
            outage.next_probe = now;
        }
    }

    /// May a request send now?
    pub(crate) fn ask(&mut self, now: Instant, asker: Asker) -> Decision {
        if let Some(outage) = &mut self.outage {
            // Alone, a patient request's own retries are its probes, on its own schedule.
            let alone = self.active <= 1 && asker != Asker::Elsewhere;
            if !outage.probing && (alone || now >= outage.next_probe) {
                outage.probing = true;
                outage.probes += 1;
                return Decision::Go { probe: true };
            }
            return Decision::Wait((!outage.probing).then_some(outage.next_probe));
        }
        match &mut self.release {
            Some(release) if asker == Asker::Held && release.given < release.count => {
                let slot = RELEASE_SPREAD.mul_f64(f64::from(release.given) / f64::from(release.count));
                release.given += 1;
                Decision::GoAt(release.start + slot)
            }
            _ => Decision::Go { probe: false },
        }
    }

    /// Whether no other request is active: a request alone is its own probe.
    pub(crate) fn alone(&self) -> bool {
        self.active <= 1
    }

    /// Whether the host's requests have started failing, short of an outage.
    pub(crate) fn failing(&self) -> bool {
        self.outage.is_none() && self.run > 0
    }

    /// When the outage began, if the host is in one.
    pub(crate) fn since(&self) -> Option<Instant> {
        self.outage.map(|outage| outage.since)
    }

    /// When the next probe is due, if the host is in an outage.
    pub(crate) fn next_probe(&self) -> Option<Instant> {
        self.outage.map(|outage| outage.next_probe)
    }

    /// The probe just granted is not this process's to send (another process
    /// probes, or it is not due fleet-wide): ask again at `until`.
    pub(crate) fn defer(&mut self, until: Instant) {
        if let Some(outage) = &mut self.outage {
            outage.probing = false;
            outage.probes = outage.probes.saturating_sub(1);
            outage.next_probe = until;
        }
    }

    /// Another process says the host is down: the outage is entered, with the
    /// asking request as its probe (`probing`) or its next probe at `next_probe`.
    pub(crate) fn join_outage(&mut self, now: Instant, probing: bool, next_probe: Instant) -> Option<Change> {
        let joined = self.outage.is_none();
        let outage =
            self.outage.get_or_insert(Outage { since: now, probes: 0, probing: false, next_probe, server_wait: None });
        if probing {
            outage.probing = true;
            outage.probes += 1;
        } else {
            outage.next_probe = next_probe;
        }
        self.release = None;
        joined.then_some(Change::Joined)
    }

    /// The host answered (here, or in another process sharing the store):
    /// any outage is over, and the requests waiting for it are released.
    pub(crate) fn recovered(&mut self, now: Instant) -> Option<Change> {
        self.run = 0;
        let outage = self.outage.take()?;
        self.release = Some(Release { start: now, count: self.waiting, given: 0 });
        Some(Change::Left { probes: outage.probes, lasted: now.saturating_duration_since(outage.since) })
    }

    /// A request starts or stops waiting.
    pub(crate) fn wait(&mut self, waiting: bool) {
        self.waiting = if waiting { self.waiting.saturating_add(1) } else { self.waiting.saturating_sub(1) };
    }

    /// What an attempt said; `probe` when it was the probe.
    pub(crate) fn report(
        &mut self,
        report: Report,
        probe: bool,
        server_wait: Option<Duration>,
        now: Instant,
        base_delay: Duration,
    ) -> Option<Change> {
        match (report, &mut self.outage) {
            (Report::Answered, _) => self.recovered(now),
            (Report::Failed, Some(outage)) => {
                if probe {
                    outage.probing = false;
                    let wait = probe_interval(base_delay, outage.probes - 1).max(server_wait.unwrap_or_default());
                    outage.next_probe = later(now, wait);
                }
                outage.server_wait = outage.server_wait.max(server_wait);
                None
            }
            (Report::Failed, None) => {
                if self.last_failure.is_none_or(|last| now.saturating_duration_since(last) > RUN_GAP) {
                    self.run = 0;
                }
                self.run += 1;
                self.last_failure = Some(now);
                if self.run < RUN {
                    return None;
                }
                let next_probe = later(now, probe_interval(base_delay, 0).max(server_wait.unwrap_or_default()));
                self.outage = Some(Outage { since: now, probes: 0, probing: false, next_probe, server_wait });
                self.release = None;
                Some(Change::Entered { failures: self.run })
            }
        }
    }

    /// The wait the provider asked for during the outage, if it said.
    pub(crate) fn server_wait(&self) -> Option<Duration> {
        self.outage.and_then(|outage| outage.server_wait)
    }

    /// Whether nothing is going on: the entry may be dropped.
    pub(crate) fn idle(&self) -> bool {
        self.active == 0 && self.outage.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(1);
    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// A tracker with `active` requests, and the fake clock's start.
    fn tracker(active: u32) -> (Tracker, Instant) {
        let mut tracker = Tracker::default();
        for _ in 0..active {
            tracker.join();
        }
        (tracker, Instant::now())
    }

    fn fail(tracker: &mut Tracker, n: u32, at: Instant) -> Option<Change> {
        let mut change = None;
        for _ in 0..n {
            change = tracker.report(Report::Failed, false, None, at, BASE);
        }
        change
    }

    #[test]
    fn a_run_of_failures_enters_the_outage() {
        let (mut t, t0) = tracker(3);
        assert_eq!(fail(&mut t, RUN - 1, t0), None);
        assert_eq!(t.ask(t0, Asker::Patient), Decision::Go { probe: false });
        assert_eq!(fail(&mut t, 1, t0), Some(Change::Entered { failures: RUN }));
        assert!(t.in_outage());
    }

    #[test]
    fn any_answer_breaks_the_run() {
        let (mut t, t0) = tracker(3);
        fail(&mut t, RUN - 1, t0);
        assert_eq!(t.report(Report::Answered, false, None, t0, BASE), None);
        assert_eq!(fail(&mut t, RUN - 1, t0), None);
        assert!(!t.in_outage());
    }

    #[test]
    fn failures_far_apart_are_no_run() {
        let (mut t, t0) = tracker(3);
        for i in 0..u64::from(RUN) {
            fail(&mut t, 1, t0 + (RUN_GAP + MS(1)) * i as u32);
        }
        assert!(!t.in_outage());
    }

    #[test]
    fn one_probe_at_a_time_on_a_schedule() {
        let (mut t, t0) = tracker(3);
        fail(&mut t, RUN, t0);
        let first = t0 + probe_interval(BASE, 0);
        assert_eq!(t.ask(t0, Asker::Patient), Decision::Wait(Some(first)));
        assert_eq!(t.ask(first, Asker::Patient), Decision::Go { probe: true });
        assert_eq!(t.ask(first, Asker::Patient), Decision::Wait(None), "a probe is in flight");
        assert_eq!(t.report(Report::Failed, true, None, first + MS(10), BASE), None);
        let second = first + MS(10) + probe_interval(BASE, 0);
        assert_eq!(t.ask(first + MS(20), Asker::Patient), Decision::Wait(Some(second)));
        assert_eq!(t.ask(second, Asker::Patient), Decision::Go { probe: true });
        t.report(Report::Failed, true, None, second, BASE);
        assert_eq!(t.ask(second, Asker::Patient), Decision::Wait(Some(second + probe_interval(BASE, 1))));
    }

    #[test]
    fn the_probe_schedule_is_short_and_bounded() {
        let waits: Vec<_> = (0..4).map(|n| probe_interval(BASE, n)).collect();
        assert_eq!(waits, [MS(250), MS(500), MS(500), MS(500)]);
        assert_eq!(probe_interval(Duration::MAX, u32::MAX), Duration::MAX / 4 * 2, "no overflow");
    }

    #[test]
    fn a_server_wait_delays_the_next_probe() {
        let (mut t, t0) = tracker(3);
        fail(&mut t, RUN, t0);
        let go = t0 + probe_interval(BASE, 0);
        assert_eq!(t.ask(go, Asker::Patient), Decision::Go { probe: true });
        t.report(Report::Failed, true, Some(Duration::from_secs(3)), go, BASE);
        assert_eq!(t.ask(go, Asker::Patient), Decision::Wait(Some(go + Duration::from_secs(3))));
        assert_eq!(t.server_wait(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn a_request_alone_is_never_held() {
        let (mut t, t0) = tracker(1);
        fail(&mut t, RUN, t0);
        assert_eq!(t.ask(t0, Asker::Patient), Decision::Go { probe: true });
        t.report(Report::Failed, true, None, t0, BASE);
        assert_eq!(t.ask(t0, Asker::Patient), Decision::Go { probe: true }, "its own schedule, not the probe's");
    }

    #[test]
    fn a_request_that_can_go_elsewhere_probes_only_when_the_probe_is_due_even_alone() {
        let (mut t, t0) = tracker(1);
        fail(&mut t, RUN, t0);
        let due = t0 + probe_interval(BASE, 0);
        assert_eq!(t.ask(t0, Asker::Elsewhere), Decision::Wait(Some(due)));
        assert_eq!(t.ask(due, Asker::Elsewhere), Decision::Go { probe: true });
        t.report(Report::Failed, true, None, due, BASE);
        let next = due + probe_interval(BASE, 0);
        assert_eq!(t.ask(due, Asker::Elsewhere), Decision::Wait(Some(next)));
        assert_eq!(t.ask(due, Asker::Patient), Decision::Go { probe: true }, "a patient one alone: its own schedule");
    }

    #[test]
    fn a_success_leaves_and_releases_the_waiting_spread() {
        let (mut t, t0) = tracker(5);
        fail(&mut t, RUN, t0);
        for _ in 0..4 {
            t.wait(true);
        }
        let go = t0 + probe_interval(BASE, 0);
        assert_eq!(t.ask(go, Asker::Patient), Decision::Go { probe: true });
        let back = go + MS(100);
        let left = t.report(Report::Answered, true, None, back, BASE);
        assert_eq!(left, Some(Change::Left { probes: 1, lasted: back - t0 }));
        let slots: Vec<_> = (0..5).map(|_| t.ask(back, Asker::Held)).collect();
        let at = |quarters: u32| Decision::GoAt(back + RELEASE_SPREAD * quarters / 4);
        assert_eq!(slots, [at(0), at(1), at(2), at(3), Decision::Go { probe: false }], "one slot per waiting request");
        assert_eq!(t.ask(back, Asker::Patient), Decision::Go { probe: false }, "a new request goes at once");
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_go_at_once() {
        let (mut t, t0) = tracker(3);
        fail(&mut t, RUN, t0);
        let go = t0 + probe_interval(BASE, 0);
        assert_eq!(t.ask(go, Asker::Patient), Decision::Go { probe: true });
        t.leave(true, go);
        assert_eq!(t.ask(go, Asker::Patient), Decision::Go { probe: true });
    }

    #[test]
    fn the_fleet_enters_defers_and_ends_an_outage() {
        let (mut t, t0) = tracker(3);
        assert!(!t.failing());
        fail(&mut t, 1, t0);
        assert!(t.failing() && !t.alone(), "one failure: the store is asked before the next send");
        // Another process says the host is down: entered without a run of failures here.
        assert_eq!(t.join_outage(t0, false, t0 + MS(100)), Some(Change::Joined));
        assert!(!t.failing());
        assert_eq!(t.ask(t0, Asker::Patient), Decision::Wait(Some(t0 + MS(100))));
        assert_eq!(t.ask(t0 + MS(100), Asker::Patient), Decision::Go { probe: true });
        // The store says another process probes: this one is not sent, and not counted.
        t.defer(t0 + MS(200));
        assert_eq!(t.ask(t0 + MS(150), Asker::Patient), Decision::Wait(Some(t0 + MS(200))));
        t.wait(true);
        // Another process's probe succeeded.
        assert_eq!(t.recovered(t0 + MS(300)), Some(Change::Left { probes: 0, lasted: MS(300) }));
        assert_eq!(t.ask(t0 + MS(300), Asker::Held), Decision::GoAt(t0 + MS(300)), "the waiting are released");
        assert_eq!(t.recovered(t0 + MS(300)), None, "left once");
        // Granted the fleet's probe as it joins: it is the probe in flight.
        assert_eq!(t.join_outage(t0 + MS(400), true, t0 + MS(400)), Some(Change::Joined));
        assert_eq!(t.ask(t0 + MS(400), Asker::Patient), Decision::Wait(None));
        assert!(tracker(1).0.alone());
    }

    /// A seeded uniform stream (SplitMix64).
    fn uniform(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn thirty_percent_independent_faults_never_enter() {
        let (mut t, t0) = tracker(16);
        let mut seed = 0x5EED;
        for i in 0..100_000u32 {
            let report = if uniform(&mut seed) < 0.3 { Report::Failed } else { Report::Answered };
            assert_eq!(t.report(report, false, None, t0 + MS(u64::from(i)), BASE), None, "attempt {i}");
        }
    }

    #[test]
    fn a_real_outage_is_found_at_once_among_noise() {
        let (mut t, t0) = tracker(16);
        let mut seed = 7;
        for i in 0..1000 {
            let report = if uniform(&mut seed) < 0.3 { Report::Failed } else { Report::Answered };
            t.report(report, false, None, t0 + MS(i), BASE);
        }
        assert!(!t.in_outage());
        assert_eq!(fail(&mut t, RUN, t0 + MS(1000)), Some(Change::Entered { failures: RUN }));
    }
}
