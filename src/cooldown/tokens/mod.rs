//! Token budgets: pacing the limit that binds first, tokens per window.
//!
//! Why: tokens bind long before requests. OpenAI's tier 1 allows gpt-4o 500
//! requests but 30,000 tokens a minute, so any prompt over 60 tokens makes
//! the token limit the one that binds. A request that does not fit what is
//! left of the window is sure to get a 429; sent anyway, each of the
//! requests in flight collects its own.
//!
//! So, per key, each token limit the provider states (OpenAI's
//! `x-ratelimit-*-tokens`; Anthropic's input and output tokens) is spent
//! like the request budget: each request spends its estimated [`Cost`] when
//! it is sent, and one that does not fit waits for the window's reset (within
//! the retry bounds; the middleware decides). Without headers, the limit is
//! learned from a 429's message.
//!
//! Fair order: requests that wait go in the order they came. Before a request
//! takes tokens, the earlier waiters claim theirs from what is left, in
//! order; a later request may only take what none of them can use in this
//! window, so a large request is not starved by small ones behind it. A
//! waiter keeps its place (a ticket) until it goes or gives up.
//!
//! Nothing of this runs for a key until a token limit is known, and while
//! its budgets are far from empty a request costs one division: the body is
//! searched for its output reservation only when the budget could be too small.

mod cost;
mod said;
mod window;

use std::collections::VecDeque;
use std::time::Duration;

use crate::clock::Instant;

use cost::input_tokens;
pub(crate) use cost::{Cost, Family};
pub(crate) use said::{Said, limit_in_message};
pub(super) use window::Known;
use window::Window;

use crate::provider::Provider;
use crate::rate_limits::{RateLimit, RateLimits};

/// Sends remembered, to read the responses' figures against.
const RECENT: usize = 32;
/// Headroom past which a budget is far from empty: a request is charged its
/// body's length and the largest reservation seen, unsearched.
const FAR: u64 = 32 * 1024;
/// How long before a reset nothing is sent against the window that ends.
const GUARD: Duration = Duration::from_millis(5);
/// Anthropic rounds what is left of its token limits to the nearest thousand.
const ANTHROPIC_SLACK: u64 = 500;
/// How long a scout (a request sent to find an unknown reset) may stay
/// unanswered before another goes, and how often the others ask meanwhile.
const SCOUT_PATIENCE: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_millis(5);
/// Learned limits unused this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// What a request asks of the token budgets, kept across its waits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask<'a> {
    body: Option<&'a [u8]>,
    /// When the request first asked: a retry keeps its place before the
    /// requests that came after it.
    since: Instant,
    /// The estimate, once made.
    cost: Option<Cost>,
    /// Its place among the waiters, once it has waited.
    pub(super) ticket: Option<u64>,
    /// Whether this process's budgets let the send go (as a scout, or not)
    /// before a store admitted it: the store, which counts the whole fleet,
    /// has the last word, so they are not asked again.
    cleared: Option<bool>,
}

impl<'a> Ask<'a> {
    /// A request with `body` that first asked at `since`.
    pub(crate) fn new(body: Option<&'a [u8]>, since: Instant) -> Self {
        Ask { body, since, cost: None, ticket: None, cleared: None }
    }

    /// Whether a waiter came before this request.
    fn after(&self, waiter: &Waiter) -> bool {
        (waiter.since, waiter.ticket) < (self.since, self.ticket.unwrap_or(u64::MAX))
    }

    pub(super) fn body(&self) -> Option<&'a [u8]> {
        self.body
    }

    fn cost(&mut self) -> Cost {
        *self.cost.get_or_insert_with(|| self.body.map(Cost::of).unwrap_or_default())
    }

    /// The store refused the send: this process's budgets are asked again next time.
    pub(super) fn refused(&mut self) {
        self.cleared = None;
    }
}

/// A send's part in the token windows a store shares, per [`Family`]: its
/// cost, and the window as this process knows it.
pub(super) type StorePart = [Option<(u64, Option<Known>)>; 3];

