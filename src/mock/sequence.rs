//! Scripted responses: fail like this, then like that, then succeed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wiremock::{Request, Respond, ResponseTemplate};

/// A [`Respond`] that plays its responses in order, one per request, and
/// counts the requests it answered.
///
/// When the script is exhausted it repeats the last response, or the one
/// given to [`then_always`](Self::then_always). Clones share the hit counter:
/// mount a clone, keep the original to read [`hits`](Self::hits).
///
/// ```
/// use std::time::Duration;
/// use reqwest_llm_retry::mock;
/// let script = mock::Sequence::new()
///     .then_times(2, mock::openai::rate_limited(Duration::from_millis(10)))
///     .then(mock::openai::ok("done"));
/// // Mock::given(any()).respond_with(script.clone()).mount(&server).await;
/// // … run the code under test, then:
/// assert_eq!(script.hits(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Sequence {
    steps: Vec<ResponseTemplate>,
    after: Option<ResponseTemplate>,
    hits: Arc<AtomicUsize>,
}

impl Sequence {
    /// An empty script; add responses with [`then`](Self::then).
    pub fn new() -> Self {
        Sequence::default()
    }

    /// Answers the next request with `response` (a [`MockFailure`](super::MockFailure)
    /// or any [`ResponseTemplate`]).
    pub fn then(mut self, response: impl Into<ResponseTemplate>) -> Self {
        self.steps.push(response.into());
        self
    }

    /// Answers the next `times` requests with `response`.
    pub fn then_times(mut self, times: usize, response: impl Into<ResponseTemplate>) -> Self {
        let response = response.into();
        self.steps.extend(std::iter::repeat_n(response, times));
        self
    }

    /// Answers every request after the scripted ones with `response`, instead
    /// of repeating the last scripted one.
    pub fn then_always(mut self, response: impl Into<ResponseTemplate>) -> Self {
        self.after = Some(response.into());
        self
    }

    /// Requests answered so far, by this sequence and its clones.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The shared hit counter, for a test that keeps it past the sequence.
    pub fn hit_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.hits)
    }
}

impl Respond for Sequence {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let hit = self.hits.fetch_add(1, Ordering::SeqCst);
        let scripted = self.steps.get(hit).or(self.after.as_ref()).or(self.steps.last());
        scripted.cloned().unwrap_or_else(|| {
            ResponseTemplate::new(500).set_body_string("reqwest_llm_retry::mock::Sequence: no response scripted")
        })
    }
}
