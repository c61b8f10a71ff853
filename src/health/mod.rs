//! Provider health per host, across credentials: during an outage, one
//! request at a time goes as a probe while the others wait, within their own
//! retry bounds, and they are released, spread, when a probe succeeds.
//!
//! The policy is [`tracker`]'s, a pure state machine; this module keeps one
//! per host and does the waiting. The middleware asks a [`Ticket`] "may I
//! send now?" before each attempt and reports each attempt's outcome.
//!
//! With a [`SharedStore`] set, the turn to probe is the fleet's: see
//! [`store::outage`](crate::store::outage). A request alone never asks the
//! store, so that it retries exactly as it would without one.
//!
//! Cost when nothing fails: a request to a host that has never failed gets no
//! ticket, after one atomic load while no host has failed, one lock and map
//! lookup after that. Memory: at most [`MAX_HOSTS`] hosts, idle ones dropped first.

#[cfg(test)]
mod store_tests;
mod tracker;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::clock::{Instant, later};

use http::StatusCode;
use tokio::sync::Notify;
use url::Url;

use crate::backoff::{Timing, repeated_within, retry_budget};
use crate::error::LlmApiError;
use crate::kind::ErrorKind;
use crate::metrics::{self, Cause};
use crate::provider::Provider;
use crate::store::outage::LEASE;
use crate::store::{OutageQuery, OutageReport, OutageTurn, SharedStore};
pub(crate) use tracker::Report;
use tracker::{Asker, Change, Decision, Tracker};

/// Hosts tracked at most; past it, a new host's failures are not tracked.
const MAX_HOSTS: usize = 256;

/// How often a process waiting on another's probe asks the store again: how
/// late, at most, it hears that the provider is back.
const POLL: Duration = Duration::from_millis(100);

/// The least wait before asking again: a time that passed during the round trip
/// (or on another machine's clock) must not make a process ask in a loop.
const MIN_POLL: Duration = Duration::from_millis(2);

/// The health of every host one middleware (and its clones) talks to.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Whether any host ever failed: until then, no request looks further.
    failed_once: AtomicBool,
    hosts: Mutex<HashMap<u64, Arc<Host>>>,
    /// Where the fleet's turn to probe is kept, when a store is set.
    store: Option<Arc<dyn SharedStore>>,
}

#[derive(Debug)]
struct Host {
    /// `host:port`, and `/model` for a model on a chain: for the log lines and the store.
    name: String,
    /// The host name alone, for the metrics' `host` label (a model's name may hold a colon).
    host: String,
    /// The provider of the request that first failed here, for the metrics.
    provider: Provider,
    tracker: Mutex<Tracker>,
    /// Wakes the waiting requests when a probe returns or the outage ends.
    wake: Notify,
    store: Option<Arc<dyn SharedStore>>,
}

impl Host {
    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The host of a URL with its port, hashed (one map entry per host and port).
/// Where health is kept: a host and port, and the model when the request's
/// model is known (one with a fallback configured): one model's outage then
/// holds only its own requests, and the others of the host go on.
fn host_key<'a>(url: &'a Url, model: Option<&str>) -> Option<(u64, &'a str, u16)> {
    let host = url.host_str()?;
    let port = url.port_or_known_default().unwrap_or(0);
    let mut hasher = std::hash::DefaultHasher::new();
    (host, port, model).hash(&mut hasher);
    Some((hasher.finish(), host, port))
}

impl Health {
    /// Health shared through `store` too, when there is one.
    pub(crate) fn new(store: Option<Arc<dyn SharedStore>>) -> Self {
        Health { store, ..Health::default() }
    }

    /// The ticket of a request to `url` (for `model`, when known), when its host has failed before.
    pub(crate) fn ticket(&self, url: &Url, model: Option<&str>) -> Option<Ticket> {
        if !self.failed_once.load(Ordering::Relaxed) {
            return None;
        }
        self.find(url, model, None)
    }

    /// The ticket of a request whose attempt just failed, its host tracked from now on.
    #[cold]
    pub(crate) fn ticket_after_failure(&self, url: &Url, model: Option<&str>, provider: Provider) -> Option<Ticket> {
        self.failed_once.store(true, Ordering::Relaxed);
        self.find(url, model, Some(provider))
    }

