//! Error bodies of every kind a user meets: proxy HTML, empty, truncated,
//! wrong-shaped or array-wrapped JSON, JSON inside a message, non-UTF-8,
//! gzip, bodies past the parse limit and bodies that arrive slowly. Each
//! still yields an `LlmApiError`, and the caller receives exactly the bytes
//! bare reqwest would have given it.

use std::io::Write;
use std::time::Instant;

use reqwest_llm_retry::{ErrorKind, LlmApiError, LlmResponseExt, LlmRetryMiddleware};
use tokio::io::AsyncWriteExt;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

/// Serves `template` on every request and sends one GET through the middleware as `host`.
async fn fetch(host: &str, template: ResponseTemplate, middleware: LlmRetryMiddleware) -> (reqwest::Response, usize) {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(template).mount(&server).await;
    let url = format!("http://{host}:{}/v1/x", server.address().port());
    let response = client_to(host, *server.address(), middleware).get(url).send().await.unwrap();
    (response, server.received_requests().await.unwrap().len())
}

/// The error and the whole body the caller reads.
async fn fetch_error(host: &str, status: u16, body: &[u8], mime: &str) -> (LlmApiError, Vec<u8>, usize) {
    let template = ResponseTemplate::new(status).set_body_raw(body.to_vec(), mime);
    let (response, requests) = fetch(host, template, fast().max_retries(2).build()).await;
    let error = response.llm_error().expect("an LlmApiError on every error response").clone();
    assert_eq!(response.retry_stats().unwrap().attempts as usize, requests);
    let bytes = response.bytes().await.unwrap().to_vec();
    (error, bytes, requests)
}

#[tokio::test]
async fn proxy_html_pages_are_read_for_their_title() {
    let cloudflare_502 = "<!DOCTYPE html>\n<html>\n<head><title>api.anthropic.com | 502: Bad gateway</title></head>\n<body><h1>Bad gateway</h1><p>Cloudflare Ray ID: 8e1f</p></body></html>";
    let nginx_503 = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    let cloudflare_413 = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n";
    let h1_only = "<HTML><BODY><H1>Gateway Timeout</H1>upstream took too long</BODY></HTML>";
    let cases = [
        (502, cloudflare_502, "api.anthropic.com | 502: Bad gateway", ErrorKind::ServerError, 3),
        (503, nginx_503, "503 Service Temporarily Unavailable", ErrorKind::Overloaded, 3),
        (413, cloudflare_413, "413 Request Entity Too Large", ErrorKind::RequestTooLarge, 1),
        (504, h1_only, "Gateway Timeout", ErrorKind::Timeout, 3),
    ];
    for (status, html, title, kind, requests) in cases {
        let (error, bytes, sent) = fetch_error("api.anthropic.com", status, html.as_bytes(), "text/html").await;
        assert_eq!((error.kind, error.message.as_str(), sent), (kind, title, requests), "{status}");
        assert_eq!(bytes, html.as_bytes(), "the caller gets the page unchanged");
    }
}

#[tokio::test]
async fn empty_bodies_take_the_status() {
    for (status, kind, reason) in [
        (500, ErrorKind::ServerError, "Internal Server Error"),
        (429, ErrorKind::RateLimited, "Too Many Requests"),
        (401, ErrorKind::Authentication, "Unauthorized"),
    ] {
        let (error, bytes, _) = fetch_error("api.openai.com", status, b"", "application/json").await;
        assert_eq!((error.kind, error.message.as_str()), (kind, reason));
        assert!(bytes.is_empty());
    }
    let (error, _, _) = fetch_error("api.openai.com", 400, b" \r\n\t ", "text/plain").await;
    assert_eq!(error.message, "Bad Request", "whitespace is no message");
}

#[tokio::test]
async fn truncated_json_keeps_the_fields_that_arrived_whole() {
    let body = br#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":nu"#;
    let (error, bytes, requests) = fetch_error("api.openai.com", 500, body, "application/json").await;
    assert_eq!(error.message, "The server had an error while processing your request. Sorry about that!");
    assert_eq!((error.error_type.as_deref(), error.kind, requests), (Some("server_error"), ErrorKind::ServerError, 3));
    assert_eq!(bytes, body);

    // Cut inside the message string: the text that arrived is the message.
    let cut = br#"{"error":{"type":"invalid_request_error","message":"prompt is too lo"#;
    let (error, _, _) = fetch_error("api.anthropic.com", 400, cut, "application/json").await;
    assert_eq!((error.kind, error.error_type.as_deref()), (ErrorKind::InvalidRequest, Some("invalid_request_error")));
    assert!(error.message.contains("prompt is too lo"), "{error:?}");
}

