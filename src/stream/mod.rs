//! Errors inside a `200` event stream.
//!
//! Why hold the start of a stream: providers report overload and rate limits
//! that strike after the status line in-band, as an error event in a `200`
//! stream (Anthropic `event: error` with `overloaded_error`, OpenAI
//! `server_is_overloaded` chunks, Gemini `UNAVAILABLE`). A retry layer that
//! looks only at the status misses them, and the caller's bot fails on an
//! error that one more request would have fixed. An error that comes before
//! the first output is the same transient failure as a `529` or `503`: the
//! caller has seen nothing, so a retry duplicates nothing. After output has
//! started, a retry would repeat it, so nothing is retried.
//!
//! So the events before the first output-bearing one are held (within a byte
//! and a time bound), then replayed byte for byte in front of the rest. An
//! output event costs nothing: it is released as soon as it arrives.

mod format;
mod sse;

use std::ops::ControlFlow;
use std::time::Duration;

use reqwest::Response;

use crate::body::HeldResponse;
use format::Seen;
pub(crate) use format::{InBandError, StreamFormat, error_in, stream_format};
use sse::EventReader;

/// How the start of a stream turned out.
#[derive(Debug)]
pub(crate) enum Start {
    /// Output came (or the end, a bound, a transport error): the stream as
    /// it would have been without us.
    Clean(Response),
    /// An error event came first.
    Failed(HeldResponse, InBandError),
}

/// The format to watch `response` with, when it is a stream of a known
/// provider that is not compressed beyond what reqwest decoded.
pub(crate) fn watched(provider: crate::provider::Provider, response: &Response) -> Option<&'static StreamFormat> {
    let headers = response.headers();
    // Bytes, not `to_str`: this runs on every success, and validating the whole value buys nothing.
    let is_event_stream = headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().trim_ascii_start().get(..17).is_some_and(|m| m.eq_ignore_ascii_case(b"text/event-stream"))
    });
    if !is_event_stream || headers.contains_key(http::header::CONTENT_ENCODING) {
        return None;
    }
    stream_format(provider)
}

/// Reads `response`'s events until one carries output or an error, the
/// body ends, `limit` bytes were read, or `patience` ran out.
pub(crate) async fn hold(response: Response, format: &StreamFormat, limit: usize, patience: Duration) -> Start {
    let mut reader = EventReader::default();
    let mut error = None;
    let mut judge = |event| match format.classify(&event) {
        Seen::Preamble => ControlFlow::Continue(()),
        Seen::Output => ControlFlow::Break(None),
        Seen::Error(found) => ControlFlow::Break(Some(found)),
    };
    let held = HeldResponse::read_until(response, limit, patience, |chunk| match reader.feed(chunk, &mut judge) {
        ControlFlow::Continue(()) => false,
        ControlFlow::Break(found) => {
            error = found;
            true
        }
    })
    .await;
    if error.is_none()
        && held.ended()
        && let Some(event) = reader.finish()
        && let ControlFlow::Break(found) = judge(event)
    {
        error = found;
    }
    match error {
        Some(error) => Start::Failed(held, error),
        None => Start::Clean(held.into_response()),
    }
}

/// Every event `chunks` hold (name, data), read as the middleware reads a
/// stream's start, each with what the provider's table makes of it
/// (`preamble`, `output`, `error {status}`, or `unwatched`). For the fuzz
/// targets and property tests only: not covered by semver.
#[doc(hidden)]
pub fn read_events(provider: crate::provider::Provider, chunks: &[&[u8]]) -> Vec<(Vec<u8>, Vec<u8>, String)> {
    let format = stream_format(provider);
    let mut reader = EventReader::default();
    let mut events = Vec::new();
    let mut record = |event: sse::Event| {
        let seen = format.map_or_else(
            || "unwatched".to_owned(),
            |f| match f.classify(&event) {
                Seen::Preamble => "preamble".to_owned(),
                Seen::Output => "output".to_owned(),
                Seen::Error(error) => format!("error {}", error.status.as_u16()),
            },
        );
        events.push((event.name, event.data, seen));
        ControlFlow::<()>::Continue(())
    };
    for chunk in chunks {
        let _ = reader.feed(chunk, &mut record);
    }
    if let Some(event) = reader.finish() {
        let _ = record(event);
    }
    events
}
