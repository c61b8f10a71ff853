//! Which requests can name another model: a signed request cannot, and is
//! handled exactly as without a fallback; a streamed upload of known length
//! can, once read into memory.

use std::time::Duration;

use reqwest_llm_retry::{ErrorKind, LlmApiError, LlmResponseExt, LlmRetryMiddlewareBuilder, mock};
use reqwest_middleware::ClientWithMiddleware;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer};

use super::{bodies_for, model_answers, overloaded};
use crate::support::*;

const OPUS: &str = "/model/anthropic.claude-opus-4-1-v1%3A0/invoke";
const SONNET: &str = "/model/anthropic.claude-sonnet-4-5-v1%3A0/invoke";
const SIGV4: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/bedrock/aws4_request, \
                     SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

/// What a caller of signed requests for opus sees, always answered 503.
#[derive(Debug, PartialEq)]
struct Seen {
    /// The status and attempts of a request alone, before any outage.
    alone: (u16, u32),
    /// Requests the server got for opus and for sonnet.
    sent: (usize, usize),
    /// A request alone once opus's host is in an outage: the status and
    /// attempts of its response, or the attempts of the typed error it got.
    in_outage: Result<(u16, u32), u32>,
}

/// A Bedrock request for opus signed with SigV4, under the test's deadline.
async fn signed(client: &ClientWithMiddleware, url: &str) -> reqwest_middleware::Result<reqwest::Response> {
    let request = client
        .post(url)
        .header("authorization", SIGV4)
        .header("x-amz-date", "20250101T000000Z")
        .body(r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":64}"#);
    tokio::time::timeout(DEADLINE, request.send()).await.expect("it ends")
}

/// Signed Bedrock requests for opus, which answers 503 to all; sonnet would answer.
async fn signed_requests_for_opus(builder: impl Fn() -> LlmRetryMiddlewareBuilder) -> Seen {
    let server = MockServer::start().await;
    Mock::given(path(OPUS)).respond_with(mock::bedrock::service_unavailable()).mount(&server).await;
    Mock::given(path(SONNET)).respond_with(ok()).mount(&server).await;
    let url = url(&server, BEDROCK, OPUS);

    let response = signed(&client(&server, builder().max_retries(2).build()), &url).await.unwrap();
    assert!(response.model_fallback().is_none(), "a signed request is never rewritten");
    let alone = (response.status().as_u16(), response.retry_stats().unwrap().attempts);

    // Twelve failures at once: the outage. The next probe is due 10 s after it began.
    let client = client(&server, builder().base_delay(Duration::from_secs(40)).max_retries(0).build());
    let mut wave = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (client, url) = (client.clone(), url.clone());
        wave.spawn(async move { signed(&client, &url).await.unwrap().status() });
    }
    assert_eq!(wave.join_all().await, [503; 12]);
    let in_outage = match signed(&client, &url).await {
        Ok(response) => Ok((response.status().as_u16(), response.retry_stats().unwrap().attempts)),
        Err(error) => Err(LlmApiError::find_in(&error).expect("a typed error").attempts),
    };
    let requests = server.received_requests().await.unwrap();
    let to = |model: &str| requests.iter().filter(|r| r.url.path() == model).count();
    Seen { alone, sent: (to(OPUS), to(SONNET)), in_outage }
}

#[tokio::test]
async fn a_signed_request_is_handled_exactly_as_without_a_fallback() {
    let with = signed_requests_for_opus(|| {
        fast().fallback("anthropic.claude-opus-4-1-v1:0", "anthropic.claude-sonnet-4-5-v1:0")
    })
    .await;
    let without = signed_requests_for_opus(fast).await;
    assert_eq!(with, without);
    // Retried on opus only; in the host's outage, alone, it is its own probe: sent, not refused unsent.
    let expected = Seen { alone: (503, 3), sent: (3 + 12 + 1, 0), in_outage: Ok((503, 1)) };
    assert_eq!(with, expected);
}

/// A streamed body of `body`'s length, as a client library builds one from a file.
fn streamed(body: &'static str) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.as_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_stream(chunks))
}

#[tokio::test]
async fn a_streamed_upload_of_known_length_falls_back_with_only_the_model_replaced() {
    let body = "{\"model\": \"claude-opus-4-1\",\n \"max_tokens\":64, \"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9\"}]}";
    for max_retries in [1, 0] {
        let server = MockServer::start().await;
        model_answers(&server, "claude-opus-4-1", overloaded()).await;
        model_answers(&server, "claude-sonnet-4-5", ok()).await;
        let middleware = fast().max_retries(max_retries).fallback("claude-opus-4-1", "claude-sonnet-4-5").build();
        let response = client(&server, middleware)
            .post(url(&server, ANTHROPIC, "/v1/messages"))
            .header("content-length", body.len())
            .body(streamed(body))
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), 200, "max_retries {max_retries}");
        let taken = response.model_fallback().expect("answered by the fallback");
        assert_eq!(taken.answered, "claude-sonnet-4-5");
        let primary = taken.primary_error.as_ref().expect("opus's 529");
        assert_eq!((primary.kind, primary.attempts), (ErrorKind::Overloaded, max_retries + 1));
        let expected = body.replace("\"claude-opus-4-1\"", "\"claude-sonnet-4-5\"");
        assert_eq!(bodies_for(&server, "claude-sonnet-4-5").await, [expected.into_bytes()], "only the model changed");
        let requests = server.received_requests().await.unwrap();
        let last = requests.last().unwrap();
        let declared: usize = last.headers["content-length"].to_str().unwrap().parse().unwrap();
        assert_eq!(declared, last.body.len(), "Content-Length counts the new body");
    }
}
