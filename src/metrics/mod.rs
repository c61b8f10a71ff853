//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade (cargo feature `metrics`).
//!
//! Why a facade: the program picks the exporter (Prometheus, OpenTelemetry, StatsD) by
//! installing a recorder; this crate only says what happened, and records nothing anyone pays
//! for until a recorder is there to hear it.
//!
//! Why these labels: each takes few values and none is a secret. `provider` is
//! [`Provider::name`], `outcome` and `reason` an [`ErrorKind::name`] (or `success`,
//! `stream_error`), `cause` and `limit` fixed words, `host` the host of the request's URL
//! (never its path, query, user, password or port), and `from`/`to` the models a fallback was
//! configured with. So a series exists per provider, host and model the program called, never
//! per request or per key.
//!
//! Each function below is one event of the loop. Without the feature each is empty and
//! inlined, so the loop's calls compile to nothing.

#[cfg(feature = "metrics")]
mod keys;
#[cfg(feature = "metrics")]
mod labels;

use std::time::Duration;

use http::StatusCode;
use url::Url;

use crate::kind::ErrorKind;
use crate::provider::Provider;
use crate::rate_limits::RateLimits;

#[cfg(feature = "metrics")]
use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

/// Calls through the middleware, by provider and `outcome`.
#[cfg(feature = "metrics")]
const REQUESTS: &str = "llm_retry_requests_total";
/// Retries, by provider and `reason`.
#[cfg(feature = "metrics")]
const RETRIES: &str = "llm_retry_retries_total";
/// Each wait, in seconds, by provider and `cause`.
#[cfg(feature = "metrics")]
const WAITS: &str = "llm_retry_wait_seconds";
/// The last `remaining` count a response stated, by provider, host and `limit`.
#[cfg(feature = "metrics")]
const REMAINING: &str = "llm_retry_ratelimit_remaining";
/// 1 while a host is in an outage, else 0, by provider and host.
#[cfg(feature = "metrics")]
const OUTAGE: &str = "llm_retry_outage";
/// Fallbacks to another model, by provider, `from` and `to`.
#[cfg(feature = "metrics")]
const FALLBACKS: &str = "llm_retry_fallbacks_total";

/// Why a request waited: the `cause` label of [`waited`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))] // `Retry` is named by `retried`'s body only.
pub(crate) enum Cause {
    /// Before a retry: the server's wait or the backoff.
    Retry,
    /// Held by the shared rate-limit pacing.
    RateLimit,
    /// Held by a provider outage.
    Outage,
}

/// Tells the installed recorder what each metric is (its help text and unit). Recorders
/// installed later miss this, and only this: the values are recorded all the same.
#[cfg_attr(not(feature = "metrics"), inline(always))]
pub(crate) fn describe() {
    #[cfg(feature = "metrics")]
    {
        describe_counter!(REQUESTS, Unit::Count, "Calls through the middleware, by final outcome");
        describe_counter!(RETRIES, Unit::Count, "Retries, by the error that caused them");
        describe_histogram!(WAITS, Unit::Seconds, "Each wait: before a retry, for rate-limit pacing, in an outage");
        describe_gauge!(REMAINING, Unit::Count, "The last remaining count a response's rate-limit headers stated");
        describe_gauge!(OUTAGE, "1 while the host is in an outage (requests held, one probing), else 0");
        describe_counter!(FALLBACKS, Unit::Count, "Requests sent again with the fallback model");
    }
}

/// A call ended in a success (any status below 400).
#[cfg_attr(not(feature = "metrics"), inline(always))]
pub(crate) fn succeeded(provider: Provider) {
    #[cfg(feature = "metrics")]
    keys::count_success(provider);
    #[cfg(not(feature = "metrics"))]
    let _ = provider;
}