    /// The ticket of a request to `url` (for `model`, when known); its host tracked from now on,
    /// for `create`'s provider, when it was not.
    fn find(&self, url: &Url, model: Option<&str>, create: Option<Provider>) -> Option<Ticket> {
        let (key, name, port) = host_key(url, model)?;
        let mut hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let host = match (hosts.get(&key), create) {
            (Some(host), _) => host.clone(),
            (None, Some(provider)) => {
                if hosts.len() >= MAX_HOSTS {
                    hosts.retain(|_, host| !host.tracker().idle());
                }
                if hosts.len() >= MAX_HOSTS {
                    return None;
                }
                let host = Arc::new(Host {
                    name: match model {
                        Some(model) => format!("{name}:{port}/{model}"),
                        None => format!("{name}:{port}"),
                    },
                    host: name.to_owned(),
                    provider,
                    tracker: Mutex::default(),
                    wake: Notify::new(),
                    store: self.store.clone(),
                });
                hosts.insert(key, host.clone());
                host
            }
            (None, None) => return None,
        };
        drop(hosts);
        host.tracker().join();
        Some(Ticket { host, probing: false, leased: false, held: false })
    }
}

/// A request's place in its host's health: counted as active (in flight or
/// waiting) from when it is taken until it is dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    host: Arc<Host>,
    /// This request's attempt in flight is the outage's probe.
    probing: bool,
    /// ... under the fleet's lease, granted by the store.
    leased: bool,
    /// This request waits for the outage to end.
    held: bool,
}

/// A request held by an outage until its bound: it is not sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    /// The wait the provider asked for during the outage, if it said.
    pub(crate) retry_after: Option<Duration>,
}

/// The latest a request may be held before this attempt: what its retries
/// would have taken from its start, sent into the outage (its backoff
/// schedule, [`retry_budget`], or the provider's wait before each retry,
/// whichever is longer), never past `max_elapsed`; and this hold at most
/// `max_retry_after`, like one server wait.
fn bound(timing: &Timing, server_wait: Option<Duration>, started: Instant, now: Instant) -> Instant {
    let told = server_wait.filter(|wait| *wait <= timing.max_retry_after).unwrap_or_default();
    let schedule = retry_budget(timing).max(repeated_within(told, timing.max_retries, timing.max_elapsed));
    later(started, schedule).min(later(now, timing.max_retry_after))
}

impl Ticket {
    /// Waits while the host is in an outage, within the request's bounds:
    /// `Ok` to send (as the probe, maybe), or `Err` when held until its bound.
    /// A request that has not waited and has no time left goes, as it would
    /// have without this; one released after the outage goes by its bound at the latest.
    /// A request that can go elsewhere (a fallback model) is not `patient`: it
    /// is never held, and gets `Err` at once where it would have waited.
    pub(crate) async fn admit(
        &mut self,
        timing: &Timing,
        started: Instant,
        waited: &mut Duration,
        patient: bool,
    ) -> Result<(), Held> {
        let host = self.host.clone();
        let first = Instant::now();
        loop {
            // Registered before asking, so that a wake between the two is not lost.
            let notified = host.wake.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let (mut decision, server_wait, ask_fleet) = {
                let mut tracker = host.tracker();
                let decision = tracker.ask(now, Asker::of(patient, self.held));
                (decision, tracker.server_wait(), fleet_question(&host, &tracker, decision, patient))
            };
            if let Some(since) = ask_fleet {
                decision = self.fleet_turn(since, decision, now).await;
            }
            let bound = bound(timing, server_wait, started, first);
            let until = match decision {
                Decision::Go { probe } => return self.go(probe),
                Decision::GoAt(at) => {
                    tokio::time::sleep_until(at.min(bound).max(now)).await;
                    host.held(now.elapsed(), waited);
                    return self.go(false);
                }
                Decision::Wait(_) if !patient => {
                    self.hold(false);
                    return Err(Held { retry_after: server_wait });
                }
                Decision::Wait(until) => until.map_or(bound, |until| until.min(bound)),
            };
            if now >= bound {
                if !self.held {
                    return self.go(false);
                }
                self.hold(false);
                return Err(Held { retry_after: server_wait });
            }
            if !self.held {
                self.hold(true);
                tracing::debug!(host = host.name, "waiting for the provider's outage to end");
            }
            let _ = tokio::time::timeout_at(until, notified).await;
            host.held(now.elapsed(), waited);
        }
    }

