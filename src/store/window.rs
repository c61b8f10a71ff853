//! A fleet's window, as a store keeps it: the rules of
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

use std::time::{Duration, SystemTime};

/// A rate-limit window as a middleware knows it: when it ends, how many
/// requests it admits in all, and, when known, how long it lasts and whether
/// a server told its end. Passed to [`SharedStore::spend`](super::SharedStore::spend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Window {
    /// When the window ends (and the next one opens).
    pub end: SystemTime,
    /// The requests the window admits, for everyone sharing the key.
    pub limit: u64,
    /// How long a window lasts, when known: a store rolls windows by it.
    pub length: Option<Duration>,
    /// Whether a server told `end` (a reset header, or a 429's wait), rather
    /// than the middleware predicting it. A told end is late by the
    /// response's latency, never early by more than its rounding: a store
    /// keeps the earliest told end of each window.
    pub told: bool,
}

impl Window {
    /// A window of `limit` requests ending at `end`, by prediction, of unknown length.
    pub fn new(end: SystemTime, limit: u64) -> Self {
        Window { end, limit, length: None, told: false }
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
}

/// What the asker knows of the window (a [`Window`] in ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) end: u64,
    /// 0 when unknown.
    pub(crate) length: u64,
    pub(crate) limit: u64,
    /// Whether a server told `end` (rather than the asker predicting it).
    pub(crate) told: bool,
}

impl View {
    /// The view of `window`; none of a window that admits nothing (nothing to count).
    pub(crate) fn of(window: Window) -> Option<View> {
        let length = window.length.map_or(0, |l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX));
        let view = View { end: epoch_ms(window.end), length, limit: window.limit, told: window.told };
        Some(view).filter(|v| v.limit > 0)
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

/// Spends one request at `now`: `Ok(sent)` (this send is the window's
/// `sent`th, 0 when the window is not counted) or `Err(until)` to wait.
/// `shared` is what the store holds for the key (`None`: nothing, or a state
/// the store cannot count with); it is updated in place.
pub(crate) fn spend(shared: &mut Option<Shared>, view: Option<View>, now: u64) -> Result<u64, u64> {
    let stored = shared.take().filter(|s| s.limit > 0 || now < s.end);
    let mut state = match (stored, view.filter(|v| v.end > now)) {
        (Some(state), _) if state.limit > 0 => state,
        // An open count meets its first view: what it counted went in this window.
        (open, Some(view)) => {
            let origin = if view.told { view.end } else { 0 };
            let spent = open.map_or(0, |open| open.spent);
            Shared { end: view.end, length: view.length, limit: view.limit, spent, told: view.told, origin }
        }
        // Nothing known yet: count the sends for a while (an open count: no
        // limit, `end` its expiry), so the first view knows how many went.
        (open, None) => {
            let open = open.unwrap_or(Shared { end: now + OPEN_FOR, ..Shared::default() });
            let open = Shared { spent: open.spent + 1, ..open };
            *shared = Some(open);
            return Ok(open.spent);
        }
    };
    if let Some(view) = view {
        // The latest asker's limit is the freshest; a length measured here beats an asker's.
        state.limit = view.limit;
        state.length = if state.length > 0 { state.length } else { view.length };
    }
    if !roll(&mut state, view, now) {
        return Ok(0);
    }
    if let Some(view) = view.filter(|v| v.told && v.end.abs_diff(state.end) < same_window(state.length)) {
        // The first told end of a window replaces the rolled one; later ones may only be earlier.
        state.end = if state.told { state.end.min(view.end) } else { view.end };
        state.told = true;
        measure(&mut state);
        if !roll(&mut state, None, now) {
            return Ok(0);
        }
    }
    let guard = guard(state.length);
    let answer = if now + guard >= state.end || state.spent >= state.limit {
        Err(state.end + guard)
    } else {
        state.spent += 1;
        Ok(state.spent)
    };
    *shared = Some(state);
    answer
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
        state.length = (state.end - state.origin + windows / 2) / windows.max(1);
    }
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
        Some(View { end, length, limit, told })
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
        // The length is measured from the first told end to this window's earliest.
        assert_eq!(shared.unwrap(), Shared { end: 1_402, length: 202, limit: 20, spent: 5, told: true, origin: 1_200 });
    }

    #[test]
    fn the_length_is_measured_over_as_many_windows_as_have_passed() {
        // Told ends 3 ms late, then 1 ms late 10 windows on: 200.2 ms a window, not 203.
        let mut shared = None;
        assert_eq!(spend(&mut shared, view(1_203, 203, 20, true), 1_100), Ok(1));
        assert_eq!(shared.unwrap().length, 203, "the asker's, until measured");
        assert_eq!(spend(&mut shared, view(3_205, 203, 20, true), 3_100), Ok(1));
        assert_eq!((shared.unwrap().end, shared.unwrap().length), (3_205, 200));
        // Without an origin yet, a told end becomes it.
        let mut shared = Some(Shared { end: 1_200, length: 200, limit: 5, spent: 0, told: false, origin: 0 });
        assert_eq!(spend(&mut shared, view(1_201, 0, 5, true), 1_100), Ok(1));
        assert_eq!(shared.unwrap().origin, 1_201);
    }

    #[test]
    fn without_a_length_the_next_askers_view_opens_the_next_window() {
        let mut shared = None;
        assert_eq!(spend_n(&mut shared, view(1_200, 0, 1, true), 1_000, 2), [Ok(1), Err(1_202)]);
        assert_eq!(spend(&mut shared, view(1_190, 0, 1, false), 1_202), Ok(0), "a stale view: not counted");
        assert_eq!(shared, None);
        assert_eq!(spend_n(&mut shared, view(1_400, 0, 1, false), 1_203, 2), [Ok(1), Err(1_402)]);
        // Learned later: the length and the limit of the latest asker.
        assert_eq!(spend(&mut shared, view(1_400, 200, 2, false), 1_300), Ok(2));
        assert_eq!(spend(&mut shared, None, 1_500), Ok(1), "rolled by the store");
    }
}