/// What the token budgets of a key (`tokens`, once a limit is known) say
/// before a store is asked about the send numbered `next_seq`: `Err(wait)`
/// when it does not fit what this process knows (it keeps its place, and the
/// store is not asked); else its part in the store's token windows. A key
/// without budgets yet sends its cost all the same, to be counted in windows
/// other processes know.
pub(super) fn for_store(
    tokens: Option<&mut Tokens>,
    ask: &mut Ask<'_>,
    (provider, next_seq): (Provider, u64),
    now: Instant,
) -> Result<StorePart, Duration> {
    let Some(tokens) = tokens else {
        return Ok(ask.cost().per_family(provider).map(|cost| cost.map(|cost| (cost, None))));
    };
    ask.cleared = None;
    let verdict = tokens.check(ask, next_seq, now);
    if let TokenGate::Wait(wait) = verdict {
        return Err(wait);
    }
    ask.cleared = Some(verdict == TokenGate::Scout);
    let cost = ask.cost().per_family(provider);
    Ok(std::array::from_fn(|f| cost[f].map(|cost| (cost, tokens.windows[f].known(tokens.sent[f], now)))))
}

/// What the token budgets say before a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenGate {
    Go,
    /// Go, and every budget has half its window left, and more than a large request.
    Far,
    /// Go, alone, to find out when the window resets.
    Scout,
    Wait(Duration),
}

/// One send, remembered.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    seq: u64,
    /// Tokens spent up to and including it, per family.
    mark: [u64; 3],
}

/// A request waiting for tokens.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    since: Instant,
    ticket: u64,
    cost: [Option<u64>; 3],
    /// Whether it waits for tokens (its own, or a fleet's window), rather
    /// than for a cooldown: then it is released in line.
    in_line: bool,
}

/// The token budgets of one key.
#[derive(Debug, Clone)]
pub(super) struct Tokens {
    provider: Provider,
    windows: [Window; 3],
    /// Tokens this process has sent, per family.
    sent: [u64; 3],
    recent: [Sent; RECENT],
    /// Sends numbered below this were made before the budgets existed.
    born: u64,
    /// Those sends' input tokens, as far as remembered, and the output each
    /// is taken to reserve (from the first figures). They may still be in
    /// flight: a request sent as if they cost nothing collects a 429.
    cold: Cold,
    cold_output: u64,
    queue: VecDeque<Waiter>,
    next_ticket: u64,
    scout: Option<(u64, Instant)>,
    /// The largest output reservation found: what an unsearched send is charged.
    output_seen: u64,
    /// Until when a 429 about tokens holds the key: those it holds wait for
    /// tokens, and go in line.
    refused_until: Option<Instant>,
    used: Instant,
}

impl Tokens {
    /// Budgets for a key of `provider`, whose next send is numbered `next_seq`.
    pub(super) fn new(provider: Provider, next_seq: u64, cold: Cold, now: Instant) -> Box<Tokens> {
        let slack =
            |family| if provider == Provider::Anthropic && family != Family::Tokens { ANTHROPIC_SLACK } else { 0 };
        Box::new(Tokens {
            provider,
            windows: Family::ALL.map(|family| Window::with_slack(slack(family))),
            sent: [0; 3],
            recent: [Sent::default(); RECENT],
            born: next_seq,
            cold,
            cold_output: 0,
            queue: VecDeque::new(),
            next_ticket: 1,
            scout: None,
            output_seen: 0,
            refused_until: None,
            used: now,
        })
    }

    /// Whether the key's token budgets are worth keeping.
    pub(super) fn live(&self, now: Instant) -> bool {
        !self.queue.is_empty()
            || now.saturating_duration_since(self.used) < FORGET_AFTER
            || self.windows.iter().any(|w| w.reset_at.is_some_and(|r| r > now))
    }

    /// Whether `limits` or a 429's message state a token limit this provider's requests are spent against.
    pub(super) fn stated(provider: Provider, limits: Option<&RateLimits>, said: Option<Said>) -> bool {
        let told = limits.is_some_and(|limits| {
            Family::ALL.iter().any(|&f| {
                family(limits, f).is_some_and(|l| l.remaining.is_some() && l.reset.is_some())
                    && Cost::default().in_family(provider, f).is_some()
            })
        });
        told || said.is_some_and(|said| said.tokens.is_some_and(|f| Cost::default().in_family(provider, f).is_some()))
    }

