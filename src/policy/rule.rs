//! Rules a user adds in front of the built-in tables.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Mutex;

use http::StatusCode;

use super::Row;
use crate::kind::ErrorKind;

/// A user rule that overrides the built-in tables for one provider.
///
/// Every condition that is set must hold: `status` exactly, `error_type`
/// equal (ignoring ASCII case), `code` contained in the provider's code or a
/// finer code (Azure `innererror`, Gemini quota ids), `message_contains`
/// contained in the message (both ignoring case).
///
/// ```
/// use reqwest::StatusCode;
/// use reqwest_llm_retry::{ErrorKind, LlmRetryMiddleware, Provider, RetryRule};
/// // Our gateway answers 409 when a replica is busy: treat it as overload.
/// let busy = RetryRule::retry(ErrorKind::Overloaded).status(StatusCode::CONFLICT);
/// // And never retry its 503 "maintenance" page.
/// let maintenance =
///     RetryRule::give_up(ErrorKind::ServerError).status(StatusCode::SERVICE_UNAVAILABLE).message_contains("maintenance");
/// let middleware = LlmRetryMiddleware::builder()
///     .rule(Provider::OpenAi, busy)
///     .rule(Provider::OpenAi, maintenance)
///     .build();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryRule {
    status: Option<StatusCode>,
    error_type: Option<String>,
    code: Option<String>,
    message: Option<String>,
    kind: ErrorKind,
    retry: bool,
    fix: Option<&'static str>,
}

impl RetryRule {
    /// A rule that classifies matching errors as `kind` and retries them.
    pub fn retry(kind: ErrorKind) -> Self {
        RetryRule { status: None, error_type: None, code: None, message: None, kind, retry: true, fix: None }
    }

    /// A rule that classifies matching errors as `kind` and returns them at once.
    pub fn give_up(kind: ErrorKind) -> Self {
        RetryRule { retry: false, ..RetryRule::retry(kind) }
    }

    /// Match only this HTTP status.
    ///
    /// A [`StatusCode`], like the rest of the API (`LlmApiError::status`); a
    /// number from configuration goes through [`StatusCode::from_u16`], which
    /// rejects what is not a status instead of making a rule that never matches.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Match only this provider type/status string (`rate_limit_error`, `RESOURCE_EXHAUSTED`).
    pub fn error_type(mut self, error_type: impl Into<String>) -> Self {
        self.error_type = Some(error_type.into());
        self
    }

    /// Match only errors whose code or a finer code contains this.
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Match only errors whose message contains this.
    pub fn message_contains(mut self, text: impl Into<String>) -> Self {
        self.message = Some(text.into());
        self
    }

    /// The hint [`LlmApiError::fix`](crate::LlmApiError::fix) returns for matching errors:
    /// a literal, or a `String` read at run time (a rule from a config file).
    ///
    /// `LlmApiError::fix` returns `&'static str`, so an owned hint is kept for the
    /// life of the process: once per distinct text, however many rules or
    /// middlewares carry it.
    ///
    /// ```
    /// use reqwest_llm_retry::{ErrorKind, RetryRule};
    /// let from_config = String::from("Page the gateway team");
    /// let rule = RetryRule::give_up(ErrorKind::ServerError).fix(from_config);
    /// # let _ = rule;
    /// ```
    pub fn fix(mut self, fix: impl Into<Cow<'static, str>>) -> Self {
        self.fix = Some(match fix.into() {
            Cow::Borrowed(fix) => fix,
            Cow::Owned(fix) => intern(fix),
        });
        self
    }

    pub(super) fn row(&self) -> Row<'_> {
        Row {
            status: self.status.map(|status| status.as_u16()),
            error_type: self.error_type.as_deref(),
            code: self.code.as_deref(),
            message: self.message.as_deref(),
            min_wait: None,
            kind: self.kind,
            retry: self.retry,
            fix: self.fix,
        }
    }
}

/// The `'static` copy of a hint read at run time: one per distinct text, so
/// that building rules in a loop does not grow memory.
fn intern(text: String) -> &'static str {
    static HINTS: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut hints = HINTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&hint) = hints.get(text.as_str()) {
        return hint;
    }
    let hint: &'static str = Box::leak(text.into_boxed_str());
    hints.insert(hint);
    hint
}
