//! A test kit for code that calls LLM APIs: realistic provider failures for
//! [`wiremock`], scripted sequences, and a client that reaches the mock under
//! the provider's real host name. Enabled by the `mock` cargo feature.
//!
//! Why a kit: a hand-written 429 is usually wrong. It lacks `retry-after`,
//! puts the error type where the provider never does, or omits the request
//! id, and the tests pass against failures the real API never sends. Every
//! template here is built from the provider's documented or observed shapes
//! (body, status and headers, request ids included), and each declares what
//! it is: its [`ErrorKind`], whether it should be retried, the type, code,
//! message, request id and wait that [`LlmApiError::parse`] must read from it.
//! The crate's own tests check every template of [`catalog`] against the
//! parser, so the kit and the classifier cannot drift apart.
//!
//! | module | provider | templates |
//! |---|---|---|
//! | [`anthropic`] | Anthropic | every `error.type`, 529 overload, 429 with `retry-after` and `anthropic-ratelimit-*`, credit balance, prompt too long, spend and usage limits |
//! | [`openai`] | OpenAI | rate limit with `x-ratelimit-*` and `retry-after-ms`, `insufficient_quota`, `context_length_exceeded`, 503 overload, … |
//! | [`gemini`] | Gemini | 429 with `RetryInfo` and `QuotaFailure`, per-day quota, `FAILED_PRECONDITION`, every canonical status |
//! | [`vertex`] | Vertex AI | the Dynamic Shared Quota 429, overload, deadline |
//! | [`azure`] | Azure OpenAI | content filter, 429 with `retry-after`, daily quota |
//! | [`compat`] | Groq, Mistral, DeepSeek, OpenRouter, Together, Fireworks, Cerebras, xAI | each host's special statuses |
//! | [`bedrock`] | AWS Bedrock | the exceptions named in `x-amzn-ErrorType` |
//!
//! The kit's signatures use [`wiremock`] 0.6 types (`MockServer`,
//! `ResponseTemplate`, `Respond`), re-exported here as [`mock::wiremock`](self::wiremock)
//! so that a test can mount templates with the very version the kit links: a new
//! major version of wiremock is a new major version of this crate.
//!
//! Waits are parameters, so tests can use milliseconds: `retry-after` carries
//! whole seconds (rounded up) as providers send it, and a wait that is not a
//! whole number of seconds adds `retry-after-ms`, which this crate and the
//! official SDKs read first.
//!
//! # Testing your bot's failure handling
//!
//! The bot below asks Claude a question. The test scripts a 529 overload
//! followed by a success, and checks that the bot got its answer after one
//! retry, while the bot itself keeps calling `api.anthropic.com`.
//!
//! ```
//! use std::time::Duration;
//!
//! use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware, Provider, mock};
//! use reqwest_middleware::ClientWithMiddleware;
//! use wiremock::Mock;
//! use wiremock::matchers::{method, path};
//!
//! /// The code under test: one question, one answer.
//! async fn ask(client: &ClientWithMiddleware, base_url: &str, question: &str) -> Result<String, Box<dyn std::error::Error>> {
//!     let body = serde_json::json!({
//!         "model": "claude-sonnet-4-5",
//!         "max_tokens": 256,
//!         "messages": [{"role": "user", "content": question}],
//!     });
//!     let response = client
//!         .post(format!("{base_url}/v1/messages"))
//!         .header("anthropic-version", "2023-06-01")
//!         .json(&body)
//!         .send()
//!         .await?
//!         .error_for_llm_status()?;
//!     let reply: serde_json::Value = response.json().await?;
//!     Ok(reply["content"][0]["text"].as_str().unwrap_or_default().to_owned())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // A mock server, and a client that resolves api.anthropic.com to it.
//! let (server, client) = mock::start(Provider::Anthropic).await;
//! let script = mock::Sequence::new().then(mock::anthropic::overloaded()).then(mock::anthropic::ok("Paris."));
//! Mock::given(method("POST")).and(path("/v1/messages")).respond_with(script.clone()).mount(&server).await;
//!
//! let client = reqwest_middleware::ClientBuilder::new(client.build().unwrap())
//!     .with(LlmRetryMiddleware::builder().base_delay(Duration::from_millis(10)).build())
//!     .build();
//! let answer = ask(&client, &mock::base_url(Provider::Anthropic, &server), "Capital of France?").await.unwrap();
//!
//! assert_eq!(answer, "Paris.");
//! assert_eq!(script.hits(), 2, "one 529, then the retry that succeeded");
//! # }
//! ```
//!
//! Streams fail inside a `200` too: each provider module has a success
//! stream (`stream_ok`) and streams that fail before their first output
//! (retried by the middleware) or after it (not retried), e.g.
//! [`anthropic::stream_overloaded`].
//!
//! A failure the bot must not retry is checked the same way: script
//! [`anthropic::credit_balance_too_low`] and assert that the bot's error is
//! that template with [`MockFailure::assert_matches`].
//!
//! A model fallback is scripted per model: [`model`] matches the requests
//! that name a model (in the JSON body or the URL, where the provider puts
//! it), so one mock answers the first model with an overload and another
//! answers its fallback.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use wiremock::{Request, Respond, ResponseTemplate};

