//! What one send spends of its key's shared windows: the argument of
//! [`SharedStore::spend`](super::SharedStore::spend).

use super::window::{Part, SLOTS, View, Window};

/// What one send asks of its key's shared windows: one request of the
/// request window, and its estimated tokens of each token limit, all spent
/// together or not at all (see [`SharedStore::spend`](super::SharedStore::spend)).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use reqwest_llm_retry::store::{Spend, Window};
/// let end = SystemTime::now() + Duration::from_secs(60);
/// // A request whose key allows 500 requests and 30,000 tokens a minute, 12,000 of them used.
/// let spend = Spend::new(Some(Window::new(end, 500)))
///     .with_tokens(1_300, Some(Window::new(end, 30_000).with_used(12_000)));
/// assert_eq!(spend.tokens.map(|t| t.cost), Some(1_300));
/// // Requests only, as before token budgets.
/// assert_eq!(Spend::from(None), Spend::new(None));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Spend {
    /// The request window as the asker knows it; `None` when it knows nothing yet.
    pub requests: Option<Window>,
    /// Tokens, input and output together (OpenAI's `x-ratelimit-*-tokens`).
    pub tokens: Option<TokenSpend>,
    /// Input tokens (Anthropic's `anthropic-ratelimit-input-tokens-*`).
    pub input_tokens: Option<TokenSpend>,
    /// Output tokens (Anthropic's `anthropic-ratelimit-output-tokens-*`).
    pub output_tokens: Option<TokenSpend>,
    /// Tells the store what the asker knows of the windows, and spends
    /// nothing (not even a request): what a 429 taught, told at once.
    pub(crate) tells_only: bool,
}

/// A send's estimated tokens in one token limit, and that limit's window as
/// the asker knows it. A store that knows the window from another asker
/// counts the send in it all the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenSpend {
    /// The send's estimated tokens in this limit.
    pub cost: u64,
    /// The limit's window as the asker knows it; `None` when it knows nothing yet.
    pub window: Option<Window>,
}

impl TokenSpend {
    /// `cost` tokens of a limit whose window is `window`, as far as the asker knows.
    pub fn new(cost: u64, window: Option<Window>) -> Self {
        TokenSpend { cost, window }
    }
}

impl Spend {
    /// One request of the request window `requests` (as far as the asker knows it), and no tokens.
    pub fn new(requests: Option<Window>) -> Self {
        Spend { requests, ..Spend::default() }
    }

    /// The same send, spending `cost` tokens (input and output together) of `window`.
    pub fn with_tokens(mut self, cost: u64, window: Option<Window>) -> Self {
        self.tokens = Some(TokenSpend::new(cost, window));
        self
    }

    /// The same send, spending `cost` input tokens of `window`.
    pub fn with_input_tokens(mut self, cost: u64, window: Option<Window>) -> Self {
        self.input_tokens = Some(TokenSpend::new(cost, window));
        self
    }

    /// The same send, spending `cost` output tokens of `window`.
    pub fn with_output_tokens(mut self, cost: u64, window: Option<Window>) -> Self {
        self.output_tokens = Some(TokenSpend::new(cost, window));
        self
    }

    /// Tells the store nothing and spends nothing: add the windows to tell of.
    pub(crate) fn telling() -> Self {
        Spend { tells_only: true, ..Spend::default() }
    }

    /// Each window's part in the send, by slot (see [`window::spend_all`](super::window::spend_all)).
    pub(crate) fn parts(&self) -> [Option<Part>; SLOTS] {
        let tokens = |spend: Option<TokenSpend>| {
            spend.map(|spend| Part { view: spend.window.and_then(View::of), cost: spend.cost })
        };
        let requests = Some(Part { view: self.requests.and_then(View::of), cost: 1 }).filter(|_| !self.tells_only);
        [requests, tokens(self.tokens), tokens(self.input_tokens), tokens(self.output_tokens)]
    }
}

impl From<Option<Window>> for Spend {
    fn from(requests: Option<Window>) -> Self {
        Spend::new(requests)
    }
}

impl From<Window> for Spend {
    fn from(requests: Window) -> Self {
        Spend::new(Some(requests))
    }
}
