//! The Redis cooldown store against a real Redis: separately connected
//! stores (as separate processes would have: their own connection, their own
//! memory) share cooldowns only through Redis, in the documented key format;
//! the later end time wins whichever process writes last; two of them split
//! one window's budget; and an outage degrades to memory without failing or
//! stalling a request.
//!
//! Needs a Redis at `REDIS_URL` (default `redis://127.0.0.1:6379/`); `.ci/run`
//! starts one. With `CI` set a missing Redis fails these tests; without it
//! they say why on stderr and pass.
#![cfg(feature = "redis")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest_llm_retry::{
    CooldownStore, LlmResponseExt, LlmRetryMiddleware, MemoryCooldownStore, OutageQuery, OutageReport, OutageTurn,
    RedisCooldownStore, Window,
};
use tokio::net::{TcpListener, TcpStream};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

mod support;
use support::{DEADLINE, client, fast};

const MS: fn(u64) -> Duration = Duration::from_millis;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// Whether these tests must run: in CI a missing Redis is a failure, not a skip.
fn required() -> bool {
    std::env::var_os("CI").is_some_and(|ci| !ci.is_empty() && ci != "false" && ci != "0")
}

/// A store on the test Redis with its own connection and memory, or `None`
/// (with the reason on stderr) when no Redis is reachable outside CI.
async fn store(url: &str) -> Option<RedisCooldownStore> {
    match RedisCooldownStore::connect(url).await {
        Ok(store) => Some(store),
        Err(error) if !required() => {
            eprintln!("SKIPPED: no Redis reachable at {url} ({error}); start one, or set REDIS_URL");
            None
        }
        Err(error) => panic!("CI must provide Redis at {url} (REDIS_URL): {error}"),
    }
}

/// Two stores of separate processes under one fresh prefix (`test`'s own), or `None` as [`store`].
async fn two_stores(test: &str) -> Option<(String, RedisCooldownStore, RedisCooldownStore)> {
    let prefix = unique_prefix(test);
    let (a, b) = (store(&redis_url()).await?, store(&redis_url()).await?);
    Some((prefix.clone(), a.prefix(prefix.as_str()), b.prefix(prefix)))
}

/// A connection of the test's own, to read what the stores wrote.
async fn inspect() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// The keys under `prefix`, each checked to expire (`PX`): one that is gone by the time
/// its expiry is read (-2) has expired.
async fn keys_that_expire(prefix: &str) -> Vec<String> {
    let mut connection = inspect().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut connection).await.unwrap();
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut connection).await.unwrap();
        assert!(ttl == -2 || ttl > 0, "{key} has no expiry ({ttl})");
    }
    keys
}

fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
    format!("reqwest-llm-retry-test:{test}:{nanos}:")
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// One 429 asking for `wait_ms`, then 200s.
async fn limited_once(wait_ms: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after-ms", wait_ms))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    server
}

#[tokio::test]
async fn two_processes_share_a_429_through_redis_in_the_documented_key_format() {
    // The default prefix: the key below is the whole protocol, pinned.
    let (Some(store_a), Some(store_b)) = (store(&redis_url()).await, store(&redis_url()).await) else { return };
    let server = limited_once("400").await;
    let a = client(&server, fast().max_retries(0).cooldown_store(store_a).build());
    let b = client(&server, fast().max_retries(0).cooldown_store(store_b).build());
    let port = server.address().port();
    let target = format!("http://api.openai.com:{port}/v1/chat/completions");

    let sent = SystemTime::now();
    let started = Instant::now();
    let limited = a.post(&target).bearer_auth("sk-AAAA").send().await.unwrap();
    assert_eq!(limited.status(), 429);

    // What Redis holds now, while the cooldown is alive: one cooldown key in the
    // `v1` format, no secret in key or value, the end time as epoch
    // milliseconds, and an expiry at that time.
    let mut redis = inspect().await;
    let name = format!("llmretry:v1:openai:api.openai.com:{port}:813f88be1d7d9385dc89f7235a444860");
    let pattern = format!("llmretry:v1:openai:api.openai.com:{port}:*");
    let mut keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut redis).await.unwrap();
    keys.sort();
    // Beside it, the window's budget (the send counted before anyone knew the window).
    assert_eq!(keys, [name.clone(), format!("{name}:budget")]);
    let value: String = redis::cmd("GET").arg(&name).query_async(&mut redis).await.unwrap();
    let until: u64 = value.parse().expect("epoch milliseconds");
    assert!(until >= epoch_ms(sent) + 400 && until <= epoch_ms(SystemTime::now()) + 400 + 1, "{value}");
    let ttl: i64 = redis::cmd("PTTL").arg(&name).query_async(&mut redis).await.unwrap();
    assert!((1..=400).contains(&ttl), "expires with the cooldown, ttl {ttl}");

    // The other process never saw the 429: only Redis can hold it.
    let paced = b.post(&target).bearer_auth("sk-AAAA").send().await.unwrap();
    assert_eq!(paced.status(), 200);
    assert!(paced.retry_stats().unwrap().waited > Duration::ZERO, "{:?}", paced.retry_stats());
    // A lower bound on the wall clock, which Redis keeps and tokio's paused clock does not
    // move: a slow machine only makes it longer.
    assert!(started.elapsed() >= MS(400), "sent only once the cooldown ended: {:?}", started.elapsed());
    let other = b.post(&target).bearer_auth("sk-BBBB").send().await.unwrap();
    assert_eq!(other.retry_stats().unwrap().waited, Duration::ZERO, "another key is unaffected");
}