use crate::{ErrorKind, LlmApiError, Provider};

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod compat;
pub mod gemini;
mod matcher;
pub mod openai;
mod sequence;
mod server;
pub mod vertex;

pub use matcher::{ModelMatcher, model};
pub use sequence::Sequence;
pub use server::{base_url, client_builder, host, start};
/// The `wiremock` crate (major version 0.6), whose types this kit takes and
/// returns (`MockServer`, `ResponseTemplate`, `Respond`): re-exported so that
/// tests mount the kit's templates with the very version it links. A new
/// major version of `wiremock` is a new major version of this crate.
pub use wiremock;

/// A provider's error response, and what it claims to be.
///
/// The response (status, headers, body) is what the provider sends; the
/// claims ([`kind`](Self::kind), [`retryable`](Self::retryable),
/// [`error_type`](Self::error_type), …) are what [`LlmApiError::parse`] and
/// the middleware must make of it. Mount it directly (it implements
/// [`Respond`]), turn it into a [`ResponseTemplate`], or put it in a
/// [`Sequence`].
///
/// ```
/// use std::time::Duration;
/// use reqwest_llm_retry::{ErrorKind, mock};
/// let failure = mock::openai::rate_limited(Duration::from_millis(20));
/// assert_eq!(failure.status(), 429);
/// assert_eq!(failure.headers()["retry-after-ms"], "20");
/// assert_eq!(failure.kind(), ErrorKind::RateLimited);
/// failure.assert_matches(&failure.parse());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockFailure {
    name: String,
    provider: Provider,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    kind: ErrorKind,
    retryable: bool,
    error_type: Option<String>,
    code: Option<String>,
    message: String,
    request_id: Option<String>,
    wait: Option<Wait>,
}

/// The wait a template asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// A duration, in a header or the body.
    After(Duration),
    /// Only a reset timestamp: the wait shrinks as time passes.
    Until(SystemTime),
}

/// How far a parsed wait may be from the claimed one: a duration is exact to
/// float rounding; a reset timestamp is read a little later than claimed.
const EXACT: Duration = Duration::from_millis(1);
const MEASURED: Duration = Duration::from_millis(100);

impl MockFailure {
    /// The template's path, e.g. `"anthropic::overloaded"`, for test messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The provider that sends this response.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers, `content-type` and the request id included.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The response body, byte for byte.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The [`ErrorKind`] this response must be classified as.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether this response must be judged retryable.
    pub fn retryable(&self) -> bool {
        self.retryable
    }

    /// The provider's type or status string the parser must find
    /// ([`LlmApiError::error_type`]).
    pub fn error_type(&self) -> Option<&str> {
        self.error_type.as_deref()
    }

