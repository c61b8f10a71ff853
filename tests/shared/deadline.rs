//! A deadline on every request a test sends: a broken wait bound (a server
//! wait or a cooldown slept past `max_retry_after` or `max_elapsed`) fails
//! the test in seconds instead of sleeping for the minutes or years it
//! computed. Shared by several test binaries through `#[path]`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

/// Far above any test request's own waits (a few hundred milliseconds), far below a hang.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// The outermost middleware of a test client: panics when a request, its
/// retries and waits included, takes longer than [`DEADLINE`].
#[derive(Debug, Clone, Copy)]
pub struct Deadline;

type HandleFuture<'a> = Pin<Box<dyn Future<Output = reqwest_middleware::Result<Response>> + Send + 'a>>;

impl Middleware for Deadline {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        request: Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> HandleFuture<'async_trait>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        let path = request.url().path().to_owned();
        Box::pin(async move {
            match tokio::time::timeout(DEADLINE, next.run(request, extensions)).await {
                Ok(outcome) => outcome,
                Err(_) => panic!("{path}: not answered within {DEADLINE:?}: a wait bound is broken"),
            }
        })
    }
}
