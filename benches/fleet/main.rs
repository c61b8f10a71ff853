//! Fleet benchmark (issue: shared rate-limit state): 4 processes share one
//! OpenAI-style limit on a loopback mock, first with each process's own
//! memory, then with a `RedisStore` on one node, on one node cut off
//! halfway, and on a Redis Cluster. Two limits: requests (4 × 8 tasks, 20
//! requests per 200 ms) and tokens (4 × 4 tasks, 40,000 tokens per 1 s, each
//! request with its own prompt of 400–16,000 characters and `max_tokens:
//! 256`, requests unlimited). Reports requests the server saw, wasted calls
//! per success, makespan against the lower bound and the latencies.
//!
//! Run: `cargo bench --bench fleet --features redis` (needs `redis-server`
//! on 127.0.0.1:6379, or `REDIS_URL`, and for the cluster row a Redis Cluster
//! through `REDIS_CLUSTER_URLS`, default 127.0.0.1:7000-7002; a row whose
//! Redis is missing is skipped). `-- --only redis` (or `memory`, `redis-cut`,
//! `cluster`) runs one store's rows, `--bare` only those without headers on
//! successes, `--headers` the others, `--limit requests` (or `tokens`) one limit.
//!
//! Each child times every Redis call from the store's `Redis store call`
//! trace event ([`StoreCalls`]): the longest one, how many took over 250 ms,
//! and the most store time one request spent (what a Redis outage can add to
//! a request's wait). The server counts its 429s per window, and where in the
//! window they fell.

mod server;
mod store_calls;

use std::cell::Cell;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware, RedisStore};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

use server::Limiter;
use store_calls::{LONGEST_US, SLOW, SPENT_IN_STORE, StoreCalls};

const PROCESSES: usize = 4;
const REQUESTS_PER_PROCESS: usize = 100;
const HOST: &str = "api.openai.com";

/// The limit the fleet shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// 20 requests per 200 ms, 8 tasks a process.
    Requests,
    /// 40,000 tokens per 1 s, 4 tasks a process (16 in all, as in the harness's token storms).
    Tokens,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Requests => "requests",
            Limit::Tokens => "tokens",
        }
    }

    fn parse(name: &str) -> Limit {
        if name == "tokens" { Limit::Tokens } else { Limit::Requests }
    }

    fn tasks(self) -> usize {
        match self {
            Limit::Requests => 8,
            Limit::Tokens => 4,
        }
    }

    /// The window's size and length.
    fn window(self) -> (u64, Duration) {
        match self {
            Limit::Requests => (20, Duration::from_millis(200)),
            Limit::Tokens => (40_000, Duration::from_secs(1)),
        }
    }

    /// The least the fleet can take: whole windows of requests, or total tokens ÷ the limit.
    fn lower_bound(self) -> Duration {
        let (limit, length) = self.window();
        let total = PROCESSES * REQUESTS_PER_PROCESS;
        match self {
            Limit::Requests => length * (total.div_ceil(limit as usize) as u32 - 1),
            Limit::Tokens => {
                let tokens: u64 = (0..total as u64).map(server::token_cost).sum();
                length.mul_f64(tokens as f64 / limit as f64)
            }
        }
    }

    /// How long into the run the `redis-cut` rows cut Redis off: 1.5 s for
    /// requests (as since the first runs), halfway for tokens.
    fn cut_after(self) -> Duration {
        match self {
            Limit::Requests => Duration::from_millis(1500),
            Limit::Tokens => self.lower_bound() / 2,
        }
    }

    /// The body of the `n`th request of process `index`.
    fn body(self, index: usize, n: usize) -> String {
        match self {
            Limit::Requests => "{}".to_owned(),
            Limit::Tokens => server::token_body((index * REQUESTS_PER_PROCESS + n) as u64),
        }
    }
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// The nodes of the Redis Cluster the `cluster` rows use.
fn cluster_urls() -> Vec<String> {
    let urls = std::env::var("REDIS_CLUSTER_URLS")
        .unwrap_or_else(|_| "redis://127.0.0.1:7000/,redis://127.0.0.1:7001/,redis://127.0.0.1:7002/".to_owned());
    urls.split(',').map(|url| url.trim().to_owned()).filter(|url| !url.is_empty()).collect()
}

