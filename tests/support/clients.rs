//! Test settings and clients: a local server reached under the real provider
//! hosts, so provider detection runs on the names users send to.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest_llm_retry::{LlmRetryMiddleware, LlmRetryMiddlewareBuilder, Provider, mock};
use reqwest_middleware::ClientWithMiddleware;
use wiremock::MockServer;

use super::deadline::Deadline;

pub const ANTHROPIC: &str = "api.anthropic.com";
pub const OPENAI: &str = "api.openai.com";
pub const GEMINI: &str = "generativelanguage.googleapis.com";
pub const VERTEX: &str = "us-central1-aiplatform.googleapis.com";
pub const AZURE: &str = "my-resource.openai.azure.com";
pub const BEDROCK: &str = "bedrock-runtime.us-east-1.amazonaws.com";

/// Hosts beyond each provider's own (`mock::host`) that tests use; all resolve to the server.
const EXTRA_HOSTS: &[&str] = &["llm-gateway.internal", "eu.claude-proxy.example", "unknown.example", "gw.internal"];

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Millisecond backoff instead of the production seconds, and no server wait
/// past 1 s slept: no test sleeps for real seconds. A test that counts
/// attempts sets `max_retries` itself.
pub fn fast() -> LlmRetryMiddlewareBuilder {
    LlmRetryMiddleware::builder().base_delay(ms(5)).max_delay(ms(40)).max_retry_after(ms(1000))
}

/// A reqwest client builder whose provider hosts (and the tests' extra hosts) all resolve to `addr`.
pub fn http_to(addr: SocketAddr) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder().no_proxy();
    let provider_hosts = Provider::ALL.iter().map(|p| mock::host(*p));
    for host in provider_hosts.chain(EXTRA_HOSTS.iter().copied()) {
        builder = builder.resolve(host, addr);
    }
    builder
}

/// A reqwest client whose provider hosts all resolve to `server`.
pub fn reqwest_client(server: &MockServer) -> reqwest::Client {
    http_to(*server.address()).build().expect("client")
}

/// `middleware` on a client that reaches `server` under every provider host.
pub fn client(server: &MockServer, middleware: LlmRetryMiddleware) -> ClientWithMiddleware {
    with_deadline(reqwest_client(server), middleware)
}

/// `middleware` on a client whose `host` resolves to `addr` (a raw server, a closed port).
pub fn client_to(host: &str, addr: SocketAddr, middleware: LlmRetryMiddleware) -> ClientWithMiddleware {
    client_from(reqwest::Client::builder().no_proxy().resolve(host, addr), middleware)
}

/// `middleware` on the client `builder` makes, each request under the deadline.
pub fn client_from(builder: reqwest::ClientBuilder, middleware: LlmRetryMiddleware) -> ClientWithMiddleware {
    with_deadline(builder.build().expect("client"), middleware)
}

/// `http` with `middleware`, each request (its retries and waits included) bounded by [`DEADLINE`](super::DEADLINE).
pub fn with_deadline(http: reqwest::Client, middleware: LlmRetryMiddleware) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(http).with(Deadline).with(middleware).build()
}

/// A client for a test on tokio's paused clock (`#[tokio::test(start_paused = true)]`).
///
/// While a task waits on a socket, the paused clock jumps to the next timer,
/// so a test's clock is exact only if the middleware's own sleeps are the only
/// timers: no deadline (a wait bound broken by a year costs no real time
/// here), no idle-connection timer. The middleware under test is built with
/// [`paused`]. Tests on this client send one request at a time: a request
/// waiting on a socket while another sleeps would let the clock jump past it.
pub fn paused_client(server: &MockServer, middleware: LlmRetryMiddleware) -> ClientWithMiddleware {
    let http = http_to(*server.address()).pool_idle_timeout(None).build().expect("client");
    reqwest_middleware::ClientBuilder::new(http).with(middleware).build()
}

/// Settings for [`paused_client`]: no time limit on reading an error body,
/// whose timer would otherwise fire whenever the body is still on the wire.
pub fn paused(builder: LlmRetryMiddlewareBuilder) -> LlmRetryMiddleware {
    builder.error_body_timeout(Duration::MAX).build()
}

/// `http://{host}:{port}{path}` on the mock server.
pub fn url(server: &MockServer, host: &str, path: &str) -> String {
    url_at(*server.address(), host, path)
}

/// `http://{host}:{port}{path}` for a client that resolves `host` to `addr`.
pub fn url_at(addr: SocketAddr, host: &str, path: &str) -> String {
    format!("http://{host}:{}{path}", addr.port())
}
