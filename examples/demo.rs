//! Offline demo: a local mock of Anthropic, OpenAI and Gemini (wiremock on
//! 127.0.0.1, reached under the providers' real host names) shows what the
//! middleware retries, how long it waits, and what it gives up on at once.
//!
//! Run: `cargo run --example demo`

use std::time::{Duration, Instant};

use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware, Provider, mock};
use wiremock::matchers::header;
use wiremock::{Mock, MockServer};

/// One scripted conversation with a provider.
struct Scenario {
    title: &'static str,
    provider: Provider,
    path: &'static str,
    script: mock::Sequence,
}

fn scenarios() -> Vec<Scenario> {
    let ms = Duration::from_millis;
    vec![
        Scenario {
            title: "Anthropic overloaded twice (529), then answers",
            provider: Provider::Anthropic,
            path: "/v1/messages",
            script: mock::Sequence::new()
                .then_times(2, mock::anthropic::overloaded())
                .then(mock::anthropic::ok("Paris.")),
        },
        Scenario {
            title: "OpenAI rate limit (429, retry-after-ms: 300), then answers",
            provider: Provider::OpenAi,
            path: "/v1/chat/completions",
            script: mock::Sequence::new().then(mock::openai::rate_limited(ms(300))).then(mock::openai::ok("Paris.")),
        },
        Scenario {
            title: "OpenAI insufficient_quota (429): retrying cannot fix it",
            provider: Provider::OpenAi,
            path: "/v1/chat/completions",
            script: mock::Sequence::new().then_always(mock::openai::insufficient_quota()),
        },
        Scenario {
            title: "Gemini per-minute quota (429, RetryInfo 250 ms in the body), then answers",
            provider: Provider::Gemini,
            path: "/v1beta/models/gemini-2.5-flash:generateContent",
            script: mock::Sequence::new().then(mock::gemini::rate_limited(ms(250))).then(mock::gemini::ok("Paris.")),
        },
        Scenario {
            title: "Gemini per-day quota (429): returned at once",
            provider: Provider::Gemini,
            path: "/v1beta/models/gemini-2.5-flash:generateContent",
            script: mock::Sequence::new().then_always(mock::gemini::quota_per_day()),
        },
        Scenario {
            title: "Anthropic prompt too long (400): returned at once",
            provider: Provider::Anthropic,
            path: "/v1/messages",
            script: mock::Sequence::new().then_always(mock::anthropic::prompt_too_long(208_656, 200_000)),
        },
        Scenario {
            title: "Anthropic asks for 120 s (above max_retry_after): returned at once, still retryable",
            provider: Provider::Anthropic,
            path: "/v1/messages",
            script: mock::Sequence::new().then_always(mock::anthropic::rate_limited(Duration::from_secs(120))),
        },
    ]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Each retry is a tracing event; show them.
    tracing_subscriber::fmt().with_max_level(tracing::Level::WARN).with_target(false).init();

    let server = MockServer::start().await;
    let mut http = reqwest::Client::builder().no_proxy();
    for provider in [Provider::Anthropic, Provider::OpenAi, Provider::Gemini] {
        http = http.resolve(mock::host(provider), *server.address());
    }
    // Production defaults, but a 100 ms backoff base so the demo is quick.
    let client = reqwest_middleware::ClientBuilder::new(http.build()?)
        .with(LlmRetryMiddleware::builder().base_delay(Duration::from_millis(100)).build())
        .build();

    println!("A mock of Anthropic, OpenAI and Gemini listens on {}.\n", server.address());
    for (number, scenario) in scenarios().into_iter().enumerate() {
        let id = number.to_string();
        Mock::given(header("x-demo-scenario", id.as_str())).respond_with(scenario.script.clone()).mount(&server).await;
        println!("{}. {}", number + 1, scenario.title);
        let url = format!("{}{}", mock::base_url(scenario.provider, &server), scenario.path);
        let started = Instant::now();
        let response = client
            .post(&url)
            .header("x-demo-scenario", id.as_str())
            .header("x-api-key", "sk-demo-not-a-real-key")
            .body(r#"{"messages":[{"role":"user","content":"Capital of France?"}]}"#)
            .send()
            .await?;
        let elapsed = started.elapsed();
        let stats = response.retry_stats().copied().unwrap_or_default();
        println!(
            "   POST {url} -> {} after {} attempt(s), {:.0?} waited, {:.0?} in all",
            response.status(),
            stats.attempts,
            stats.waited,
            elapsed
        );
        match response.llm_error() {
            None => println!("   answer: {}", response.text().await?.chars().take(80).collect::<String>()),
            Some(err) => {
                println!("   {err}");
                println!(
                    "   kind {:?}, type {:?}, code {:?}, request id {:?}, retryable {}, retry_after {:?}",
                    err.kind, err.error_type, err.code, err.request_id, err.retryable, err.retry_after
                );
                println!("   fix: {}", err.fix());
            }
        }
        println!("   the mock saw {} request(s)\n", scenario.script.hits());
    }
    Ok(())
}