    /// Asks the store whose turn it is to probe, and turns the answer into
    /// this request's decision. `since`: when this process's outage began, if in one.
    #[cold]
    async fn fleet_turn(&mut self, since: Option<Instant>, decision: Decision, asked: Instant) -> Decision {
        let host = self.host.clone();
        let Some(store) = &host.store else { return decision };
        let wall = SystemTime::now();
        let since = since.map(|since| wall_time(since, asked, wall));
        let turn = store.outage(&host.name, OutageQuery::new(since, LEASE)).await;
        let now = Instant::now();
        let in_outage = since.is_some();
        let (decision, change) = {
            let mut tracker = host.tracker();
            match turn {
                OutageTurn::Probe => {
                    self.leased = true;
                    let change = if in_outage { None } else { tracker.join_outage(now, true, now) };
                    (Decision::Go { probe: true }, change)
                }
                OutageTurn::Up if in_outage => (Decision::Go { probe: false }, tracker.recovered(now)),
                OutageTurn::Up => (Decision::Go { probe: false }, None),
                OutageTurn::Wait(at) => {
                    let until = now + poll_wait(at, SystemTime::now());
                    let change = if in_outage {
                        tracker.defer(until);
                        None
                    } else {
                        tracker.join_outage(now, false, until)
                    };
                    (Decision::Wait(Some(until)), change)
                }
            }
        };
        // The others here waited for this request's probe, which is not going: they ask again.
        host.wake.notify_waiters();
        host.log(change);
        decision
    }

    fn go(&mut self, probe: bool) -> Result<(), Held> {
        self.hold(false);
        self.probing = probe;
        self.leased &= probe;
        Ok(())
    }

    fn hold(&mut self, held: bool) {
        if self.held != held {
            self.held = held;
            self.host.tracker().wait(held);
        }
    }

    /// Whether its host (its host and model, for a model on a chain) is in an outage here.
    pub(crate) fn in_outage(&self) -> bool {
        self.host.tracker().since().is_some()
    }

    /// What the attempt just made said about the host.
    pub(crate) fn report(&mut self, report: Report, server_wait: Option<Duration>, base_delay: Duration) {
        let probe = std::mem::take(&mut self.probing);
        let leased = std::mem::take(&mut self.leased) && probe;
        let now = Instant::now();
        let (change, next_probe) = {
            let mut tracker = self.host.tracker();
            (tracker.report(report, probe, server_wait, now, base_delay), tracker.next_probe())
        };
        if probe || change.is_some() {
            self.host.wake.notify_waiters();
        }
        self.host.log(change);
        let next_probe = next_probe.map(|at| wall_time(at, now, SystemTime::now()));
        if let Some(news) = news(report, change, leased, next_probe) {
            self.host.tell(news);
        }
    }
}

/// What the store must hear of an attempt's outcome: a recovery whenever an
/// outage ends here or the fleet's probe (`leased`) succeeded, and a failed
/// probe with the next one's time. Nothing else: a failure that was not the
/// fleet's probe must not free the lease another process holds.
fn news(report: Report, change: Option<Change>, leased: bool, next_probe: Option<SystemTime>) -> Option<OutageReport> {
    match (report, change) {
        (_, Some(Change::Left { .. })) => Some(OutageReport::Recovered),
        (Report::Answered, _) if leased => Some(OutageReport::Recovered),
        (Report::Failed, _) if leased => {
            Some(OutageReport::ProbeFailed { next_probe: next_probe.unwrap_or_else(SystemTime::now) })
        }
        _ => None,
    }
}

impl Host {
    /// A request slept `wait` for the outage (until its release, a probe's news or its bound).
    fn held(&self, wait: Duration, waited: &mut Duration) {
        *waited += wait;
        metrics::waited(self.provider, Cause::Outage, wait);
    }

    fn log(&self, change: Option<Change>) {
        if let Some(change) = change {
            metrics::outage(self.provider, &self.host, !matches!(change, Change::Left { .. }));
        }
        match change {
            Some(Change::Entered { failures }) => tracing::warn!(
                host = self.name,
                failures,
                "provider outage: holding requests, probing with one at a time"
            ),
            Some(Change::Joined) => tracing::warn!(
                host = self.name,
                "provider outage, said by another process sharing the store: holding requests"
            ),
            Some(Change::Left { probes, lasted }) => tracing::info!(
                host = self.name,
                probes,
                lasted_ms = lasted.as_millis() as u64,
                "provider outage over: releasing the held requests"
            ),
            None => {}
        }
    }