#[tokio::test]
async fn the_later_end_time_wins_whoever_writes_last() {
    let prefix = unique_prefix("extend");
    let stores = (store(&redis_url()).await, store(&redis_url()).await, store(&redis_url()).await);
    let (Some(a), Some(b), Some(reader)) = stores else { return };
    let (a, b, reader) = (a.prefix(&prefix), b.prefix(&prefix), reader.prefix(&prefix));
    let mut redis = inspect().await;
    let name = format!("{prefix}v1:k");
    let checks = async {
        let later = SystemTime::now() + MS(3000);
        a.extend("k", later).await;
        // Another process, with its own memory, asks for less: Redis keeps the later end.
        b.extend("k", SystemTime::now() + MS(500)).await;
        let seen = reader.get("k").await.expect("set in Redis");
        assert_eq!(epoch_ms(seen), epoch_ms(later), "the earlier end overwrote the later one");
        let ttl: i64 = redis::cmd("PTTL").arg(&name).query_async(&mut redis).await.unwrap();
        assert!(ttl > 2000 && ttl <= 3000, "the later end's expiry is kept: {ttl}");
        // A later end from the other process replaces it, expiry included.
        let latest = SystemTime::now() + MS(5000);
        b.extend("k", latest).await;
        assert_eq!(reader.get("k").await.map(epoch_ms), Some(epoch_ms(latest)));
        let ttl: i64 = redis::cmd("PTTL").arg(&name).query_async(&mut redis).await.unwrap();
        assert!(ttl > 4000 && ttl <= 5000, "{ttl}");
        assert_eq!(reader.get("missing").await, None);
    };
    tokio::time::timeout(DEADLINE, checks).await.expect("every Redis call is bounded");
}

/// A TCP proxy to Redis. Sending `true` cuts it into a black hole: its links
/// are dropped, and later connections are accepted and never answered, so
/// every Redis call waits for the store's timeout, as in a network outage.
async fn proxy(upstream: SocketAddr) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (cut, mut is_cut) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let (mut links, mut held) = (tokio::task::JoinSet::new(), Vec::new());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut inbound, _)) = accepted else { return };
                    if *is_cut.borrow() {
                        held.push(inbound);
                        continue;
                    }
                    links.spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
                changed = is_cut.changed() => match changed {
                    Ok(()) => links.abort_all(),
                    Err(_) => return,
                },
            }
        }
    });
    (addr, cut)
}

