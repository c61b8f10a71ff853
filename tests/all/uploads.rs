//! Streamed uploads: resent on retry when they declare a size within the
//! limit (multipart uploads as rig and async-openai build them), sent once
//! otherwise, and byte for byte either way.

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use reqwest_llm_retry::{ErrorKind, LlmResponseExt, mock};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

use crate::support::*;

/// One second of "audio": bytes that are not all alike, so a reordering shows.
fn audio() -> Vec<u8> {
    (0..48_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect()
}

/// A transcription form as async-openai 0.43 builds one from bytes in
/// memory: the file is a stream part (`Part::stream`) over a sized body,
/// so the form knows its length and reqwest sets `Content-Length`.
fn transcription_form(audio: Vec<u8>) -> Form {
    Form::new()
        .text("model", "whisper-1")
        .part("file", Part::stream(reqwest::Body::from(audio)).file_name("speech.mp3"))
        .text("response_format", "json")
}

/// The same audio as an unsized stream, as async-openai builds a form from a file path.
fn streamed_form(audio: Vec<u8>) -> Form {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = audio.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let stream = futures_stream(chunks);
    Form::new()
        .text("model", "whisper-1")
        .part("file", Part::stream(reqwest::Body::wrap_stream(stream)).file_name("speech.mp3"))
}

/// A scripted 503 overload, then a transcription.
async fn overloaded_then_ok(server: &MockServer) -> mock::Sequence {
    let script = mock::Sequence::new()
        .then(mock::openai::overloaded().with_header("retry-after-ms", "5"))
        .then(json(200, r#"{"text":"hello"}"#));
    Mock::given(any()).respond_with(script.clone()).mount(server).await;
    script
}

#[tokio::test]
async fn a_multipart_upload_that_meets_a_503_is_resent_with_identical_bytes() {
    let server = MockServer::start().await;
    let script = overloaded_then_ok(&server).await;
    let audio = audio();
    let response = client(&server, fast().build())
        .post(url(&server, OPENAI, "/v1/audio/transcriptions"))
        .multipart(transcription_form(audio.clone()))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.retry_stats().unwrap().attempts, 2);
    assert_eq!(script.hits(), 2, "the 503, then the resent upload");
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].body, requests[1].body, "the server receives the same bytes each time");
    assert_eq!(requests[0].headers["content-type"], requests[1].headers["content-type"], "same boundary");
    let declared: usize = requests[1].headers["content-length"].to_str().unwrap().parse().unwrap();
    assert_eq!(requests[1].body.len(), declared);
    let body = &requests[1].body;
    assert!(body.windows(audio.len()).any(|w| w == audio), "the audio, whole and in order");
}

#[tokio::test]
async fn an_upload_without_a_length_is_sent_once_and_its_error_still_parsed() {
    let server = MockServer::start().await;
    let script = overloaded_then_ok(&server).await;
    let audio = audio();
    let response = client(&server, fast().build())
        .post(url(&server, OPENAI, "/v1/audio/transcriptions"))
        .multipart(streamed_form(audio.clone()))
        .send()
        .await
        .unwrap();

    let error = response.llm_error().expect("the 503 is parsed");
    assert_eq!((error.kind, error.attempts, error.retryable), (ErrorKind::Overloaded, 1, true));
    assert_eq!(script.hits(), 1, "a stream of unknown size cannot be resent");
    let requests = server.received_requests().await.unwrap();
    assert!(requests[0].headers.get("content-length").is_none());
    assert!(requests[0].body.windows(audio.len()).any(|w| w == audio), "sent whole");
}

#[tokio::test]
async fn an_upload_over_the_limit_or_with_the_limit_at_zero_is_sent_once() {
    for limit in [1024, 0] {
        let server = MockServer::start().await;
        let script = overloaded_then_ok(&server).await;
        let response = client(&server, fast().upload_buffer_limit(limit).build())
            .post(url(&server, OPENAI, "/v1/audio/transcriptions"))
            .multipart(transcription_form(audio()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.llm_error().unwrap().attempts, 1, "limit {limit}");
        assert_eq!(script.hits(), 1, "limit {limit}");
        let requests = server.received_requests().await.unwrap();
        let declared: usize = requests[0].headers["content-length"].to_str().unwrap().parse().unwrap();
        assert_eq!(requests[0].body.len(), declared, "sent whole");
    }
}

#[tokio::test]
async fn an_upload_is_resent_on_every_retry_and_the_last_error_is_returned() {
    let server = MockServer::start().await;
    always(&server, mock::openai::overloaded().with_header("retry-after-ms", "1").template()).await;
    let response = client(&server, fast().max_retries(2).build())
        .post(url(&server, OPENAI, "/v1/audio/transcriptions"))
        .multipart(transcription_form(audio()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.llm_error().unwrap().attempts, 3);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.body == requests[0].body));
}

#[tokio::test]
async fn an_upload_from_a_slow_producer_is_read_as_it_comes_and_resent() {
    let server = MockServer::start().await;
    let script = overloaded_then_ok(&server).await;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let producer = tokio::spawn(async move {
        for chunk in [&b"{\"input\":"[..], b"\"hi\"}"] {
            tokio::time::sleep(Duration::from_millis(5)).await;
            sender.send(Ok(chunk.to_vec())).await.unwrap();
        }
    });
    let body = reqwest::Body::wrap_stream(Receiver(receiver));
    let send = client(&server, fast().build())
        .post(url(&server, OPENAI, "/v1/embeddings"))
        .header("content-length", "14")
        .body(body)
        .send();
    let response = tokio::time::timeout(Duration::from_secs(10), send).await.expect("no hang").unwrap();
    producer.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(script.hits(), 2);
    let requests = server.received_requests().await.unwrap();
    assert!(requests.iter().all(|r| r.body == b"{\"input\":\"hi\"}"));
}

#[tokio::test]
async fn without_retries_an_upload_is_not_read_ahead() {
    // The producer sends the rest of the body only once the server has the
    // request head: reading the body before sending would wait for it.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (head_seen, head_seen_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        assert!(read_head(&mut stream).await);
        head_seen.send(()).unwrap();
        let (mut tail, mut buf) = (Vec::new(), [0u8; 1024]);
        while !tail.ends_with(b"END") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client hung up");
            tail.extend_from_slice(&buf[..n]);
        }
        let body = br#"{"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}"#;
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
    });
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let producer = tokio::spawn(async move {
        sender.send(Ok(b"START".to_vec())).await.unwrap();
        head_seen_rx.await.unwrap();
        sender.send(Ok(b"END".to_vec())).await.unwrap();
    });
    let http = reqwest::Client::builder().no_proxy().resolve(OPENAI, addr).build().unwrap();
    let client = reqwest_middleware::ClientBuilder::new(http).with(fast().max_retries(0).build()).build();
    let send = client
        .post(format!("http://{OPENAI}:{}/v1/files", addr.port()))
        .header("content-length", "8")
        .body(reqwest::Body::wrap_stream(Receiver(receiver)))
        .send();

    let response =
        tokio::time::timeout(Duration::from_secs(5), send).await.expect("sent without reading ahead").unwrap();
    assert_eq!(response.llm_error().unwrap().kind, ErrorKind::Overloaded);
    producer.await.unwrap();
    server.await.unwrap();
}