    /// Before the send numbered `next_seq`: whether `ask` fits now.
    pub(super) fn check(&mut self, ask: &mut Ask<'_>, next_seq: u64, now: Instant) -> TokenGate {
        self.used = now;
        for (f, window) in self.windows.iter_mut().enumerate() {
            window.roll(now, self.sent[f], next_seq - 1);
        }
        if let Some(scout) = ask.cleared.take() {
            return if scout { TokenGate::Scout } else { TokenGate::Go };
        }
        let held = self.refused_until.filter(|until| *until > now);
        let left: [Option<u64>; 3] = std::array::from_fn(|f| self.windows[f].left(self.sent[f]));
        if self.queue.is_empty() && ask.cost.is_none() && held.is_none() && self.far(&left, ask) {
            return if self.half_left(&left) { TokenGate::Far } else { TokenGate::Go };
        }
        let cost = ask.cost();
        self.output_seen = self.output_seen.max(cost.output);
        let mine = cost.per_family(self.provider);
        // What the earlier waiters can use of this window is theirs. Just before
        // a reset, nothing is: a send then may land in the next window, which
        // this process would count whole. Nor while a 429 holds the key.
        let mut free = left;
        for (free, window) in free.iter_mut().zip(&self.windows) {
            if held.is_some() || window.reset_at.is_some_and(|reset_at| reset_at <= now + GUARD) {
                *free = free.map(|_| 0);
            }
        }
        for waiter in self.queue.iter().take_while(|w| ask.after(w)) {
            if self.fits(&waiter.cost, &free) {
                take(&waiter.cost, &mut free);
            }
        }
        if self.fits(&mine, &free) {
            return TokenGate::Go;
        }
        self.enqueue(ask, mine, true);
        match held {
            Some(until) => TokenGate::Wait(until - now),
            None => self.wait(&mine, &free, now),
        }
    }