#[tokio::test]
async fn an_outage_falls_back_to_memory_without_failing_or_stalling_requests() {
    if store(&redis_url()).await.is_none() {
        return;
    }
    let upstream: SocketAddr = {
        let info = redis::Client::open(redis_url()).unwrap().get_connection_info().addr().to_string();
        let host_port = info.trim_start_matches("redis://").trim_end_matches('/').to_owned();
        tokio::net::lookup_host(host_port).await.unwrap().next().unwrap()
    };
    let (addr, cut) = proxy(upstream).await;
    let prefix = unique_prefix("outage");
    let timeout = MS(250);
    let store = store(&format!("redis://{addr}/")).await.unwrap().prefix(prefix).timeout(timeout);
    // Two middlewares share the store (say, chat and batch settings of one process).
    let store = Arc::new(store);
    let server = limited_once("300").await;
    let chat = client(&server, fast().max_retries(0).cooldown_store(store.clone()).build());
    let batch = client(&server, fast().max_retries(2).cooldown_store(store).build());
    let target = format!("http://api.openai.com:{}/v1/chat/completions", server.address().port());

    cut.send_replace(true);
    let started = Instant::now();
    let limited = chat.post(&target).bearer_auth("sk-k").send().await.expect("Redis being down never fails a request");
    assert_eq!(limited.status(), 429);
    // `batch` never saw the 429 and Redis never heard of it: only the store's memory can hold it.
    let held = batch.post(&target).bearer_auth("sk-k").send().await.unwrap();
    assert_eq!(held.status(), 200);
    assert!(held.retry_stats().unwrap().waited > Duration::ZERO, "{:?}", held.retry_stats());
    // A lower bound on the wall clock (Redis and the store's cooldowns keep wall-clock time,
    // which tokio's paused clock does not move): a slow machine only makes it longer.
    assert!(started.elapsed() >= MS(300), "{:?}", started.elapsed());

    // Through the outage, requests cost at most one timeout a second, not one per store call:
    // these five, each a store call or more, take well under a second, so at most one timeout
    // (one if the second since the last failure ran out between them). Without the back-off
    // they would take five timeouts or more (1.25 s); the bound of two leaves 250 ms for
    // five loopback requests on a slow machine.
    let started = Instant::now();
    for i in 0..5 {
        let resp = chat.post(&target).bearer_auth(format!("sk-other-{i}")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(started.elapsed() < 2 * timeout, "an outage costs at most one timeout a second: {:?}", started.elapsed());
}

/// The outage protocol through the public trait, step by step: the same answers
/// from every store that shares outages (the Redis script is the memory store's twin).
async fn outage_protocol(store: &dyn CooldownStore, host: &str) {
    let lease = Duration::from_secs(10);
    let ask = |since: Option<SystemTime>| store.outage(host, OutageQuery::new(since, lease));
    let t0 = SystemTime::now();
    let near = |at: SystemTime, expected: SystemTime| {
        let gap = at.duration_since(expected).or_else(|e| Ok::<_, ()>(e.duration())).unwrap();
        gap <= MS(50)
    };
    assert_eq!(ask(None).await, Some(OutageTurn::Up), "failures alone are no outage");
    assert_eq!(ask(Some(t0)).await, Some(OutageTurn::Probe), "the first to say so probes");
    for since in [Some(t0), None] {
        match ask(since).await {
            Some(OutageTurn::Wait(until)) => assert!(near(until, t0 + lease), "{until:?}"),
            other => panic!("one probe at a time: {other:?}"),
        }
    }
    let next = SystemTime::now() + Duration::from_secs(30);
    store.report_outage(host, OutageReport::ProbeFailed { next_probe: next }).await;
    match ask(Some(t0)).await {
        Some(OutageTurn::Wait(until)) => assert!(near(until, next), "the next probe when it said: {until:?}"),
        other => panic!("{other:?}"),
    }
    store.report_outage(host, OutageReport::ProbeFailed { next_probe: SystemTime::now() }).await;
    assert_eq!(ask(None).await, Some(OutageTurn::Probe), "due: whoever asks first");
    store.report_outage(host, OutageReport::ProbeAbandoned).await;
    assert_eq!(ask(Some(t0)).await, Some(OutageTurn::Probe), "an abandoned lease is free");
    store.report_outage(host, OutageReport::Recovered).await;
    assert_eq!(ask(Some(t0)).await, Some(OutageTurn::Up), "recovered since this outage began");
    assert_eq!(ask(None).await, Some(OutageTurn::Up));
    store.report_outage(host, OutageReport::ProbeFailed { next_probe: next }).await;
    assert_eq!(ask(Some(t0)).await, Some(OutageTurn::Up), "a late failed probe does not bring it back");
    let later = SystemTime::now() + Duration::from_secs(1);
    assert_eq!(ask(Some(later)).await, Some(OutageTurn::Probe), "an outage begun after the recovery is new");
}

#[tokio::test]
async fn memory_and_redis_stores_speak_the_same_outage_protocol() {
    outage_protocol(&MemoryCooldownStore::new(), "api.anthropic.com:443").await;
    let prefix = unique_prefix("outage-protocol");
    let Some(store) = store(&redis_url()).await else { return };
    let store = store.prefix(prefix.as_str());
    outage_protocol(&store, "api.anthropic.com:443").await;
    // Both keys expire.
    let keys = keys_that_expire(&prefix).await;
    assert!(keys.iter().any(|k| k.ends_with("v1:outage:api.anthropic.com:443:probe")), "{keys:?}");
}

/// 503 after 30 ms to the first `down_for` requests, 200 after that; arrival times recorded.
struct DownFor {
    down_for: usize,
    seen: Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl wiremock::Respond for DownFor {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().unwrap();
        seen.push(Instant::now());
        if seen.len() <= self.down_for {
            ResponseTemplate::new(503).set_delay(MS(30))
        } else {
            ResponseTemplate::new(200)
        }
    }
}

#[tokio::test]
async fn two_instances_share_one_outage_probe_through_redis() {
    let Some((prefix, store_a, store_b)) = two_stores("outage").await else { return };
    let server = MockServer::start().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    // 20 first attempts fail together, then 6 probes.
    let down_for = 26;
    Mock::given(any()).respond_with(DownFor { down_for, seen: seen.clone() }).mount(&server).await;
    let builder = || LlmRetryMiddleware::builder().base_delay(MS(40)).max_delay(MS(1000)).max_retries(6);
    let a = client(&server, builder().cooldown_store(store_a).build());
    let b = client(&server, builder().cooldown_store(store_b).build());
    let url = &format!("http://api.openai.com:{}/v1/chat/completions", server.address().port());
    let burst = |client: reqwest_middleware::ClientWithMiddleware| async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (client, url) = (client.clone(), url.clone());
            tasks.spawn(async move { client.post(url).bearer_auth("sk-a").body("{}").send().await.unwrap().status() });
        }
        tasks.join_all().await
    };
    let both = async { tokio::join!(burst(a), burst(b)) };
    let (from_a, from_b) = tokio::time::timeout(DEADLINE, both).await.expect("every request ends");
    assert!(from_a.iter().chain(&from_b).all(|status| *status == 200), "{from_a:?} {from_b:?}");
    let seen = seen.lock().unwrap().clone();
    // Each probe arrives only after the one before was answered, 30 ms after it came: a
    // lower bound (the server's own delay), which a slow machine only makes longer.
    for pair in seen[20..down_for].windows(2) {
        assert!(pair[1] >= pair[0] + MS(30), "two probes in flight: {:?} apart", pair[1] - pair[0]);
    }
    assert_eq!(seen.len(), down_for + 1 + 19, "each waiting request sent once more after the recovery");
    // The host's record says when it recovered, and expires.
    let mut connection = inspect().await;
    let record = format!("{prefix}v1:outage:api.openai.com:{}", server.address().port());
    let up: Option<u64> = redis::cmd("HGET").arg(&record).arg("up").query_async(&mut connection).await.unwrap();
    assert!(up.is_some_and(|at| at <= epoch_ms(SystemTime::now())), "{record}: up at {up:?}");
    let ttl: i64 = redis::cmd("PTTL").arg(&record).query_async(&mut connection).await.unwrap();
    assert!(ttl > 0, "{record} has no expiry ({ttl})");
}

