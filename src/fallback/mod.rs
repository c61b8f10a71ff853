//! Model fallback: a request whose model is overloaded is sent again, to the
//! same provider and host, naming the model the caller configured next.
//!
//! Why within one provider only: the request and the response keep their
//! shape, so only the model's name changes, and the caller reads the answer
//! as it would have read the first model's. Another provider would need the
//! request and the response translated.
//!
//! Everything here is pure and synchronous; the retry loop asks:
//! - [`trigger`]: does this final failure fall back?
//! - [`Fallbacks`] and [`Chain`]: to which model next, a chain ending at a
//!   model already tried;
//! - [`locate`] and [`Located::rewrite`]: where the request names its model,
//!   and the request naming another (the JSON `model` spliced into the
//!   original bytes, or the URL segment of Gemini, Vertex AI, Bedrock and
//!   Azure deployments); signed and streamed requests are refused;
//! - [`peek_model`]: the model's name for a key or a label, cheaply;
//! - [`is_signed`]: whether a signature covers the URL or the body (such a
//!   request gets no chain: it is handled as without a fallback);
//! - [`event`]: the `tracing` events;
//!
//! and tells the caller with a [`ModelFallback`].

pub(crate) mod event;
mod json;
mod locate;
mod model_fallback;
mod path;
mod signed;
mod table;
pub(crate) mod trigger;

pub(crate) use locate::{Refusal, locate, peek_model};
#[cfg(feature = "mock")]
pub(crate) use locate::{Site, model_in};
pub use model_fallback::ModelFallback;
pub(crate) use signed::is_signed;
pub(crate) use table::{Chain, Fallbacks};

/// How much of a JSON body [`peek_model`] reads by default before giving up
/// on finding the model. A scan costs about 0.75 instructions a byte of
/// plain text and 12 a byte of text dense with escapes (callgrind, one
/// escape every 4 bytes), so at most about 0.8 M instructions here; a body
/// whose `"model"` comes first costs about 900 in all.
pub(crate) const PEEK_LIMIT: usize = 64 * 1024;
