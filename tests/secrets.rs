//! No credential ever appears in a log line, a `Display` or a `Debug`.
//!
//! Every request carries `Authorization: Bearer …`, `x-api-key`,
//! `x-goog-api-key`, `api-key`, `Cookie`, `Proxy-Authorization` and a `?key=`
//! query value, and goes through every failure path: servers that echo the credentials back in every field
//! of an error (message, type, code, request id, HTML title, JSON inside the
//! message, a quota id), cut at the message and body limits, retried and
//! exhausted, refused, timed out, unresolvable, reset mid-body, and a body
//! that cannot be cloned. All `tracing` output is captured at TRACE level,
//! and every error is formatted with `{}` and `{:?}`.
//!
//! Its own test binary: the subscriber must be global and installed before
//! any callsite registers (tracing caches per-callsite interest).

use std::net::SocketAddr;
use std::time::Duration;

use reqwest_llm_retry::{LlmResponseExt, Provider};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

mod support;
use support::logs::logs;
use support::{NoDns, client_to, fast, futures_stream, read_head};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const BEARER: &str = "sk-proj-Zq8vW3nLr5Tb2Kx9Jm4Hc7Fd1Gs6Py0A";
const X_API_KEY: &str = "sk-ant-api03-Nw4Qe7Rt1Yu9Io3Pa6Sd2Fg8Hj5Kl0Zx";
const GOOG_KEY: &str = "AIzaSyMb3Vn8Cx1Zl6Kj4Hg9Fd2Sa7Po5Iu0Yt";
const AZURE_KEY: &str = "4f9a2c7e1b8d3a6f0c5e9b2d7a4f1c8e";
const QUERY_KEY: &str = "AIzaSyQw2Er7Ty4Ui9Op1As6Df3Gh8Jk5Lz0Xc";
const COOKIE: &str = "session=Ck3vB8nM1qW6eR9tY2uI5oP0aS4dF7gH";
const PROXY_AUTH: &str = "Basic cHJveHktdXNlcjpQeDl2UTJ3RTVyVDh5VTFp";
const SECRETS: [&str; 7] = [BEARER, X_API_KEY, GOOG_KEY, AZURE_KEY, QUERY_KEY, COOKIE, PROXY_AUTH];

/// A piece of a secret long enough to identify it, found in `text`.
fn leak(text: &str) -> Option<String> {
    for secret in SECRETS {
        // Any 10 consecutive characters past the public `sk-…-`/`AIza` prefix.
        let body = &secret[8..];
        for start in 0..=body.len() - 10 {
            let piece = &body[start..start + 10];
            if let Some(at) = text.find(piece) {
                let from = text[..at].char_indices().rev().nth(80).map_or(0, |(i, _)| i);
                let context: String = text[from..].chars().take(200).collect();
                return Some(format!("{piece} of {secret} in …{context}…"));
            }
        }
    }
    None
}

fn assert_clean(what: &str, text: &str) {
    if let Some(found) = leak(text) {
        panic!("{what} leaks {found}");
    }
}

/// A request carrying every kind of credential.
fn send(
    client: &reqwest_middleware::ClientWithMiddleware,
    host: &str,
    port: u16,
) -> reqwest_middleware::RequestBuilder {
    client
        .post(format!("http://{host}:{port}/v1beta/models/gemini-2.0-flash:generateContent?key={QUERY_KEY}&alt=sse"))
        .header("authorization", format!("Bearer {BEARER}"))
        .header("x-api-key", X_API_KEY)
        .header("x-goog-api-key", GOOG_KEY)
        .header("api-key", AZURE_KEY)
        .header("cookie", COOKIE)
        .header("proxy-authorization", PROXY_AUTH)
        .body(r#"{"contents":[]}"#)
}

/// Formats whatever came back, every way a caller might, and checks it.
async fn check_outcome(what: &str, outcome: reqwest_middleware::Result<reqwest::Response>) {
    match outcome {
        Ok(response) => {
            if let Some(error) = response.llm_error() {
                assert_clean(what, &format!("{error} {error:?} {}", error.fix()));
            }
            assert_clean(what, &format!("{:?}", response.retry_stats()));
            // The body as the caller reads it, and its error if it was cut.
            // (`chunk()`: `bytes()`, `text()` and `json()` add the response
            // URL to their errors themselves, exactly as without the
            // middleware, since the response keeps its URL.)
            let mut response = response;
            loop {
                match response.chunk().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(error) => {
                        assert_clean(what, &format!("{error} {error:?}"));
                        break;
                    }
                }
            }
        }
        Err(error) => {
            let mut text = format!("{error} {error:?}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(&format!(" {cause} {cause:?}"));
                source = cause.source();
            }
            assert_clean(what, &text);
        }
    }
}

