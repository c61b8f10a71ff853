//! Shared helpers: fast middleware settings, clients that reach a local
//! server under a provider's real host, and raw TCP servers for the faults
//! wiremock cannot produce (resets, stalls, 100 MB streams).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest_llm_retry::{LlmRetryMiddleware, LlmRetryMiddlewareBuilder};
use reqwest_middleware::ClientWithMiddleware;
use tokio::io::AsyncWriteExt;

#[path = "../shared/counting_dns.rs"]
mod counting_dns;
#[path = "../shared/deadline.rs"]
mod deadline;
#[path = "../shared/raw_http.rs"]
mod raw_http;
pub use counting_dns::CountingDns;
pub use raw_http::read_head;
use tokio::net::{TcpListener, TcpStream};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Short real waits only: 5 ms backoff, 1 s largest server wait slept.
pub fn fast() -> LlmRetryMiddlewareBuilder {
    LlmRetryMiddleware::builder().max_retries(2).base_delay(ms(5)).max_delay(ms(20)).max_retry_after(ms(1000))
}

/// A client whose `host` resolves to `addr`, so provider detection runs on the real host name.
pub fn client(host: &str, addr: SocketAddr, middleware: LlmRetryMiddleware) -> ClientWithMiddleware {
    client_from(reqwest::Client::builder().resolve(host, addr), middleware)
}

/// Each request, its retries and waits included, is bounded by a deadline:
/// a broken wait bound fails the test in seconds instead of hanging it.
pub fn client_from(builder: reqwest::ClientBuilder, middleware: LlmRetryMiddleware) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(builder.build().unwrap()).with(deadline::Deadline).with(middleware).build()
}

/// A loopback TCP server that runs `handle` on every connection and counts them.
pub struct RawServer {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl RawServer {
    pub async fn start<F, Fut>(handle: F) -> RawServer
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handle(stream, n));
            }
        });
        RawServer { addr, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// `http://{host}:{port}{path}` for a client built with [`client`].
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.addr.port())
    }
}

/// Writes a response head; `extra` are whole header lines without the CRLF.
pub async fn write_head(stream: &mut TcpStream, status: u16, extra: &[&str]) {
    let mut head = format!("HTTP/1.1 {status} X\r\n");
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
}

/// Closes with a TCP RST instead of a FIN.
pub fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Every chunk of a body until its end or its error: the bytes, then the error if any.
pub async fn drain(mut response: reqwest::Response) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => return (bytes, None),
            Err(error) => return (bytes, Some(error)),
        }
    }
}
