//! The pacer's unit tests, with an injected clock.

use super::*;
use crate::provider::Provider;
use crate::store::{MemoryStore, TestStore};
use reqwest::Request;
use std::time::SystemTime;

fn request(auth: &str, url: &str) -> Request {
    reqwest::Client::new().post(url).header("authorization", auth).build().unwrap()
}
use crate::rate_limits::RateLimit;

fn limits(limit: u64, remaining: u64, reset: Duration) -> RateLimits {
    let requests = RateLimit { limit: Some(limit), remaining: Some(remaining), reset: Some(reset) };
    RateLimits { requests: Some(requests), ..RateLimits::default() }
}

fn now() -> Instant {
    Instant::now()
}

impl Pacer {
    /// The gate for a request without a body.
    fn go(&self, key: &Key, now: Instant) -> Gate {
        self.gate(key, &mut Ask::new(None, now), now)
    }

    /// The store's wait for a request without a body.
    async fn store_wait(&self, key: &Key) -> Option<Duration> {
        self.shared_wait(key, &mut Ask::new(None, now())).await
    }
}

#[test]
fn the_budget_stops_the_request_past_the_limit() {
    let pacer = Pacer::new(None);
    let k = Key::test(1);
    let Gate::Go(first) = pacer.go(&k, now()) else { panic!() };
    // The server says: 2 left after the first request, window resets in 50 ms.
    pacer.observe(&k, first, Some(&limits(3, 2, Duration::from_millis(50))), (None, None), now());
    assert_eq!(pacer.go(&k, now()), Gate::Go(2));
    assert_eq!(pacer.go(&k, now()), Gate::Go(3));
    let Gate::Wait(wait) = pacer.go(&k, now()) else { panic!("the 4th request must wait") };
    assert!(wait <= Duration::from_millis(50));
    assert_eq!(pacer.go(&Key::test(2), now()), Gate::Go(1), "another key is unaffected");
    // A new window: the limit again.
    let later = now() + wait;
    for seq in 4..=6 {
        assert_eq!(pacer.go(&k, later), Gate::Go(seq));
    }
    assert_eq!(pacer.go(&k, later), Gate::Go(7), "reset unknown: never blocks forever");
}

#[test]
fn without_counts_the_pacer_learns_the_window_and_scouts_past_it() {
    let pacer = Pacer::new(None);
    let (k, t0) = (Key::test(1), now());
    for seq in 1..=21 {
        assert_eq!(pacer.go(&k, t0), Gate::Go(seq));
    }
    // The 21st is refused: the window admitted 20, and ends in 100 ms.
    pacer.observe(&k, 21, None, (Some(Duration::from_millis(100)), None), t0);
    assert_eq!(pacer.learned(&k, t0), Some(20));
    assert!(matches!(pacer.go(&k, t0), Gate::Wait(_)));
    let t1 = t0 + Duration::from_millis(100);
    for seq in 22..=41 {
        assert_eq!(pacer.go(&k, t1), Gate::Go(seq));
    }
    // The window is full and its end unknown: one scout goes, the others wait for it.
    let Gate::Go(scout) = pacer.go(&k, t1) else { panic!("a scout") };
    assert_eq!(scout, 42 | SCOUT);
    assert!(matches!(pacer.go(&k, t1), Gate::Wait(_)));
    // Its success says the window admits one more.
    assert_eq!(pacer.observe(&k, scout, None, (None, None), t1), None);
    assert_eq!(pacer.learned(&k, t1), Some(21));
    // A limit named in a 429's message is the capacity outright.
    pacer.observe(
        &k,
        43,
        None,
        (Some(Duration::from_millis(90)), Some(Said { tokens: None, limit: 20, used: None })),
        t1,
    );
    assert_eq!(pacer.learned(&k, t1), Some(20));
    // Successes that carry a count turn the learner off for the key.
    let j = Key::test(2);
    assert_eq!(pacer.go(&j, t0), Gate::Go(1));
    pacer.observe(&j, 1, Some(&limits(5, 4, Duration::from_secs(1))), (None, None), t0);
    assert!(pacer.entries().get(&j.id).unwrap().counted);
}