/// Echoes the request's credentials back in every field an error can carry.
struct Echo {
    status: u16,
    shape: Shape,
}

impl Respond for Echo {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        // The x-api-key twice: every copy must go, not only the first.
        let echoed = format!(
            "{} | key={} | {} | {} | {} | {} | {} | {} | again {}",
            request.url,
            QUERY_KEY,
            header("authorization"),
            header("x-api-key"),
            header("x-goog-api-key"),
            header("api-key"),
            header("cookie"),
            header("proxy-authorization"),
            header("x-api-key"),
        );
        ResponseTemplate::new(self.status)
            .insert_header("request-id", format!("req_{BEARER}"))
            .insert_header("x-request-id", format!("req_{X_API_KEY}"))
            .insert_header("retry-after-ms", "5")
            .set_body_raw((self.shape)(&echoed), "application/json")
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// An error body built around the echoed credentials.
type Shape = fn(&str) -> String;

fn shapes() -> Vec<(u16, Shape)> {
    vec![
        // OpenAI envelope with the key in every field.
        (401, |e| {
            format!(
                r#"{{"error":{{"message":{m},"type":{t},"code":{t},"param":{m}}}}}"#,
                m = json_string(&format!("Incorrect API key provided: {e}")),
                t = json_string(&format!("invalid_{GOOG_KEY}"))
            )
        }),
        // Anthropic envelope with the key as request id; retried until exhausted.
        (529, |e| {
            format!(
                r#"{{"type":"error","error":{{"type":"overloaded_error","message":{}}},"request_id":{}}}"#,
                json_string(e),
                json_string(&format!("req_{AZURE_KEY}"))
            )
        }),
        // A proxy page quoting the request line.
        (502, |e| {
            format!("<html><head><title>502 Bad Gateway for POST {e}</title></head><body><h1>{e}</h1></body></html>")
        }),
        // JSON inside the message, inside an array.
        (400, |e| {
            format!(
                r#"[{{"error":{{"code":400,"message":{},"status":"INVALID_ARGUMENT"}}}}]"#,
                json_string(&format!(
                    r#"upstream: {{"error":{{"message":{},"type":{}}}}}"#,
                    json_string(e),
                    json_string(X_API_KEY)
                ))
            )
        }),
        // Gemini quota details naming the key.
        (429, |e| {
            format!(
                r#"{{"error":{{"code":429,"message":{},"status":"RESOURCE_EXHAUSTED","details":[{{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{{"quotaId":"PerDay-{GOOG_KEY}"}}]}},{{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"{QUERY_KEY}","metadata":{{"quota_limit":"{BEARER}"}}}}]}}}}"#,
                json_string(e)
            )
        }),
        // The key straddles the 2 KiB message cut.
        (400, |e| format!(r#"{{"error":{{"message":"{}{}{e}"}}}}"#, "x".repeat(2048 - 20), BEARER)),
        // Plain text, with the key in truncated JSON.
        (500, |e| format!(r#"{{"error":{{"message":{},"type":"{X_API_KEY}","code":"{AZURE_KEY}""#, json_string(e))),
        // Plain text.
        (503, |e| format!("upstream said: {e}")),
    ]
}

#[tokio::test]
async fn echoed_credentials_never_leave_through_any_error_field() {
    logs();
    for (i, (status, shape)) in shapes().into_iter().enumerate() {
        let server = MockServer::start().await;
        Mock::given(any()).respond_with(Echo { status, shape }).mount(&server).await;
        for host in [
            "generativelanguage.googleapis.com",
            "api.openai.com",
            "api.anthropic.com",
            "my-res.openai.azure.com",
            "proxy.example",
        ] {
            let client = client_to(host, *server.address(), fast().max_retries(2).build());
            let outcome = send(&client, host, server.address().port()).send().await;
            check_outcome(&format!("shape {i} ({status}) via {host}"), outcome).await;
        }
    }
    // The key straddles the parse limit: the prefix ends inside it.
    let server = MockServer::start().await;
    let body = format!(r#"{{"error":{{"message":"{}{BEARER} tail"}}}}"#, "y".repeat(100));
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500).set_body_raw(body, "application/json"))
        .mount(&server)
        .await;
    for limit in [125, 130, 140, 150] {
        let client =
            client_to("api.openai.com", *server.address(), fast().max_retries(2).error_body_limit(limit).build());
        let outcome = send(&client, "api.openai.com", server.address().port()).send().await;
        check_outcome(&format!("body cut at {limit}"), outcome).await;
    }
    let logs = logs().text();
    assert!(logs.contains("retrying LLM API request"), "the retries were logged and captured:\n{logs:.2000}");
    assert_logs_clean();
}

/// Closes every connection right after reading the request head, or never answers.
async fn raw_server(behaviour: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !read_head(&mut stream).await {
                    return;
                }
                match behaviour {
                    "reset" => {
                        let _ = stream.set_zero_linger();
                    }
                    "mid-body" => {
                        let message = format!(r#"{{"error":{{"message":"key={QUERY_KEY} {BEARER}"#);
                        let head = format!("HTTP/1.1 500 X\r\ncontent-length: 100000\r\n\r\n{message}");
                        let _ = stream.write_all(head.as_bytes()).await;
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        let _ = stream.set_zero_linger();
                    }
                    _ => tokio::time::sleep(Duration::from_secs(5)).await,
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn transport_failures_never_show_a_credential() {
    logs();
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let cases: Vec<(&str, SocketAddr, reqwest::ClientBuilder)> = vec![
        ("connection refused", refused, reqwest::Client::builder()),
        ("reset before headers", raw_server("reset").await, reqwest::Client::builder()),
        ("reset mid-body", raw_server("mid-body").await, reqwest::Client::builder()),
        ("never answers", raw_server("silent").await, reqwest::Client::builder().timeout(Duration::from_millis(150))),
        ("dns failure", refused, reqwest::Client::builder().dns_resolver(NoDns::new())),
    ];
    for (what, addr, builder) in cases {
        // The DNS case must not be resolved to the address: it uses a host without a resolve() entry.
        let host = if what == "dns failure" { "llm.invalid" } else { "generativelanguage.googleapis.com" };
        let builder = if what == "dns failure" { builder } else { builder.resolve(host, addr) };
        let http = builder.build().unwrap();
        let middleware = fast().max_retries(2).host("llm.invalid", Provider::Gemini).build();
        let client = support::with_deadline(http, middleware);
        let outcome = send(&client, host, addr.port()).send().await;
        check_outcome(what, outcome).await;
    }
    assert_logs_clean();
}

#[tokio::test]
async fn a_body_that_cannot_be_cloned_is_sent_once_and_still_redacted() {
    logs();
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(Echo { status: 429, shape: |e| format!(r#"{{"error":{{"message":{}}}}}"#, json_string(e)) })
        .mount(&server)
        .await;
    let client = client_to("api.openai.com", *server.address(), fast().max_retries(2).build());
    let stream = futures_stream(vec![Ok::<_, std::io::Error>(b"{\"contents\":".to_vec()), Ok(b"[]}".to_vec())]);
    let outcome =
        send(&client, "api.openai.com", server.address().port()).body(reqwest::Body::wrap_stream(stream)).send().await;
    assert_eq!(server.received_requests().await.unwrap().len(), 1, "a stream is sent once");
    check_outcome("streaming body", outcome).await;
    assert_logs_clean();
}

fn assert_logs_clean() {
    assert_clean("tracing output", &logs().text());
}
