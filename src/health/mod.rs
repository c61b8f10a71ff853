//! Provider health per host, across credentials: during an outage, one
//! request at a time goes as a probe while the others wait, within their own
//! retry bounds, and they are released, spread, when a probe succeeds.
//!
//! The policy is [`tracker`]'s, a pure state machine; this module keeps one
//! per host and does the waiting. The middleware asks a [`Ticket`] "may I
//! send now?" before each attempt and reports each attempt's outcome.
//!
//! Cost when nothing fails: a request to a host that has never failed gets no
//! ticket, after one atomic load while no host has failed, one lock and map
//! lookup after that. Memory: at most [`MAX_HOSTS`] hosts, idle ones dropped first.

mod tracker;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::sync::Notify;
use url::Url;

use crate::backoff::{Timing, retry_budget};
use crate::error::LlmApiError;
use crate::kind::ErrorKind;
use crate::provider::Provider;
pub(crate) use tracker::Report;
use tracker::{Change, Decision, Tracker};

/// Hosts tracked at most; past it, a new host's failures are not tracked.
const MAX_HOSTS: usize = 256;

/// The health of every host one middleware (and its clones) talks to.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Whether any host ever failed: until then, no request looks further.
    failed_once: AtomicBool,
    hosts: Mutex<HashMap<u64, Arc<Host>>>,
}

#[derive(Debug)]
struct Host {
    /// `host:port`, for the log lines.
    name: String,
    tracker: Mutex<Tracker>,
    /// Wakes the waiting requests when a probe returns or the outage ends.
    wake: Notify,
}

impl Host {
    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The host of a URL with its port, hashed (one map entry per host and port).
fn host_key(url: &Url) -> Option<(u64, &str, u16)> {
    let host = url.host_str()?;
    let port = url.port_or_known_default().unwrap_or(0);
    let mut hasher = std::hash::DefaultHasher::new();
    (host, port).hash(&mut hasher);
    Some((hasher.finish(), host, port))
}

impl Health {
    /// The ticket of a request to `url`, when its host has failed before.
    pub(crate) fn ticket(&self, url: &Url) -> Option<Ticket> {
        if !self.failed_once.load(Ordering::Relaxed) {
            return None;
        }
        self.find(url, false)
    }

    /// The ticket of a request whose attempt just failed, its host tracked from now on.
    #[cold]
    pub(crate) fn ticket_after_failure(&self, url: &Url) -> Option<Ticket> {
        self.failed_once.store(true, Ordering::Relaxed);
        self.find(url, true)
    }

    fn find(&self, url: &Url, create: bool) -> Option<Ticket> {
        let (key, name, port) = host_key(url)?;
        let mut hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let host = match hosts.get(&key) {
            Some(host) => host.clone(),
            None if create => {
                if hosts.len() >= MAX_HOSTS {
                    hosts.retain(|_, host| !host.tracker().idle());
                }
                if hosts.len() >= MAX_HOSTS {
                    return None;
                }
                let host =
                    Arc::new(Host { name: format!("{name}:{port}"), tracker: Mutex::default(), wake: Notify::new() });
                hosts.insert(key, host.clone());
                host
            }
            None => return None,
        };
        drop(hosts);
        host.tracker().join();
        Some(Ticket { host, probing: false, held: false })
    }
}

/// A request's place in its host's health: counted as active (in flight or
/// waiting) from when it is taken until it is dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    host: Arc<Host>,
    /// This request's attempt in flight is the outage's probe.
    probing: bool,
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
    let schedule = retry_budget(timing).max(told.saturating_mul(timing.max_retries).min(timing.max_elapsed));
    let by_schedule = started.checked_add(schedule);
    let by_wait = now.checked_add(timing.max_retry_after);
    match (by_schedule, by_wait) {
        (Some(a), Some(b)) => a.min(b),
        (Some(at), None) | (None, Some(at)) => at,
        (None, None) => now + Duration::from_secs(365 * 24 * 3600),
    }
}

impl Ticket {
    /// Waits while the host is in an outage, within the request's bounds:
    /// `Ok` to send (as the probe, maybe), or `Err` when held until its bound.
    /// A request that has not waited and has no time left goes, as it would
    /// have without this; one released after the outage goes by its bound at the latest.
    pub(crate) async fn admit(&mut self, timing: &Timing, started: Instant, waited: &mut Duration) -> Result<(), Held> {
        let host = self.host.clone();
        let first = Instant::now();
        loop {
            // Registered before asking, so that a wake between the two is not lost.
            let notified = host.wake.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let (decision, server_wait) = {
                let mut tracker = host.tracker();
                (tracker.ask(now, self.held), tracker.server_wait())
            };
            let bound = bound(timing, server_wait, started, first);
            let until = match decision {
                Decision::Go { probe } => return self.go(probe),
                Decision::GoAt(at) => {
                    tokio::time::sleep_until(at.min(bound).max(now).into()).await;
                    *waited += now.elapsed();
                    return self.go(false);
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
            let _ = tokio::time::timeout_at(until.into(), notified).await;
            *waited += now.elapsed();
        }
    }

    fn go(&mut self, probe: bool) -> Result<(), Held> {
        self.hold(false);
        self.probing = probe;
        Ok(())
    }

    fn hold(&mut self, held: bool) {
        if self.held != held {
            self.held = held;
            self.host.tracker().wait(held);
        }
    }

    /// What the attempt just made said about the host.
    pub(crate) fn report(&mut self, report: Report, server_wait: Option<Duration>, base_delay: Duration) {
        let probe = std::mem::take(&mut self.probing);
        let change = self.host.tracker().report(report, probe, server_wait, Instant::now(), base_delay);
        if probe || change.is_some() {
            self.host.wake.notify_waiters();
        }
        match change {
            Some(Change::Entered { failures }) => tracing::warn!(
                host = self.host.name,
                failures,
                "provider outage: holding requests, probing with one at a time"
            ),
            Some(Change::Left { probes, lasted }) => tracing::info!(
                host = self.host.name,
                probes,
                lasted_ms = lasted.as_millis() as u64,
                "provider outage over: releasing the held requests"
            ),
            None => {}
        }
    }
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
        }
    }
}

/// How an attempt's outcome bears on its host's health: overload, any 5xx,
/// a connect error or a timeout count as failures; 429 and the other 4xx
/// show a provider that answers.
pub(crate) fn judge(status: StatusCode, kind: ErrorKind) -> Report {
    if status.is_server_error() || kind == ErrorKind::Overloaded { Report::Failed } else { Report::Answered }
}

/// The error of a request held until its bound without being sent:
/// `Overloaded`, retryable, with the provider's wait when it gave one.
#[cold]
pub(crate) fn held_error(provider: Provider, held: Held, attempts: u32) -> reqwest_middleware::Error {
    let mut error = LlmApiError::from_status(provider, StatusCode::SERVICE_UNAVAILABLE);
    error.kind = ErrorKind::Overloaded;
    error.fix = ErrorKind::Overloaded.fix();
    error.message = "held by the provider's outage until this request's retry bounds ran out".into();
    error.retryable = true;
    error.retry_after = held.retry_after;
    error.attempts = attempts;
    reqwest_middleware::Error::middleware(error)
}
