//! What a built middleware runs with: the settings, the shared state, and the
//! provider a request goes to.

use std::sync::Arc;
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};

use crate::backoff::Timing;
use crate::cooldown::Pacer;
use crate::defaults;
use crate::fallback::Fallbacks;
use crate::health::Health;
use crate::policy::RetryRule;
use crate::provider::{HostMapping, Provider, normalize_host};
use crate::stream::{self, StreamFormat};

/// The settings and shared state of one middleware and its clones.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) timing: Timing,
    pub(crate) hosts: Vec<(HostMapping, Provider)>,
    pub(crate) rules: Vec<(Provider, RetryRule)>,
    pub(crate) error_body_limit: usize,
    pub(crate) error_body_timeout: Duration,
    pub(crate) upload_buffer_limit: usize,
    pub(crate) error_for_status: bool,
    /// Shared rate-limit state; `None` when turned off.
    pub(crate) pacer: Option<Arc<Pacer>>,
    /// Shared provider health per host; `None` when turned off.
    pub(crate) health: Option<Arc<Health>>,
    /// Whether the start of event streams is watched, and within what bounds.
    pub(crate) streams: bool,
    pub(crate) stream_hold: StreamHold,
    /// The `fallback(from, to)` pairs; empty, and never looked at, by default.
    pub(crate) fallbacks: Fallbacks,
}

/// How much of a stream's start may be held, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamHold {
    pub(crate) limit: usize,
    pub(crate) patience: Duration,
}

impl StreamHold {
    const DEFAULT: StreamHold =
        StreamHold { limit: defaults::STREAM_HOLD_LIMIT, patience: defaults::STREAM_HOLD_TIMEOUT };
}

impl Default for Config {
    fn default() -> Self {
        crate::metrics::describe();
        Config {
            timing: Timing::default(),
            hosts: Vec::new(),
            rules: Vec::new(),
            error_body_limit: defaults::ERROR_BODY_LIMIT,
            error_body_timeout: defaults::ERROR_BODY_TIMEOUT,
            pacer: defaults::COOLDOWN.then(|| Arc::new(Pacer::new(None))),
            health: defaults::OUTAGE.then(|| Arc::new(Health::default())),
            streams: defaults::STREAMS,
            stream_hold: StreamHold::DEFAULT,
            upload_buffer_limit: defaults::UPLOAD_BUFFER_LIMIT,
            error_for_status: defaults::ERROR_FOR_STATUS,
            fallbacks: Fallbacks::default(),
        }
    }
}

impl Config {
    /// The provider a request goes to: its `Provider` extension, else a
    /// `host()` mapping, else the URL's host.
    pub(crate) fn provider(&self, request: &Request, extensions: &Extensions) -> Provider {
        if let Some(provider) = extensions.get::<Provider>() {
            return *provider;
        }
        let Some(host) = request.url().host_str() else {
            return Provider::Unknown;
        };
        if self.hosts.is_empty() {
            // A parsed URL's host is already lower-case, without a port.
            return Provider::from_normalized_host(host.trim_end_matches('.'));
        }
        let host = normalize_host(host);
        self.hosts
            .iter()
            .find(|(mapping, _)| mapping.matches(&host))
            .map_or_else(|| Provider::from_host(&host), |&(_, provider)| provider)
    }

    /// The format to watch a success's body with, when it is a stream worth watching.
    pub(crate) fn stream_format(&self, provider: Provider, response: &Response) -> Option<&'static StreamFormat> {
        if !self.streams {
            return None;
        }
        stream::watched(provider, response)
    }
}