    /// Gives `ask` its place among the waiters, by when it first asked.
    fn enqueue(&mut self, ask: &mut Ask<'_>, cost: [Option<u64>; 3], in_line: bool) {
        if let Some(ticket) = ask.ticket {
            if let Some(waiter) = self.queue.iter_mut().find(|w| w.ticket == ticket) {
                waiter.in_line |= in_line;
            }
            return;
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        ask.ticket = Some(ticket);
        let at = self.queue.iter().position(|w| w.since > ask.since).unwrap_or(self.queue.len());
        self.queue.insert(at, Waiter { since: ask.since, ticket, cost, in_line });
    }

    /// `ask` waits for something else (a cooldown), or a store refused it: it
    /// keeps its place for when that ends, in line when it waits for tokens
    /// (`for_tokens`: the store's window, or a 429 about tokens).
    pub(super) fn hold_place(&mut self, ask: &mut Ask<'_>, for_tokens: bool) {
        let cost = ask.cost().per_family(self.provider);
        self.enqueue(ask, cost, for_tokens);
    }

    /// Far from empty: every budget has room for the body and the largest
    /// reservation seen, and some; the request is charged that, unsearched.
    fn far(&self, left: &[Option<u64>; 3], ask: &mut Ask<'_>) -> bool {
        let guess = Cost { input: input_tokens(ask.body.map_or(0, <[u8]>::len)), output: self.output_seen };
        let far = guess.per_family(self.provider).iter().zip(left).all(|(need, left)| match (need, left) {
            (Some(need), Some(left)) => *left >= need.saturating_add(FAR),
            _ => true,
        });
        if far {
            ask.cost = Some(guess);
        }
        far
    }

    /// Whether every budget whose limit is known has half of it left.
    fn half_left(&self, left: &[Option<u64>; 3]) -> bool {
        self.windows.iter().zip(left).all(|(window, left)| match (window.limit, left) {
            (Some(limit), Some(left)) => *left >= limit / 2,
            (None, None) => true,
            _ => false,
        })
    }

    /// Whether `cost` fits `free` in every budget.
    fn fits(&self, cost: &[Option<u64>; 3], free: &[Option<u64>; 3]) -> bool {
        (0..3).all(|f| !self.short(f, cost, free))
    }

    /// Whether budget `f` is short of `cost`. A cost above the whole limit is
    /// never short: no window admits it, so it is not waited for; the server decides.
    fn short(&self, f: usize, cost: &[Option<u64>; 3], free: &[Option<u64>; 3]) -> bool {
        match (cost[f], free[f]) {
            (Some(cost), Some(free)) => cost > free && self.windows[f].limit.is_none_or(|limit| cost <= limit),
            _ => false,
        }
    }

    /// How long a request that does not fit waits: until the reset of every
    /// budget it does not fit. An unknown reset is soon told by a response,
    /// where headers state the limit; otherwise one request goes to find it.
    fn wait(&mut self, cost: &[Option<u64>; 3], free: &[Option<u64>; 3], now: Instant) -> TokenGate {
        let mut until = now;
        for f in (0..3).filter(|&f| self.short(f, cost, free)) {
            let window = &self.windows[f];
            match window.reset_at {
                Some(reset_at) => until = until.max(reset_at),
                None if window.headers => return TokenGate::Wait(POLL),
                None => return self.scout(now),
            }
        }
        TokenGate::Wait(until.saturating_duration_since(now).max(Duration::from_millis(1)))
    }

    /// One request at a time goes to find an unknown reset; the others ask again soon.
    fn scout(&mut self, now: Instant) -> TokenGate {
        match self.scout {
            Some((_, went)) if now.saturating_duration_since(went) < SCOUT_PATIENCE => TokenGate::Wait(POLL),
            _ => TokenGate::Scout,
        }
    }

    /// The send numbered `seq` goes: it spends its cost (a scout too).
    pub(super) fn spend(&mut self, seq: u64, ask: &mut Ask<'_>, scout: bool, now: Instant) {
        let cost = ask.cost().per_family(self.provider);
        // Built by index rather than zipped: this runs on every send, and the
        // zip of two arrays compiles to three times the instructions.
        self.sent = std::array::from_fn(|f| self.sent[f].saturating_add(cost[f].unwrap_or(0)));
        self.recent[seq as usize % RECENT] = Sent { seq, mark: self.sent };
        if let Some(ticket) = ask.ticket.take() {
            self.queue.retain(|w| w.ticket != ticket);
        }
        if scout {
            self.scout = Some((seq, now));
        }
    }

    /// A waiter gives up its place.
    pub(super) fn leave(&mut self, ticket: u64) {
        self.queue.retain(|w| w.ticket != ticket);
    }

    /// Each window as this process knows it, per [`Family`], now.
    pub(super) fn known(&self, now: Instant) -> [Option<Known>; 3] {
        std::array::from_fn(|f| self.windows[f].known(self.sent[f], now))
    }

    /// Whether a 429 about tokens cools the key down at `now`.
    pub(super) fn cooled_for_tokens(&self, now: Instant) -> bool {
        self.refused_until.is_some_and(|until| until > now)
    }

    /// How many waiters are ahead of the one holding `ticket`, if it waits in
    /// line for tokens, and whether a reset it may wait for is this process's prediction.
    pub(super) fn place(&self, ticket: u64) -> Option<(usize, bool)> {
        let place = self.queue.iter().position(|w| w.ticket == ticket)?;
        let predicted = self.windows.iter().any(Window::predicted);
        self.queue[place].in_line.then_some((place, predicted))
    }

    /// What this process had spent up to the send `seq`, if it is known:
    /// sends from before the budgets existed at their average.
    fn mark_of(&self, seq: u64) -> Option<[u64; 3]> {
        if seq < self.born {
            return Some(self.before(seq));
        }
        let sent = &self.recent[seq as usize % RECENT];
        (sent.seq == seq).then_some(sent.mark)
    }

    /// The figures a response to the send `seq` carries, and a 429's message
    /// (`said`, with the 429's wait) naming a token limit.
    pub(super) fn observe(
        &mut self,
        seq: u64,
        limits: Option<&RateLimits>,
        refused: (Option<Said>, Option<Duration>),
        now: Instant,
    ) {
        if self.scout.is_some_and(|(scout, _)| scout == seq) {
            self.scout = None;
        }
        if let Some(limits) = limits {
            self.calibrate(seq, limits);
        }
        if let (Some(Said { tokens: Some(_), .. }), Some(wait)) = refused {
            // The first 429s of a key come to requests sent before any limit was known, all of
            // them early: each comes back up to its retry's jitter after the wait (10 %, at most
            // 1 s), and the requests sent since wait as long, to go in line behind them.
            let blind = self.windows.iter().all(|w| w.limit.is_none());
            let held = if blind { wait.saturating_add(crate::backoff::server_jitter(wait)) } else { wait };
            self.refused_until = self.refused_until.max(now.checked_add(held));
        }
        let Some(mark) = self.mark_of(seq) else { return };
        if let Some(limits) = limits {
            for f in Family::ALL {
                if let Some(RateLimit { limit, remaining: Some(remaining), reset: Some(reset) }) = family(limits, f)
                    && Cost::default().in_family(self.provider, f).is_some()
                {
                    self.windows[f as usize].read((seq, mark[f as usize]), limit, remaining, reset, now);
                }
            }
        }
        if let (Some(Said { tokens: Some(f), limit, used }), wait) = refused
            && !self.windows[f as usize].headers
        {
            let told = wait.and_then(|wait| Some((now.checked_add(wait)?, wait)));
            self.windows[f as usize].refused((seq, mark[f as usize]), limit, used, told);
        }
    }
}

impl Tokens {
    /// Takes the sends made before the budgets existed to have cost what the
    /// first figures say they did on average (`limit − remaining` over `seq`
    /// sends), once, before any send is counted.
    fn calibrate(&mut self, seq: u64, limits: &RateLimits) {
        if seq >= self.born || seq == 0 || self.sent != [0; 3] {
            return;
        }
        // What the first `seq` sends used beyond their input is their output, on average.
        let inputs = self.before(seq);
        for f in [Family::Tokens, Family::Output] {
            if let Some(RateLimit { limit: Some(limit), remaining: Some(remaining), .. }) = family(limits, f) {
                let used = limit.saturating_sub(remaining).saturating_sub(inputs[f as usize]);
                self.cold_output = self.cold_output.max(used / seq);
            }
        }
        self.sent = self.before(self.born - 1);
    }

