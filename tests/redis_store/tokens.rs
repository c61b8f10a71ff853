//! Token windows through Redis: a send spends its request and its tokens in
//! one script call, all or nothing, with the same answers as the memory
//! store's; two processes spend one token window between them.

use std::time::{Duration, SystemTime};

use reqwest_llm_retry::store::{Spend, Window};
use reqwest_llm_retry::{MemoryStore, SharedStore};

use crate::deployment::*;
use crate::support::deadline::DEADLINE;
use crate::support::fast;
use crate::support::tokens::two_middlewares_share_a_token_window;

/// Token windows through the public trait, step by step: the same answers
/// from every store (the Redis script is the memory store's twin). Windows
/// end 30 s on, so nothing rolls while the test runs, but one of 60 ms;
/// without a length, the guard past an end is 2 ms.
async fn token_protocol(store: &dyn SharedStore, key: &str) {
    let end = SystemTime::now() + Duration::from_secs(30);
    let past = |window: Window| Some(at_ms(epoch_ms(window.end) + 2));
    // OpenAI: 3 requests and 5 000 tokens a window.
    let (requests, tokens) = (Window::new(end, 3).as_told(), Window::new(end + MS(500), 5_000).as_told());
    let openai = |requests, cost, tokens| store.spend(key, Spend::new(requests).with_tokens(cost, tokens));
    assert_eq!(openai(Some(requests), 3_000, Some(tokens)).await, None);
    assert_eq!(openai(Some(requests), 2_500, Some(tokens)).await, past(tokens), "2 000 left");
    // An asker that knows neither window is counted in both (the refused send spent no request).
    assert_eq!(openai(None, 2_000, None).await, None);
    assert_eq!(openai(None, 1, None).await, past(tokens));
    // A cost above the whole limit is not held by it (the server decides), nor counted in it.
    assert_eq!(openai(None, 6_000, None).await, None);
    assert_eq!(openai(None, 0, None).await, past(requests), "3 requests went");
    // Both short: the later of their ends.
    assert_eq!(openai(None, 1, None).await, past(tokens));

    // Anthropic: input and output apart; what an asker knows is used raises the count.
    let anthropic = format!("{key}:anthropic");
    let input = Window::new(end, 10_000).as_told().with_used(8_000);
    let output = Window::new(end + MS(900), 2_000).as_told();
    let send = |i, o| {
        let spend = Spend::new(Some(requests)).with_input_tokens(i, Some(input)).with_output_tokens(o, Some(output));
        store.spend(&anthropic, spend)
    };
    assert_eq!(send(2_000, 1_000).await, None, "10 000 input and 1 000 output spent");
    assert_eq!(send(1, 100).await, past(input), "input short");
    assert_eq!(send(0, 1_500).await, past(output), "output short");
    assert_eq!(send(0, 1_000).await, None, "the output exactly fits");
    assert_eq!(send(0, 0).await, None, "nothing more fits, but nothing more is asked");
    assert_eq!(send(0, 0).await, past(requests));

    // A cooldown holds every send, and the store still hears what its askers know.
    let cooled = format!("{key}:cooled");
    store.extend(&cooled, SystemTime::now() + MS(50)).await;
    let used = Window::new(end, 5_000).as_told().with_used(4_500);
    let send = |cost, window| store.spend(&cooled, Spend::new(Some(requests)).with_tokens(cost, window));
    assert!(send(100, Some(used)).await.is_some(), "held by the cooldown");
    tokio::time::sleep(MS(55)).await;
    assert_eq!(send(1_000, None).await, past(used), "the window it heard of while cooled: 4 500 used");
    assert_eq!(send(500, None).await, None);

    // A window of unknown length ends: the sends after it are counted until a view opens the next.
    let short = format!("{key}:short");
    let ends = SystemTime::now() + MS(60);
    let first = Window::new(ends, 1_000).as_told();
    let requests = Window::new(end, 100);
    let send = |cost, window| store.spend(&short, Spend::new(Some(requests)).with_tokens(cost, window));
    assert_eq!(send(900, Some(first)).await, None);
    assert_eq!(send(200, Some(first)).await, past(first));
    tokio::time::sleep(at_ms(epoch_ms(ends) + 3).duration_since(SystemTime::now()).unwrap_or_default()).await;
    assert_eq!(send(600, None).await, None, "counted, not held: nobody knows the window yet");
    let next = Window::new(ends + MS(1_000), 1_000);
    assert_eq!(send(500, Some(next)).await, past(next), "600 went in it already");
    assert_eq!(send(400, Some(next)).await, None);
}

pub async fn memory_and_redis_stores_speak_the_same_token_protocol(on: Deployment) {
    token_protocol(&MemoryStore::new(), "k").await;
    let prefix = unique_prefix("token-protocol");
    let Some(store) = on.store(&prefix).await else { return };
    tokio::time::timeout(DEADLINE, token_protocol(&store, "k")).await.expect("store calls are bounded");
    // One hash per window, each expiring, all of a key under its hash tag.
    let keys = on.inspect().await.keys_that_expire(&prefix).await;
    let key = |name: &str, window: &str| format!("{prefix}v2:{{{name}}}:{window}");
    let mut expected = [
        key("k", "budget"),
        key("k", "tokens"),
        key("k:anthropic", "budget"),
        key("k:anthropic", "input-tokens"),
        key("k:anthropic", "output-tokens"),
        key("k:cooled", "budget"),
        key("k:cooled", "tokens"),
        key("k:short", "budget"),
        key("k:short", "tokens"),
    ];
    expected.sort();
    assert_eq!(keys, expected);
}

pub async fn two_processes_share_a_token_window_through_redis(on: Deployment) {
    let prefix = unique_prefix("token-window");
    let Some((store_a, store_b)) = on.two_stores(&prefix).await else { return };
    let (a, b) =
        (fast().max_retries(0).shared_store(store_a).build(), fast().max_retries(0).shared_store(store_b).build());
    two_middlewares_share_a_token_window(a, b).await;
}
