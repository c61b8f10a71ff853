use std::time::Duration;

use super::*;

const OPENAI: &str = "https://api.openai.com/v1/chat/completions";
const ANTHROPIC: &str = "https://api.anthropic.com/v1/messages";
const GEMINI: &str = "https://generativelanguage.googleapis.com";
const VERTEX: &str = "https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5/publishers";
const BEDROCK: &str = "https://bedrock-runtime.us-east-1.amazonaws.com";
const AZURE: &str = "https://my-resource.openai.azure.com/openai";

/// A POST with a bytes body and the headers a client sends.
fn post(url: &str, body: Option<&str>) -> Request {
    let mut builder = reqwest::Client::new()
        .post(url)
        .header("authorization", "Bearer sk-secret")
        .header("content-type", "application/json")
        .header("x-custom", "kept")
        .timeout(Duration::from_secs(7));
    if let Some(body) = body {
        builder = builder.body(body.to_owned());
    }
    builder.build().unwrap()
}

fn body_of(request: &Request) -> &[u8] {
    request.body().and_then(reqwest::Body::as_bytes).unwrap_or_default()
}

#[test]
fn each_provider_names_its_model_where_it_puts_it() {
    use Provider::*;
    let chat = r#"{"model":"m-body","messages":[]}"#;
    let contents = r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#;
    /// The provider, the URL, the body, and the model found or why not.
    type Case<'a> = (Provider, String, Option<&'a str>, Result<&'a str, Refusal>);
    let cases: &[Case<'_>] = &[
        (OpenAi, OPENAI.into(), Some(chat), Ok("m-body")),
        (Anthropic, ANTHROPIC.into(), Some(r#"{"max_tokens":9,"model":"claude-opus-4"}"#), Ok("claude-opus-4")),
        (Groq, "https://api.groq.com/openai/v1/chat/completions".into(), Some(chat), Ok("m-body")),
        (
            OpenRouter,
            "https://openrouter.ai/api/v1/chat/completions".into(),
            Some(r#"{"model":"anthropic/claude-sonnet-4"}"#),
            Ok("anthropic/claude-sonnet-4"),
        ),
        (Unknown, "https://llm-gateway.example/v1/chat/completions".into(), Some(chat), Ok("m-body")),
        // Only the provider's own sites: OpenAI names no model in its URL.
        (
            OpenAi,
            "https://api.openai.com/v1beta/models/g:generateContent".into(),
            Some(contents),
            Err(Refusal::NoModel),
        ),
        (
            Gemini,
            format!("{GEMINI}/v1beta/models/gemini-2.5-pro:generateContent?key=AIza"),
            Some(contents),
            Ok("gemini-2.5-pro"),
        ),
        (Gemini, format!("{GEMINI}/v1beta/openai/chat/completions"), Some(chat), Ok("m-body")),
        (
            VertexAi,
            format!("{VERTEX}/google/models/gemini-2.0-flash:streamGenerateContent?alt=sse"),
            Some(contents),
            Ok("gemini-2.0-flash"),
        ),
        (
            VertexAi,
            format!("{VERTEX}/anthropic/models/claude-sonnet-4@20250514:rawPredict"),
            Some(r#"{"anthropic_version":"vertex-2023-10-16"}"#),
            Ok("claude-sonnet-4@20250514"),
        ),
        (
            Bedrock,
            format!("{BEDROCK}/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse"),
            Some(r#"{"messages":[]}"#),
            Ok("anthropic.claude-3-5-haiku-20241022-v1:0"),
        ),
        (
            Bedrock,
            format!(
                "{BEDROCK}/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-sonnet-4-v1%3A0/invoke"
            ),
            Some("{}"),
            Ok("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-v1:0"),
        ),
        (Bedrock, format!("{BEDROCK}/openai/v1/chat/completions"), Some(chat), Ok("m-body")),
        // Azure routes by the deployment, whatever the body says.
        (
            AzureOpenAi,
            format!("{AZURE}/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"),
            Some(chat),
            Ok("gpt-4o-prod"),
        ),
        (AzureOpenAi, format!("{AZURE}/v1/chat/completions?api-version=preview"), Some(chat), Ok("m-body")),
        // Nothing to find.
        (OpenAi, OPENAI.into(), None, Err(Refusal::NoModel)),
        (OpenAi, OPENAI.into(), Some(r#"{"model":"a""#), Err(Refusal::NoModel)),
        (OpenAi, OPENAI.into(), Some(r#"{"model":"a","model":"b"}"#), Err(Refusal::NoModel)),
        (Gemini, format!("{GEMINI}/v1beta/models/gemini-2.5-pro"), None, Err(Refusal::NoModel)),
    ];
    for (provider, url, body, want) in cases {
        let request = post(url, *body);
        let got = locate(*provider, &request).map(|found| found.model().to_owned());
        assert_eq!(got.as_deref().map_err(|refusal| *refusal), *want, "{provider} {url}");
        // The cheap read agrees wherever a rewrite would find the model.
        if let Ok(model) = want {
            assert_eq!(peek_model(*provider, &request, usize::MAX).as_deref(), Some(*model), "{url}");
        }
    }
}

#[test]
fn signed_and_streamed_requests_are_refused() {
    let url = format!("{BEDROCK}/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse");
    let mut signed = post(&url, Some("{}"));
    signed.headers_mut().insert(
        "authorization",
        HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/bedrock/aws4_request, Signature=ab",
        ),
    );
    assert_eq!(locate(Provider::Bedrock, &signed).err(), Some(Refusal::Signed));
    let presigned = post(&format!("{url}?X-Amz-Signature=ab"), Some("{}"));
    assert_eq!(locate(Provider::Bedrock, &presigned).err(), Some(Refusal::Signed));
    // What a rewrite found prints without the request's credentials.
    let gemini = post(&format!("{GEMINI}/v1beta/models/gemini-2.5-pro:generateContent?key=AIzaSecret"), Some("{}"));
    let found = format!("{:?}", locate(Provider::Gemini, &gemini).unwrap());
    assert!(found.contains("gemini-2.5-pro") && !found.contains("Secret") && !found.contains("sk-secret"), "{found}");
    // Reading the model for a label is still fine.
    assert_eq!(peek_model(Provider::Bedrock, &signed, 0).as_deref(), Some("anthropic.claude-3-5-haiku-20241022-v1:0"));

    // A body that is not bytes in memory: the caller's stream, read only once.
    let stream = http_body_util::Full::new(bytes::Bytes::from_static(br#"{"model":"a"}"#));
    let streamed = reqwest::Client::new().post(OPENAI).body(reqwest::Body::wrap(stream)).build().unwrap();
    assert_eq!(locate(Provider::OpenAi, &streamed).err(), Some(Refusal::Stream));
    assert_eq!(peek_model(Provider::OpenAi, &streamed, usize::MAX), None);
}

/// `request` rewritten to `model`, checked to differ from it in URL and body only.
fn rewritten(provider: Provider, request: &Request, model: &str) -> Request {
    let copy = locate(provider, request).unwrap().rewrite(model).unwrap();
    assert_eq!(copy.method(), request.method());
    assert_eq!(copy.version(), request.version());
    assert_eq!(copy.timeout(), request.timeout());
    let others = |request: &Request| {
        let headers = request.headers().iter().filter(|(name, _)| **name != CONTENT_LENGTH);
        headers.map(|(name, value)| (name.clone(), value.clone())).collect::<Vec<_>>()
    };
    assert_eq!(others(&copy), others(request), "every header but the length is kept");
    copy
}

#[test]
fn a_json_body_changes_in_the_model_value_only() {
    let body = "{\n  \"max_tokens\": 1024,\n  \"model\" : \"claude-opus-4\",\n  \"system\": \"caf\\u00e9\"\n}";
    let request = post(ANTHROPIC, Some(body));
    let copy = rewritten(Provider::Anthropic, &request, "claude-sonnet-4");
    assert_eq!(
        std::str::from_utf8(body_of(&copy)).unwrap(),
        "{\n  \"max_tokens\": 1024,\n  \"model\" : \"claude-sonnet-4\",\n  \"system\": \"caf\\u00e9\"\n}"
    );
    assert_eq!(copy.url(), request.url());
    assert_eq!(body_of(&request), body.as_bytes(), "the original is untouched");
    assert!(copy.headers().get(CONTENT_LENGTH).is_none(), "no length was set, none is added");

    let mut sized = post(ANTHROPIC, Some(body));
    sized.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let copy = rewritten(Provider::Anthropic, &sized, "claude-sonnet-4");
    assert_eq!(copy.headers()[CONTENT_LENGTH], (body.len() + 2).to_string().as_str());
    assert_eq!(body_of(&copy).len(), body.len() + 2);
}

#[test]
fn a_url_changes_in_the_model_segment_only() {
    let cases: &[(Provider, String, &str, String)] = &[
        (
            Provider::Gemini,
            format!("{GEMINI}/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse&key=AIza"),
            "gemini-2.5-flash",
            format!("{GEMINI}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=AIza"),
        ),
        (
            Provider::VertexAi,
            format!("{VERTEX}/anthropic/models/claude-opus-4@20250514:rawPredict"),
            "claude-sonnet-4@20250514",
            format!("{VERTEX}/anthropic/models/claude-sonnet-4@20250514:rawPredict"),
        ),
        (
            Provider::Bedrock,
            format!("{BEDROCK}/model/anthropic.claude-opus-4-v1:0/converse-stream"),
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-v1:0",
            format!(
                "{BEDROCK}/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-sonnet-4-v1%3A0/converse-stream"
            ),
        ),
        (
            Provider::AzureOpenAi,
            format!("{AZURE}/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"),
            "gpt-4o-mini-prod",
            format!("{AZURE}/deployments/gpt-4o-mini-prod/chat/completions?api-version=2024-10-21"),
        ),
    ];
    let body = r#"{"model":"in-the-body","contents":[]}"#;
    for (provider, url, to, want) in cases {
        let request = post(url, Some(body));
        let copy = rewritten(*provider, &request, to);
        assert_eq!(copy.url().as_str(), want);
        assert_eq!(body_of(&copy), body.as_bytes(), "the body is not the model's place here");
        assert_eq!(locate(*provider, &copy).unwrap().model(), *to, "the copy names the new model");
    }
}

#[test]
fn the_cheap_read_borrows_and_stops_at_its_limit() {
    let messages = "x".repeat(10_000);
    let body = format!(r#"{{"messages":[{{"content":"{messages}"}}],"model":"gpt-4o"}}"#);
    let request = post(OPENAI, Some(&body));
    assert!(matches!(peek_model(Provider::OpenAi, &request, usize::MAX), Some(Cow::Borrowed("gpt-4o"))));
    assert_eq!(peek_model(Provider::OpenAi, &request, 1_000), None, "the model lies past the limit");
    let escaped = post(OPENAI, Some(r#"{"model":"gpt\u002d4o"}"#));
    assert_eq!(peek_model(Provider::OpenAi, &escaped, 100).as_deref(), Some("gpt-4o"));
    let gemini = post(&format!("{GEMINI}/v1beta/models/gemini-2.5-pro:generateContent"), Some(&body));
    assert!(matches!(peek_model(Provider::Gemini, &gemini, 0), Some(Cow::Borrowed("gemini-2.5-pro"))));
}

#[test]
fn the_kit_finds_a_model_anywhere() {
    let url = |s: &str| Url::parse(s).unwrap();
    let bedrock = url(&format!("{BEDROCK}/model/anthropic.claude-opus-4-v1%3A0/invoke"));
    assert_eq!(model_in(Site::ANY, &bedrock, Some(b"{}")).as_deref(), Some("anthropic.claude-opus-4-v1:0"));
    let openai = url(OPENAI);
    assert_eq!(model_in(Site::ANY, &openai, Some(br#"{"model":"gpt-4o"}"#)).as_deref(), Some("gpt-4o"));
    assert_eq!(model_in(Site::ANY, &openai, Some(b"{")), None);
    assert_eq!(model_in(Site::ANY, &openai, None), None);
}
