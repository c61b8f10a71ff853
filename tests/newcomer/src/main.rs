use reqwest_llm_retry::{LlmResponseExt, LlmRetryMiddleware};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client =
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).with(LlmRetryMiddleware::default()).build();
    let body = serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hello"}]});
    let resp = client.post("https://api.anthropic.com/v1/messages").json(&body).send().await?;
    if let Some(err) = resp.llm_error() {
        eprintln!("{} {:?} after {} attempts: {}", err.provider, err.kind, err.attempts, err.message);
        eprintln!("fix: {}", err.fix());
    }
    Ok(())
}
