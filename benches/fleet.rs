//! Fleet benchmark (issue: shared rate-limit state): 4 processes × 8 tasks
//! share one OpenAI-style limit (20 requests per 200 ms) on a loopback mock,
//! first with each process's own memory, then with a `RedisStore` on one node,
//! on one node cut off halfway, and on a Redis Cluster. Reports requests the
//! server saw, wasted calls per success and makespan against the theoretical
//! minimum.
//!
//! Run: `cargo bench --bench fleet --features redis` (needs `redis-server`
//! on 127.0.0.1:6379, or `REDIS_URL`, and for the cluster row a Redis Cluster
//! through `REDIS_CLUSTER_URLS`, default 127.0.0.1:7000-7002; a row whose
//! Redis is missing is skipped). `-- --only redis` (or `memory`, `redis-cut`,
//! `cluster`) runs one store's rows, `--bare` only those without headers on
//! successes, `--headers` the others.
//!
//! Each child times every Redis call from the store's `Redis store call`
//! trace event ([`StoreCalls`]): the longest one, how many took over 250 ms,
//! and the most store time one request spent (what a Redis outage can add to
//! a request's wait). The server counts its 429s per window, and where in the
//! window they fell.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::cell::Cell;
use std::sync::atomic::AtomicU64;

use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware, RedisStore};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const PROCESSES: usize = 4;
const TASKS: usize = 8;
const REQUESTS_PER_PROCESS: usize = 100;
const LIMIT: u64 = 20;
const WINDOW: Duration = Duration::from_millis(200);
const HOST: &str = "api.openai.com";

/// A fixed window shared by every client, answering over-limit requests with
/// an OpenAI-style 429.
struct FixedWindow {
    /// Successes carry no rate-limit headers (only the 429s say anything).
    bare: bool,
    /// Start of the current window (set by the first request), requests in it.
    state: Mutex<(Option<Instant>, u64)>,
    first: Mutex<Option<Instant>>,
    seen: AtomicUsize,
    /// Each 429: its window's index, and how far into the window it fell.
    refused: Mutex<Vec<(u64, Duration)>>,
}

/// The limiter as wiremock's responder, shared with the reporting code.
struct Shared(Arc<FixedWindow>);

impl Respond for Shared {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let this = &self.0;
        this.seen.fetch_add(1, Ordering::Relaxed);
        let mut state = this.state.lock().unwrap();
        let now = Instant::now();
        let start = *state.0.get_or_insert_with(|| {
            *this.first.lock().unwrap() = Some(now);
            now
        });
        let mut start = start;
        while now.duration_since(start) >= WINDOW {
            start += WINDOW;
            state.1 = 0;
        }
        state.0 = Some(start);
        let reset = WINDOW - now.duration_since(start);
        let reset_ms = reset.as_millis().max(1);
        let headers = |t: ResponseTemplate, remaining: u64| {
            t.insert_header("x-ratelimit-limit-requests", LIMIT.to_string())
                .insert_header("x-ratelimit-remaining-requests", remaining.to_string())
                .insert_header("x-ratelimit-reset-requests", format!("{reset_ms}ms"))
        };
        if state.1 >= LIMIT {
            let first = this.first.lock().unwrap().unwrap_or(start);
            let index = (start.duration_since(first).as_nanos() / WINDOW.as_nanos()) as u64;
            this.refused.lock().unwrap().push((index, now.duration_since(start)));
            let body = r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
            return headers(ResponseTemplate::new(429).set_body_raw(body, "application/json"), 0)
                .insert_header("retry-after-ms", reset_ms.to_string())
                .insert_header("retry-after", reset.as_secs().max(1).to_string());
        }
        state.1 += 1;
        let body = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;
        let ok = ResponseTemplate::new(200).set_body_raw(body, "application/json");
        if this.bare { ok } else { headers(ok, LIMIT - state.1) }
    }
}

tokio::task_local! {
    /// The store time spent so far by the request this task is sending.
    static SPENT_IN_STORE: Cell<Duration>;
}

/// The longest store call, in microseconds.
static LONGEST_US: AtomicU64 = AtomicU64::new(0);
/// Store calls that took over 250 ms.
static SLOW: AtomicUsize = AtomicUsize::new(0);