#[test]
fn stale_snapshots_do_not_overwrite_newer_ones() {
    let pacer = Pacer::new(None);
    let k = Key::test(1);
    for seq in 1..=3 {
        assert_eq!(pacer.go(&k, now()), Gate::Go(seq));
    }
    pacer.observe(&k, 3, Some(&limits(10, 0, Duration::from_secs(5))), (None, None), now());
    pacer.observe(&k, 1, Some(&limits(10, 9, Duration::from_secs(5))), (None, None), now());
    assert!(matches!(pacer.go(&k, now()), Gate::Wait(_)));
}

#[test]
fn memory_for_budgets_is_bounded() {
    let pacer = Pacer::new(None);
    for i in 0..(MAX_BUDGETS + 100) {
        pacer.go(&Key::test(i as u64), now());
        pacer.observe(&Key::test(i as u64), 0, None, (Some(Duration::from_secs(60)), None), now());
    }
    assert!(pacer.entries().len() <= MAX_BUDGETS);
}

#[test]
fn a_429_cools_the_key_down() {
    let pacer = Pacer::new(None);
    let (k, j) = (Key::test(1), Key::test(2));
    // One instant for both calls: the wait is exact, however slow the machine.
    let t0 = now();
    assert_eq!(
        pacer.observe(&k, 1, None, (Some(Duration::from_millis(40)), None), t0),
        Some(Duration::from_millis(40))
    );
    assert_eq!(pacer.go(&k, t0), Gate::Wait(Duration::from_millis(40)));
    assert_eq!(pacer.go(&k, t0 + Duration::from_millis(15)), Gate::Wait(Duration::from_millis(25)));
    assert!(matches!(pacer.go(&k, t0 + Duration::from_millis(40)), Gate::Go(_)), "over at its end");
    assert!(matches!(pacer.go(&j, t0), Gate::Go(_)));
    // Used-up token families cool down too.
    let used_up = RateLimit { limit: None, remaining: Some(0), reset: Some(Duration::from_millis(30)) };
    let tokens = RateLimits { tokens: Some(used_up), ..RateLimits::default() };
    pacer.observe(&j, 1, Some(&tokens), (None, None), now());
    assert!(matches!(pacer.go(&j, now()), Gate::Wait(_)));
    // A plain success sets nothing.
    assert_eq!(pacer.observe(&j, 2, Some(&limits(10, 5, Duration::from_secs(1))), (None, None), now()), None);
}

#[tokio::test]
async fn a_store_hears_of_cooldowns_and_is_asked_before_sending() {
    let store = Arc::new(MemoryStore::new());
    let pacer = Pacer::new(Some(store.clone() as Arc<dyn SharedStore>));
    let k = Key::of(Provider::OpenAi, &request("Bearer sk-1", "https://api.openai.com/v1/x"), true);
    assert_eq!(pacer.store_wait(&k).await, None);
    pacer.publish(&k, Duration::from_secs(5)).await;
    assert!(store.cooldown_at(k.text().unwrap(), SystemTime::now()).is_some());
    let wait = pacer.store_wait(&k).await.expect("the store's cooldown");
    assert!(wait > Duration::from_secs(4) && wait <= Duration::from_secs(5));
    // Without a store there is nothing to ask.
    assert_eq!(Pacer::new(None).store_wait(&k).await, None);
}

#[tokio::test]
async fn a_store_answer_that_passed_in_transit_is_asked_again_not_taken_as_leave() {
    // Every answer has passed by the time it arrives. Going at once would send
    // uncounted, just as the fleet's window opens.
    let late = TestStore { spend: Some(|| Some(SystemTime::now() - Duration::from_millis(3))), ..TestStore::default() };
    let pacer = Pacer::new(Some(Arc::new(late) as Arc<dyn SharedStore>));
    assert_eq!(pacer.store_wait(&Key::test(1)).await, Some(Duration::from_millis(1)));
}

