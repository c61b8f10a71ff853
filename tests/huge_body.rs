//! A 100 MiB error body: the middleware parses its first 64 KiB, hands the
//! caller every byte, and never holds the body in memory (let alone twice).
//!
//! Its own test binary, because it measures the process's peak resident set
//! (`VmHWM`, reset through `/proc/self/clear_refs` before each run where the
//! kernel allows it; elsewhere, the growth of the peak so far, which the runs
//! before stay far below since they stream).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest_llm_retry::{ErrorKind, LlmResponseExt, LlmRetryMiddleware};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

mod support;
use support::memory::{peak_kib, reset_peak};
use support::read_head;

const TOTAL: usize = 100 * 1024 * 1024;
const HEAD: &[u8] = br#"{"error":{"message":"the gateway ran out of patience","type":"server_error","padding":""#;
const TAIL: &[u8] = br#""}}"#;
/// The padding repeats with this period, so any stretch of it is a slice of [`pad`].
const PERIOD: usize = 23;
const BLOCK: usize = 64 * 1024;

fn pad() -> Vec<u8> {
    (0..PERIOD + BLOCK).map(|i| b'a' + (i % PERIOD) as u8).collect()
}

/// The bytes expected at `offset..offset + len`, as up to three slices (head, padding, tail).
fn expected(pad: &[u8], offset: usize, len: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let (mut at, end) = (offset, offset + len);
    let tail_start = TOTAL - TAIL.len();
    while at < end {
        let piece: &[u8] = if at < HEAD.len() {
            &HEAD[at..]
        } else if at >= tail_start {
            &TAIL[at - tail_start..]
        } else {
            let k = at - HEAD.len();
            let room = (tail_start - at).min(BLOCK);
            &pad[k % PERIOD..k % PERIOD + room]
        };
        let piece = &piece[..piece.len().min(end - at)];
        at += piece.len();
        pieces.push(piece);
    }
    pieces
}

/// Serves a 500 whose body is the 100 MiB document, written in 64 KiB blocks.
async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let pad = pad();
        while let Ok((mut stream, _)) = listener.accept().await {
            let pad = pad.clone();
            tokio::spawn(async move {
                if !read_head(&mut stream).await {
                    return;
                }
                let response =
                    format!("HTTP/1.1 500 X\r\ncontent-type: application/json\r\ncontent-length: {TOTAL}\r\n\r\n");
                let _ = stream.write_all(response.as_bytes()).await;
                let mut offset = 0;
                while offset < TOTAL {
                    let mut block = Vec::with_capacity(BLOCK);
                    for piece in expected(&pad, offset, BLOCK.min(TOTAL - offset)) {
                        block.extend_from_slice(piece);
                    }
                    // The client hangs up early on attempts it retries.
                    if stream.write_all(&block).await.is_err() {
                        return;
                    }
                    offset += block.len();
                }
            });
        }
    });
    addr
}

/// Reads the whole body chunk by chunk, checking every byte against the document.
async fn read_all(mut response: reqwest::Response) -> usize {
    let pad = pad();
    let mut offset = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        let mut at = 0;
        for piece in expected(&pad, offset, chunk.len()) {
            assert!(chunk[at..at + piece.len()] == *piece, "byte mismatch near offset {}", offset + at);
            at += piece.len();
        }
        offset += chunk.len();
    }
    offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_error_body_is_parsed_from_its_prefix_and_streamed_whole() {
    let addr = serve().await;
    let url = format!("http://api.openai.com:{}/v1/chat/completions", addr.port());
    let http = || reqwest::Client::builder().resolve("api.openai.com", addr).build().unwrap();

    // Bare reqwest first, as the yardstick, after one unmeasured run that
    // pays for the first use of the runtime, pool and allocator.
    assert_eq!(read_all(http().get(&url).send().await.unwrap()).await, TOTAL);
    let measured = reset_peak();
    let before = peak_kib();
    let started = Instant::now();
    let bare = http().get(&url).send().await.unwrap();
    assert_eq!(read_all(bare).await, TOTAL);
    let bare_peak = peak_kib().saturating_sub(before);
    let bare_time = started.elapsed();

    // Through the middleware: the 500 is retried once (the first body is
    // dropped after its prefix), then handed over whole.
    reset_peak();
    let before = peak_kib();
    let started = Instant::now();
    let middleware = LlmRetryMiddleware::builder().max_retries(1).base_delay(Duration::from_millis(5)).build();
    let client = reqwest_middleware::ClientBuilder::new(http()).with(middleware).build();
    let response = client.get(&url).send().await.unwrap();
    let error = response.llm_error().unwrap().clone();
    assert_eq!((error.kind, error.attempts), (ErrorKind::ServerError, 2));
    assert_eq!(error.message, "the gateway ran out of patience", "parsed from the first bytes");
    assert_eq!(response.content_length(), Some(TOTAL as u64));
    assert_eq!(read_all(response).await, TOTAL, "every byte reaches the caller");
    let ours_peak = peak_kib().saturating_sub(before);
    let ours_time = started.elapsed();

    eprintln!(
        "100 MiB error body: peak RSS growth {} KiB through the middleware ({ours_time:?}), {} KiB bare reqwest ({bare_time:?}){}",
        ours_peak,
        bare_peak,
        if measured { "" } else { " (peak not resettable here: growth over the peak so far)" }
    );
    if cfg!(target_os = "linux") {
        assert!(ours_peak < 32 * 1024, "the body was buffered: peak grew by {ours_peak} KiB");
    } else {
        eprintln!("peak memory not measured: no /proc on this platform");
    }
}