/// A `tracing` subscriber that only reads the store's `Redis store call`
/// events (their `elapsed_us`): a child's store calls, timed where they are made.
struct StoreCalls;

impl tracing::Subscriber for StoreCalls {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.fields().field("elapsed_us").is_some()
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Elapsed(Option<u64>);
        impl tracing::field::Visit for Elapsed {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "elapsed_us" {
                    self.0 = Some(value);
                }
            }

            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut elapsed = Elapsed(None);
        event.record(&mut elapsed);
        let Some(us) = elapsed.0 else { return };
        LONGEST_US.fetch_max(us, Ordering::Relaxed);
        if us > 250_000 {
            SLOW.fetch_add(1, Ordering::Relaxed);
        }
        let _ = SPENT_IN_STORE.try_with(|spent| spent.set(spent.get() + Duration::from_micros(us)));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
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

/// One process of the fleet: waits for the common start, runs its tasks,
/// prints `successes give_ups slowest_ms longest_store_call_us slow_store_calls
/// most_store_time_of_one_request_us`.
async fn child(store: &str, port: u16, start_ms: u128) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .resolve(HOST, ([127, 0, 0, 1], port).into())
        .pool_max_idle_per_host(TASKS)
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
    let slowest = Arc::new(AtomicUsize::new(0));
    let url = format!("http://{HOST}:{port}/v1/chat/completions");
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (client, next, successes, url) = (client.clone(), next.clone(), successes.clone(), url.clone());
            let (slowest, most_store_time) = (slowest.clone(), most_store_time.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < REQUESTS_PER_PROCESS {
                    let sent = Instant::now();
                    let request = client.post(&url).bearer_auth("sk-fleet-shared-key").body("{}").send();
                    let (resp, in_store) = SPENT_IN_STORE
                        .scope(Cell::new(Duration::ZERO), async {
                            let resp = request.await;
                            (resp, SPENT_IN_STORE.with(Cell::get))
                        })
                        .await;
                    slowest.fetch_max(sent.elapsed().as_millis() as usize, Ordering::Relaxed);
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
    println!(
        "{ok} {} {} {longest} {slow} {}",
        REQUESTS_PER_PROCESS - ok,
        slowest.load(Ordering::Relaxed),
        most_store_time.load(Ordering::Relaxed)
    );
}

struct Row {
    store: String,
    successes: usize,
    give_ups: usize,
    seen: usize,
    makespan: Duration,
    /// The longest request, start to end, in milliseconds.
    slowest_ms: usize,
    /// The longest single store call, in microseconds.
    longest_store_us: usize,
    /// Store calls over 250 ms.
    slow_store_calls: usize,
    /// The most store time one request spent, in microseconds.
    most_store_us: usize,
    /// 429s per window, and how far into its window each fell.
    refused: Vec<(u64, Duration)>,
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

/// `store`: `memory`, `redis`, or `redis-cut` (Redis through a proxy cut 1.5 s into the run).
async fn fleet(store: &'static str, bare: bool) -> Row {
    let server = MockServer::start().await;
    let limiter = Arc::new(FixedWindow {
        bare,
        state: Mutex::new((None, 0)),
        first: Mutex::new(None),
        seen: AtomicUsize::new(0),
        refused: Mutex::new(Vec::new()),
    });
    Mock::given(any()).respond_with(Shared(limiter.clone())).mount(&server).await;
    let start_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 1500;
    let (url, proxy) = match store {
        "redis-cut" => {
            let (url, proxy) = redis_proxy().await;
            (url, Some(proxy))
        }
        _ => (redis_url(), None),
    };
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .env("REDIS_URL", &url)
                .args(["--fleet-child", store, &server.address().port().to_string(), &start_ms.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    if let Some(proxy) = proxy {
        // Cut Redis off 1.5 s after the start, halfway through the run.
        tokio::time::sleep(Duration::from_millis(3000)).await;
        proxy.abort();
    }
    let outputs = tokio::task::spawn_blocking(move || {
        children.into_iter().map(|c| c.wait_with_output().expect("child")).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    // From the first request the server saw (its window starts there) to the last process done.
    let makespan = limiter.first.lock().unwrap().map_or(Duration::ZERO, |first| first.elapsed());
    let (mut successes, mut give_ups, mut slowest_ms) = (0, 0, 0);
    let (mut longest_store_us, mut slow_store_calls, mut most_store_us) = (0, 0, 0);
    for output in outputs {
        let text = String::from_utf8_lossy(&output.stdout);
        let mut fields = text.split_whitespace().map(|f| f.parse::<usize>().unwrap_or(0));
        successes += fields.next().unwrap_or(0);
        give_ups += fields.next().unwrap_or(0);
        slowest_ms = slowest_ms.max(fields.next().unwrap_or(0));
        longest_store_us = longest_store_us.max(fields.next().unwrap_or(0));
        slow_store_calls += fields.next().unwrap_or(0);
        most_store_us = most_store_us.max(fields.next().unwrap_or(0));
    }
    let store = format!("{store}{}", if bare { ", no headers on successes" } else { "" });
    let refused = std::mem::take(&mut *limiter.refused.lock().unwrap());
    Row {
        store,
        successes,
        give_ups,
        seen: limiter.seen.load(Ordering::Relaxed),
        makespan,
        slowest_ms,
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if let Some(i) = args.iter().position(|a| a == "--fleet-child") {
        let (store, port, start) = (&args[i + 1], args[i + 2].parse().unwrap(), args[i + 3].parse().unwrap());
        tracing::subscriber::set_global_default(StoreCalls).expect("the only subscriber");
        runtime.block_on(child(store, port, start));
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("the fleet benchmark runs with `cargo bench --bench fleet --features redis`");
        return;
    }
    let total = PROCESSES * REQUESTS_PER_PROCESS;
    let windows = total.div_ceil(LIMIT as usize) as u32;
    let minimum = WINDOW * (windows - 1);
    let redis_up = runtime.block_on(async { RedisStore::connect(&redis_url()).await.is_ok() });
    let cluster_up = runtime.block_on(async { RedisStore::connect_cluster(cluster_urls()).await.is_ok() });
    // `--only redis-cut` runs the rows whose store is named so; `--bare` or `--headers` one half.
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1));
    let halves: &[bool] = match (args.iter().any(|a| a == "--bare"), args.iter().any(|a| a == "--headers")) {
        (true, false) => &[true],
        (false, true) => &[false],
        _ => &[false, true],
    };
    let mut rows = Vec::new();
    for &bare in halves {
        for store in ["memory", "redis", "redis-cut", "cluster"] {
            let up = match store {
                "memory" => true,
                "cluster" => cluster_up,
                _ => redis_up,
            };
            if up && only.is_none_or(|only| only == store) {
                rows.push(runtime.block_on(fleet(store, bare)));
            }
        }
    }
    if !redis_up {
        eprintln!("SKIPPED the Redis rows: no Redis at {}", redis_url());
    }
    if !cluster_up {
        eprintln!("SKIPPED the cluster rows: no Redis Cluster at {:?}", cluster_urls());
    }
    println!(
        "\nFleet: {PROCESSES} processes x {TASKS} tasks, {total} requests, one key, {LIMIT} requests per {} ms window (OpenAI-style 429s; `redis-cut`: Redis cut off 1.5 s into the run; `cluster`: a 3-node Redis Cluster)\n",
        WINDOW.as_millis()
    );
    println!(
        "| shared store | successes | give-ups | requests seen | wasted calls / success | makespan | vs minimum ({:.1} s) | slowest request | longest store call | store calls > 250 ms | most store time in one request |",
        minimum.as_secs_f64()
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        let wasted = (row.seen - row.successes.min(row.seen)) as f64 / row.successes.max(1) as f64;
        println!(
            "| {} | {} | {} | {} | {:.3} | {:.2} s | {:.2} x | {} ms | {:.1} ms | {} | {:.1} ms |",
            row.store,
            row.successes,
            row.give_ups,
            row.seen,
            wasted,
            row.makespan.as_secs_f64(),
            row.makespan.as_secs_f64() / minimum.as_secs_f64(),
            row.slowest_ms,
            row.longest_store_us as f64 / 1000.0,
            row.slow_store_calls,
            row.most_store_us as f64 / 1000.0,
        );
    }
    println!("\n429s by window (window: count, ms into the window of the first and last):\n");
    for row in &rows {
        println!("- {}: {}", row.store, refusals_by_window(&row.refused));
    }
}