#[test]
fn sweeps_drop_only_keys_whose_state_has_ended() {
    let pacer = Pacer::new(None);
    let t0 = now();
    let second = Duration::from_secs(1);
    // Half the keys cool down for a second, half have a one-second window; one cools down for an hour.
    for i in 0..SWEEP_AT as u64 {
        let k = Key::test(i);
        let Gate::Go(seq) = pacer.go(&k, t0) else { panic!() };
        let (limits, cooldown) = if i % 2 == 0 { (None, Some(second)) } else { (Some(limits(10, 5, second)), None) };
        pacer.observe(&k, seq, limits.as_ref(), (cooldown, None), t0);
    }
    pacer.observe(&Key::test(0), 1, None, (Some(Duration::from_secs(3600)), None), t0);
    // A new key once the others' windows, cooldowns and what was learned of them have
    // ended (learned state is forgotten 60 s unused); the hour has not.
    let end = t0 + Duration::from_secs(61);
    assert!(matches!(pacer.go(&Key::test(u64::MAX), end), Gate::Go(_)));
    assert_eq!(pacer.entries().len(), 2, "swept all but the live key and the new one");
    assert_eq!(pacer.go(&Key::test(0), end), Gate::Wait(Duration::from_secs(3539)));
    // Before their end, nothing is swept.
    let pacer2 = Pacer::new(None);
    for i in 0..SWEEP_AT as u64 {
        let Gate::Go(seq) = pacer2.go(&Key::test(i), t0) else { panic!() };
        let limits = (i % 2 == 1).then(|| limits(10, 5, second));
        pacer2.observe(&Key::test(i), seq, limits.as_ref(), ((i % 2 == 0).then_some(second), None), t0);
    }
    pacer2.go(&Key::test(u64::MAX), t0 + second / 2);
    assert_eq!(pacer2.entries().len(), SWEEP_AT + 1);
}

#[test]
fn a_forced_send_still_updates_the_budget() {
    let pacer = Pacer::new(None);
    let k = Key::test(1);
    let t0 = now();
    pacer.go(&k, t0);
    let Gate::Go(second) = pacer.go(&k, t0) else { panic!() };
    // One request left in this window; this process spends it.
    pacer.observe(&k, second, Some(&limits(10, 1, Duration::from_secs(5))), (None, None), t0);
    assert!(matches!(pacer.go(&k, t0), Gate::Go(_)));
    assert!(matches!(pacer.go(&k, t0), Gate::Wait(_)));
    // The wait was too long to honour: the request is sent anyway, and its answer counts.
    let forced = pacer.force(&k, &mut Ask::new(None, t0));
    pacer.observe(&k, forced, Some(&limits(10, 9, Duration::from_secs(5))), (None, None), t0);
    assert!(matches!(pacer.go(&k, t0), Gate::Go(_)), "the forced send's response is the newest view");
}

#[tokio::test]
async fn a_429_tells_the_store_its_token_window_at_once() {
    // The cooldown it sets holds every sender until the window ends: no send would tell it.
    let store = Arc::new(TestStore::default());
    let pacer = Pacer::new(Some(store.clone() as Arc<dyn SharedStore>));
    let k = Key::test(1);
    let body = vec![b'x'; 4_000];
    let Gate::Go(seq) = pacer.gate(&k, &mut Ask::new(Some(&body), now()), now()) else { panic!("the first send goes") };
    let said = Some(tokens::Said { tokens: Some(tokens::Family::Tokens), limit: 40_000, used: Some(38_000) });
    let wait = pacer.observe(&k, seq, None, (Some(Duration::from_millis(700)), said), now()).expect("a cooldown");
    pacer.publish(&k, wait).await;
    let spent = store.spent.lock().unwrap();
    let told = spent.last().expect("the store was told");
    assert!(told.tells_only && told.requests.is_none(), "nothing is spent: {told:?}");
    let tokens = told.tokens.expect("the token window");
    let window = tokens.window.expect("its end is known");
    assert_eq!((tokens.cost, window.limit, window.told, window.used), (0, 40_000, true, Some(38_000)));
    let end = window.end.duration_since(SystemTime::now()).unwrap();
    assert!(end > Duration::from_millis(600) && end <= Duration::from_millis(700), "{end:?}");
    assert!(store.memory.cooldown_at(k.text().unwrap(), SystemTime::now()).is_some(), "and the cooldown");
}
