//! Making a streamed upload of known size resendable.
//!
//! Why: client libraries build multipart uploads (audio transcription, file
//! uploads) as stream bodies, and a stream cannot be cloned, so a 429 or a
//! 503 on an upload would be final. An upload that declares its size in
//! `Content-Length`, within the limit, is read once into memory before the
//! first attempt and resent from there.
//!
//! What bounds it:
//! - a body without a declared length, or declaring more than the limit, is
//!   not touched: a live stream of unknown size is never held back, and
//!   memory never grows past the limit;
//! - a body is never read past its declared length plus the one frame that
//!   overflows it;
//! - a stream that yields more or fewer bytes than it declared, fails while
//!   being read, or has not finished within the patience is sent once, as it
//!   is: the bytes read so far are replayed in front of the unread rest (or
//!   the stream's error), so the server receives exactly what it would have
//!   received without this module, and the mismatch is reported the way
//!   reqwest reports it.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::Frame;
use http_body_util::BodyExt;
use reqwest::{Body, Request};

use crate::body::{Tail, replay};

/// How long reading an upload into memory may take (less when the request
/// has a shorter timeout of its own); past it, the upload is sent once with
/// the rest still streaming. Reading 32 MiB from a file or
/// memory takes milliseconds: only a stream fed by something slow gets here,
/// and it must not wait on us.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// Makes `request` resendable (`try_clone` then copies it) by reading its
/// streamed body into memory, when it declares a `Content-Length` of at most
/// `limit` bytes (0 turns this off). Otherwise the body stays a one-shot
/// stream, and the request is still sendable, with every byte of its body.
pub(crate) async fn buffer(request: &mut Request, limit: usize, patience: Duration) {
    let Some(declared) = declared_length(request.headers()) else { return };
    // `declared` is at most `limit`, so it fits in a `usize`.
    let Some(declared) = usize::try_from(declared).ok().filter(|declared| limit != 0 && *declared <= limit) else {
        return;
    };
    // A request's own timeout covers sending its body: reading it here must not outlast it.
    let patience = request.timeout().map_or(patience, |timeout| patience.min(*timeout));
    let Some(body) = request.body_mut().take() else { return };
    *request.body_mut() = Some(match read(body, declared, patience).await {
        Read::Whole(bytes) => Body::from(bytes),
        Read::Partial(frames, tail) => replay(frames, tail),
    });
}

/// The one `Content-Length` a request declares: digits only, and a single
/// value (several, even if equal, are not a size to trust).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// A body read into memory, or read in part and to be replayed.
#[derive(Debug)]
enum Read {
    /// Exactly the declared length, then the end.
    Whole(Bytes),
    /// The frames read, then the rest.
    Partial(VecDeque<Frame<Bytes>>, Tail),
}

/// Reads `body` while it stays within `declared` bytes and `patience`.
async fn read(mut body: Body, declared: usize, patience: Duration) -> Read {
    let mut data = BytesMut::with_capacity(declared);
    let deadline = crate::clock::Instant::now().checked_add(patience);
    loop {
        // Dropping `frame()` before it completes loses nothing: a frame is
        // taken from the body only when it is returned.
        let next = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(next) => next,
                Err(_) => return partial(data, None, Tail::Rest(body)),
            },
            None => body.frame().await,
        };
        match next {
            None if data.len() == declared => return Read::Whole(data.freeze()),
            None => return partial(data, None, Tail::Ended),
            Some(Err(error)) => return partial(data, None, Tail::Failed(error)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) if chunk.len() <= declared - data.len() => data.extend_from_slice(&chunk),
                // More than declared: kept as it came, not copied.
                Ok(chunk) => return partial(data, Some(Frame::data(chunk)), Tail::Rest(body)),
                // Trailers: not a body this module replays whole.
                Err(frame) => return partial(data, Some(frame), Tail::Rest(body)),
            },
        }
    }
}

