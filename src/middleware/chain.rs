//! A request on a model chain: what a call keeps to fall back with.

use reqwest::Request;

use super::config::Config;
use crate::error::LlmApiError;
use crate::fallback::{self, Chain, Refusal};
use crate::provider::Provider;

/// A request on a model chain: the request as the caller built it, to rewrite
/// for the next model, and where the chain stands.
pub(super) struct Rerouting<'a> {
    pub(super) source: Request,
    pub(super) chain: Chain<'a>,
    /// The requested model's last error, once the request has left it.
    pub(super) primary_error: Option<LlmApiError>,
}

impl Rerouting<'_> {
    /// The model the request now names.
    pub(super) fn model(&self) -> &str {
        self.chain.current()
    }
}

/// The chain of a request whose model has a fallback; `None` (and no body
/// read) when no fallback is configured, and `None` for a signed request.
pub(super) fn rerouting<'a>(config: &'a Config, provider: Provider, request: &Request) -> Option<Box<Rerouting<'a>>> {
    if config.fallbacks.is_empty() {
        return None;
    }
    rerouting_cold(config, provider, request)
}

#[cold]
fn rerouting_cold<'a>(config: &'a Config, provider: Provider, request: &Request) -> Option<Box<Rerouting<'a>>> {
    let model = fallback::peek_model(provider, request, fallback::PEEK_LIMIT)?;
    let chain = Chain::start(&config.fallbacks, &model)?;
    if fallback::is_signed(request.url(), request.headers()) {
        // Another model would void its signature. Without a chain it is
        // handled as if it had no fallback: its host's health, and held in
        // an outage rather than sent on to a fallback that refuses it.
        fallback::event::not_falling_back(provider, chain.requested(), Refusal::Signed);
        return None;
    }
    let source = request.try_clone()?;
    Some(Box::new(Rerouting { source, chain, primary_error: None }))
}
