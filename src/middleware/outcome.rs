//! What each step of the loop hands the next, named for what happened.

use std::ops::ControlFlow;
use std::time::Duration;

use reqwest::{Request, Response};

use crate::backoff::Verdict;
use crate::body::HeldResponse;
use crate::error::LlmApiError;
use crate::health::Held;

/// Whether an attempt may go out.
pub(super) enum Admission {
    Send,
    /// An outage held the call until its bound: it is not sent again.
    Held(Held),
}

/// An attempt's response (or transport error), judged.
pub(super) enum Judged {
    /// A 1xx–3xx (a stream whose start was clean), ready for the caller.
    Success(Response),
    /// A failure, with the verdict on retrying it.
    Failed(Verdict, Outcome),
}

/// A failed attempt: the response that said so (boxed: the loop's future
/// would otherwise carry its size on every request), or the transport error.
pub(super) enum Outcome {
    Answered(Box<Failure>),
    Transport(reqwest_middleware::Error),
}

/// A failed response, judged: held for the caller, with its error.
pub(super) struct Failure {
    pub(super) held: HeldResponse,
    pub(super) error: LlmApiError,
}

/// What the loop does after a failed attempt.
pub(super) enum Step {
    /// Sleep for `wait`, then send `request`.
    Retry { wait: Duration, request: Request },
    /// The call is over.
    Return(reqwest_middleware::Result<Response>),
}

impl Step {
    /// The wait and the request to send next, or the call's result.
    ///
    /// Taking the step whole, so that the loop's future does not keep it (and
    /// a request) across the wait.
    pub(super) fn resend(self) -> ControlFlow<reqwest_middleware::Result<Response>, (Duration, Request)> {
        match self {
            Step::Retry { wait, request } => ControlFlow::Continue((wait, request)),
            Step::Return(result) => ControlFlow::Break(result),
        }
    }
}