    /// The finer code the parser must find ([`LlmApiError::code`]).
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The message the parser must find ([`LlmApiError::message`]).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The request id the parser must find ([`LlmApiError::request_id`]).
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The wait this response asks for ([`LlmApiError::retry_after`]). A wait
    /// given only as a reset timestamp is what remains of it now, and `None`
    /// once the timestamp has passed.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.wait? {
            Wait::After(wait) => Some(wait),
            Wait::Until(at) => at.duration_since(SystemTime::now()).ok(),
        }
    }

    /// The response as a [`ResponseTemplate`] to mount on a `MockServer`.
    pub fn template(&self) -> ResponseTemplate {
        let mut template = ResponseTemplate::new(self.status);
        for (name, value) in &self.headers {
            template = template.append_header(name.clone(), value.clone());
        }
        match self.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            Some(mime) => template.set_body_raw(self.body.to_vec(), mime),
            None => template.set_body_bytes(self.body.to_vec()),
        }
    }

    /// What [`LlmApiError::parse`] makes of this response.
    pub fn parse(&self) -> LlmApiError {
        LlmApiError::parse(self.provider, self.status, &self.headers, &self.body)
    }

    /// Sets a header, replacing any value it had. The claims stay as they
    /// were: a header that changes the verdict (`x-should-retry`,
    /// `retry-after`) is the caller's to account for.
    ///
    /// # Panics
    ///
    /// If `name` or `value` is not a valid header name or value.
    #[track_caller]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::try_from(name).unwrap_or_else(|_| panic!("invalid header name {name:?}"));
        let value = HeaderValue::try_from(value).unwrap_or_else(|_| panic!("invalid header value {value:?}"));
        self.headers.insert(name, value);
        self
    }

    /// Compares an error (from [`parse`](Self::parse), the middleware, or the
    /// code under test) with this template's claims: provider, status, kind,
    /// retryable, type, code, message, request id and wait (to the
    /// millisecond; within 100 ms for a reset timestamp, which is measured
    /// when read). `attempts` and the fix hint are not compared.
    pub fn check(&self, error: &LlmApiError) -> Result<(), String> {
        let mut wrong = Vec::new();
        let mut compare = |field: &str, want: String, got: String| {
            if want != got {
                wrong.push(format!("{field}: claimed {want}, got {got}"));
            }
        };
        compare("provider", format!("{:?}", self.provider), format!("{:?}", error.provider));
        compare("status", self.status.to_string(), error.status.to_string());
        compare("kind", format!("{:?}", self.kind), format!("{:?}", error.kind));
        compare("retryable", self.retryable.to_string(), error.retryable.to_string());
        compare("error_type", format!("{:?}", self.error_type), format!("{:?}", error.error_type));
        compare("code", format!("{:?}", self.code), format!("{:?}", error.code));
        compare("message", format!("{:?}", self.message), format!("{:?}", error.message));
        compare("request_id", format!("{:?}", self.request_id), format!("{:?}", error.request_id));
        let want = self.retry_after();
        let wait_agrees = match (self.wait, error.retry_after) {
            (None, got) => got.is_none(),
            (Some(Wait::After(want)), got) => got.is_some_and(|got| got.abs_diff(want) <= EXACT),
            // Read at different moments: a wait that ran out in between is zero.
            (Some(Wait::Until(_)), got) => got.unwrap_or_default().abs_diff(want.unwrap_or_default()) <= MEASURED,
        };
        if !wait_agrees {
            wrong.push(format!("retry_after: claimed {want:?}, got {:?}", error.retry_after));
        }
        if wrong.is_empty() { Ok(()) } else { Err(format!("{}: {}", self.name, wrong.join("; "))) }
    }

    /// Panics unless [`check`](Self::check) passes.
    ///
    /// ```
    /// use reqwest_llm_retry::mock;
    /// let failure = mock::anthropic::overloaded();
    /// failure.assert_matches(&failure.parse());
    /// ```
    #[track_caller]
    pub fn assert_matches(&self, error: &LlmApiError) {
        if let Err(mismatch) = self.check(error) {
            panic!("{mismatch}");
        }
    }

    // ----- construction, for the provider modules -----

    /// A failure with no headers and an empty body yet.
    fn new(name: &str, provider: Provider, status: u16, kind: ErrorKind, retryable: bool) -> Self {
        MockFailure {
            name: name.to_owned(),
            provider,
            status: StatusCode::from_u16(status).expect("templates use valid statuses"),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            kind,
            retryable,
            error_type: None,
            code: None,
            message: String::new(),
            request_id: None,
            wait: None,
        }
    }

    /// A JSON body with its `content-type`.
    fn json(self, content_type: &'static str, body: &serde_json::Value) -> Self {
        let mut failure = self.header("content-type", content_type);
        failure.body = Bytes::from(body.to_string());
        failure
    }

    /// Appends a header (templates never hand in invalid ones).
    fn header(mut self, name: &'static str, value: impl ToString) -> Self {
        let value = HeaderValue::try_from(value.to_string()).expect("templates use valid header values");
        self.headers.append(HeaderName::from_static(name), value);
        self
    }

    /// A request id in `header`, claimed.
    fn request_id_in(mut self, header: &'static str, id: &str) -> Self {
        self.request_id = Some(id.to_owned());
        self.header(header, id)
    }

    fn claim_type(mut self, error_type: &str) -> Self {
        self.error_type = Some(error_type.to_owned());
        self
    }

    fn claim_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_owned());
        self
    }

    fn claim_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    fn claim_wait(mut self, wait: Duration) -> Self {
        self.wait = Some(Wait::After(wait));
        self
    }

    fn claim_reset_at(mut self, at: SystemTime) -> Self {
        self.wait = Some(Wait::Until(at));
        self
    }

    /// `retry-after` in whole seconds, rounded up, and `retry-after-ms`; claimed.
    fn retry_after_with_ms(self, wait: Duration) -> Self {
        let wait = whole_ms(wait);
        self.header("retry-after", ceil_secs(wait)).header("retry-after-ms", wait.as_millis()).claim_wait(wait)
    }

    /// `retry-after` in whole seconds as providers send it, plus
    /// `retry-after-ms` only when the wait is not whole seconds; claimed.
    fn retry_after_headers(self, wait: Duration) -> Self {
        let wait = whole_ms(wait);
        if wait.subsec_nanos() == 0 {
            self.header("retry-after", wait.as_secs()).claim_wait(wait)
        } else {
            self.retry_after_with_ms(wait)
        }
    }
}

