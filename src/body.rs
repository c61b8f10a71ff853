//! Reading the start of an error body without taking the body from the caller.
//!
//! Why bodies are capped: an error body is needed only to classify the error,
//! and a proxy can send 100 MB of HTML. So only a bounded prefix (64 KiB by
//! default) is read; the frames read are kept and replayed in front of the
//! unread rest, so the caller still receives the complete body, byte for
//! byte, streamed, with the same status, headers, version, URL and
//! extensions. Success bodies are never touched.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::response::Parts;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use reqwest::ResponseBuilderExt;

/// An error response whose body prefix has been read.
#[derive(Debug)]
pub(crate) struct HeldResponse {
    parts: Parts,
    url: reqwest::Url,
    frames: VecDeque<Frame<Bytes>>,
    tail: Tail,
}

/// What follows the frames read so far.
#[derive(Debug)]
pub(crate) enum Tail {
    Rest(reqwest::Body),
    Failed(reqwest::Error),
    Ended,
}

impl HeldResponse {
    /// Reads frames until at least `limit` data bytes arrived, the body
    /// ended, it failed, or `patience` ran out (a stalled body is then left
    /// to the caller, unread bytes intact). Memory is bounded by `limit` plus one frame.
    pub(crate) async fn read(response: reqwest::Response, limit: usize, patience: Duration) -> HeldResponse {
        HeldResponse::read_until(response, limit, patience, |_| false).await
    }

    /// [`read`](Self::read), stopping also as soon as `enough` says so of
    /// the data frame just read.
    pub(crate) async fn read_until(
        response: reqwest::Response,
        limit: usize,
        patience: Duration,
        mut enough: impl FnMut(&[u8]) -> bool,
    ) -> HeldResponse {
        let url = response.url().clone();
        let (parts, mut body) = http::Response::<reqwest::Body>::from(response).into_parts();
        let mut frames = VecDeque::new();
        let mut read = 0usize;
        let deadline = crate::clock::Instant::now().checked_add(patience);
        let tail = loop {
            if read >= limit {
                break Tail::Rest(body);
            }
            // Dropping `frame()` before it completes loses nothing: a frame is
            // taken from the body only when it is returned.
            let next = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, body.frame()).await {
                    Ok(next) => next,
                    Err(_) => break Tail::Rest(body),
                },
                None => body.frame().await,
            };
            match next {
                Some(Ok(frame)) => {
                    let data = frame.data_ref().map_or(&[][..], |data| &data[..]);
                    read += data.len();
                    let stop = !data.is_empty() && enough(data);
                    frames.push_back(frame);
                    if stop {
                        break Tail::Rest(body);
                    }
                }
                Some(Err(error)) => break Tail::Failed(error),
                None => break Tail::Ended,
            }
        };
        HeldResponse { parts, url, frames, tail }
    }

    pub(crate) fn status(&self) -> http::StatusCode {
        self.parts.status
    }

    pub(crate) fn url(&self) -> &reqwest::Url {
        &self.url
    }

    pub(crate) fn headers(&self) -> &http::HeaderMap {
        &self.parts.headers
    }

    /// Whether the whole body was read (it ended while being held).
    pub(crate) fn ended(&self) -> bool {
        matches!(self.tail, Tail::Ended)
    }

    /// The data read, at most `limit` bytes of it, copied only when it spans frames.
    pub(crate) fn prefix(&self, limit: usize) -> Bytes {
        let mut data = self.frames.iter().filter_map(Frame::data_ref);
        match (data.next(), data.next()) {
            (None, _) => Bytes::new(),
            (Some(only), None) => only.slice(..only.len().min(limit)),
            (Some(first), Some(second)) => {
                let mut joined = BytesMut::with_capacity(limit.min(64 * 1024));
                for chunk in [first, second].into_iter().chain(data) {
                    let room = limit - joined.len();
                    joined.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if joined.len() == limit {
                        break;
                    }
                }
                joined.freeze()
            }
        }
    }

    /// The response as the caller would have received it without us.
    pub(crate) fn into_response(self) -> reqwest::Response {
        let HeldResponse { mut parts, url, frames, tail } = self;
        // `ResponseBuilderExt::url` is the public way to carry the URL into a
        // rebuilt response; its extension is moved across.
        let mut carrier = http::response::Builder::new().url(url);
        if let Some(url_extension) = carrier.extensions_mut() {
            parts.extensions.extend(std::mem::take(url_extension));
        }
        reqwest::Response::from(http::Response::from_parts(parts, replay(frames, tail)))
    }
}