/// The store a child uses: none (its own memory), one node, or the cluster.
async fn connect(store: &str) -> Option<RedisStore> {
    match store {
        "redis" | "redis-cut" => Some(RedisStore::connect(&redis_url()).await.expect("redis")),
        "cluster" => Some(RedisStore::connect_cluster(cluster_urls()).await.expect("redis cluster")),
        _ => None,
    }
}

/// One process of the fleet (the `index`th): waits for the common start,
/// runs its tasks, prints `successes give_ups slowest_ms
/// longest_store_call_us slow_store_calls most_store_time_of_one_request_us`
/// and, on a second line, each request's latency in microseconds.
async fn child(store: &str, limit: Limit, port: u16, (start_ms, index): (u128, usize)) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .resolve(HOST, ([127, 0, 0, 1], port).into())
        .pool_max_idle_per_host(limit.tasks())
        .build()
        .unwrap();
    let builder = LlmRetryMiddleware::builder().max_retries(8);
    let shared = connect(store).await;
    let timed = shared.is_some();
    let middleware = match shared {
        Some(shared) => builder.shared_store(shared).build(),
        None => builder.build(),
    };
    let most_store_time = Arc::new(AtomicU64::new(0));
    let client = reqwest_middleware::ClientBuilder::new(http).with(middleware).build();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    tokio::time::sleep(Duration::from_millis(start_ms.saturating_sub(now_ms) as u64)).await;
    let next = Arc::new(AtomicUsize::new(0));
    let successes = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let url = format!("http://{HOST}:{port}/v1/chat/completions");
    // A key of the row's own: a store keeps a key's windows for a minute, and a row must not
    // start on the windows of a server that has gone.
    let key = format!("sk-fleet-{start_ms}");
    let tasks: Vec<_> = (0..limit.tasks())
        .map(|_| {
            let (client, next, successes, url) = (client.clone(), next.clone(), successes.clone(), url.clone());
            let key = key.clone();
            let (latencies, most_store_time) = (latencies.clone(), most_store_time.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= REQUESTS_PER_PROCESS {
                        break;
                    }
                    let sent = Instant::now();
                    let request = client.post(&url).bearer_auth(&key).body(limit.body(index, n)).send();
                    let (resp, in_store) = SPENT_IN_STORE
                        .scope(Cell::new(Duration::ZERO), async {
                            let resp = request.await;
                            (resp, SPENT_IN_STORE.with(Cell::get))
                        })
                        .await;
                    latencies.lock().unwrap().push(sent.elapsed().as_micros() as u64);
                    most_store_time.fetch_max(in_store.as_micros() as u64, Ordering::Relaxed);
                    if let Ok(resp) = resp
                        && resp.status().is_success()
                        && resp.llm_error().is_none()
                    {
                        successes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let ok = successes.load(Ordering::Relaxed);
    let (longest, slow) =
        if timed { (LONGEST_US.load(Ordering::Relaxed), SLOW.load(Ordering::Relaxed)) } else { (0, 0) };
    let latencies = latencies.lock().unwrap();
    let slowest_ms = latencies.iter().max().copied().unwrap_or(0) / 1000;
    println!(
        "{ok} {} {slowest_ms} {longest} {slow} {}",
        REQUESTS_PER_PROCESS - ok,
        most_store_time.load(Ordering::Relaxed)
    );
    println!("{}", latencies.iter().map(u64::to_string).collect::<Vec<_>>().join(" "));
}

struct Row {
    store: String,
    successes: usize,
    give_ups: usize,
    seen: usize,
    makespan: Duration,
    /// Every request's latency, start to end, in microseconds.
    latencies: Vec<u64>,
    /// The longest single store call, in microseconds.
    longest_store_us: usize,
    /// Store calls over 250 ms.
    slow_store_calls: usize,
    /// The most store time one request spent, in microseconds.
    most_store_us: usize,
    /// 429s per window, and how far into its window each fell.
    refused: Vec<(u64, Duration)>,
}

impl Row {
    /// The latency at quantile `q`, in milliseconds.
    fn latency_ms(&self, q: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let at = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
        sorted.get(at).map_or(0.0, |us| *us as f64 / 1000.0)
    }
}

/// A TCP proxy to Redis that can be cut, as an outage would: the children reach
/// Redis through it.
async fn redis_proxy() -> (String, tokio::task::JoinHandle<()>) {
    let upstream = url::Url::parse(&redis_url()).unwrap();
    let upstream = format!("{}:{}", upstream.host_str().unwrap_or("127.0.0.1"), upstream.port().unwrap_or(6379));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (format!("redis://127.0.0.1:{port}/"), task)
}

/// `store`: `memory`, `redis`, `cluster`, or `redis-cut` (Redis through a
/// proxy cut off mid-run, see [`Limit::cut_after`]).
async fn fleet(store: &'static str, limit: Limit, bare: bool) -> Row {
    let server = MockServer::start().await;
    let (size, length) = limit.window();
    let limiter = Arc::new(Limiter::new(size, length, bare));
    match limit {
        Limit::Requests => Mock::given(any()).respond_with(server::Requests(limiter.clone())).mount(&server).await,
        Limit::Tokens => Mock::given(any()).respond_with(server::Tokens(limiter.clone())).mount(&server).await,
    }
    let start_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 1500;
    let (url, proxy) = match store {
        "redis-cut" => {
            let (url, proxy) = redis_proxy().await;
            (url, Some(proxy))
        }
        _ => (redis_url(), None),
    };
    let children: Vec<_> = (0..PROCESSES)
        .map(|index| {
            let port = server.address().port().to_string();
            let args = [store, limit.name(), &port, &start_ms.to_string(), &index.to_string()];
            Command::new(std::env::current_exe().unwrap())
                .env("REDIS_URL", &url)
                .arg("--fleet-child")
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    if let Some(proxy) = proxy {
        // The children start 1.5 s after they are spawned.
        tokio::time::sleep(Duration::from_millis(1500) + limit.cut_after()).await;
        proxy.abort();
    }
    let outputs = tokio::task::spawn_blocking(move || {
        children.into_iter().map(|c| c.wait_with_output().expect("child")).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    // From the first request the server saw (its window starts there) to the last process done.
    let makespan = limiter.tally.first.lock().unwrap().map_or(Duration::ZERO, |first| first.elapsed());
    let (mut successes, mut give_ups, mut latencies) = (0, 0, Vec::new());
    let (mut longest_store_us, mut slow_store_calls, mut most_store_us) = (0, 0, 0);
    for output in outputs {
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines();
        let mut fields = lines.next().unwrap_or_default().split_whitespace().map(|f| f.parse::<usize>().unwrap_or(0));
        successes += fields.next().unwrap_or(0);
        give_ups += fields.next().unwrap_or(0);
        let _slowest_ms = fields.next();
        longest_store_us = longest_store_us.max(fields.next().unwrap_or(0));
        slow_store_calls += fields.next().unwrap_or(0);
        most_store_us = most_store_us.max(fields.next().unwrap_or(0));
        latencies.extend(lines.next().unwrap_or_default().split_whitespace().filter_map(|f| f.parse::<u64>().ok()));
    }
    let store = format!("{store}{}", if bare { ", no headers on successes" } else { "" });
    let refused = std::mem::take(&mut *limiter.tally.refused.lock().unwrap());
    Row {
        store,
        successes,
        give_ups,
        seen: limiter.tally.seen.load(Ordering::Relaxed),
        makespan,
        latencies,
        longest_store_us,
        slow_store_calls,
        most_store_us,
        refused,
    }
}

/// `"0: 12 (0-3 ms), 5: 2 (196-199 ms)"`: the 429s of each window that had any.
fn refusals_by_window(refused: &[(u64, Duration)]) -> String {
    let mut windows: std::collections::BTreeMap<u64, Vec<Duration>> = Default::default();
    for (index, into) in refused {
        windows.entry(*index).or_default().push(*into);
    }
    let parts: Vec<String> = windows
        .iter()
        .map(|(index, intos)| {
            let (first, last) = (intos.iter().min().unwrap(), intos.iter().max().unwrap());
            format!("{index}: {} ({}-{} ms)", intos.len(), first.as_millis(), last.as_millis())
        })
        .collect();
    if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
}

/// The report of one limit's rows.
fn report(limit: Limit, rows: &[Row]) {
    let (size, length) = limit.window();
    let total = PROCESSES * REQUESTS_PER_PROCESS;
    let minimum = limit.lower_bound();
    println!(
        "\nFleet, {} limit: {PROCESSES} processes x {} tasks, {total} requests, one key, {size} {} per {} ms window (OpenAI-style 429s; `redis-cut`: Redis cut off {:.1} s into the run; `cluster`: a 3-node Redis Cluster)\n",
        limit.name(),
        limit.tasks(),
        limit.name(),
        length.as_millis(),
        limit.cut_after().as_secs_f64()
    );
    println!(
        "| shared store | successes | give-ups | requests seen | wasted calls / success | makespan | vs minimum ({:.2} s) | p50 latency | p99 latency | slowest request | longest store call | store calls > 250 ms | most store time in one request |",
        minimum.as_secs_f64()
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let wasted = (row.seen - row.successes.min(row.seen)) as f64 / row.successes.max(1) as f64;
        println!(
            "| {} | {} | {} | {} | {:.3} | {:.2} s | {:.3} x | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} ms | {} | {:.1} ms |",
            row.store,
            row.successes,
            row.give_ups,
            row.seen,
            wasted,
            row.makespan.as_secs_f64(),
            row.makespan.as_secs_f64() / minimum.as_secs_f64(),
            row.latency_ms(0.5),
            row.latency_ms(0.99),
            row.latency_ms(1.0),
            row.longest_store_us as f64 / 1000.0,
            row.slow_store_calls,
            row.most_store_us as f64 / 1000.0,
        );
    }
    println!("\n429s by window (window: count, ms into the window of the first and last):\n");
    for row in rows {
        println!("- {}: {}", row.store, refusals_by_window(&row.refused));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if let Some(i) = args.iter().position(|a| a == "--fleet-child") {
        let (store, limit, port) = (&args[i + 1], Limit::parse(&args[i + 2]), args[i + 3].parse().unwrap());
        let (start, index) = (args[i + 4].parse().unwrap(), args[i + 5].parse().unwrap());
        tracing::subscriber::set_global_default(StoreCalls).expect("the only subscriber");
        runtime.block_on(child(store, limit, port, (start, index)));
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("the fleet benchmark runs with `cargo bench --bench fleet --features redis`");
        return;
    }
    let redis_up = runtime.block_on(async { RedisStore::connect(&redis_url()).await.is_ok() });
    let cluster_up = runtime.block_on(async { RedisStore::connect_cluster(cluster_urls()).await.is_ok() });
    // `--only redis-cut` runs the rows whose store is named so; `--bare` or `--headers` one half;
    // `--limit tokens` one limit.
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let only = value("--only");
    let halves: &[bool] = match (args.iter().any(|a| a == "--bare"), args.iter().any(|a| a == "--headers")) {
        (true, false) => &[true],
        (false, true) => &[false],
        _ => &[false, true],
    };
    let limits = match value("--limit") {
        Some(name) => vec![Limit::parse(name)],
        None => vec![Limit::Requests, Limit::Tokens],
    };
    for limit in limits {
        let mut rows = Vec::new();
        for &bare in halves {
            for store in ["memory", "redis", "redis-cut", "cluster"] {
                let up = match store {
                    "memory" => true,
                    "cluster" => cluster_up,
                    _ => redis_up,
                };
                if up && only.is_none_or(|only| only == store) {
                    eprintln!("fleet: {} limit, {store}{}", limit.name(), if bare { ", bare" } else { "" });
                    rows.push(runtime.block_on(fleet(store, limit, bare)));
                }
            }
        }
        report(limit, &rows);
    }
    if !redis_up {
        eprintln!("SKIPPED the Redis rows: no Redis at {}", redis_url());
    }
    if !cluster_up {
        eprintln!("SKIPPED the cluster rows: no Redis Cluster at {:?}", cluster_urls());
    }
}
