//! A fleet's windows, as a store keeps them: the rules of
//! [`SharedStore::spend`](super::SharedStore::spend), in milliseconds since
//! the epoch, mirrored line for line by the Redis store's Lua script.
//!
//! Why the store, not each process, decides where windows end: a process
//! learns a window's end from its own responses, a few milliseconds late (a
//! response's latency) or early (a length learned a little short, carried
//! over windows), and a process that counts a window as over too early lets
//! a burst into the old one; one that counts it as over too late spends the
//! old window's leftovers in the new one. So the store keeps one end and one
//! length for everyone and rolls windows by that length; it corrects the end
//! with the ends servers tell (the earliest told end of a window is the one
//! least delayed), and sends nothing within a guard of each boundary, so an
//! end a few milliseconds off costs nothing.
//!
//! A send spends from several windows of its key at once: one request of the
//! request window, and its estimated tokens of each token window the store
//! knows. It goes only if every one of them has room, and then spends from
//! all; otherwise it spends nothing and waits for the latest of those that
//! are short ([`spend_all`]). Each window follows the same rules, counting
//! requests or tokens, with two differences: only the request window counts
//! sends before anyone knows it (an open count: a token window opens with the
//! first view of it, whose `used` says what went before; after a window whose
//! length is not known yet, both count the sends until a view opens the next
//! one), and a send that costs more than a token window's whole limit is not
//! held by it (no window admits it; the server decides).

use std::time::{Duration, SystemTime};

/// A rate-limit window as a middleware knows it: when it ends, how many
/// requests (or tokens) it admits in all, and, when known, how long it lasts,
/// whether a server told its end, and how much of it is used already.
/// Passed to [`SharedStore::spend`](super::SharedStore::spend) in a [`Spend`](super::Spend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Window {
    /// When the window ends (and the next one opens).
    pub end: SystemTime,
    /// The requests (or tokens) the window admits, for everyone sharing the key.
    pub limit: u64,
    /// How long a window lasts, when known: a store rolls windows by it.
    pub length: Option<Duration>,
    /// Whether a server told `end` (a reset header, or a 429's wait), rather
    /// than the middleware predicting it. A told end is late by the
    /// response's latency, never early by more than its rounding: a store
    /// keeps the earliest told end of each window.
    pub told: bool,
    /// How much of the window the asker knows to be used already, by everyone
    /// sharing it, when known: for a token window, the limit less what a
    /// server last said was left, less what the asker has sent since. A store
    /// counts no less for the window ending at `end`.
    pub used: Option<u64>,
}

impl Window {
    /// A window of `limit` requests (or tokens) ending at `end`, by prediction, of unknown length.
    pub fn new(end: SystemTime, limit: u64) -> Self {
        Window { end, limit, length: None, told: false, used: None }
    }

    /// The same window, known to last `length`.
    pub fn with_length(mut self, length: Duration) -> Self {
        self.length = Some(length).filter(|l| !l.is_zero());
        self
    }

    /// The same window, its end told by a server.
    pub fn as_told(mut self) -> Self {
        self.told = true;
        self
    }

    /// The same window, `used` of it known to be spent already.
    pub fn with_used(mut self, used: u64) -> Self {
        self.used = Some(used);
        self
    }
}

/// What the asker knows of a window (a [`Window`] in ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) end: u64,
    /// 0 when unknown.
    pub(crate) length: u64,
    pub(crate) limit: u64,
    /// Whether a server told `end` (rather than the asker predicting it).
    pub(crate) told: bool,
    pub(crate) used: Option<u64>,
}

