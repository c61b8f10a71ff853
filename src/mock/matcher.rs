//! Matching requests by the model they name, to script a model fallback:
//! model A overloaded, model B answers.

use std::fmt;

use wiremock::{Match, Request};

use crate::fallback::{Site, model_in};

/// A wiremock matcher: the request names model `name` where a provider puts
/// it, as the middleware reads it.
///
/// The model is looked for in the URL first, decoded (Gemini and Vertex AI
/// `models/{model}:`, Bedrock `/model/{id}/`, Azure `/deployments/{name}/`),
/// then in a JSON body's top-level `"model"` (OpenAI, Anthropic, the
/// OpenAI-compatible hosts, Azure's `/openai/v1/`). A `"model"` nested in
/// the body, or a body that is not valid JSON, matches nothing.
///
/// Mount one mock per model; with [`fallback`](crate::LlmRetryMiddlewareBuilder::fallback)
/// configured, the request for the first model gets its failure, and the
/// fallback's request its answer:
///
/// ```
/// use reqwest_llm_retry::mock::{self, Sequence};
/// use reqwest_llm_retry::Provider;
/// use wiremock::Mock;
/// use wiremock::matchers::{method, path};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (server, client) = mock::start(Provider::Anthropic).await;
/// let opus = Sequence::new().then(mock::anthropic::overloaded());
/// let sonnet = Sequence::new().then(mock::anthropic::ok("Paris."));
/// for (model, script) in [("claude-opus-4-1", &opus), ("claude-sonnet-4-5", &sonnet)] {
///     Mock::given(method("POST"))
///         .and(path("/v1/messages"))
///         .and(mock::model(model))
///         .respond_with(script.clone())
///         .mount(&server)
///         .await;
/// }
///
/// let url = format!("{}/v1/messages", mock::base_url(Provider::Anthropic, &server));
/// let client = client.build().unwrap();
/// let ask = |model: &str| client.post(&url).body(format!(r#"{{"model":"{model}","max_tokens":64}}"#)).send();
/// assert_eq!(ask("claude-opus-4-1").await.unwrap().status(), 529);
/// assert_eq!(ask("claude-sonnet-4-5").await.unwrap().status(), 200);
/// assert_eq!((opus.hits(), sonnet.hits()), (1, 1));
/// # }
/// ```
pub fn model(name: impl Into<String>) -> ModelMatcher {
    ModelMatcher { name: name.into() }
}

/// Matches requests naming one model: see [`model`].
#[derive(Clone, PartialEq, Eq)]
pub struct ModelMatcher {
    name: String,
}

impl ModelMatcher {
    /// The model this matcher matches.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for ModelMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model({:?})", self.name)
    }
}

impl Match for ModelMatcher {
    fn matches(&self, request: &Request) -> bool {
        model_in(Site::ANY, &request.url, Some(&request.body)).is_some_and(|model| model == self.name)
    }
}