/// A call ended in an error response (or was held by an outage and never sent): `kind` is its error's.
#[cfg_attr(not(feature = "metrics"), inline(always))]
pub(crate) fn failed(provider: Provider, kind: ErrorKind) {
    #[cfg(feature = "metrics")]
    counter!(REQUESTS, "provider" => provider.name(), "outcome" => kind.name()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (provider, kind);
}

/// A call ended in a transport error.
#[cfg_attr(not(feature = "metrics"), inline(always))]
pub(crate) fn failed_in_transport(provider: Provider, error: &reqwest_middleware::Error) {
    #[cfg(feature = "metrics")]
    failed(provider, labels::transport_kind(error));
    #[cfg(not(feature = "metrics"))]
    let _ = (provider, error);
}

/// A retry decided and waited for, counted once it is sent: one that an outage holds until
/// its bound, or that goes to a fallback model instead, was never a retry. Empty without the feature.
#[derive(Debug, Default)]
pub(crate) struct PendingRetry {
    #[cfg(feature = "metrics")]
    reason: Option<&'static str>,
}

/// An attempt answered `status` with an error of `kind` (an error event in a `200`
/// stream included), and the request is to be sent again after `wait`.
#[cfg_attr(not(feature = "metrics"), inline(always))]
pub(crate) fn retried(provider: Provider, status: StatusCode, kind: ErrorKind, wait: Duration) -> PendingRetry {
    #[cfg(feature = "metrics")]
    return retried_for(provider, labels::retry_reason(status, kind), wait);
    #[cfg(not(feature = "metrics"))]
    {
        let _ = (provider, status, kind, wait);
        PendingRetry::default()
    }
}

/// An attempt failed in transport, and the request is to be sent again after `wait`.
#[cfg_attr(not(feature = "metrics"), inline(always))]
pub(crate) fn retried_after_transport(
    provider: Provider,
    error: &reqwest_middleware::Error,
    wait: Duration,
) -> PendingRetry {
    #[cfg(feature = "metrics")]
    return retried_for(provider, labels::transport_kind(error).name(), wait);
    #[cfg(not(feature = "metrics"))]
    {
        let _ = (provider, error, wait);
        PendingRetry::default()
    }
}

#[cfg(feature = "metrics")]
fn retried_for(provider: Provider, reason: &'static str, wait: Duration) -> PendingRetry {
    waited(provider, Cause::Retry, wait);
    PendingRetry { reason: Some(reason) }
}

/// The request is sent: a retry, if one was pending.
#[cfg_attr(not(feature = "metrics"), inline(always))]
pub(crate) fn sending(provider: Provider, pending: &mut PendingRetry) {
    #[cfg(feature = "metrics")]
    if let Some(reason) = pending.reason.take() {
        counter!(RETRIES, "provider" => provider.name(), "reason" => reason).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (provider, pending);
}

/// A request slept `wait`, for `cause`: before a retry, or held by the pacing or an outage
/// (one record per sleep: a hold wakes to look again when a probe returns). No sleep, no record.
#[cfg_attr(not(feature = "metrics"), inline(always))]
pub(crate) fn waited(provider: Provider, cause: Cause, wait: Duration) {
    #[cfg(feature = "metrics")]
    if !wait.is_zero() {
        histogram!(WAITS, "provider" => provider.name(), "cause" => cause.label()).record(wait.as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (provider, cause, wait);
}

/// Whether metrics are recorded: then every response's rate limits are read for the headroom gauge.
pub(crate) const ENABLED: bool = cfg!(feature = "metrics");

/// A response to `url` stated its rate limits.
#[cfg_attr(not(feature = "metrics"), inline(always))]
pub(crate) fn rate_limits(provider: Provider, url: &Url, limits: Option<&RateLimits>) {
    #[cfg(feature = "metrics")]
    if let Some(limits) = limits
        && let Some(host) = labels::host(url)
    {
        keys::set_headroom(provider, host, labels::remaining(limits));
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (provider, url, limits);
}

/// `host` (a host name, without its port) entered an outage (`true`) or left it.
#[cfg_attr(not(feature = "metrics"), inline(always))]
pub(crate) fn outage(provider: Provider, host: &str, in_outage: bool) {
    #[cfg(feature = "metrics")]
    gauge!(OUTAGE, "provider" => provider.name(), "host" => host.to_owned()).set(f64::from(u8::from(in_outage)));
    #[cfg(not(feature = "metrics"))]
    let _ = (provider, host, in_outage);
}

/// A request for model `from` is sent again with model `to`.
#[cfg_attr(not(feature = "metrics"), inline(always))]
pub(crate) fn fell_back(provider: Provider, from: &str, to: &str) {
    #[cfg(feature = "metrics")]
    counter!(FALLBACKS, "provider" => provider.name(), "from" => from.to_owned(), "to" => to.to_owned()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (provider, from, to);
}