/// A body that yields `frames`, then what `tail` holds: a body read in part
/// (an error body, an upload) handed on with no byte lost.
pub(crate) fn replay(frames: VecDeque<Frame<Bytes>>, tail: Tail) -> reqwest::Body {
    reqwest::Body::wrap(Replay { frames, tail })
}

/// The frames already read, then the rest of the original body (or its error).
struct Replay {
    frames: VecDeque<Frame<Bytes>>,
    tail: Tail,
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, reqwest::Error>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match &mut self.tail {
            Tail::Rest(body) => Pin::new(body).poll_frame(cx),
            Tail::Failed(_) => match std::mem::replace(&mut self.tail, Tail::Ended) {
                Tail::Failed(error) => Poll::Ready(Some(Err(error))),
                _ => Poll::Ready(None),
            },
            Tail::Ended => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && match &self.tail {
                Tail::Rest(body) => body.is_end_stream(),
                Tail::Failed(_) => false,
                Tail::Ended => true,
            }
    }

    fn size_hint(&self) -> SizeHint {
        let held: u64 = self.frames.iter().filter_map(Frame::data_ref).map(|d| d.len() as u64).sum();
        let rest = match &self.tail {
            Tail::Rest(body) => body.size_hint(),
            Tail::Failed(_) => SizeHint::new(),
            Tail::Ended => SizeHint::with_exact(0),
        };
        // A fresh hint has no upper bound, so setting the lower one first cannot panic.
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(held));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body;

    fn held(chunks: &[&'static str], tail: Tail) -> HeldResponse {
        let (parts, ()) = http::Response::new(()).into_parts();
        let frames = chunks.iter().map(|chunk| Frame::data(Bytes::from_static(chunk.as_bytes()))).collect();
        HeldResponse { parts, url: reqwest::Url::parse("http://api.example/").unwrap(), frames, tail }
    }

    #[test]
    fn the_prefix_is_cut_at_the_limit_across_frames() {
        let response = held(&["abc", "def", "ghi"], Tail::Ended);
        assert_eq!(&response.prefix(5)[..], b"abcde");
        assert_eq!(&response.prefix(6)[..], b"abcdef");
        assert_eq!(&response.prefix(100)[..], b"abcdefghi");
        assert_eq!(&held(&["abcdef"], Tail::Ended).prefix(4)[..], b"abcd");
        assert_eq!(&held(&[], Tail::Ended).prefix(4)[..], b"");
    }

    #[test]
    fn the_replay_ends_after_the_held_frames_not_before() {
        let mut replay = Replay { frames: held(&["ab", "cd"], Tail::Ended).frames, tail: Tail::Ended };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for expected in [b"ab", b"cd"] {
            // A consumer that trusts the hint (a proxy forwarding the body) must not stop here.
            assert!(!replay.is_end_stream());
            let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut replay).poll_frame(&mut cx) else { panic!("a frame") };
            assert_eq!(frame.data_ref().map(|d| &d[..]), Some(&expected[..]));
        }
        assert!(replay.is_end_stream());
        assert!(matches!(Pin::new(&mut replay).poll_frame(&mut cx), Poll::Ready(None)));
        assert_eq!(replay.size_hint().exact(), Some(0));
    }
}
