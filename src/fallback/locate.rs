//! Where each provider names the model, and the same request naming another.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use http::HeaderValue;
use http::header::CONTENT_LENGTH;
use reqwest::Request;
use url::Url;

use super::json::{self, Scan};
use super::path::{self, PathSite};
use super::signed::is_signed;
use crate::provider::Provider;

/// A place where a request can name its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// A segment of the URL path.
    Path(PathSite),
    /// The top-level `"model"` string of a JSON body.
    Body,
}

impl Site {
    /// Every site, for a request whose provider is not known (the mock kit's matcher).
    #[cfg(feature = "mock")]
    pub(crate) const ANY: &'static [Site] = &[
        Site::Path(PathSite::GoogleModel),
        Site::Path(PathSite::BedrockModel),
        Site::Path(PathSite::AzureDeployment),
        Site::Body,
    ];

    /// Where `provider` looks for the model, in order. A URL that names it
    /// comes first, as the provider routes by it; the same hosts' OpenAI-style
    /// endpoints (Gemini's `/v1beta/openai/`, Vertex AI's `endpoints/openapi`,
    /// Bedrock's and Azure's `/openai/v1/`) name it in the body.
    pub(crate) fn of(provider: Provider) -> &'static [Site] {
        match provider {
            Provider::Gemini | Provider::VertexAi => &[Site::Path(PathSite::GoogleModel), Site::Body],
            Provider::Bedrock => &[Site::Path(PathSite::BedrockModel), Site::Body],
            Provider::AzureOpenAi => &[Site::Path(PathSite::AzureDeployment), Site::Body],
            _ => &[Site::Body],
        }
    }
}

/// Why a request is not sent to another model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its signature covers the URL or the body (AWS SigV4): a changed model
    /// would be rejected, and only the caller can sign again.
    Signed,
    /// Its body is a stream: it can be neither read nor copied.
    Stream,
    /// It names no model where its provider puts one, or its JSON body is
    /// malformed or names the model twice.
    NoModel,
}

impl Refusal {
    /// A snake_case name, for a log field.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Refusal::Signed => "signed",
            Refusal::Stream => "stream_body",
            Refusal::NoModel => "no_model",
        }
    }
}

/// Where in a request its model is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// The byte span of the JSON string, quotes included.
    Body(Range<usize>),
    /// The byte span of the encoded segment in `url.path()`.
    Path(PathSite, Range<usize>),
}

/// A request's model, found where a rewrite can replace it.
pub(crate) struct Located<'r> {
    request: &'r Request,
    place: Place,
    model: Cow<'r, str>,
}

/// Without the request: its URL and headers can hold credentials.
impl fmt::Debug for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Located").field("place", &self.place).field("model", &self.model).finish_non_exhaustive()
    }
}

/// Finds the model of a request about to be sent to another model: the
/// whole body is checked, and a request that cannot be rewritten says why.
pub(crate) fn locate(provider: Provider, request: &Request) -> Result<Located<'_>, Refusal> {
    if is_signed(request.url(), request.headers()) {
        return Err(Refusal::Signed);
    }
    let body = match request.body() {
        Some(body) => Some(body.as_bytes().ok_or(Refusal::Stream)?),
        None => None,
    };
    let (place, model) = find(Site::of(provider), request.url(), body, Scan::Whole).ok_or(Refusal::NoModel)?;
    Ok(Located { request, place, model })
}

/// The model a request names, read for a label or a key: at most `limit`
/// bytes of the body are scanned, and nothing is allocated unless the name
/// is escaped. Signed and streamed requests are read too.
pub(crate) fn peek_model(provider: Provider, request: &Request, limit: usize) -> Option<Cow<'_, str>> {
    let body = request.body().and_then(reqwest::Body::as_bytes);
    find(Site::of(provider), request.url(), body, Scan::Prefix(limit)).map(|(_, model)| model)
}

/// The model a request's parts name at the first of `sites` that names
/// one, its JSON body checked whole: for a request already received (the
/// mock kit's matcher).
#[cfg(feature = "mock")]
pub(crate) fn model_in<'a>(sites: &[Site], url: &'a Url, body: Option<&'a [u8]>) -> Option<Cow<'a, str>> {
    find(sites, url, body, Scan::Whole).map(|(_, model)| model)
}

/// The first of `sites` where the request names a model, and that model.
fn find<'a>(sites: &[Site], url: &'a Url, body: Option<&'a [u8]>, scan: Scan) -> Option<(Place, Cow<'a, str>)> {
    sites.iter().find_map(|&site| match site {
        Site::Path(site) => {
            let span = site.find(url.path())?;
            let model = path::decode(&url.path()[span.clone()])?;
            Some((Place::Path(site, span), model))
        }
        Site::Body => {
            let body = body?;
            let span = json::model_span(body, scan).ok()?;
            let model = json::decode_string(&body[span.clone()])?;
            Some((Place::Body(span), model))
        }
    })
}

impl<'r> Located<'r> {
    /// The model the request names, decoded.
    #[cfg(test)]
    pub(crate) fn model(&self) -> &str {
        &self.model
    }

    /// A copy of the request naming `model` instead: the same method,
    /// headers, version, timeout and extensions, and every byte of the URL
    /// and body but the model's. A `Content-Length` the request carried
    /// counts the new body.
    pub(crate) fn rewrite(&self, model: &str) -> Result<Request, Refusal> {
        let mut copy = self.request.try_clone().ok_or(Refusal::Stream)?;
        match &self.place {
            Place::Body(span) => {
                let body = self.request.body().and_then(reqwest::Body::as_bytes).ok_or(Refusal::Stream)?;
                let spliced = json::splice(body, span.clone(), model).ok_or(Refusal::NoModel)?;
                if copy.headers().contains_key(CONTENT_LENGTH) {
                    copy.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(spliced.len()));
                }
                *copy.body_mut() = Some(reqwest::Body::from(spliced));
            }
            Place::Path(site, span) => {
                let path = self.request.url().path();
                let (before, after) = (path.get(..span.start), path.get(span.end..));
                let (Some(before), Some(after)) = (before, after) else { return Err(Refusal::NoModel) };
                copy.url_mut().set_path(&format!("{before}{}{after}", site.encode(model)));
            }
        }
        Ok(copy)
    }
}

#[cfg(test)]
mod tests;
