//! Errors inside a `200` event stream: an error before the first output is
//! retried like the same error sent as a status; after output, nothing is.

use std::time::Duration;

use reqwest_llm_retry::{ErrorKind, LlmApiError, LlmResponseExt, Provider, mock};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

/// A deadline for every call that a broken hold could stall.
const DEADLINE: Duration = Duration::from_secs(10);

struct Case {
    provider: Provider,
    host: &'static str,
    path: &'static str,
    failure: ResponseTemplate,
    after_output: Option<ResponseTemplate>,
    ok: ResponseTemplate,
    kind: ErrorKind,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            provider: Provider::Anthropic,
            host: ANTHROPIC,
            path: "/v1/messages",
            failure: mock::anthropic::stream_overloaded(),
            after_output: Some(mock::anthropic::stream_overloaded_after("Par")),
            ok: mock::anthropic::stream_ok("Paris."),
            kind: ErrorKind::Overloaded,
        },
        Case {
            provider: Provider::OpenAi,
            host: OPENAI,
            path: "/v1/chat/completions",
            failure: mock::openai::stream_overloaded(),
            after_output: Some(mock::openai::stream_overloaded_after("Par")),
            ok: mock::openai::stream_ok("Paris."),
            kind: ErrorKind::Overloaded,
        },
        Case {
            provider: Provider::OpenAi,
            host: OPENAI,
            path: "/v1/responses",
            failure: mock::openai::responses_stream_error("server_is_overloaded", "The server is overloaded."),
            after_output: None,
            ok: mock::openai::responses_stream_ok("Paris."),
            kind: ErrorKind::Overloaded,
        },
        Case {
            provider: Provider::OpenAi,
            host: OPENAI,
            path: "/v1/responses",
            failure: mock::openai::responses_stream_failed(),
            after_output: None,
            ok: mock::openai::responses_stream_ok("Paris."),
            kind: ErrorKind::ServerError,
        },
        Case {
            provider: Provider::Gemini,
            host: GEMINI,
            path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            failure: mock::gemini::stream_unavailable(),
            after_output: None,
            ok: mock::gemini::stream_ok("Paris."),
            kind: ErrorKind::Overloaded,
        },
    ]
}

/// The body bare reqwest receives for `template`: what the caller must get, byte for byte.
async fn bare_body(template: ResponseTemplate) -> bytes::Bytes {
    let server = MockServer::start().await;
    always(&server, template).await;
    reqwest_client(&server).post(url(&server, OPENAI, "/")).send().await.unwrap().bytes().await.unwrap()
}

