use std::error::Error;

use reqwest_llm_retry::mock::wiremock::{Mock, matchers::path};
use reqwest_llm_retry::{LlmApiError, LlmResponseExt, LlmRetryMiddleware, Provider, mock};
use reqwest_middleware::ClientWithMiddleware;

/// The code under test: one question, one answer (`base_url`: `https://api.anthropic.com`).
async fn ask(client: &ClientWithMiddleware, base_url: &str, question: &str) -> Result<String, Box<dyn Error>> {
    let body = serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 256,
        "messages": [{"role": "user", "content": question}]});
    let response = client.post(format!("{base_url}/v1/messages")).json(&body).send().await?.error_for_llm_status()?;
    let reply: serde_json::Value = response.json().await?;
    Ok(reply["content"][0]["text"].as_str().unwrap_or_default().to_owned())
}

/// `ask`s a mock Anthropic that plays `script`, through the middleware, under the real host name.
async fn ask_mock(script: &mock::Sequence) -> Result<String, Box<dyn Error>> {
    let (server, client) = mock::start(Provider::Anthropic).await;
    Mock::given(path("/v1/messages")).respond_with(script.clone()).mount(&server).await;
    let retry = LlmRetryMiddleware::builder().base_delay(std::time::Duration::from_millis(10)).build();
    let client = reqwest_middleware::ClientBuilder::new(client.build()?).with(retry).build();
    ask(&client, &mock::base_url(Provider::Anthropic, &server), "Capital of France?").await
}

#[tokio::test]
async fn an_overload_is_retried() {
    let script = mock::Sequence::new().then(mock::anthropic::overloaded()).then(mock::anthropic::ok("Paris."));
    assert_eq!(ask_mock(&script).await.unwrap(), "Paris.");
    assert_eq!(script.hits(), 2, "one 529, then the retry that succeeded");
}

#[tokio::test]
async fn no_credit_is_returned_at_once() {
    let failure = mock::anthropic::credit_balance_too_low();
    let script = mock::Sequence::new().then_always(&failure); // `&`: `failure` is used below
    let err = ask_mock(&script).await.unwrap_err();
    failure.assert_matches(LlmApiError::find_in(err.as_ref()).expect("an LlmApiError in the chain"));
    assert_eq!(script.hits(), 1, "sent once: retrying cannot add credit");
}
