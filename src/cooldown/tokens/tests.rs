//! Token budgets through the pacer, with an injected clock.

use std::time::Duration;

use crate::clock::Instant;

use super::*;
use crate::cooldown::{Gate, Key, Pacer};

const MS: fn(u64) -> Duration = Duration::from_millis;

/// A chat body of about `tokens` input tokens reserving `max_tokens`.
fn body(tokens: usize, max_tokens: u64) -> Vec<u8> {
    let head = format!(r#"{{"model":"m","max_tokens":{max_tokens},"messages":[{{"role":"user","content":""#);
    let tail = r#""}]}"#;
    let text = "x".repeat((tokens * 4).saturating_sub(head.len() + tail.len()));
    format!("{head}{text}{tail}").into_bytes()
}

/// OpenAI's token headers: `remaining` of `limit`, resetting in `reset`.
fn openai(limit: u64, remaining: u64, reset: Duration) -> RateLimits {
    let tokens = RateLimit { limit: Some(limit), remaining: Some(remaining), reset: Some(reset) };
    RateLimits { tokens: Some(tokens), ..RateLimits::default() }
}

/// One ask, given up if it has to wait (as a dropped admission gives it up).
fn go(pacer: &Pacer, key: &Key, body: &[u8], now: Instant) -> Gate {
    let mut ask = Ask::new(Some(body), now);
    let gate = pacer.gate(key, &mut ask, now);
    if let Some(ticket) = ask.ticket {
        pacer.leave(key, ticket);
    }
    gate
}

fn seq(gate: Gate) -> u64 {
    match gate {
        Gate::Go(seq) => seq,
        Gate::Wait(wait) => panic!("waits {wait:?}"),
    }
}

#[test]
fn a_request_larger_than_what_is_left_waits_for_the_reset_and_one_that_fits_goes() {
    let (pacer, k, t0) = (Pacer::new(None), Key::test(1), Instant::now());
    let first = seq(go(&pacer, &k, &body(100, 0), t0));
    // 5 000 tokens left, the window resets in 300 ms.
    pacer.observe(&k, first, Some(&openai(40_000, 5_000, MS(300))), (None, None), t0);
    // 3 000 + 256 fits; then 1 744 are left, and 1 500 + 256 = 1 756 do not fit.
    seq(go(&pacer, &k, &body(3_000, 256), t0));
    assert_eq!(go(&pacer, &k, &body(1_500, 256), t0), Gate::Wait(MS(300)));
    seq(go(&pacer, &k, &body(1_400, 256), t0));
    // Past the reset the whole limit: it goes.
    seq(go(&pacer, &k, &body(1_500, 256), t0 + MS(300)));
}

#[test]
fn reserved_output_counts_where_the_provider_counts_it() {
    let t0 = Instant::now();
    // OpenAI counts max_tokens in its one token limit: 1 000 input + 4 000 reserved do not fit 4 500.
    let (pacer, k) = (Pacer::new(None), Key::test(1));
    let first = seq(go(&pacer, &k, &body(10, 0), t0));
    pacer.observe(&k, first, Some(&openai(40_000, 4_500, MS(300))), (None, None), t0);
    assert!(matches!(go(&pacer, &k, &body(1_000, 4_000), t0), Gate::Wait(_)));
    seq(go(&pacer, &k, &body(1_000, 3_000), t0));
    // Anthropic: input against input tokens, max_tokens against output tokens.
    let (pacer, k) = (Pacer::new(None), Key::test_for(Provider::Anthropic, 2));
    let first = seq(go(&pacer, &k, &body(10, 0), t0));
    let family = |remaining| RateLimit { limit: Some(40_000), remaining: Some(remaining), reset: Some(MS(300)) };
    let limits =
        RateLimits { input_tokens: Some(family(6_000)), output_tokens: Some(family(2_000)), ..RateLimits::default() };
    pacer.observe(&k, first, Some(&limits), (None, None), t0);
    // 500 of each is rounding: 5 500 input and 1 500 output are usable.
    seq(go(&pacer, &k, &body(5_000, 1_000), t0));
    assert!(matches!(go(&pacer, &k, &body(100, 1_000), t0), Gate::Wait(_)), "output is short, input is not");
    assert!(matches!(go(&pacer, &k, &body(1_000, 100), t0), Gate::Wait(_)), "input is short, output is not");
    seq(go(&pacer, &k, &body(400, 400), t0));
}

#[test]
fn waiters_go_in_arrival_order_and_later_ones_take_only_what_they_cannot_use() {
    let (pacer, k, t0) = (Pacer::new(None), Key::test(1), Instant::now());
    let first = seq(go(&pacer, &k, &body(10, 0), t0));
    pacer.observe(&k, first, Some(&openai(10_000, 3_000, MS(100))), (None, None), t0);
    // A large request cannot fit this window: it waits, first in line.
    let large = body(9_000, 0);
    let mut waiting = Ask::new(Some(&large), t0);
    assert_eq!(pacer.gate(&k, &mut waiting, t0), Gate::Wait(MS(100)));
    // A small one behind it fits what the large one cannot use now: it goes.
    seq(go(&pacer, &k, &body(2_000, 0), t0));
    // The next window: 10 000 whole, 9 000 of them the large one's.
    let t1 = t0 + MS(100);
    assert!(matches!(go(&pacer, &k, &body(2_000, 0), t1), Gate::Wait(_)), "a later request may not take them");
    seq(go(&pacer, &k, &body(900, 0), t1));
    seq(pacer.gate(&k, &mut waiting, t1));
    assert_eq!(waiting.ticket, None, "it left the line as it went");
    // A waiter that gives up leaves its tokens to the others.
    let t2 = t1 + MS(100);
    let first = seq(go(&pacer, &k, &body(10, 0), t2));
    pacer.observe(&k, first, Some(&openai(10_000, 1_000, MS(100))), (None, None), t2);
    let mut gives_up = Ask::new(Some(&large), t0);
    assert!(matches!(pacer.gate(&k, &mut gives_up, t2), Gate::Wait(_)));
    pacer.leave(&k, gives_up.ticket.unwrap());
    seq(go(&pacer, &k, &body(5_000, 0), t2 + MS(100)));
}

#[test]
fn far_from_empty_the_body_is_not_searched() {
    let (pacer, k, t0) = (Pacer::new(None), Key::test(1), Instant::now());
    let first = seq(go(&pacer, &k, &body(10, 0), t0));
    pacer.observe(&k, first, Some(&openai(10_000_000, 9_000_000, MS(100))), (None, None), t0);
    let request = body(1_000, 4_000);
    let mut far = Ask::new(Some(&request), t0);
    seq(pacer.gate(&k, &mut far, t0));
    assert_eq!(far.cost, Some(Cost { input: 1_000, output: 0 }), "charged its length, max_tokens unread");
    // Near the end of the budget the reservation is read.
    pacer.observe(&k, first, Some(&openai(10_000_000, 20_000, MS(100))), (None, None), t0);
    let mut near = Ask::new(Some(&request), t0);
    seq(pacer.gate(&k, &mut near, t0));
    assert_eq!(near.cost, Some(Cost { input: 1_000, output: 4_000 }));
}

#[test]
fn without_headers_the_limit_is_learned_from_429s() {
    let (pacer, k, t0) = (Pacer::new(None), Key::test(1), Instant::now());
    let said = |used| Some(Said { tokens: Some(Family::Tokens), limit: 10_000, used });
    let sends: Vec<u64> = (0..4).map(|_| seq(go(&pacer, &k, &body(2_500, 0), t0))).collect();
    // The fourth was refused: 7 500 used, over in 200 ms.
    pacer.observe(&k, sends[3], None, (Some(MS(200)), said(Some(7_500))), t0);
    // The key cools down for the 429's wait, and, as the first 429s went to requests sent
    // before any limit was known, as long again as their retries' jitter (20 ms).
    assert!(matches!(go(&pacer, &k, &body(2_000, 0), t0), Gate::Wait(_)));
    assert_eq!(go(&pacer, &k, &body(2_000, 0), t0 + MS(200)), Gate::Wait(MS(20)));
    let t1 = t0 + MS(220);
    for _ in 0..4 {
        seq(go(&pacer, &k, &body(2_500, 0), t1));
    }
    // Spent, and the end is not known: one scout goes to find it, the others wait.
    let scout = seq(go(&pacer, &k, &body(2_500, 0), t1));
    assert!(matches!(go(&pacer, &k, &body(2_500, 0), t1), Gate::Wait(_)));
    // Its 429 says the end, a window after the first: the length is known from now on.
    pacer.observe(&k, scout, None, (Some(MS(180)), said(None)), t1);
    let t2 = t1 + MS(180);
    for _ in 0..4 {
        seq(go(&pacer, &k, &body(2_500, 0), t2));
    }
    // Spent: wait for the predicted end, a little late, as a waiter released after a pilot.
    let request = body(2_500, 0);
    let mut waiter = Ask::new(Some(&request), t2);
    let Gate::Wait(wait) = pacer.gate(&k, &mut waiter, t2) else { panic!("spent") };
    assert!(wait >= MS(200) && wait <= MS(206), "{wait:?}");
    assert_eq!(pacer.place(&k, waiter.ticket.unwrap()), Some((0, true)), "the end is predicted");
    pacer.leave(&k, waiter.ticket.unwrap());
}

#[test]
fn a_request_larger_than_the_whole_limit_is_not_held_and_is_told_apart() {
    let (pacer, k, t0) = (Pacer::new(None), Key::test_for(Provider::Anthropic, 1), Instant::now());
    let said = Some(Said { tokens: Some(Family::Input), limit: 40_000, used: None });
    let small = seq(go(&pacer, &k, &body(2_000, 0), t0));
    pacer.observe(&k, small, None, (Some(MS(100)), said), t0);
    // Larger than any window: sent at once, not held for a reset that cannot help.
    seq(go(&pacer, &k, &body(50_000, 0), t0 + MS(100)));
    // A 429 naming a limit smaller than the request: nothing can help it.
    let anthropic = Provider::Anthropic;
    assert!(too_large(anthropic, said, Some(&body(50_000, 0))));
    assert!(!too_large(anthropic, said, Some(&body(2_000, 0))), "it fits a window: the window was spent");
    let output = Some(Said { tokens: Some(Family::Output), limit: 8_000, used: None });
    assert!(too_large(anthropic, output, Some(&body(10, 9_000))));
    assert!(!too_large(anthropic, Some(Said { tokens: None, limit: 50, used: None }), Some(&body(50_000, 0))));
    assert!(!too_large(anthropic, said, None), "a body that cannot be read is not judged");
}

#[test]
fn sends_made_before_the_limit_was_known_still_count() {
    let (pacer, k, t0) = (Pacer::new(None), Key::test(1), Instant::now());
    // 16 requests in flight before any answer: 2 000 input and 256 reserved tokens each.
    for _ in 0..16 {
        seq(go(&pacer, &k, &body(2_000, 256), t0));
    }
    // The first answer says what the first send left: the other 15 are on their way.
    pacer.observe(&k, 1, Some(&openai(40_000, 40_000 - 2_256, MS(900))), (None, None), t0);
    // 40 000 − 16 × 2 256 = 3 904 are left: 1 256 fit, then 2 756 do not.
    seq(go(&pacer, &k, &body(1_000, 256), t0));
    assert!(matches!(go(&pacer, &k, &body(2_500, 256), t0), Gate::Wait(_)));
    // Later answers from that first wave are read the same way.
    pacer.observe(&k, 16, Some(&openai(40_000, 3_904, MS(900))), (None, None), t0);
    seq(go(&pacer, &k, &body(1_300, 256), t0));
}

#[test]
fn a_retry_keeps_its_place_before_later_requests_even_while_a_cooldown_holds_it() {
    let (pacer, k, t0) = (Pacer::new(None), Key::test(1), Instant::now());
    let first = seq(go(&pacer, &k, &body(10, 0), t0));
    pacer.observe(&k, first, Some(&openai(10_000, 1_000, MS(100))), (None, None), t0);
    // A 429 cools the key down until the window ends; a request that first asked
    // before the others is held by it, and keeps its place for the tokens.
    pacer.observe(&k, first, None, (Some(MS(100)), None), t0);
    let (early, late) = (body(6_000, 0), body(5_000, 0));
    let mut retry = Ask::new(Some(&early), t0);
    assert!(matches!(pacer.gate(&k, &mut retry, t0 + MS(10)), Gate::Wait(_)));
    // A request that came later wakes first: the retry's 6 000 are claimed, 4 000 are left.
    let t1 = t0 + MS(100);
    let mut newer = Ask::new(Some(&late), t0 + MS(20));
    assert!(matches!(pacer.gate(&k, &mut newer, t1), Gate::Wait(_)));
    seq(pacer.gate(&k, &mut retry, t1));
    pacer.leave(&k, newer.ticket.unwrap());
}

#[test]
fn a_retry_that_asks_after_a_later_request_still_goes_before_it() {
    let (pacer, k, t0) = (Pacer::new(None), Key::test(1), Instant::now());
    let first = seq(go(&pacer, &k, &body(10, 0), t0));
    pacer.observe(&k, first, Some(&openai(10_000, 1_000, MS(100))), (None, None), t0);
    // A request that first asked at t0 + 20 ms waits first; the retry of one from t0 asks after it.
    let (newer_body, retry_body) = (body(5_000, 0), body(6_000, 0));
    let mut newer = Ask::new(Some(&newer_body), t0 + MS(20));
    assert!(matches!(pacer.gate(&k, &mut newer, t0 + MS(30)), Gate::Wait(_)));
    let mut retry = Ask::new(Some(&retry_body), t0);
    assert!(matches!(pacer.gate(&k, &mut retry, t0 + MS(40)), Gate::Wait(_)));
    // The next window: the retry's 6 000 come first; the newer one does not fit the 4 000 left.
    let t1 = t0 + MS(100);
    assert!(matches!(pacer.gate(&k, &mut newer, t1), Gate::Wait(_)));
    seq(pacer.gate(&k, &mut retry, t1));
    pacer.leave(&k, newer.ticket.unwrap());
}

#[test]
fn waiters_for_tokens_are_released_in_line_and_those_held_by_a_cooldown_are_not() {
    let (pacer, k, t0) = (Pacer::new(None), Key::test(1), Instant::now());
    let first = seq(go(&pacer, &k, &body(10, 0), t0));
    pacer.observe(&k, first, Some(&openai(10_000, 1_000, MS(100))), (None, None), t0);
    let (large, small) = (body(5_000, 0), body(4_000, 0));
    let mut earlier = Ask::new(Some(&large), t0);
    let mut later = Ask::new(Some(&small), t0 + MS(1));
    // The later one asks first; in line, the earlier one is all the same ahead of it.
    assert!(matches!(pacer.gate(&k, &mut later, t0 + MS(2)), Gate::Wait(_)));
    assert!(matches!(pacer.gate(&k, &mut earlier, t0 + MS(3)), Gate::Wait(_)));
    let place = |ask: &Ask<'_>| pacer.place(&k, ask.ticket.unwrap()).map(|(place, _)| place);
    assert_eq!((place(&earlier), place(&later)), (Some(0), Some(1)));
    assert_eq!(pacer.place(&k, later.ticket.unwrap()), Some((1, false)), "a header told the reset");
    // Held by a 429's cooldown, a request keeps its place for the tokens, but is not in line.
    pacer.observe(&k, first, None, (Some(MS(100)), None), t0);
    let mut held = Ask::new(Some(&small), t0 + MS(4));
    assert!(matches!(pacer.gate(&k, &mut held, t0 + MS(5)), Gate::Wait(_)));
    assert_eq!(place(&held), None);
    // Held by a 429 about tokens, it waits for tokens: in line.
    let said = Some(Said { tokens: Some(Family::Tokens), limit: 10_000, used: Some(9_000) });
    pacer.observe(&k, first, None, (Some(MS(100)), said), t0);
    let mut for_tokens = Ask::new(Some(&small), t0 + MS(6));
    assert!(matches!(pacer.gate(&k, &mut for_tokens, t0 + MS(7)), Gate::Wait(_)));
    assert_eq!(place(&for_tokens), Some(3));
    for ask in [earlier, later, held, for_tokens] {
        pacer.leave(&k, ask.ticket.unwrap());
    }
}