#[tokio::test]
async fn two_instances_split_one_windows_budget_through_redis() {
    let Some((prefix, store_a, store_b)) = two_stores("budget").await else { return };
    let server = MockServer::start().await;
    // 4 requests per 500 ms window; every answer says 3 are left, as each process would see
    // after its own first request. Each process alone would send 3 more.
    let ok = ResponseTemplate::new(200)
        .insert_header("x-ratelimit-limit-requests", "4")
        .insert_header("x-ratelimit-remaining-requests", "3")
        .insert_header("x-ratelimit-reset-requests", "500ms");
    Mock::given(any()).respond_with(ok).mount(&server).await;
    let a = client(&server, LlmRetryMiddleware::builder().cooldown_store(store_a).build());
    let b = client(&server, LlmRetryMiddleware::builder().cooldown_store(store_b).build());
    let url = &format!("http://api.openai.com:{}/v1/chat/completions", server.address().port());
    // Each learns the window from one answer.
    for client in [&a, &b] {
        client.post(url).bearer_auth("sk-shared").body("{}").send().await.unwrap();
    }
    let send = |client: &reqwest_middleware::ClientWithMiddleware| {
        let request = client.post(url).bearer_auth("sk-shared").body("{}");
        async move { request.send().await.unwrap().retry_stats().unwrap().waited }
    };
    // One more through `a` spends the first of the window's 4 in Redis; every key the
    // store writes expires (`PX`).
    send(&a).await;
    let keys = keys_that_expire(&prefix).await;
    assert!(keys.iter().any(|k| k.ends_with(":budget")), "{keys:?}");
    let burst = async {
        let (a1, a2, a3, b1, b2, b3) = tokio::join!(send(&a), send(&a), send(&a), send(&b), send(&b), send(&b));
        [a1, a2, a3, b1, b2, b3]
    };
    let waited = tokio::time::timeout(Duration::from_secs(5), burst).await.expect("the burst ends");
    // The window admits 4 in all, three spent (the store counted the first two before anyone
    // knew the window): 1 goes at once, the other 5 wait for the next windows.
    let at_once = waited.iter().filter(|w| w.is_zero()).count();
    let held = waited.iter().filter(|w| **w >= Duration::from_millis(200)).count();
    assert_eq!((at_once, held), (1, 5), "{waited:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 9);
}

/// `time` to the millisecond, as the store keeps it.
fn at_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + MS(ms)
}

