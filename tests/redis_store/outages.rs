//! Outages through Redis: the outage protocol step by step, the same answers
//! as the memory store's; and two instances sharing one probe.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest_llm_retry::store::{OutageQuery, OutageReport, OutageTurn};
use reqwest_llm_retry::{LlmRetryMiddleware, MemoryStore, SharedStore};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::deployment::*;
use crate::support::client;
use crate::support::deadline::DEADLINE;

/// The outage protocol through the public trait, step by step: the same answers
/// from every store that shares outages (the Redis script is the memory store's twin).
async fn outage_protocol(store: &dyn SharedStore, host: &str) {
    let lease = Duration::from_secs(10);
    let ask = |since: Option<SystemTime>| store.outage(host, OutageQuery::new(since, lease));
    let t0 = SystemTime::now();
    let near = |at: SystemTime, expected: SystemTime| {
        let gap = at.duration_since(expected).or_else(|e| Ok::<_, ()>(e.duration())).unwrap();
        gap <= MS(50)
    };
    assert_eq!(ask(None).await, OutageTurn::Up, "failures alone are no outage");
    assert_eq!(ask(Some(t0)).await, OutageTurn::Probe, "the first to say so probes");
    for since in [Some(t0), None] {
        match ask(since).await {
            OutageTurn::Wait(until) => assert!(near(until, t0 + lease), "{until:?}"),
            other => panic!("one probe at a time: {other:?}"),
        }
    }
    let next = SystemTime::now() + Duration::from_secs(30);
    store.report_outage(host, OutageReport::ProbeFailed { next_probe: next }).await;
    match ask(Some(t0)).await {
        OutageTurn::Wait(until) => assert!(near(until, next), "the next probe when it said: {until:?}"),
        other => panic!("{other:?}"),
    }
    store.report_outage(host, OutageReport::ProbeFailed { next_probe: SystemTime::now() }).await;
    assert_eq!(ask(None).await, OutageTurn::Probe, "due: whoever asks first");
    store.report_outage(host, OutageReport::ProbeAbandoned).await;
    assert_eq!(ask(Some(t0)).await, OutageTurn::Probe, "an abandoned lease is free");
    store.report_outage(host, OutageReport::Recovered).await;
    assert_eq!(ask(Some(t0)).await, OutageTurn::Up, "recovered since this outage began");
    assert_eq!(ask(None).await, OutageTurn::Up);
    store.report_outage(host, OutageReport::ProbeFailed { next_probe: next }).await;
    assert_eq!(ask(Some(t0)).await, OutageTurn::Up, "a late failed probe does not bring it back");
    let later = SystemTime::now() + Duration::from_secs(1);
    assert_eq!(ask(Some(later)).await, OutageTurn::Probe, "an outage begun after the recovery is new");
}

pub async fn memory_and_redis_stores_speak_the_same_outage_protocol(on: Deployment) {
    outage_protocol(&MemoryStore::new(), "api.anthropic.com:443").await;
    let prefix = unique_prefix("outage-protocol");
    let Some(store) = on.store(&prefix).await else { return };
    tokio::time::timeout(DEADLINE, outage_protocol(&store, "api.anthropic.com:443")).await.expect("bounded");
    // The record and the lease share a hash tag, and both expire.
    let keys = on.inspect().await.keys_that_expire(&prefix).await;
    let record = format!("{prefix}v2:outage:{{api.anthropic.com:443}}");
    assert_eq!(keys, [record.clone(), format!("{record}:probe")]);
}

/// A lease as long as `Duration::MAX` is granted and holds the fleet (for a
/// century, "never"), the same from every store: no overflow, and no expiry
/// Redis refuses (which would fail the call and leave each process probing on its own).
async fn endless_lease(a: &dyn SharedStore, b: &dyn SharedStore) {
    let host = "api.anthropic.com:443";
    let since = Some(SystemTime::now());
    assert_eq!(a.outage(host, OutageQuery::new(since, Duration::MAX)).await, OutageTurn::Probe);
    let fifty_years = SystemTime::now() + Duration::from_secs(50 * 365 * 24 * 3600);
    match b.outage(host, OutageQuery::new(since, Duration::MAX)).await {
        OutageTurn::Wait(until) => assert!(until > fifty_years, "{until:?}"),
        other => panic!("the lease holds the other process: {other:?}"),
    }
}

pub async fn a_lease_of_any_length_holds_the_fleet(on: Deployment) {
    let memory = MemoryStore::new();
    endless_lease(&memory, &memory).await;
    let Some((a, b)) = on.two_stores(&unique_prefix("endless-lease")).await else { return };
    tokio::time::timeout(DEADLINE, endless_lease(&a, &b)).await.expect("bounded");
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

pub async fn two_instances_share_one_outage_probe(on: Deployment) {
    let prefix = unique_prefix("outage");
    let Some((store_a, store_b)) = on.two_stores(&prefix).await else { return };
    let server = MockServer::start().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    // 20 first attempts fail together, then 6 probes.
    let down_for = 26;
    Mock::given(any()).respond_with(DownFor { down_for, seen: seen.clone() }).mount(&server).await;
    let builder = || LlmRetryMiddleware::builder().base_delay(MS(40)).max_delay(MS(1000)).max_retries(6);
    let a = client(&server, builder().shared_store(store_a).build());
    let b = client(&server, builder().shared_store(store_b).build());
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
    for pair in seen[20..down_for].windows(2) {
        assert!(pair[1] >= pair[0] + MS(30), "two probes in flight: {:?} apart", pair[1] - pair[0]);
    }
    assert_eq!(seen.len(), down_for + 1 + 19, "each waiting request sent once more after the recovery");
    // The host's record says when it recovered, and expires.
    let mut redis = on.inspect().await;
    let record = format!("{prefix}v2:outage:{{api.openai.com:{}}}", server.address().port());
    let up: Option<u64> = redis.query(redis::cmd("HGET").arg(&record).arg("up")).await;
    assert!(up.is_some_and(|at| at <= epoch_ms(SystemTime::now())), "{record}: up at {up:?}");
    let ttl: i64 = redis.query(redis::cmd("PTTL").arg(&record)).await;
    assert!(ttl > 0, "{record} has no expiry ({ttl})");
}
