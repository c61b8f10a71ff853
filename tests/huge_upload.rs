//! A 100 MiB streamed upload, without a length or over the upload buffering
//! limit, goes through the middleware without being held in memory; an
//! upload within the limit is held once, not once per attempt.
//!
//! Its own test binary, because it measures the process's peak resident set
//! (`VmHWM`, reset through `/proc/self/clear_refs` before each run).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use reqwest_llm_retry::{ErrorKind, LlmResponseExt, LlmRetryMiddleware};
use tokio::net::TcpListener;

mod support;
use support::memory::{peak_kib, reset_peak};

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// The pattern's period: byte `k` of every upload is `k % PERIOD`.
const PERIOD: usize = 251;

fn pattern() -> Arc<Vec<u8>> {
    Arc::new((0..PERIOD + CHUNK).map(|i| (i % PERIOD) as u8).collect())
}

/// What the server saw: requests, and per request the bytes received and whether each matched the pattern.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    intact: AtomicUsize,
    bytes: AtomicUsize,
}

/// Reads each upload to its end, checking every byte, and answers 503 overloaded.
async fn serve(seen: Arc<Seen>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pattern = pattern();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, pattern) = (Arc::clone(&seen), Arc::clone(&pattern));
            let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let (seen, pattern) = (Arc::clone(&seen), Arc::clone(&pattern));
                async move {
                    seen.requests.fetch_add(1, Ordering::SeqCst);
                    let mut body = request.into_body();
                    let (mut offset, mut intact) = (0usize, true);
                    while let Some(Ok(frame)) = body.frame().await {
                        // Frames come in any size: compare them a pattern's length at a time.
                        for piece in frame.into_data().unwrap_or_default().chunks(CHUNK) {
                            let start = offset % PERIOD;
                            intact &= piece == &pattern[start..start + piece.len()];
                            offset += piece.len();
                        }
                    }
                    seen.bytes.fetch_add(offset, Ordering::SeqCst);
                    seen.intact.fetch_add(usize::from(intact), Ordering::SeqCst);
                    let error = r#"{"error":{"message":"The engine is currently overloaded, please try again later.","type":"server_error","param":null,"code":null}}"#;
                    let response = http::Response::builder()
                        .status(503)
                        .header("content-type", "application/json")
                        .header("retry-after-ms", "1")
                        .body(Full::new(Bytes::from_static(error.as_bytes())))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    addr
}

/// `total` bytes of the pattern, made one 64 KiB chunk at a time as they are sent.
struct Upload {
    pattern: Arc<Vec<u8>>,
    sent: usize,
    total: usize,
}

impl futures_core::Stream for Upload {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.sent == self.total {
            return Poll::Ready(None);
        }
        let len = CHUNK.min(self.total - self.sent);
        let start = self.sent % PERIOD;
        let chunk = Bytes::copy_from_slice(&self.pattern[start..start + len]);
        self.sent += len;
        Poll::Ready(Some(Ok(chunk)))
    }
}

fn upload(total: usize) -> reqwest::Body {
    reqwest::Body::wrap_stream(Upload { pattern: pattern(), sent: 0, total })
}

/// Sends `body` (declaring `length`, if any) through the middleware; returns
/// the attempts made and the peak RSS growth in KiB.
async fn send(addr: SocketAddr, body: reqwest::Body, length: Option<usize>) -> (u32, u64) {
    reset_peak();
    let before = peak_kib();
    let middleware = LlmRetryMiddleware::builder().max_retries(1).base_delay(Duration::from_millis(5)).build();
    let http = reqwest::Client::builder().no_proxy().resolve("api.openai.com", addr).build().unwrap();
    let client = reqwest_middleware::ClientBuilder::new(http).with(middleware).build();
    let mut request = client.post(format!("http://api.openai.com:{}/v1/files", addr.port())).body(body);
    if let Some(length) = length {
        request = request.header("content-length", length);
    }
    let send = tokio::time::timeout(Duration::from_secs(120), request.send());
    let response = send.await.expect("no hang").unwrap();
    let error = response.llm_error().expect("the 503 is parsed").clone();
    assert_eq!(error.kind, ErrorKind::Overloaded);
    (error.attempts, peak_kib().saturating_sub(before))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_streamed_uploads_are_not_buffered_and_small_ones_are_held_once() {
    let seen = Arc::new(Seen::default());
    let addr = serve(Arc::clone(&seen)).await;
    let measured = reset_peak();
    // One unmeasured run pays for the first use of the runtime, pool and allocator.
    send(addr, upload(MIB), None).await;
    let mut expected = (seen.requests.load(Ordering::SeqCst), seen.bytes.load(Ordering::SeqCst));

    // Without a length: a live stream of unknown size, sent once.
    let (attempts, no_length_peak) = send(addr, upload(100 * MIB), None).await;
    assert_eq!(attempts, 1, "a stream without a length cannot be resent");
    expected = (expected.0 + 1, expected.1 + 100 * MIB);
    assert_eq!((seen.requests.load(Ordering::SeqCst), seen.bytes.load(Ordering::SeqCst)), expected);

    // Declaring 100 MiB, over the 32 MiB limit: sent once, streamed.
    let (attempts, over_limit_peak) = send(addr, upload(100 * MIB), Some(100 * MIB)).await;
    assert_eq!(attempts, 1, "over the limit: sent once");
    expected = (expected.0 + 1, expected.1 + 100 * MIB);
    assert_eq!((seen.requests.load(Ordering::SeqCst), seen.bytes.load(Ordering::SeqCst)), expected);

    // Declaring 24 MiB, within the limit: read once, resent from the same bytes.
    let (attempts, within_limit_peak) = send(addr, upload(24 * MIB), Some(24 * MIB)).await;
    assert_eq!(attempts, 2, "within the limit: resent");
    expected = (expected.0 + 2, expected.1 + 48 * MIB);
    assert_eq!((seen.requests.load(Ordering::SeqCst), seen.bytes.load(Ordering::SeqCst)), expected);
    assert_eq!(seen.intact.load(Ordering::SeqCst), seen.requests.load(Ordering::SeqCst), "every byte as sent");

    eprintln!(
        "peak RSS growth: 100 MiB upload without a length {no_length_peak} KiB, declaring 100 MiB {over_limit_peak} KiB, \
         declaring 24 MiB and resent {within_limit_peak} KiB{}",
        if measured { "" } else { " (peak not resettable here)" }
    );
    if measured {
        assert!(no_length_peak < 16 * 1024, "an upload without a length was buffered: {no_length_peak} KiB");
        assert!(over_limit_peak < 16 * 1024, "an upload over the limit was buffered: {over_limit_peak} KiB");
        assert!(within_limit_peak < 40 * 1024, "held more than once: {within_limit_peak} KiB");
    }
}
