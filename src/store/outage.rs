//! An outage shared across a fleet: the protocol a [`SharedStore`] speaks
//! for it, and the in-memory record behind [`MemoryStore`].
//!
//! Each process keeps its own view of a host's health; the store adds what
//! one process cannot know alone. When a process's turn to probe comes, it
//! asks the store ([`SharedStore::outage`]) instead of sending at once: the
//! store grants one probe lease at a time for the host across every process,
//! records that the host is down when the asker is the first to say so, and
//! answers [`OutageTurn::Up`] once any process has seen the host recover
//! since the asker's outage began. A process whose requests have only just
//! started failing asks too, and so joins an outage the fleet already knows
//! after one failure rather than ten.
//!
//! Times are wall-clock times, compared across machines: clock skew between
//! the processes of a fleet shifts the probe schedule by as much, no more.
//!
//! [`MemoryStore`]: super::MemoryStore
//! [`SharedStore`]: super::SharedStore
//! [`SharedStore::outage`]: super::SharedStore::outage
//! [`SharedStore::report_outage`]: super::SharedStore::report_outage

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::clock::wall_later;

/// How long a probe lease lasts: another process probes after it if the
/// holder never reports (it crashed, say). A probe that is still waiting for
/// its answer then has company, not a rival: one more request, once per lease.
pub(crate) const LEASE: Duration = Duration::from_secs(10);

/// How long the stores of this crate keep an outage's record after its last
/// news: the fleet forgets an outage nobody probes any more (every process stopped).
pub(crate) const RECORD_TTL: Duration = Duration::from_secs(60);

/// What a process asks a store before it sends during an outage, or after a
/// failure: see [`SharedStore::outage`](super::SharedStore::outage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutageQuery {
    /// When the asker's own outage of the host began; `None` when the asker
    /// has only seen failures, not an outage. An asker in an outage the store
    /// has no record of records it; one whose outage began before the fleet's
    /// last recovery is told [`OutageTurn::Up`].
    pub since: Option<SystemTime>,
    /// How long the probe lease lasts if this asker is granted it.
    pub lease: Duration,
}

impl OutageQuery {
    /// A question from an asker whose outage began at `since` (if in one),
    /// for a lease of `lease`.
    pub fn new(since: Option<SystemTime>, lease: Duration) -> Self {
        OutageQuery { since, lease }
    }
}

/// A store's answer to [`SharedStore::outage`](super::SharedStore::outage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutageTurn {
    /// No outage of the host on record, or the fleet saw it recover since the
    /// asker's outage began: send.
    Up,
    /// The host is down and the asker now holds the probe lease: send this
    /// one request as the probe, and report how it went.
    Probe,
    /// The host is down and another process probes, or the next probe is not
    /// due: ask again by then.
    Wait(SystemTime),
}

/// What a process tells a store about a host's outage:
/// [`SharedStore::report_outage`](super::SharedStore::report_outage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutageReport {
    /// The probe this process held the lease for failed: the lease is free,
    /// and the next probe is due at `next_probe`. Ignored when the fleet has
    /// seen the host recover in the meantime.
    ProbeFailed {
        /// When the next probe is due.
        next_probe: SystemTime,
    },
    /// The probe was abandoned (its request dropped) before an answer: the lease is free.
    ProbeAbandoned,
    /// A request to the host succeeded after it was down: the outage is over.
    Recovered,
}

/// One host's outage as the fleet knows it.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// While down: when the next probe is due.
    next_probe: Option<SystemTime>,
    /// Once up again: when it recovered.
    up_at: Option<SystemTime>,
    lease_until: Option<SystemTime>,
    expires: SystemTime,
}