    /// What the sends numbered up to `seq`, made before the budgets existed, cost.
    fn before(&self, seq: u64) -> [u64; 3] {
        let mut total = [0u64; 3];
        for i in 1..=seq {
            let cost = Cost { input: self.cold.input(i), output: self.cold_output }.per_family(self.provider);
            for (total, cost) in total.iter_mut().zip(cost) {
                *total = total.saturating_add(cost.unwrap_or(0));
            }
        }
        total
    }
}

/// Whether a request with `body` costs more than the whole token limit a
/// 429 of `provider` names (`said`): no window can ever admit it, so no retry can help.
pub(crate) fn too_large(provider: Provider, said: Option<Said>, body: Option<&[u8]>) -> bool {
    let (Some(Said { tokens: Some(family), limit, .. }), Some(body)) = (said, body) else { return false };
    Cost::of(body).in_family(provider, family).is_some_and(|cost| cost > limit)
}

/// How many of a key's first sends have their input remembered.
const COLD: usize = 32;

/// The input tokens of a key's first sends, remembered before any token
/// limit is known (one division a send, and only for the first few).
#[derive(Debug, Clone, Copy)]
pub(super) struct Cold([u32; COLD]);

impl Default for Cold {
    fn default() -> Self {
        Cold([0; COLD])
    }
}

impl Cold {
    /// Remembers the send numbered `seq`, of `body`.
    pub(super) fn record(&mut self, seq: u64, body: Option<&[u8]>) {
        if let Some(slot) = (seq as usize).checked_sub(1).and_then(|i| self.0.get_mut(i)) {
            *slot = u32::try_from(input_tokens(body.map_or(0, <[u8]>::len))).unwrap_or(u32::MAX);
        }
    }

    /// The input of send `seq`; past those remembered, their average.
    fn input(&self, seq: u64) -> u64 {
        match (seq as usize).checked_sub(1).and_then(|i| self.0.get(i)) {
            Some(input) => u64::from(*input),
            None => self.0.iter().map(|i| u64::from(*i)).sum::<u64>() / COLD as u64,
        }
    }
}

/// Takes `cost` out of `free`.
fn take(cost: &[Option<u64>; 3], free: &mut [Option<u64>; 3]) {
    for f in 0..3 {
        if let (Some(cost), Some(free)) = (cost[f], free[f].as_mut()) {
            *free = free.saturating_sub(cost);
        }
    }
}

/// A family's figures in a response's rate limits.
fn family(limits: &RateLimits, family: Family) -> Option<RateLimit> {
    match family {
        Family::Tokens => limits.tokens,
        Family::Input => limits.input_tokens,
        Family::Output => limits.output_tokens,
    }
}

#[cfg(test)]
mod tests;