impl View {
    /// The view of `window`; none of a window that admits nothing (nothing to count).
    pub(crate) fn of(window: Window) -> Option<View> {
        let length = window.length.map_or(0, |l| round_length(u64::try_from(l.as_millis()).unwrap_or(u64::MAX)));
        let (end, limit, told, used) = (epoch_ms(window.end), window.limit, window.told, window.used);
        Some(View { end, length, limit, told, used }).filter(|v| v.limit > 0)
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One key's shared window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Shared {
    pub(crate) end: u64,
    /// 0 when unknown: then the window cannot be rolled, and the next asker's view opens the next one.
    pub(crate) length: u64,
    pub(crate) limit: u64,
    pub(crate) spent: u64,
    /// Whether `end` was told by a server in this window (rather than rolled).
    pub(crate) told: bool,
    /// The earliest told end of an earlier window (0: none yet): the length is
    /// measured from it, over as many windows as have passed since, so a
    /// response's latency is divided among them.
    pub(crate) origin: u64,
}

/// The windows of a key a send spends from, in the order stores keep them:
/// requests, then tokens, input tokens and output tokens.
pub(crate) const SLOTS: usize = 4;

/// One window's part in a send: what the asker knows of it, and what the send costs in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) view: Option<View>,
    pub(crate) cost: u64,
}

/// How long sends are counted before anyone knows the window (in ms): the
/// first window of a fleet sends many requests before its first answer.
pub(crate) const OPEN_FOR: u64 = 1_000;

/// Nothing is sent this close to a boundary, either side (2 ms, plus 1/32 of the window).
pub(crate) fn guard(length: u64) -> u64 {
    length / 32 + 2
}

/// How long a key's window is kept unused: eight windows, at least a minute.
pub(crate) fn keep(length: u64) -> u64 {
    length.saturating_mul(8).max(60_000)
}

/// Spends one send at `now` from each window it has a part in (`parts`, by
/// slot): all of them, or, when any is short or the key cools down until
/// `cooled` (0: it does not), none, and `Err(until)` the latest time the
/// cooldown or one of those short asks to wait until. `windows` is what the
/// store holds for each slot (`None`: nothing, or a state the store cannot
/// count with); each is updated in place, rolled and told what the asker
/// knows even when nothing is spent: a 429's cooldown holds every sender,
/// and the asks it holds are how its window's end and limit reach the store.
pub(crate) fn spend_all(
    windows: &mut [Option<Shared>; SLOTS],
    parts: &[Option<Part>; SLOTS],
    (now, cooled): (u64, u64),
) -> Result<(), u64> {
    let mut wait = Some(cooled).filter(|cooled| *cooled > now);
    for (slot, (window, part)) in windows.iter_mut().zip(parts).enumerate() {
        let Some(part) = part else { continue };
        *window = settle(window.take(), part.view, now, slot == 0);
        if let Some(Err(until)) = window.as_ref().map(|window| admits(window, part.cost, now)) {
            wait = wait.max(Some(until));
        }
    }
    if let Some(until) = wait {
        return Err(until);
    }
    for (window, part) in windows.iter_mut().zip(parts) {
        if let (Some(window), Some(part)) = (window.as_mut(), part) {
            take(window, part.cost);
        }
    }
    Ok(())
}

/// The window `now` is in, from what the store holds (`stored`) and what the
/// asker knows (`view`): rolled, its end corrected, at least `used` spent;
/// `None` when there is nothing to count with. A window whose end nobody
/// knows is an open count (no limit, `end` its expiry), so that the first
/// view knows how many went: the next one after a window that cannot be
/// rolled (its length unknown), and with `open` (requests) the first one.
fn settle(stored: Option<Shared>, view: Option<View>, now: u64, open: bool) -> Option<Shared> {
    let stored = stored.filter(|s| s.limit > 0 || now < s.end);
    let fresh = Shared { end: now + OPEN_FOR, ..Shared::default() };
    let mut state = match (stored, view.filter(|v| v.end > now)) {
        (Some(state), _) if state.limit > 0 => state,
        // An open count meets its first view: what it counted went in this window.
        (counted, Some(view)) => {
            let origin = if view.told { view.end } else { 0 };
            let spent = counted.map_or(0, |counted| counted.spent);
            Shared { end: view.end, length: view.length, limit: view.limit, spent, told: view.told, origin }
        }
        (Some(counted), None) => return Some(counted),
        (None, None) => return open.then_some(fresh),
    };
    if let Some(view) = view {
        // The latest asker's limit is the freshest; a length measured here beats an asker's.
        state.limit = view.limit;
        state.length = if state.length > 0 { state.length } else { view.length };
    }
    // Over, and when the next window ends is not known yet: its sends are counted until a view opens it.
    if !roll(&mut state, view, now) {
        return Some(fresh);
    }
    if let Some(view) = view.filter(|v| v.told && v.end.abs_diff(state.end) < same_window(state.length)) {
        // The first told end of a window replaces the rolled one; later ones may only be earlier.
        state.end = if state.told { state.end.min(view.end) } else { view.end };
        state.told = true;
        measure(&mut state);
        if !roll(&mut state, None, now) {
            return Some(fresh);
        }
    }
    // What the asker knows is used of this window (not of another): the store counts no less.
    if let Some(used) = view.filter(|v| v.end.abs_diff(state.end) < same_window(state.length)).and_then(|v| v.used) {
        state.spent = state.spent.max(used);
    }
    Some(state)
}