/// The turn of an asker at `now`, updating `record` (a pure function of the
/// record, so that the Redis script can be its line-by-line twin).
fn turn(record: &mut Option<Record>, query: OutageQuery, now: SystemTime, ttl: Duration) -> OutageTurn {
    if record.is_some_and(|r| r.expires <= now) {
        *record = None;
    }
    let live = *record;
    let mut current = match live {
        Some(r) if r.next_probe.is_some() => r,
        _ => {
            let up_at = live.and_then(|r| r.up_at);
            let Some(since) = query.since else { return OutageTurn::Up };
            if up_at.is_some_and(|up| up >= since) {
                return OutageTurn::Up;
            }
            // The asker's outage is news to the fleet: its probe is due now.
            Record { next_probe: Some(now), up_at: None, lease_until: None, expires: wall_later(now, ttl) }
        }
    };
    let answer = match (current.lease_until.filter(|l| *l > now), current.next_probe) {
        (Some(lease_end), _) => OutageTurn::Wait(lease_end),
        (None, Some(due)) if due > now => OutageTurn::Wait(due),
        _ => {
            // `lease` is the asker's: `Duration::MAX` is a lease for a century, not an overflow.
            current.lease_until = Some(wall_later(now, query.lease));
            OutageTurn::Probe
        }
    };
    *record = Some(current);
    answer
}

/// `report` applied to `record` at `now`.
fn apply(record: &mut Option<Record>, report: OutageReport, now: SystemTime, ttl: Duration) {
    let live = record.filter(|r| r.expires > now);
    *record = match (report, live) {
        (OutageReport::Recovered, _) => {
            Some(Record { next_probe: None, up_at: Some(now), lease_until: None, expires: wall_later(now, ttl) })
        }
        // A failed probe cannot make an outage the fleet has seen end.
        (OutageReport::ProbeFailed { next_probe }, Some(r)) if r.next_probe.is_some() => {
            Some(Record { next_probe: Some(next_probe), up_at: None, lease_until: None, expires: wall_later(now, ttl) })
        }
        (_, live) => live.map(|r| Record { lease_until: None, ..r }),
    };
}

/// Every host's outage record, in memory: [`MemoryStore`](super::MemoryStore)'s.
#[derive(Debug, Default)]
pub(crate) struct Board {
    records: Mutex<HashMap<String, Record>>,
}

/// Records kept before expired ones are swept.
const SWEEP_AT: usize = 1024;

impl Board {
    fn with<T>(&self, host: &str, now: SystemTime, f: impl FnOnce(&mut Option<Record>) -> T) -> T {
        let mut records = self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if records.len() >= SWEEP_AT {
            records.retain(|_, r| r.expires > now);
        }
        let mut record = records.get(host).copied();
        let answer = f(&mut record);
        match record {
            Some(record) => records.insert(host.to_owned(), record),
            None => records.remove(host),
        };
        answer
    }

    /// [`SharedStore::outage`] at `now`.
    pub(crate) fn turn(&self, host: &str, query: OutageQuery, now: SystemTime) -> OutageTurn {
        self.with(host, now, |record| turn(record, query, now, RECORD_TTL))
    }

