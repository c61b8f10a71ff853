//! Section 4, what parsing costs: classifying one error response, and the
//! memory a 100 MB error body takes on its way through.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, StatusCode};
use reqwest_llm_retry::{ErrorKind, LlmApiError, LlmResponseExt, Provider};

use crate::clients::{Clients, Kind, Sent, request_body, url};
use crate::server::{Scenario, Server, Style};
use crate::stats::median;

/// One error response per provider, as each sends a rate limit.
fn samples() -> Vec<(&'static str, Provider, StatusCode, HeaderMap, &'static [u8])> {
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    };
    vec![
        (
            "OpenAI 429 (headers + JSON)",
            Provider::OpenAi,
            StatusCode::TOO_MANY_REQUESTS,
            headers(&[
                ("content-type", "application/json"),
                ("retry-after-ms", "153"),
                ("retry-after", "1"),
                ("x-ratelimit-limit-requests", "20"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "153ms"),
                ("x-request-id", "req_bench_openai"),
            ]),
            br#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-bench on requests per min (RPM): Limit 20, Used 20, Requested 1. Please try again in 153ms. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        ),
        (
            "Anthropic 429 (headers + JSON)",
            Provider::Anthropic,
            StatusCode::TOO_MANY_REQUESTS,
            headers(&[
                ("content-type", "application/json"),
                ("retry-after", "1"),
                ("anthropic-ratelimit-requests-limit", "100"),
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", "2030-03-26T20:00:07Z"),
                ("request-id", "req_011CBenchAnthropic"),
                ("x-should-retry", "true"),
            ]),
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization of 100 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."},"request_id":"req_011CBenchAnthropic"}"#,
        ),
        (
            "Gemini 429 (RetryInfo in the body)",
            Provider::Gemini,
            StatusCode::TOO_MANY_REQUESTS,
            headers(&[("content-type", "application/json")]),
            br#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 20, model: gemini-2.0-flash\nPlease retry in 0.153s.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaDimensions":{"location":"global","model":"gemini-2.0-flash"},"quotaValue":"20"}]},{"@type":"type.googleapis.com/google.rpc.Help","links":[{"description":"Learn more about Gemini API quotas","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"0.153s"}]}}"#,
        ),
    ]
}

/// Nanoseconds per `LlmApiError::parse`, per sample: the median of batches of ~5 ms.
pub fn parse_costs(batches: usize) -> Vec<(&'static str, usize, usize, f64)> {
    samples()
        .into_iter()
        .map(|(name, provider, status, headers, body)| {
            let parse =
                || LlmApiError::parse(black_box(provider), black_box(status), black_box(&headers), black_box(body));
            let error = parse();
            assert_eq!(error.kind, ErrorKind::RateLimited, "{name}: {error}");
            assert!(error.retryable && error.retry_after.is_some(), "{name}: {error:?}");
            // Size a batch to about 5 ms.
            let started = Instant::now();
            let mut per_batch = 0u32;
            while started.elapsed() < Duration::from_millis(5) {
                black_box(parse());
                per_batch += 1;
            }
            let mut ns: Vec<f64> = (0..batches)
                .map(|_| {
                    let started = Instant::now();
                    for _ in 0..per_batch {
                        black_box(parse());
                    }
                    started.elapsed().as_nanos() as f64 / f64::from(per_batch)
                })
                .collect();
            (name, headers.len(), body.len(), median(&mut ns))
        })
        .collect()
}

/// Peak resident memory of a child process that receives one 100 MB error body.
#[derive(Debug, Clone)]
pub struct Rss {
    pub kind: Kind,
    pub before_kib: u64,
    pub peak_kib: u64,
}

pub const BIG_BODY: usize = 100 * 1024 * 1024;

/// Runs one child per client; each reads the whole body chunk by chunk.
pub fn peak_rss(kinds: &[Kind]) -> Vec<Rss> {
    let server = Server::start(Scenario::BigError { bytes: BIG_BODY });
    let exe = std::env::current_exe().expect("current exe");
    kinds
        .iter()
        .map(|&kind| {
            let output = Command::new(&exe)
                .args(["--rss-child", child_name(kind), &server.port.to_string()])
                .output()
                .expect("run the RSS child");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "RSS child failed: {stdout} {}", String::from_utf8_lossy(&output.stderr));
            let numbers: Vec<u64> = stdout.split_whitespace().filter_map(|w| w.parse().ok()).collect();
            let [before_kib, peak_kib] = numbers[..] else { panic!("RSS child said {stdout:?}") };
            Rss { kind, before_kib, peak_kib }
        })
        .collect()
}

fn child_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Bare => "bare",
        Kind::Empty => "empty",
        _ => "ours",
    }
}

/// The child: one request, the body drained chunk by chunk, then `VmHWM` before and after.
pub fn rss_child(which: &str, port: u16) {
    let kind = match which {
        "bare" => Kind::Bare,
        "empty" => Kind::Empty,
        _ => Kind::Ours,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let clients = Clients::new();
        let url = url(Style::OpenAi, port);
        let body = request_body();
        // Warm up everything but the body: a connection, the client's buffers.
        let before = vm_hwm_kib();
        let Sent::Response(mut response) = clients.send(kind, Style::OpenAi, &url, &body, None).await else {
            panic!("request failed");
        };
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        if kind == Kind::Ours {
            let error = response.llm_error().expect("ours attaches the parsed error");
            assert_eq!(error.message, "400 Bad Request");
            assert_eq!(error.attempts, 1);
        }
        let mut received = 0usize;
        while let Some(chunk) = response.chunk().await.expect("chunk") {
            received += chunk.len();
        }
        assert_eq!(received, BIG_BODY, "the caller gets the whole body");
        println!("{before} {}", vm_hwm_kib());
    });
}

/// Peak resident set size so far, from `/proc/self/status`.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