/// Whether `state` admits a send of `cost` at `now`, or until when to wait:
/// past its end and guard. An open count admits every send; a cost above the
/// whole limit is not held (no window admits it).
fn admits(state: &Shared, cost: u64, now: u64) -> Result<(), u64> {
    if state.limit == 0 {
        return Ok(());
    }
    let guard = guard(state.length);
    let short = cost <= state.limit && state.spent.saturating_add(cost) > state.limit;
    if now + guard >= state.end || short { Err(state.end + guard) } else { Ok(()) }
}

/// Spends `cost` of `state`; a cost above the whole limit spends nothing (the server refuses it).
fn take(state: &mut Shared, cost: u64) {
    if state.limit == 0 || cost <= state.limit {
        state.spent = state.spent.saturating_add(cost);
    }
}

/// Measures the length from the origin to the current (told) end, or makes
/// that end the origin when there is none, or it is this window's.
fn measure(state: &mut Shared) {
    let same = same_window(state.length);
    if state.origin == 0 || state.origin.abs_diff(state.end) < same || state.length == 0 {
        state.origin = if state.origin.abs_diff(state.end) < same { state.origin.min(state.end) } else { state.end };
        return;
    }
    if state.end > state.origin {
        let windows = (state.end - state.origin + state.length / 2) / state.length;
        state.length = round_length((state.end - state.origin + windows / 2) / windows.max(1));
    }
}

/// The lengths servers count windows in: 1, 2 and 5 times a power of ten
/// milliseconds from 10 ms, half a minute, a minute, an hour, a day.
pub(crate) const ROUND_LENGTHS: [u64; 25] = [
    10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 50_000, 60_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 3_600_000, 5_000_000, 10_000_000, 20_000_000, 50_000_000, 86_400_000,
];

/// A window's length as the store takes it: a measured length within 1/16
/// of a round one is the round one.
///
/// Why: a length is measured from ends servers told, each late by a
/// response's latency, which on a busy machine is a few percent of a short
/// window; a length measured a little short (or long) moves the fleet's
/// grid a little early (or late) with every window it is rolled by, until
/// sends cross a boundary the server has not reached. Servers count in
/// round windows (a minute, a day; a second in tests), so the round length
/// is exact where the measured one is not. A length 1/16 from every round
/// one is taken as measured.
pub(crate) fn round_length(measured: u64) -> u64 {
    ROUND_LENGTHS.into_iter().find(|round| measured.abs_diff(*round).saturating_mul(16) <= *round).unwrap_or(measured)
}

/// Two ends this close are the same window's.
fn same_window(length: u64) -> u64 {
    if length > 0 { length / 4 } else { 20 }
}