    /// [`SharedStore::report_outage`] at `now`.
    pub(crate) fn report(&self, host: &str, report: OutageReport, now: SystemTime) {
        self.with(host, now, |record| apply(record, report, now, RECORD_TTL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn query(since: Option<SystemTime>) -> OutageQuery {
        OutageQuery { since, lease: LEASE }
    }

    #[test]
    fn the_first_to_say_the_host_is_down_probes_and_the_fleet_waits_for_it() {
        let (board, t0) = (Board::default(), SystemTime::now());
        assert_eq!(board.turn("h", query(None), t0), OutageTurn::Up, "failures alone are no outage");
        assert_eq!(board.turn("h", query(Some(t0)), t0), OutageTurn::Probe);
        let lease_end = t0 + LEASE;
        assert_eq!(board.turn("h", query(Some(t0)), t0 + MS(5)), OutageTurn::Wait(lease_end), "one probe at a time");
        assert_eq!(board.turn("h", query(None), t0 + MS(5)), OutageTurn::Wait(lease_end), "failing processes join");
        assert_eq!(board.turn("other", query(None), t0), OutageTurn::Up, "per host");
        // The probe fails: the next is due when it said, for whoever asks first.
        board.report("h", OutageReport::ProbeFailed { next_probe: t0 + MS(300) }, t0 + MS(50));
        assert_eq!(board.turn("h", query(Some(t0)), t0 + MS(60)), OutageTurn::Wait(t0 + MS(300)));
        assert_eq!(board.turn("h", query(None), t0 + MS(300)), OutageTurn::Probe);
        // Abandoned: the next asker probes at once.
        board.report("h", OutageReport::ProbeAbandoned, t0 + MS(310));
        assert_eq!(board.turn("h", query(Some(t0)), t0 + MS(311)), OutageTurn::Probe);
        // An unreported probe's lease runs out.
        assert_eq!(board.turn("h", query(Some(t0)), t0 + MS(311) + LEASE), OutageTurn::Probe);
    }

    #[test]
    fn a_recovery_ends_every_outage_that_began_before_it() {
        let (board, t0) = (Board::default(), SystemTime::now());
        assert_eq!(board.turn("h", query(Some(t0)), t0), OutageTurn::Probe);
        board.report("h", OutageReport::Recovered, t0 + MS(100));
        assert_eq!(board.turn("h", query(Some(t0 + MS(20))), t0 + MS(150)), OutageTurn::Up);
        assert_eq!(board.turn("h", query(None), t0 + MS(150)), OutageTurn::Up);
        // A late failed probe does not bring it back.
        board.report("h", OutageReport::ProbeFailed { next_probe: t0 + MS(400) }, t0 + MS(160));
        assert_eq!(board.turn("h", query(Some(t0)), t0 + MS(170)), OutageTurn::Up);
        // An outage that began after the recovery is a new one.
        assert_eq!(board.turn("h", query(Some(t0 + MS(200))), t0 + MS(210)), OutageTurn::Probe);
    }

    #[test]
    fn records_expire_and_memory_stays_bounded() {
        let (board, t0) = (Board::default(), SystemTime::now());
        board.turn("h", query(Some(t0)), t0);
        assert_eq!(board.turn("h", query(None), t0 + RECORD_TTL - MS(1)), OutageTurn::Probe, "the lease ran out");
        board.turn("g", query(Some(t0)), t0);
        assert_eq!(board.turn("g", query(None), t0 + RECORD_TTL), OutageTurn::Up, "expired as it is asked");
        // News arriving as the record expires does not revive it.
        board.report("h", OutageReport::ProbeFailed { next_probe: t0 + RECORD_TTL }, t0 + RECORD_TTL);
        assert_eq!(board.turn("h", query(None), t0 + RECORD_TTL), OutageTurn::Up, "forgotten when it expires");
        // Live records are kept, however many; once expired, the next new host sweeps them.
        for i in 0..2 * SWEEP_AT {
            board.turn(&format!("h{i}"), query(Some(t0)), t0);
        }
        assert_eq!(board.records.lock().unwrap().len(), 2 * SWEEP_AT);
        board.turn("new", query(Some(t0)), t0 + RECORD_TTL);
        assert_eq!(board.records.lock().unwrap().len(), 1, "only the new host's record is left");
    }

    #[test]
    fn a_lease_of_any_length_is_granted_and_holds_the_others() {
        let (board, t0) = (Board::default(), SystemTime::now());
        let endless = OutageQuery::new(Some(t0), Duration::MAX);
        assert_eq!(board.turn("h", endless, t0), OutageTurn::Probe);
        let held = board.turn("h", OutageQuery::new(None, LEASE), t0 + MS(5));
        assert_eq!(held, OutageTurn::Wait(t0 + crate::clock::NEVER), "held for a century: \"never\"");
    }
}