#[tokio::test]
async fn json_of_the_wrong_shape_never_fails_the_parse() {
    let bodies: [&[u8]; 14] = [
        br#"{"error":42}"#,
        br#"{"error":null}"#,
        br#"{"error":["a",1,{"message":"inside"}]}"#,
        br#"{"error":true,"message":"flat"}"#,
        br#"[]"#,
        br#"[1,2,3]"#,
        br#""just a string""#,
        br#"null"#,
        br#"42"#,
        br#"{"message":{"detail":[{"loc":["body","model"],"msg":"field required","type":"missing"}]}}"#,
        br#"{"error":{"message":123,"code":{"nested":1},"type":["x"],"details":"not an array"}}"#,
        br#"{"detail":"Not Found"}"#,
        br#"{"error":{"details":[{"@type":42},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":7}]}}"#,
        br#"{"error":{"message":"dup"},"error":{"message":"later"}}"#,
    ];
    for body in bodies {
        let (error, bytes, _) = fetch_error("generativelanguage.googleapis.com", 400, body, "application/json").await;
        assert_eq!(error.kind, ErrorKind::InvalidRequest, "{}", String::from_utf8_lossy(body));
        assert!(!error.message.is_empty());
        assert_eq!(bytes, body);
    }
    // Deep nesting beyond serde_json's recursion limit, and JSON-in-message twenty levels deep.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let error = LlmApiError::parse(
        reqwest_llm_retry::Provider::Gemini,
        http::StatusCode::BAD_REQUEST,
        &Default::default(),
        deep.as_bytes(),
    );
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    let mut nested = r#"{"error":{"message":"innermost"}}"#.to_owned();
    for _ in 0..20 {
        nested = serde_json::json!({ "error": { "message": nested } }).to_string();
    }
    let error = LlmApiError::parse(
        reqwest_llm_retry::Provider::OpenAi,
        http::StatusCode::BAD_GATEWAY,
        &Default::default(),
        nested.as_bytes(),
    );
    assert!(!error.message.is_empty() && error.message.len() <= 2048);
}

#[tokio::test]
async fn gemini_array_wrapped_errors_are_unwrapped() {
    let body = br#"[{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}}]"#;
    let (error, bytes, requests) =
        fetch_error("generativelanguage.googleapis.com", 429, body, "application/json").await;
    assert_eq!((error.kind, error.retryable, requests), (ErrorKind::QuotaExceeded, false, 1));
    assert_eq!(error.error_type.as_deref(), Some("RESOURCE_EXHAUSTED"));
    assert_eq!(error.message, "Resource has been exhausted (e.g. check quota).");
    assert_eq!(bytes, body);
}

#[tokio::test]
async fn json_inside_a_message_is_followed() {
    // A proxy wraps Gemini's per-day quota error in its own 500.
    let inner = r#"{"error":{"code":429,"message":"Quota exceeded for quota metric 'Generate Content API requests per day'","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel"}]}]}}"#;
    let body =
        serde_json::json!({ "error": { "message": format!("upstream error: {inner}"), "code": 500 } }).to_string();
    let error = LlmApiError::parse(
        reqwest_llm_retry::Provider::Gemini,
        http::StatusCode::TOO_MANY_REQUESTS,
        &Default::default(),
        body.as_bytes(),
    );
    assert_eq!(error.kind, ErrorKind::QuotaExceeded);
    assert!(error.message.starts_with("Quota exceeded for quota metric"), "{}", error.message);
    let (error, bytes, _) =
        fetch_error("generativelanguage.googleapis.com", 429, body.as_bytes(), "application/json").await;
    assert_eq!((error.kind, error.retryable), (ErrorKind::QuotaExceeded, false));
    assert_eq!(bytes, body.as_bytes());
}