/// Moves `state` to the window `now` is in, once the current one is over
/// (past its guard). Without a length, the asker's view opens the next
/// window; `false` when there is none to count.
fn roll(state: &mut Shared, view: Option<View>, now: u64) -> bool {
    let guard = guard(state.length);
    if now < state.end + guard {
        return true;
    }
    match ((now - state.end - guard).checked_div(state.length), view.filter(|v| v.end > now)) {
        // Whole windows since the end: the store's grid, whatever the asker thinks.
        (Some(passed), _) => state.end += (passed + 1) * state.length,
        (None, Some(view)) => state.end = view.end,
        (None, None) => return false,
    }
    state.spent = 0;
    state.told = view.is_some_and(|v| v.told && v.end == state.end);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(end: u64, length: u64, limit: u64, told: bool) -> Option<View> {
        Some(View { end, length, limit, told, used: None })
    }

    /// Spends one request at `now` alone: `Ok(sent)` (this send is the
    /// window's `sent`th, 0 when the window is not counted) or `Err(until)`.
    fn spend(shared: &mut Option<Shared>, view: Option<View>, now: u64) -> Result<u64, u64> {
        let mut windows = [shared.take(), None, None, None];
        let answer = spend_all(&mut windows, &[Some(Part { view, cost: 1 }), None, None, None], (now, 0));
        *shared = windows[0];
        answer.map(|()| shared.map_or(0, |s| s.spent))
    }

    /// Spends `n` at `now`, returning the answers.
    fn spend_n(shared: &mut Option<Shared>, v: Option<View>, now: u64, n: usize) -> Vec<Result<u64, u64>> {
        (0..n).map(|_| spend(shared, v, now)).collect()
    }

    #[test]
    fn a_window_admits_its_limit_then_waits_past_its_end_and_guard() {
        let mut shared = None;
        let v = view(1_200, 200, 3, true);
        assert_eq!(spend_n(&mut shared, v, 1_000, 4), [Ok(1), Ok(2), Ok(3), Err(1_200 + 8)]);
    }

    #[test]
    fn sends_before_anyone_knows_the_window_count_in_it() {
        // Nothing known, by the asker or the store: the sends are counted, for a second.
        let mut shared = None;
        assert_eq!(spend_n(&mut shared, None, 1_000, 2), [Ok(1), Ok(2)]);
        assert_eq!(spend(&mut shared, view(900, 200, 3, true), 1_010), Ok(3), "a view of a window already over");
        // The first view: three went in its window already, which admits four.
        assert_eq!(spend_n(&mut shared, view(1_200, 200, 4, true), 1_020, 2), [Ok(4), Err(1_208)]);
        // An open count lasts a second from its first send.
        let mut shared = None;
        spend_n(&mut shared, None, 1_000, 5);
        assert_eq!(spend(&mut shared, None, 2_000), Ok(1));
        assert_eq!(spend(&mut shared, view(2_200, 200, 4, true), 2_010), Ok(2));
    }

    #[test]
    fn the_store_rolls_windows_by_their_length_whatever_the_askers_think() {
        let mut shared = None;
        spend_n(&mut shared, view(1_200, 200, 2, true), 1_000, 2);
        // Past the guard after the end: the next window, 200 ms long, whatever this asker predicts.
        let early = view(1_390, 200, 2, false);
        assert_eq!(spend_n(&mut shared, early, 1_208, 3), [Ok(1), Ok(2), Err(1_400 + 8)]);
        // Windows nobody asked in are skipped over.
        assert_eq!(spend(&mut shared, None, 2_050), Ok(1));
        assert_eq!(shared.unwrap().end, 2_200);
    }

    #[test]
    fn nothing_goes_within_the_guard_of_a_boundary() {
        let mut shared = None;
        let v = view(1_200, 200, 20, true);
        assert_eq!(spend(&mut shared, v, 1_100), Ok(1));
        // The window has room, but its end may be a few ms earlier than told.
        assert_eq!(spend(&mut shared, v, 1_193), Err(1_208));
        // And the next one may open a few ms later.
        assert_eq!(spend(&mut shared, v, 1_204), Err(1_208));
        assert_eq!(spend(&mut shared, v, 1_208), Ok(1));
    }

    #[test]
    fn told_ends_correct_the_rolled_end_and_then_only_lower_it() {
        let mut shared = None;
        assert_eq!(spend(&mut shared, view(1_200, 200, 20, true), 1_100), Ok(1));
        // Rolled to 1 400; a server tells 1 404 (the length was a little short): believed.
        assert_eq!(spend(&mut shared, view(1_404, 200, 20, true), 1_250), Ok(1));
        assert_eq!(shared.unwrap().end, 1_404);
        // A later told end of the same window came later still: the earliest stands.
        assert_eq!(spend(&mut shared, view(1_409, 200, 20, true), 1_260), Ok(2));
        assert_eq!(shared.unwrap().end, 1_404);
        assert_eq!(spend(&mut shared, view(1_402, 200, 20, true), 1_270), Ok(3));
        assert_eq!(shared.unwrap().end, 1_402);
        // A predicted end, or another window's, changes nothing.
        assert_eq!(spend(&mut shared, view(1_390, 200, 20, false), 1_280), Ok(4));
        assert_eq!(spend(&mut shared, view(1_202, 200, 20, true), 1_280), Ok(5));
        // The length is measured from the first told end to this window's earliest: 202, a round 200.
        assert_eq!(shared.unwrap(), Shared { end: 1_402, length: 200, limit: 20, spent: 5, told: true, origin: 1_200 });
    }

    #[test]
    fn the_length_is_measured_over_as_many_windows_as_have_passed() {
        // Windows of 150 ms (no round length); told ends 3 ms late, then 1 ms late 10 windows
        // on: 150.2 ms a window, not 153.
        let mut shared = None;
        assert_eq!(spend(&mut shared, view(1_153, 153, 20, true), 1_100), Ok(1));
        assert_eq!(shared.unwrap().length, 153, "the asker's, until measured");
        assert_eq!(spend(&mut shared, view(2_655, 153, 20, true), 2_600), Ok(1));
        assert_eq!((shared.unwrap().end, shared.unwrap().length), (2_655, 150));
        // Without an origin yet, a told end becomes it.
        let mut shared = Some(Shared { end: 1_200, length: 200, limit: 5, spent: 0, told: false, origin: 0 });
        assert_eq!(spend(&mut shared, view(1_201, 0, 5, true), 1_100), Ok(1));
        assert_eq!(shared.unwrap().origin, 1_201);
    }

    #[test]
    fn a_length_near_a_round_one_is_the_round_one() {
        let cases = [
            (191, 200),
            (200, 200),
            (212, 200),
            (187, 187),
            (214, 214),
            (150, 150),
            (57_000, 60_000),
            (61_500, 60_000),
            (45_000, 45_000),
            (1_020, 1_000),
            (86_000_000, 86_400_000),
            (0, 0),
            (7, 7),
            (u64::MAX, u64::MAX),
        ];
        for (measured, taken) in cases {
            assert_eq!(round_length(measured), taken, "{measured}");
        }
        // No two round lengths are within 1/16 of each other's reach: each length has one.
        for pair in ROUND_LENGTHS.windows(2) {
            assert!(pair[0] + pair[0] / 16 < pair[1] - pair[1] / 16, "{pair:?}");
        }
    }

    #[test]
    fn a_length_measured_short_by_late_told_ends_rolls_the_round_windows() {
        // Windows of 200 ms from 1 000; the first told end 12 ms late (a busy machine), the
        // next window's on time: 188 measured. Rolled by 188, the store's window would open
        // 36 ms early three windows on, its sends refused; by 200, it opens with the server's.
        let mut shared = None;
        assert_eq!(spend(&mut shared, view(1_212, 200, 2, true), 1_100), Ok(1));
        assert_eq!(spend(&mut shared, view(1_400, 200, 2, true), 1_300), Ok(1));
        assert_eq!(shared.unwrap().length, 200);
        assert_eq!(spend_n(&mut shared, None, 1_950, 3), [Ok(1), Ok(2), Err(2_000 + 8)]);
        assert_eq!(spend(&mut shared, None, 2_008), Ok(1), "the server's window from 2 000");
    }

    #[test]
    fn without_a_length_the_next_askers_view_opens_the_next_window() {
        let mut shared = None;
        assert_eq!(spend_n(&mut shared, view(1_200, 0, 1, true), 1_000, 2), [Ok(1), Err(1_202)]);
        // Over, with a stale view: counted for the window to come (an open count).
        assert_eq!(spend(&mut shared, view(1_190, 0, 1, false), 1_202), Ok(1));
        assert_eq!(spend(&mut shared, None, 1_202), Ok(2));
        assert_eq!(spend(&mut shared, view(1_400, 0, 3, false), 1_203), Ok(3), "two went in it already");
        assert_eq!(spend(&mut shared, view(1_400, 0, 3, false), 1_203), Err(1_402));
        // Learned later: the length and the limit of the latest asker.
        assert_eq!(spend(&mut shared, view(1_400, 200, 4, false), 1_300), Ok(4));
        assert_eq!(spend(&mut shared, None, 1_500), Ok(1), "rolled by the store");
    }

    /// A send of one request and `tokens.0` tokens, each window as the asker knows it.
    fn send(
        windows: &mut [Option<Shared>; SLOTS],
        requests: Option<View>,
        tokens: (u64, Option<View>),
        now: u64,
    ) -> Result<(), u64> {
        let parts = [Some(Part { view: requests, cost: 1 }), Some(Part { view: tokens.1, cost: tokens.0 }), None, None];
        spend_all(windows, &parts, (now, 0))
    }

    fn spent(windows: &[Option<Shared>; SLOTS]) -> (u64, u64) {
        (windows[0].map_or(0, |w| w.spent), windows[1].map_or(0, |w| w.spent))
    }

    #[test]
    fn a_send_spends_its_request_and_its_tokens_together_or_neither() {
        let mut w = Default::default();
        // 2 requests per 200 ms; 5 000 tokens per 300 ms (guard 11 ms), a window of its own.
        let (requests, tokens) = (view(1_200, 200, 2, true), view(1_300, 300, 5_000, true));
        assert_eq!(send(&mut w, requests, (3_000, tokens), 1_000), Ok(()));
        // 2 000 tokens are left: 2 500 wait for the token window, and spend no request either.
        assert_eq!(send(&mut w, requests, (2_500, tokens), 1_000), Err(1_311));
        assert_eq!(spent(&w), (1, 3_000));
        assert_eq!(send(&mut w, requests, (2_000, tokens), 1_000), Ok(()));
        assert_eq!(spent(&w), (2, 5_000));
        // Both short: the later of their ends.
        assert_eq!(send(&mut w, requests, (10, tokens), 1_000), Err(1_311));
        // Both rolled by their own lengths; an asker that knows neither is counted in both.
        assert_eq!(send(&mut w, None, (5_000, None), 1_311), Ok(()));
        assert_eq!((w[0].unwrap().end, w[1].unwrap().end, spent(&w)), (1_400, 1_600, (1, 5_000)));
        // A cost above the whole limit is not held: no window admits it. It spends no token.
        assert_eq!(send(&mut w, None, (6_000, None), 1_320), Ok(()));
        assert_eq!(spent(&w), (2, 5_000));
    }

    #[test]
    fn a_token_window_opens_with_its_first_view_and_counts_no_less_than_its_askers_know() {
        let mut w = Default::default();
        // Nobody knows the token window yet: sends are not counted in it (requests are).
        assert_eq!(send(&mut w, None, (3_000, None), 1_000), Ok(()));
        assert_eq!(w[1], None);
        // The first view: 3 000 of 5 000 used (a server's figure and the asker's sends since).
        let used = |end, used| Some(View { used: Some(used), ..view(end, 0, 5_000, true).unwrap() });
        assert_eq!(send(&mut w, None, (1_500, used(1_300, 3_000)), 1_010), Ok(()));
        assert_eq!(spent(&w).1, 4_500);
        // Another window's figure says nothing of this one; one that says less lowers nothing.
        assert_eq!(send(&mut w, None, (400, used(1_250, 4_900)), 1_020), Ok(()));
        assert_eq!(send(&mut w, None, (100, used(1_302, 1_000)), 1_030), Ok(()));
        assert_eq!(spent(&w).1, 5_000);
        // One that says more raises it: nothing fits until the end (and its guard, 2 ms without a length).
        let mut w = Default::default();
        assert_eq!(send(&mut w, None, (1_000, used(1_300, 1_000)), 1_000), Ok(()));
        assert_eq!(send(&mut w, None, (1_000, used(1_300, 4_500)), 1_010), Err(1_302));
        assert_eq!(spent(&w).1, 4_500);
    }
}
