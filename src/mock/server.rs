//! Pointing a client at the mock while the code under test keeps the real host.
//!
//! The middleware (and often the code under test) decides by host name, so a
//! test that rewrites `https://api.anthropic.com` to `http://127.0.0.1:PORT`
//! tests a different program. Instead the client resolves the provider's
//! host to the mock server: only the scheme and the port change.

use wiremock::MockServer;

use crate::Provider;

/// The host name the kit uses for `provider`: its API host, or a
/// representative one for providers served from many hosts (Azure resources,
/// Vertex AI and Bedrock regions). [`Provider::from_host`] maps each back to
/// `provider`; [`Provider::Unknown`] gets `llm-gateway.example`.
///
/// ```
/// use reqwest_llm_retry::{Provider, mock};
/// assert_eq!(mock::host(Provider::Anthropic), "api.anthropic.com");
/// assert_eq!(mock::host(Provider::AzureOpenAi), "my-resource.openai.azure.com");
/// ```
pub fn host(provider: Provider) -> &'static str {
    match provider {
        Provider::Anthropic => "api.anthropic.com",
        Provider::OpenAi => "api.openai.com",
        Provider::Gemini => "generativelanguage.googleapis.com",
        Provider::VertexAi => "us-central1-aiplatform.googleapis.com",
        Provider::AzureOpenAi => "my-resource.openai.azure.com",
        Provider::Bedrock => "bedrock-runtime.us-east-1.amazonaws.com",
        Provider::Groq => "api.groq.com",
        Provider::Mistral => "api.mistral.ai",
        Provider::DeepSeek => "api.deepseek.com",
        Provider::OpenRouter => "openrouter.ai",
        Provider::XAi => "api.x.ai",
        Provider::Together => "api.together.xyz",
        Provider::Fireworks => "api.fireworks.ai",
        Provider::Cerebras => "api.cerebras.ai",
        Provider::Perplexity => "api.perplexity.ai",
        Provider::Unknown => "llm-gateway.example",
    }
}

/// The base URL the code under test should use: `http://{host}:{port}`, the
/// provider's [`host`] on the mock server's port, without a path (append
/// `/v1/messages`, `/v1/chat/completions`, … as the real client does).
///
/// Requests to it reach the mock only through a client from
/// [`client_builder`] or [`start`], which resolve the host to the server.
pub fn base_url(provider: Provider, server: &MockServer) -> String {
    format!("http://{}:{}", host(provider), server.address().port())
}

/// A `reqwest::ClientBuilder` that resolves the provider's [`host`] to
/// `server`, and uses no proxy, so that its requests reach the mock and
/// nothing else. Add settings (timeouts, default headers) before `build()`.
///
/// Only the provider's host is resolved; a request to any other host would
/// leave the machine. For a bot that calls several providers, chain
/// `.resolve(mock::host(other), *server.address())`.
pub fn client_builder(provider: Provider, server: &MockServer) -> reqwest::ClientBuilder {
    reqwest::Client::builder().no_proxy().resolve(host(provider), *server.address())
}

/// Starts a `MockServer` (on 127.0.0.1) and returns it with a
/// [`client_builder`] for `provider`.
///
/// ```
/// use reqwest_llm_retry::{Provider, mock};
/// use wiremock::{Mock, matchers::any};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (server, client) = mock::start(Provider::OpenAi).await;
/// Mock::given(any()).respond_with(mock::openai::insufficient_quota()).mount(&server).await;
/// let url = format!("{}/v1/chat/completions", mock::base_url(Provider::OpenAi, &server));
/// assert!(url.starts_with("http://api.openai.com:"));
/// let response = client.build().unwrap().post(url).send().await.unwrap();
/// assert_eq!(response.status(), 429);
/// # }
/// ```
pub async fn start(provider: Provider) -> (MockServer, reqwest::ClientBuilder) {
    let server = MockServer::start().await;
    let builder = client_builder(provider, &server);
    (server, builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_maps_back_to_its_provider() {
        for &provider in Provider::ALL {
            assert_eq!(Provider::from_host(host(provider)), provider, "{provider}");
        }
    }
}