#[tokio::test]
async fn the_fleet_agrees_on_windows_the_store_rolls_by_their_length_and_guards_their_boundaries() {
    let Some((prefix, a, b)) = two_stores("windows").await else { return };
    let test = async {
        // A told window of 2 requests, 300 ms long (guard: 2 ms + 300 / 32 = 11 ms).
        let end = epoch_ms(SystemTime::now() + MS(300));
        let told = Window::new(at_ms(end), 2).with_length(MS(300)).as_told();
        assert_eq!(a.spend("k", Some(told)).await, None);
        // Another process predicts the end 40 ms later: the same window all the same.
        assert_eq!(b.spend("k", Some(Window::new(at_ms(end + 40), 2))).await, None);
        assert_eq!(a.spend("k", Some(told)).await, Some(at_ms(end + 11)), "spent: wait past the end and its guard");
        assert_eq!(b.spend("k", Some(Window::new(at_ms(end - 50), 2))).await, Some(at_ms(end + 11)));
        tokio::time::sleep(at_ms(end + 11).duration_since(SystemTime::now()).unwrap_or_default()).await;
        // The next window is the store's, 300 ms on, whatever an asker predicts (here 40 ms early).
        let early = Window::new(at_ms(end + 260), 2);
        assert_eq!(b.spend("k", Some(early)).await, None);
        assert_eq!(a.spend("k", None).await, None, "an asker that knows nothing is counted too");
        assert_eq!(b.spend("k", Some(early)).await, Some(at_ms(end + 300 + 11)));
        // A server tells this window's end, 4 ms after the rolled one: it replaces it; a
        // later told end of the same window may only be earlier.
        let told_end = |ms| Some(Window::new(at_ms(ms), 2).as_told());
        assert_eq!(a.spend("k", told_end(end + 304)).await, Some(at_ms(end + 304 + 11)));
        assert_eq!(b.spend("k", told_end(end + 309)).await, Some(at_ms(end + 304 + 11)));
        assert_eq!(b.spend("k", told_end(end + 302)).await, Some(at_ms(end + 302 + 11)));
        // Sends before anyone knows the window count in the first one told.
        assert_eq!(a.spend("n", None).await, None);
        assert_eq!(b.spend("n", None).await, None);
        let first = Window::new(SystemTime::now() + MS(300), 3).as_told();
        assert_eq!(a.spend("n", Some(first)).await, None);
        assert_eq!(a.spend("n", Some(first)).await, Some(at_ms(epoch_ms(first.end) + 2)), "3 went: spent");
    };
    tokio::time::timeout(DEADLINE, test).await.expect("store calls are bounded");
    let keys = keys_that_expire(&prefix).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
}