async fn send(client: &reqwest_middleware::ClientWithMiddleware, url: String) -> reqwest::Response {
    let call = client.post(url).body(r#"{"stream":true}"#).send();
    tokio::time::timeout(DEADLINE, call).await.expect("send() returned before the deadline").unwrap()
}

#[tokio::test]
async fn an_error_before_the_first_output_is_retried_and_the_retry_streams_intact() {
    for case in cases() {
        let server = MockServer::start().await;
        let script = mock::Sequence::new().then(case.failure.clone()).then(case.ok.clone());
        Mock::given(wiremock::matchers::any()).respond_with(script.clone()).mount(&server).await;
        let response = send(&client(&server, fast().build()), url(&server, case.host, case.path)).await;
        let context = format!("{:?} {}", case.provider, case.path);
        assert_eq!(script.hits(), 2, "{context}: one failed stream, one retry");
        assert_eq!(response.status(), 200, "{context}");
        assert!(response.llm_error().is_none(), "{context}");
        assert_eq!(response.retry_stats().unwrap().attempts, 2, "{context}");
        let body = response.bytes().await.unwrap();
        assert_eq!(body, bare_body(case.ok).await, "{context}: the successful stream, byte for byte");
    }
}

#[tokio::test]
async fn an_error_after_output_passes_through_unchanged_and_is_not_retried() {
    for case in cases() {
        let Some(after_output) = case.after_output else { continue };
        let server = MockServer::start().await;
        always(&server, after_output.clone()).await;
        let response = send(&client(&server, fast().build()), url(&server, case.host, case.path)).await;
        assert_eq!(hits(&server).await, 1, "{:?}: output was sent, a retry would repeat it", case.provider);
        assert!(response.llm_error().is_none());
        let body = response.bytes().await.unwrap();
        assert_eq!(body, bare_body(after_output).await);
        // The caller classifies the error event it meets mid-stream.
        let text = String::from_utf8(body.to_vec()).unwrap();
        let data = text.lines().rev().find_map(|line| line.strip_prefix("data: ")).unwrap();
        let error = LlmApiError::from_stream_event(case.provider, data).expect("the last event is an error");
        assert_eq!((error.kind, error.retryable), (case.kind, true));
    }
}

#[tokio::test]
async fn when_retries_run_out_the_caller_gets_the_200_with_the_error_attached() {
    for case in cases() {
        let server = MockServer::start().await;
        always(&server, case.failure.clone()).await;
        let response = send(&client(&server, fast().max_retries(2).build()), url(&server, case.host, case.path)).await;
        assert_eq!(hits(&server).await, 3, "{:?} {}", case.provider, case.path);
        assert_eq!(response.status(), 200);
        let error = response.llm_error().expect("error attached").clone();
        assert_eq!((error.provider, error.kind, error.attempts), (case.provider, case.kind, 3));
        assert!(error.retryable, "transient, only out of attempts");
        assert_eq!(response.retry_stats().unwrap().attempts, 3);
        assert_eq!(response.bytes().await.unwrap(), bare_body(case.failure.clone()).await, "held bytes replayed");
    }
}

#[tokio::test]
async fn error_for_llm_status_fails_a_stream_that_failed_before_output() {
    let server = MockServer::start().await;
    always(&server, mock::anthropic::stream_overloaded()).await;
    let client = client(&server, fast().max_retries(0).build());
    let response = send(&client, url(&server, ANTHROPIC, "/v1/messages")).await;
    let error = response.error_for_llm_status().expect_err("a failed stream is an error");
    assert_eq!((error.kind, error.status.as_u16()), (ErrorKind::Overloaded, 529));
    assert_eq!(error.error_type.as_deref(), Some("overloaded_error"));
    assert_eq!(error.request_id.as_deref(), Some(mock::anthropic::REQUEST_ID));
}

#[tokio::test]
async fn an_error_that_retrying_cannot_fix_returns_at_once() {
    let server = MockServer::start().await;
    let quota = mock::openai::responses_stream_error("insufficient_quota", "You exceeded your current quota.");
    always(&server, quota).await;
    let response = send(&client(&server, fast().build()), url(&server, OPENAI, "/v1/responses")).await;
    assert_eq!(hits(&server).await, 1);
    let error = response.llm_error().unwrap();
    assert_eq!((error.kind, error.retryable), (ErrorKind::QuotaExceeded, false));
}

#[tokio::test]
async fn a_rate_limit_in_the_stream_waits_as_long_as_the_server_asks() {
    let server = MockServer::start().await;
    let limited = mock::openai::responses_stream_error("rate_limit_exceeded", "Rate limit reached for requests")
        .insert_header("retry-after-ms", "60");
    first(&server, 1, limited).await;
    always(&server, mock::openai::responses_stream_ok("ok")).await;
    let response = send(&client(&server, fast().build()), url(&server, OPENAI, "/v1/responses")).await;
    let stats = response.retry_stats().unwrap();
    assert_eq!(stats.attempts, 2);
    assert!(stats.waited >= Duration::from_millis(60), "waited {:?}, not the server's 60 ms", stats.waited);
}

#[tokio::test]
async fn streams_off_unknown_hosts_and_non_streams_are_left_alone() {
    let server = MockServer::start().await;
    always(&server, mock::anthropic::stream_overloaded()).await;
    let off = client(&server, fast().streams(false).build());
    let response = send(&off, url(&server, ANTHROPIC, "/v1/messages")).await;
    assert!(response.llm_error().is_none());
    assert_eq!(hits(&server).await, 1, "streams(false)");

    let response = send(&client(&server, fast().build()), url(&server, "unknown.example", "/v1/messages")).await;
    assert!(response.llm_error().is_none());
    assert_eq!(hits(&server).await, 2, "an unknown host's stream is not watched");

    server.reset().await;
    let not_a_stream = ResponseTemplate::new(200)
        .set_body_raw(r#"{"type":"error","error":{"type":"overloaded_error"}}"#, "application/json");
    always(&server, not_a_stream).await;
    let response = send(&client(&server, fast().build()), url(&server, ANTHROPIC, "/v1/messages")).await;
    assert!(response.llm_error().is_none());
    assert_eq!(hits(&server).await, 1, "a JSON 200 is not a stream");
}

#[tokio::test]
async fn a_request_that_cannot_be_resent_gets_its_stream_error_classified() {
    let server = MockServer::start().await;
    always(&server, mock::anthropic::stream_overloaded()).await;
    let client = client(&server, fast().build());
    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok(r#"{"stream":"#), Ok("true}")];
    let body = reqwest::Body::wrap_stream(futures_stream(chunks));
    let call = client.post(url(&server, ANTHROPIC, "/v1/messages")).body(body).send();
    let response = tokio::time::timeout(DEADLINE, call).await.unwrap().unwrap();
    assert_eq!(hits(&server).await, 1, "a stream body is sent once");
    let error = response.llm_error().unwrap();
    assert_eq!((error.kind, error.retryable), (ErrorKind::Overloaded, true));
}

/// A raw HTTP/1.1 server that answers every connection with a `200`
/// `text/event-stream` head, then writes `script`'s chunks (an empty chunk:
/// stall until the client hangs up).
async fn raw_stream_server(script: Vec<Vec<u8>>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let script = script.clone();
            tokio::spawn(async move {
                if !read_head(&mut stream).await {
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for chunk in script {
                    if chunk.is_empty() {
                        // Stall: the client's hang-up ends the read.
                        let mut sink = [0u8; 64];
                        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await;
                        return;
                    }
                    if stream.write_all(&chunk).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

const MESSAGE_START: &str = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n";

#[tokio::test]
async fn a_slow_first_output_is_not_held_past_the_time_bound() {
    let addr = raw_stream_server(vec![MESSAGE_START.into(), Vec::new()]).await;
    let middleware = fast().stream_hold_timeout(Duration::from_millis(50)).build();
    let client = client_to(ANTHROPIC, addr, middleware);
    let url = format!("http://{ANTHROPIC}:{}/v1/messages", addr.port());
    let mut response = send(&client, url).await;
    assert!(response.llm_error().is_none());
    let first = tokio::time::timeout(DEADLINE, response.chunk()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, MESSAGE_START.as_bytes(), "the held event, then the stream as it comes");
}

#[tokio::test]
async fn hostile_framing_is_read_as_the_provider_meant_it() {
    // CRLF line ends, a comment, multi-line data, written a few bytes at a time.
    let stream = ": OPENROUTER PROCESSING\r\n\r\nevent: message_start\r\ndata: {\"type\":\r\ndata: \"message_start\"}\r\n\r\n\
                  event: error\rdata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\r\r";
    let script: Vec<Vec<u8>> = stream.as_bytes().chunks(7).map(<[u8]>::to_vec).collect();
    let addr = raw_stream_server(script).await;
    let client = client_to(ANTHROPIC, addr, fast().max_retries(1).build());
    let url = format!("http://{ANTHROPIC}:{}/v1/messages", addr.port());
    let response = send(&client, url).await;
    let error = response.llm_error().expect("the error event was found");
    assert_eq!((error.kind, error.attempts), (ErrorKind::Overloaded, 2));
    assert_eq!(response.bytes().await.unwrap(), stream.as_bytes());
}

#[tokio::test]
async fn a_stream_that_ends_mid_event_with_an_error_is_still_judged() {
    let stream = "event: message_start\ndata: {}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal\"}}";
    let addr = raw_stream_server(vec![stream.into()]).await;
    let response = send(
        &client_to(ANTHROPIC, addr, fast().max_retries(0).build()),
        format!("http://{ANTHROPIC}:{}/v1/messages", addr.port()),
    )
    .await;
    assert_eq!(response.llm_error().map(|e| e.kind), Some(ErrorKind::ServerError));
    assert_eq!(response.bytes().await.unwrap(), stream.as_bytes());
}

#[tokio::test]
async fn a_huge_event_without_a_newline_is_handed_over_bounded_and_intact() {
    let huge: Vec<u8> = [b"data: ".as_slice(), &vec![b'x'; 4 << 20]].concat();
    let script: Vec<Vec<u8>> = huge.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    let addr = raw_stream_server(script).await;
    let mut response =
        send(&client_to(ANTHROPIC, addr, fast().build()), format!("http://{ANTHROPIC}:{}/v1/messages", addr.port()))
            .await;
    assert!(response.llm_error().is_none());
    let mut received = Vec::new();
    while let Some(chunk) = tokio::time::timeout(DEADLINE, response.chunk()).await.unwrap().unwrap() {
        received.extend_from_slice(&chunk);
    }
    assert!(received == huge, "every byte, in order ({} of {})", received.len(), huge.len());
}

#[tokio::test]
async fn error_for_status_returns_a_failed_stream_as_err() {
    let server = MockServer::start().await;
    always(&server, mock::openai::stream_overloaded()).await;
    let client = client(&server, fast().max_retries(1).error_for_status(true).build());
    let call = client.post(url(&server, OPENAI, "/v1/chat/completions")).body("{}").send();
    let error = tokio::time::timeout(DEADLINE, call).await.unwrap().expect_err("a failed stream is an Err");
    let api = LlmApiError::find_in(&error).expect("the typed error");
    assert_eq!((api.kind, api.attempts, api.code.as_deref()), (ErrorKind::Overloaded, 2, Some("server_is_overloaded")));
}