/// A template mounted on a `MockServer` answers every matching request with
/// the failure.
impl Respond for MockFailure {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        self.template()
    }
}

impl From<MockFailure> for ResponseTemplate {
    fn from(failure: MockFailure) -> Self {
        failure.template()
    }
}

impl From<&MockFailure> for ResponseTemplate {
    fn from(failure: &MockFailure) -> Self {
        failure.template()
    }
}

/// The wait used by [`catalog`] for every template that takes one.
pub const CATALOG_WAIT: Duration = Duration::from_millis(20);

/// Every failure template of the kit, once each, with [`CATALOG_WAIT`] for
/// the templates that take a wait and a fixed message for those that take
/// one.
///
/// Iterate it to check that the code under test survives every failure the
/// providers send:
///
/// ```
/// use reqwest_llm_retry::mock;
/// for failure in mock::catalog() {
///     failure.assert_matches(&failure.parse());
/// }
/// ```
pub fn catalog() -> Vec<MockFailure> {
    let wait = CATALOG_WAIT;
    let mut all = Vec::new();
    all.extend(anthropic::all(wait));
    all.extend(openai::all(wait));
    all.extend(gemini::all(wait));
    all.extend(vertex::all());
    all.extend(azure::all(wait));
    all.extend(compat::all(wait));
    all.extend(bedrock::all());
    all
}