    /// Tells the store, if there is one, without making the request wait for it.
    fn tell(self: &Arc<Self>, news: OutageReport) {
        let (Some(store), Ok(runtime)) = (self.store.clone(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let host = self.clone();
        runtime.spawn(async move { store.report_outage(&host.name, news).await });
    }
}

/// Whether a request should ask the store before it goes, and with what:
/// `Some(since)` when its process would probe now (`since` its outage's
/// start), or would send to a host that has started failing (`Some(None)`).
/// Never when it is alone and `patient`: its own retries are its probes, as
/// without a store; one that can go elsewhere asks, so as not to retry into the fleet's outage.
fn fleet_question(host: &Host, tracker: &Tracker, decision: Decision, patient: bool) -> Option<Option<Instant>> {
    if host.store.is_none() || (patient && tracker.alone()) {
        return None;
    }
    match decision {
        Decision::Go { probe: true } => Some(tracker.since()),
        Decision::Go { probe: false } if tracker.failing() => Some(None),
        _ => None,
    }
}

/// How long to wait before asking the store again, told to wait until `at`:
/// soon even when the next probe is far (how late the provider's return is
/// heard), and not at once when `at` has passed in the round trip or by
/// clock skew (that would ask in a loop).
fn poll_wait(at: SystemTime, now: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or_default().clamp(MIN_POLL, POLL)
}

/// The wall-clock time of `at`, given that `now` is `wall`.
fn wall_time(at: Instant, now: Instant, wall: SystemTime) -> SystemTime {
    let shifted = if at >= now { wall.checked_add(at - now) } else { wall.checked_sub(now - at) };
    shifted.unwrap_or(wall)
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut tracker = self.host.tracker();
        if self.held {
            tracker.wait(false);
        }
        tracker.leave(self.probing, Instant::now());
        drop(tracker);
        if self.probing {
            // An abandoned probe: the next request probes at once.
            self.host.wake.notify_waiters();
            if self.leased {
                self.host.tell(OutageReport::ProbeAbandoned);
            }
        }
    }
}

/// How an attempt's outcome bears on its host's health: overload, any 5xx,
/// a connect error or a timeout count as failures; 429 and the other 4xx
/// show a provider that answers.
pub(crate) fn judge(status: StatusCode, kind: ErrorKind) -> Report {
    if status.is_server_error() || kind == ErrorKind::Overloaded { Report::Failed } else { Report::Answered }
}

/// The error of a request held by an outage and never sent (status 503, kind `Overloaded`).
pub(crate) fn held_error(provider: Provider, held: Held, attempts: u32) -> LlmApiError {
    let mut error = LlmApiError::from_status(provider, StatusCode::SERVICE_UNAVAILABLE);
    error.kind = ErrorKind::Overloaded;
    error.fix = ErrorKind::Overloaded.fix();
    error.message = "held by the provider's outage until this request's retry bounds ran out".into();
    error.retryable = true;
    error.retry_after = held.retry_after;
    error.attempts = attempts;
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_hears_of_recoveries_and_of_the_fleets_probes_only() {
        let next = SystemTime::UNIX_EPOCH + Duration::from_secs(9);
        let at = Some(next);
        let left = Some(Change::Left { probes: 2, lasted: Duration::from_secs(1) });
        let recovered = Some(OutageReport::Recovered);
        assert_eq!(news(Report::Answered, left, false, None), recovered, "an outage ended here");
        assert_eq!(news(Report::Answered, None, true, None), recovered, "the fleet's probe succeeded");
        assert_eq!(news(Report::Answered, None, false, at), None, "an ordinary success");
        let failed = Some(OutageReport::ProbeFailed { next_probe: next });
        assert_eq!(news(Report::Failed, None, true, at), failed);
        assert_eq!(news(Report::Failed, None, false, at), None, "not the fleet's probe: the lease is another's");
        assert_eq!(news(Report::Failed, Some(Change::Entered { failures: 10 }), false, at), None);
    }

    #[test]
    fn wall_times_follow_the_monotonic_clock_both_ways() {
        let (now, wall) = (Instant::now(), SystemTime::UNIX_EPOCH + Duration::from_secs(100));
        let second = Duration::from_secs(1);
        assert_eq!(wall_time(now + second, now, wall), wall + second);
        assert_eq!(wall_time(now, now, wall), wall);
        if let Some(before) = now.checked_sub(second) {
            assert_eq!(wall_time(before, now, wall), wall - second);
        }
    }
}
