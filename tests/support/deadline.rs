//! A deadline on every request a test sends: a broken wait bound (a server
//! wait or a cooldown slept past `max_retry_after` or `max_elapsed`) fails
//! the test in seconds instead of sleeping for the minutes or years it
//! computed.

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

#[async_trait::async_trait]
impl Middleware for Deadline {
    async fn handle(
        &self,
        request: Request,
        ext: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let path = request.url().path().to_owned();
        match tokio::time::timeout(DEADLINE, next.run(request, ext)).await {
            Ok(outcome) => outcome,
            Err(_) => panic!("{path}: not answered within {DEADLINE:?}: a wait bound is broken"),
        }
    }
}