/// A `200` `text/event-stream` response of `events` (`event:` name, if any, and `data:`).
fn event_stream(request_id: Option<(&'static str, &str)>, events: &[(Option<&str>, String)]) -> ResponseTemplate {
    let mut body = String::new();
    for (name, data) in events {
        if let Some(name) = name {
            body.push_str("event: ");
            body.push_str(name);
            body.push('\n');
        }
        body.push_str("data: ");
        body.push_str(data);
        body.push_str("\n\n");
    }
    let mut template = ResponseTemplate::new(200).insert_header("cache-control", "no-cache");
    if let Some((header, id)) = request_id {
        template = template.insert_header(header, id);
    }
    template.set_body_raw(body.into_bytes(), "text/event-stream")
}

/// A wait rounded up to whole milliseconds, the precision every header carries.
fn whole_ms(wait: Duration) -> Duration {
    Duration::from_millis(u64::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

/// Whole seconds, rounded up.
fn ceil_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Seconds with up to three decimals and no trailing zeros: `11.38`, `0.02`, `55`.
fn decimal_secs(wait: Duration) -> String {
    let wait = whole_ms(wait);
    match wait.subsec_millis() {
        0 => wait.as_secs().to_string(),
        ms => format!("{}.{:03}", wait.as_secs(), ms).trim_end_matches('0').to_owned(),
    }
}

/// A Go `time.Duration` string as OpenAI and Groq send it: `644ms`, `1.5s`, `6m0s`, `1h2m3.5s`.
fn go_duration(wait: Duration) -> String {
    let wait = whole_ms(wait);
    if wait < Duration::from_secs(1) {
        return format!("{}ms", wait.as_millis());
    }
    let secs = wait.as_secs();
    let (hours, minutes) = (secs / 3600, secs % 3600 / 60);
    let seconds = decimal_secs(Duration::from_millis(u64::try_from(wait.as_millis() % 60_000).unwrap_or(0)));
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// The moment `wait` from now, to the millisecond, and its RFC 3339 form as
/// Anthropic's reset headers carry it.
fn rfc3339_after(wait: Duration) -> (SystemTime, String) {
    let since_epoch = (SystemTime::now() + wait).duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let since_epoch = whole_ms(since_epoch);
    let millis = i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX);
    let text =
        jiff::Timestamp::from_millisecond(millis).map_or_else(|_| "1970-01-01T00:00:00Z".to_owned(), |t| t.to_string());
    (SystemTime::UNIX_EPOCH + since_epoch, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_formats() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(ms(644)), "644ms");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(360_000)), "6m0s");
        assert_eq!(go_duration(ms(172_800)), "2m52.8s");
        assert_eq!(go_duration(ms(3_723_500)), "1h2m3.5s");
        assert_eq!(go_duration(Duration::from_micros(10_001)), "11ms");
        assert_eq!(decimal_secs(ms(11_380)), "11.38");
        assert_eq!(decimal_secs(ms(20)), "0.02");
        assert_eq!(decimal_secs(ms(55_000)), "55");
        assert_eq!(ceil_secs(ms(20)), 1);
        assert_eq!(ceil_secs(ms(2000)), 2);
        let (at, text) = rfc3339_after(ms(1500));
        assert!(text.ends_with('Z'), "{text}");
        let parsed: jiff::Timestamp = text.parse().unwrap();
        assert_eq!(
            parsed.as_millisecond(),
            i64::try_from(at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis()).unwrap()
        );
    }

    #[test]
    fn names_are_unique_and_match_their_provider_module() {
        let catalog = catalog();
        let mut names: Vec<_> = catalog.iter().map(MockFailure::name).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate template names");
        for failure in &catalog {
            assert!(failure.name().contains("::"), "{}", failure.name());
        }
    }
}