#[tokio::test]
async fn non_utf8_bodies_are_read_lossily() {
    // A Latin-1 proxy page, and invalid UTF-8 inside a JSON string.
    let latin1 = b"<html><head><title>Fehler 503: Dienst nicht verf\xfcgbar</title></head></html>";
    let (error, bytes, _) = fetch_error("api.mistral.ai", 503, latin1, "text/html; charset=iso-8859-1").await;
    assert_eq!(error.message, "Fehler 503: Dienst nicht verf\u{fffd}gbar");
    assert_eq!((error.kind, bytes.as_slice()), (ErrorKind::Overloaded, &latin1[..]));

    let json = b"{\"error\":{\"message\":\"bad \xff\xfe byte\",\"type\":\"invalid_request_error\"}}";
    let (error, bytes, _) = fetch_error("api.openai.com", 400, json, "application/json").await;
    assert_eq!(error.message, "bad \u{fffd}\u{fffd} byte");
    assert_eq!((error.error_type.as_deref(), bytes.as_slice()), (Some("invalid_request_error"), &json[..]));

    let binary: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let (error, bytes, _) = fetch_error("api.openai.com", 500, &binary, "application/octet-stream").await;
    assert!(error.message.len() <= 2048 && !error.message.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
    assert_eq!(bytes, binary);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn gzip_bodies_reach_the_caller_as_reqwest_would_deliver_them() {
    let json =
        br#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","code":"rate_limit_exceeded"}}"#;
    let compressed = gzip(json);
    let server = MockServer::start().await;
    let template = ResponseTemplate::new(429)
        .insert_header("content-encoding", "gzip")
        .insert_header("retry-after-ms", "10")
        .set_body_raw(compressed.clone(), "application/json");
    Mock::given(any()).respond_with(template).mount(&server).await;
    let url = format!("http://api.openai.com:{}/v1/chat/completions", server.address().port());

    for decode in [true, false] {
        let builder = || reqwest::Client::builder().resolve("api.openai.com", *server.address()).gzip(decode);
        // `date` is the server's clock, which may tick between the two requests.
        let without_date = |headers: &http::HeaderMap| {
            let mut headers = headers.clone();
            headers.remove(http::header::DATE);
            headers
        };
        let bare = builder().build().unwrap().get(&url).send().await.unwrap();
        let (bare_status, bare_headers) = (bare.status(), without_date(bare.headers()));
        let bare_bytes = bare.bytes().await.unwrap();

        let response = client_from(builder(), fast().max_retries(1).build()).get(&url).send().await.unwrap();
        let headers = without_date(response.headers());
        assert_eq!((response.status(), &headers), (bare_status, &bare_headers), "decode: {decode}");
        let error = response.llm_error().unwrap().clone();
        assert_eq!((error.kind, error.attempts), (ErrorKind::RateLimited, 2));
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes, bare_bytes, "decode: {decode}");
        if decode {
            assert_eq!(&bytes[..], json, "reqwest decoded it");
            assert_eq!(error.message, "Rate limit reached for gpt-4o", "parsed from the decoded body");
            assert_eq!(error.code.as_deref(), Some("rate_limit_exceeded"));
        } else {
            assert_eq!(bytes, compressed, "still compressed, byte for byte");
            assert_eq!(error.message, "Too Many Requests", "compressed bytes are not a message");
        }
    }
}

#[tokio::test]
async fn bodies_past_the_parse_limit_are_parsed_from_the_prefix_and_delivered_whole() {
    let mut body = br#"{"error":{"message":"first bytes decide","type":"server_error","padding":""#.to_vec();
    body.resize(body.len() + 300 * 1024, b'x');
    body.extend_from_slice(b"\"}}");
    let (error, bytes, requests) = fetch_error("api.openai.com", 500, &body, "application/json").await;
    assert_eq!((error.message.as_str(), error.error_type.as_deref()), ("first bytes decide", Some("server_error")));
    assert_eq!((bytes.len(), requests), (body.len(), 3));
    assert!(bytes == body, "every byte, in order");
}

/// A chunked body written in 37-byte chunks, so the prefix read ends inside,
/// at, and after frame boundaries.
#[tokio::test]
async fn every_parse_limit_hands_over_the_same_bytes() {
    let body: Vec<u8> = br#"{"error":{"message":"chunked","type":"api_error"}}"#
        .iter()
        .copied()
        .chain((0..2000u32).map(|i| b'a' + (i % 26) as u8))
        .collect();
    let served = body.clone();
    let server = RawServer::start(move |mut stream, _| {
        let body = served.clone();
        async move {
            read_head(&mut stream).await;
            write_head(&mut stream, 500, &["transfer-encoding: chunked", "content-type: application/json"]).await;
            for chunk in body.chunks(37) {
                let _ = stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await;
                let _ = stream.write_all(chunk).await;
                let _ = stream.write_all(b"\r\n").await;
                let _ = stream.flush().await;
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
        }
    })
    .await;
    for limit in [0, 1, 36, 37, 38, 74, 75, 1000, 2049, 64 * 1024] {
        let middleware = fast().max_retries(0).error_body_limit(limit).build();
        let response = client_to("api.anthropic.com", server.addr, middleware)
            .get(server.url("api.anthropic.com", "/"))
            .send()
            .await
            .unwrap();
        let error = response.llm_error().unwrap().clone();
        let (bytes, failure) = drain(response).await;
        assert!(failure.is_none(), "limit {limit}: {failure:?}");
        assert!(bytes == body, "limit {limit}: {} of {} bytes", bytes.len(), body.len());
        if limit >= 74 {
            assert_eq!(error.message, "chunked", "limit {limit}");
        } else {
            assert!(
                !error.message.is_empty() && error.message.len() <= limit.max(21),
                "limit {limit}: {:?}",
                error.message
            );
        }
    }
}

/// A server whose 500 sends `prefix` of a 100,000-byte body, then nothing for 5 s.
async fn stalled_500(prefix: &'static [u8]) -> RawServer {
    RawServer::start(move |mut stream, _| async move {
        read_head(&mut stream).await;
        write_head(&mut stream, 500, &["content-length: 100000", "content-type: application/json"]).await;
        let _ = stream.write_all(prefix).await;
        let _ = stream.flush().await;
        tokio::time::sleep(ms(5_000)).await;
    })
    .await
}

/// A 500 whose body starts, then stalls: the parse read ends when the
/// client's own timeout fires, and the caller sees the bytes that came and
/// the same timeout error.
#[tokio::test]
async fn a_stalled_body_ends_with_the_clients_timeout() {
    let prefix = br#"{"error":{"message":"slow upstream","type":"server_error"},"more":""#;
    let server = stalled_500(prefix).await;
    let url = server.url("api.openai.com", "/v1/chat/completions");
    for (name, builder) in [
        ("timeout", reqwest::Client::builder().timeout(ms(250))),
        ("read_timeout", reqwest::Client::builder().read_timeout(ms(250))),
    ] {
        let before = server.connections();
        let started = Instant::now();
        let builder = builder.resolve("api.openai.com", server.addr);
        let response = client_from(builder, fast().max_retries(1).build()).get(&url).send().await.unwrap();
        let took = started.elapsed();
        // The wall clock: reqwest's timeouts run on a real socket, which tokio's paused clock
        // would fire at once. The upper bound is a generous deadline against a hang.
        assert!(took >= ms(500) && took < ms(2_000), "{name}: two attempts of 250 ms, took {took:?}");
        assert_eq!(server.connections() - before, 2, "{name}: the 500 was retried");
        let error = response.llm_error().unwrap().clone();
        assert_eq!((error.kind, error.message.as_str(), error.attempts), (ErrorKind::ServerError, "slow upstream", 2));
        let (bytes, failure) = drain(response).await;
        assert_eq!(bytes, prefix, "{name}");
        assert!(failure.is_some_and(|e| e.is_timeout()), "{name}: the caller sees the timeout");
    }
}

/// The same stall with no client timeout at all: `error_body_timeout`
/// bounds the parse read, the error is judged from the bytes that came, and
/// the caller gets the response at once with those bytes first.
#[tokio::test]
async fn a_stalled_body_without_a_client_timeout_is_judged_after_error_body_timeout() {
    let prefix = br#"{"error":{"message":"slow upstream","type":"server_error"},"more":""#;
    let server = stalled_500(prefix).await;
    let middleware = fast().max_retries(0).error_body_timeout(ms(150)).build();
    let started = Instant::now();
    let mut response = client_to("api.openai.com", server.addr, middleware)
        .get(server.url("api.openai.com", "/v1/x"))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    // The wall clock, as above: the parse read waits on a real socket. The upper bound is a
    // generous deadline: without `error_body_timeout` the read would wait for the server.
    assert!(took >= ms(150) && took < ms(2_000), "returned after the parse read's timeout, took {took:?}");
    let error = response.llm_error().unwrap().clone();
    assert_eq!((error.kind, error.message.as_str()), (ErrorKind::ServerError, "slow upstream"));
    // The bytes read for parsing come first, then the body goes on from the server.
    let mut first = Vec::new();
    while first.len() < prefix.len() {
        first.extend_from_slice(&response.chunk().await.unwrap().expect("the replayed prefix"));
    }
    assert_eq!(first, prefix);
}

#[tokio::test]
async fn a_slow_but_steady_body_is_read_whole() {
    let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let server = RawServer::start(move |mut stream, _| async move {
        read_head(&mut stream).await;
        write_head(&mut stream, 529, &[&format!("content-length: {}", body.len()), "x-should-retry: false"]).await;
        for piece in body.chunks(8) {
            let _ = stream.write_all(piece).await;
            let _ = stream.flush().await;
            tokio::time::sleep(ms(15)).await;
        }
    })
    .await;
    let builder = reqwest::Client::builder().timeout(ms(2_000)).resolve("api.anthropic.com", server.addr);
    let response = client_from(builder, fast().max_retries(2).build())
        .get(server.url("api.anthropic.com", "/v1/messages"))
        .send()
        .await
        .unwrap();
    let error = response.llm_error().unwrap().clone();
    assert_eq!((error.kind, error.message.as_str(), error.retryable), (ErrorKind::Overloaded, "Overloaded", false));
    assert_eq!(response.bytes().await.unwrap(), &body[..]);
}