/// The data read so far as one frame, then `overflow`, then `tail`.
fn partial(data: BytesMut, overflow: Option<Frame<Bytes>>, tail: Tail) -> Read {
    let read = (!data.is_empty()).then(|| Frame::data(data.freeze()));
    Read::Partial(read.into_iter().chain(overflow).collect(), tail)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const PATIENT: Duration = Duration::from_secs(5);

    type Item = Result<Bytes, std::io::Error>;

    /// A POST whose body is a stream of `chunks`, declaring `length`.
    fn upload(chunks: Vec<Item>, length: Option<&str>) -> Request {
        let mut request = Request::new(http::Method::POST, "http://api.openai.com/v1/files".parse().unwrap());
        if let Some(length) = length {
            request.headers_mut().insert(CONTENT_LENGTH, length.parse().unwrap());
        }
        *request.body_mut() = Some(Body::wrap_stream(futures_stream(chunks)));
        request
    }

    fn futures_stream(chunks: Vec<Item>) -> impl futures_core::Stream<Item = Item> + Send + Sync + 'static {
        Chunks(chunks.into(), Arc::default())
    }

    /// Chunks, counting those taken.
    struct Chunks(VecDeque<Item>, Arc<AtomicUsize>);

    impl futures_core::Stream for Chunks {
        type Item = Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Item>> {
            let next = self.0.pop_front();
            self.1.fetch_add(usize::from(next.is_some()), Ordering::SeqCst);
            std::task::Poll::Ready(next)
        }
    }

    fn ok(text: &str) -> Item {
        Ok(Bytes::copy_from_slice(text.as_bytes()))
    }

    /// Every byte the body yields, and whether it ended in an error.
    async fn drain(request: Request) -> (Vec<u8>, bool) {
        let mut body = http::Request::try_from(request).unwrap().into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => bytes.extend_from_slice(frame.data_ref().unwrap()),
                Err(_) => return (bytes, true),
            }
        }
        (bytes, false)
    }

    #[test]
    fn declared_length_is_one_plain_number() {
        let headers = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(CONTENT_LENGTH, value.parse().unwrap());
            }
            headers
        };
        assert_eq!(declared_length(&headers(&["1024"])), Some(1024));
        assert_eq!(declared_length(&headers(&["0"])), Some(0));
        for bad in [&[][..], &["+5"], &["-1"], &[" 5"], &["5, 5"], &["5", "5"], &["abc"], &["99999999999999999999999"]]
        {
            assert_eq!(declared_length(&headers(bad)), None, "{bad:?}");
        }
    }

    /// A copy of `request` after [`buffer`]: `None` when its body stayed a stream.
    async fn resendable(request: &mut Request, limit: usize, patience: Duration) -> Option<Request> {
        buffer(request, limit, patience).await;
        request.try_clone()
    }

    #[tokio::test]
    async fn a_stream_of_its_declared_length_is_read_once_and_resendable() {
        let mut request = upload(vec![ok("--boundary\r\n"), ok("audio"), ok(" bytes")], Some("23"));
        let copy = resendable(&mut request, 1024, PATIENT).await.expect("resendable");
        assert_eq!(copy.body().and_then(Body::as_bytes), Some(&b"--boundary\r\naudio bytes"[..]));
        assert_eq!(request.body().and_then(Body::as_bytes), copy.body().and_then(Body::as_bytes));
        assert_eq!(copy.headers()[CONTENT_LENGTH], "23");
        let again = request.try_clone().expect("the original is resendable too");
        assert_eq!(drain(again).await, (b"--boundary\r\naudio bytes".to_vec(), false));
    }

    #[tokio::test]
    async fn no_length_or_over_the_limit_or_turned_off_leaves_the_stream_unread() {
        for (length, limit) in [(None, 1024), (Some("11"), 10), (Some("11"), 0)] {
            let mut request = upload(vec![ok("hello"), ok(" world")], length);
            assert!(resendable(&mut request, limit, PATIENT).await.is_none(), "{length:?} {limit}");
            assert!(request.body().unwrap().as_bytes().is_none(), "still a stream");
            assert_eq!(drain(request).await, (b"hello world".to_vec(), false));
        }
    }

    #[tokio::test]
    async fn a_stream_longer_than_declared_is_sent_once_whole_and_read_no_further() {
        // Declares 6, yields 6 + 5 + 5: reading stops at the frame that overflows.
        let mut request = upload(vec![], Some("6"));
        let taken = Arc::new(AtomicUsize::new(0));
        let chunks = vec![ok("abc"), ok("def"), ok("ghijk"), ok("lmnop")];
        *request.body_mut() = Some(Body::wrap_stream(Chunks(chunks.into(), Arc::clone(&taken))));
        assert!(resendable(&mut request, 1024, PATIENT).await.is_none());
        assert_eq!(taken.load(Ordering::SeqCst), 3, "read up to the chunk that overflows, no further");
        assert_eq!(drain(request).await, (b"abcdefghijklmnop".to_vec(), false));
    }

    #[tokio::test]
    async fn a_stream_shorter_than_declared_is_sent_once_as_it_is() {
        let mut request = upload(vec![ok("abc")], Some("10"));
        assert!(resendable(&mut request, 1024, PATIENT).await.is_none());
        assert_eq!(drain(request).await, (b"abc".to_vec(), false));
    }

    #[tokio::test]
    async fn a_stream_that_fails_is_sent_once_with_its_bytes_then_its_error() {
        let broken = Err(std::io::Error::other("disk gone"));
        let mut request = upload(vec![ok("abc"), broken, ok("never read")], Some("13"));
        assert!(resendable(&mut request, 1024, PATIENT).await.is_none());
        assert_eq!(drain(request).await, (b"abc".to_vec(), true));
    }

    /// An upload declaring 12 bytes whose producer sent 6 and went quiet.
    async fn stalled() -> (tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>, Request) {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(4);
        sender.send(Ok(Bytes::from_static(b"first "))).await.unwrap();
        let mut request = Request::new(http::Method::POST, "http://api.openai.com/v1/files".parse().unwrap());
        request.headers_mut().insert(CONTENT_LENGTH, "12".parse().unwrap());
        *request.body_mut() = Some(Body::wrap_stream(futures_util_free::Receiver(receiver)));
        (sender, request)
    }

    #[tokio::test]
    async fn a_stalled_stream_is_sent_once_after_the_patience_with_nothing_lost() {
        let (sender, mut request) = stalled().await;
        let started = std::time::Instant::now();
        assert!(resendable(&mut request, 1024, Duration::from_millis(50)).await.is_none());
        assert!(started.elapsed() < Duration::from_secs(2), "held no longer than the patience");
        sender.send(Ok(Bytes::from_static(b"second"))).await.unwrap();
        drop(sender);
        let drained = tokio::time::timeout(PATIENT, drain(request)).await.expect("the rest streams");
        assert_eq!(drained, (b"first second".to_vec(), false));
    }

    #[tokio::test]
    async fn the_request_timeout_bounds_the_read_when_shorter() {
        let (_sender, mut request) = stalled().await;
        *request.timeout_mut() = Some(Duration::from_millis(50));
        let started = std::time::Instant::now();
        assert!(resendable(&mut request, 1024, PATIENT).await.is_none());
        assert!(started.elapsed() < Duration::from_secs(2), "held past the request's timeout");
    }

    /// A channel receiver as a `Stream`, without a stream utility crate.
    mod futures_util_free {
        use std::pin::Pin;
        use std::task::{Context, Poll};

        pub(super) struct Receiver<T>(pub(super) tokio::sync::mpsc::Receiver<T>);

        impl<T> futures_core::Stream for Receiver<T> {
            type Item = T;
            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
                self.0.poll_recv(cx)
            }
        }
    }
}
