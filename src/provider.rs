//! Which LLM API a request is talking to.
//!
//! Every provider signals errors its own way (body shape, headers, which
//! statuses are transient), so the first thing the middleware needs is the
//! provider. It comes from the request's host by default; a gateway or a mock
//! is mapped with [`LlmRetryMiddlewareBuilder::host`](crate::LlmRetryMiddlewareBuilder::host)
//! or a per-request [`Provider`] extension.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// An LLM API provider, as far as its errors and retry rules go.
///
/// Detected from the request host with [`Provider::from_host`]; place one in the
/// request's extensions to override detection for that request:
///
/// ```
/// # async fn demo(client: reqwest_middleware::ClientWithMiddleware) {
/// use reqwest_llm_retry::Provider;
/// let resp = client
///     .post("http://localhost:8080/v1/chat/completions")
///     .with_extension(Provider::OpenAi)
///     .send()
///     .await;
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// Anthropic Messages API (`api.anthropic.com`).
    Anthropic,
    /// OpenAI API (`api.openai.com`).
    OpenAi,
    /// Google Gemini API on AI Studio (`generativelanguage.googleapis.com`).
    Gemini,
    /// Google Vertex AI (`aiplatform.googleapis.com`, `{region}-aiplatform.googleapis.com`).
    VertexAi,
    /// Azure OpenAI (`*.openai.azure.com`, `*.cognitiveservices.azure.com`, `*.services.ai.azure.com`).
    AzureOpenAi,
    /// AWS Bedrock Runtime (`bedrock-runtime.{region}.amazonaws.com`).
    Bedrock,
    /// Groq, OpenAI-compatible (`api.groq.com`).
    Groq,
    /// Mistral, OpenAI-compatible (`api.mistral.ai`).
    Mistral,
    /// DeepSeek, OpenAI-compatible (`api.deepseek.com`).
    DeepSeek,
    /// OpenRouter, OpenAI-compatible (`openrouter.ai`).
    OpenRouter,
    /// xAI, OpenAI-compatible (`api.x.ai`).
    XAi,
    /// Together AI, OpenAI-compatible (`api.together.xyz`, `api.together.ai`).
    Together,
    /// Fireworks AI, OpenAI-compatible (`api.fireworks.ai`).
    Fireworks,
    /// Cerebras, OpenAI-compatible (`api.cerebras.ai`).
    Cerebras,
    /// Perplexity, OpenAI-compatible (`api.perplexity.ai`).
    Perplexity,
    /// Any other host: the conservative generic policy applies.
    Unknown,
}

/// How a host name is matched against the built-in table.
#[derive(Debug, Clone, Copy)]
enum HostPattern {
    Exact(&'static str),
    /// Any host ending with this (the suffix includes its leading `.` or `-`).
    Suffix(&'static str),
    /// A host starting and ending with these, with something in between.
    Around(&'static str, &'static str),
}

impl HostPattern {
    fn matches(self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => host == h,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s),
            HostPattern::Around(p, s) => host.len() > p.len() + s.len() && host.starts_with(p) && host.ends_with(s),
        }
    }
}

/// The built-in host table. Adding a provider is adding rows here.
const HOSTS: &[(HostPattern, Provider)] = &[
    (HostPattern::Exact("api.anthropic.com"), Provider::Anthropic),
    (HostPattern::Exact("api.openai.com"), Provider::OpenAi),
    (HostPattern::Exact("generativelanguage.googleapis.com"), Provider::Gemini),
    (HostPattern::Exact("aiplatform.googleapis.com"), Provider::VertexAi),
    (HostPattern::Suffix("-aiplatform.googleapis.com"), Provider::VertexAi),
    (HostPattern::Suffix(".openai.azure.com"), Provider::AzureOpenAi),
    (HostPattern::Suffix(".cognitiveservices.azure.com"), Provider::AzureOpenAi),
    (HostPattern::Suffix(".services.ai.azure.com"), Provider::AzureOpenAi),
    (HostPattern::Around("bedrock-runtime.", ".amazonaws.com"), Provider::Bedrock),
    (HostPattern::Exact("api.groq.com"), Provider::Groq),
    (HostPattern::Exact("api.mistral.ai"), Provider::Mistral),
    (HostPattern::Exact("api.deepseek.com"), Provider::DeepSeek),
    (HostPattern::Exact("openrouter.ai"), Provider::OpenRouter),
    (HostPattern::Exact("api.x.ai"), Provider::XAi),
    (HostPattern::Exact("api.together.xyz"), Provider::Together),
    (HostPattern::Exact("api.together.ai"), Provider::Together),
    (HostPattern::Exact("api.fireworks.ai"), Provider::Fireworks),
    (HostPattern::Exact("api.cerebras.ai"), Provider::Cerebras),
    (HostPattern::Exact("api.perplexity.ai"), Provider::Perplexity),
];

impl Provider {
    /// Every provider, [`Provider::Unknown`] last.
    pub const ALL: &'static [Provider] = &[
        Provider::Anthropic,
        Provider::OpenAi,
        Provider::Gemini,
        Provider::VertexAi,
        Provider::AzureOpenAi,
        Provider::Bedrock,
        Provider::Groq,
        Provider::Mistral,
        Provider::DeepSeek,
        Provider::OpenRouter,
        Provider::XAi,
        Provider::Together,
        Provider::Fireworks,
        Provider::Cerebras,
        Provider::Perplexity,
        Provider::Unknown,
    ];

    /// The provider serving `host` (a host name, without scheme or path).
    ///
    /// Matching ignores ASCII case, a trailing dot and a `:port` suffix.
    ///
    /// ```
    /// use reqwest_llm_retry::Provider;
    /// assert_eq!(Provider::from_host("api.anthropic.com"), Provider::Anthropic);
    /// assert_eq!(Provider::from_host("us-central1-aiplatform.googleapis.com"), Provider::VertexAi);
    /// assert_eq!(Provider::from_host("my-res.openai.azure.com"), Provider::AzureOpenAi);
    /// assert_eq!(Provider::from_host("example.com"), Provider::Unknown);
    /// ```
    pub fn from_host(host: &str) -> Provider {
        Provider::from_normalized_host(&normalize_host(host))
    }

    /// [`Provider::from_host`] for a host already lower-case, without a port
    /// or a trailing dot: what `Url::host_str` gives, but for the dot.
    pub(crate) fn from_normalized_host(host: &str) -> Provider {
        HOSTS.iter().find(|(pattern, _)| pattern.matches(host)).map_or(Provider::Unknown, |&(_, provider)| provider)
    }

    /// A stable snake_case name, as used in logs and cooldown keys (`"anthropic"`,
    /// `"openai"`, `"vertex_ai"`, …): the same case as [`ErrorKind::name`](crate::ErrorKind::name).
    /// [`str::parse`] reads it back.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::OpenAi => "openai",
            Provider::Gemini => "gemini",
            Provider::VertexAi => "vertex_ai",
            Provider::AzureOpenAi => "azure_openai",
            Provider::Bedrock => "bedrock",
            Provider::Groq => "groq",
            Provider::Mistral => "mistral",
            Provider::DeepSeek => "deepseek",
            Provider::OpenRouter => "openrouter",
            Provider::XAi => "xai",
            Provider::Together => "together",
            Provider::Fireworks => "fireworks",
            Provider::Cerebras => "cerebras",
            Provider::Perplexity => "perplexity",
            Provider::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Anthropic => "Anthropic",
            Provider::OpenAi => "OpenAI",
            Provider::Gemini => "Gemini",
            Provider::VertexAi => "Vertex AI",
            Provider::AzureOpenAi => "Azure OpenAI",
            Provider::Bedrock => "Bedrock",
            Provider::Groq => "Groq",
            Provider::Mistral => "Mistral",
            Provider::DeepSeek => "DeepSeek",
            Provider::OpenRouter => "OpenRouter",
            Provider::XAi => "xAI",
            Provider::Together => "Together",
            Provider::Fireworks => "Fireworks",
            Provider::Cerebras => "Cerebras",
            Provider::Perplexity => "Perplexity",
            Provider::Unknown => "unknown provider",
        })
    }
}

/// Other names configuration files use for a provider, compared as [`fold`]ed.
const ALIASES: &[(&str, Provider)] = &[
    ("claude", Provider::Anthropic),
    ("google", Provider::Gemini),
    ("googleaistudio", Provider::Gemini),
    ("aistudio", Provider::Gemini),
    ("vertex", Provider::VertexAi),
    ("googlevertexai", Provider::VertexAi),
    ("azure", Provider::AzureOpenAi),
    ("awsbedrock", Provider::Bedrock),
    ("amazonbedrock", Provider::Bedrock),
    ("mistralai", Provider::Mistral),
    ("togetherai", Provider::Together),
    ("fireworksai", Provider::Fireworks),
];

/// Lower-case ASCII letters and digits only, so that `"Vertex AI"`,
/// `"vertex-ai"` and `"vertex_ai"` compare equal.
fn fold(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// Reads a provider from configuration: its [`name`](Provider::name) (`"vertex_ai"`),
/// its `Display` form (`"Vertex AI"`), either with `-`, `_`, spaces or dots in any
/// place and in any case (`"vertex-ai"`, `"OpenAI"`, `"x.ai"`), or a common alias
/// (`"claude"`, `"google"`, `"vertex"`, `"azure"`, `"aws-bedrock"`, `"together-ai"`, …).
///
/// ```
/// use reqwest_llm_retry::Provider;
/// assert_eq!("anthropic".parse(), Ok(Provider::Anthropic));
/// assert_eq!("Vertex AI".parse(), Ok(Provider::VertexAi));
/// assert_eq!("azure-openai".parse(), Ok(Provider::AzureOpenAi));
/// assert!("gpt-4o".parse::<Provider>().is_err());
/// ```
impl FromStr for Provider {
    type Err = ParseProviderError;

    fn from_str(text: &str) -> Result<Provider, ParseProviderError> {
        let folded = fold(text);
        let by_name =
            Provider::ALL.iter().copied().find(|p| fold(p.name()) == folded || fold(&p.to_string()) == folded);
        let by_alias = || ALIASES.iter().find(|(alias, _)| *alias == folded).map(|&(_, p)| p);
        by_name.or_else(by_alias).ok_or_else(|| ParseProviderError { input: clip(text) })
    }
}

/// The longest part of a rejected name kept in a [`ParseProviderError`].
const MAX_ECHO: usize = 64;

fn clip(text: &str) -> String {
    let end = text.char_indices().nth(MAX_ECHO).map_or(text.len(), |(i, _)| i);
    text[..end].to_owned()
}

/// A name [`Provider::from_str`] does not know; its `Display` lists the names it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseProviderError {
    /// What was given (its first 64 characters).
    input: String,
}

impl ParseProviderError {
    /// The name that was not recognised (its first 64 characters).
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for ParseProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown LLM provider {:?}; expected one of: ", self.input)?;
        for (i, provider) in Provider::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}", provider.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseProviderError {}

/// Lower-cases and strips a trailing dot and a `:port`; IPv6 literals keep
/// their colons. Borrows when the host is already in that form (the usual case).
pub(crate) fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = host.trim();
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// A user mapping from [`LlmRetryMiddlewareBuilder::host`](crate::LlmRetryMiddlewareBuilder::host):
/// an exact host, or `*.suffix` for every subdomain of `suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostMapping {
    Exact(String),
    Subdomains(String),
}

impl HostMapping {
    /// An exact host or `*.suffix`; a pattern given as a URL
    /// (`https://gw.internal/v1`) means its host.
    pub(crate) fn parse(pattern: &str) -> HostMapping {
        let host = host_part(pattern);
        match host.strip_prefix("*.") {
            Some(suffix) => HostMapping::Subdomains(format!(".{}", normalize_host(suffix))),
            None => HostMapping::Exact(normalize_host(host).into_owned()),
        }
    }

    /// `host` must already be normalized.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            HostMapping::Exact(h) => host == h,
            HostMapping::Subdomains(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}

/// The host of a pattern that may be written as a URL: without its scheme,
/// credentials, path, query or fragment (the port goes with `normalize_host`).
fn host_part(pattern: &str) -> &str {
    let pattern = pattern.trim();
    let rest = pattern.split_once("://").map_or(pattern, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.rsplit_once('@').map_or(authority, |(_, host)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_every_documented_host() {
        let table = [
            ("api.anthropic.com", Provider::Anthropic),
            ("API.Anthropic.COM.", Provider::Anthropic),
            ("api.anthropic.com:443", Provider::Anthropic),
            ("api.openai.com", Provider::OpenAi),
            ("generativelanguage.googleapis.com", Provider::Gemini),
            ("aiplatform.googleapis.com", Provider::VertexAi),
            ("europe-west4-aiplatform.googleapis.com", Provider::VertexAi),
            ("contoso.openai.azure.com", Provider::AzureOpenAi),
            ("contoso.cognitiveservices.azure.com", Provider::AzureOpenAi),
            ("bedrock-runtime.us-east-1.amazonaws.com", Provider::Bedrock),
            ("api.groq.com", Provider::Groq),
            ("api.mistral.ai", Provider::Mistral),
            ("api.deepseek.com", Provider::DeepSeek),
            ("openrouter.ai", Provider::OpenRouter),
            ("api.x.ai", Provider::XAi),
            ("api.together.xyz", Provider::Together),
            ("api.together.ai", Provider::Together),
            ("api.fireworks.ai", Provider::Fireworks),
            ("api.cerebras.ai", Provider::Cerebras),
            ("api.perplexity.ai", Provider::Perplexity),
            ("openai.azure.com", Provider::Unknown),
            ("evil-api.openai.com", Provider::Unknown),
            ("api.openai.com.evil.net", Provider::Unknown),
            ("-aiplatform.googleapis.com", Provider::Unknown),
            ("127.0.0.1", Provider::Unknown),
            ("[::1]:8080", Provider::Unknown),
            ("", Provider::Unknown),
        ];
        for (host, want) in table {
            assert_eq!(Provider::from_host(host), want, "{host}");
        }
    }

    #[test]
    fn names_are_unique_and_display_is_human() {
        let mut names: Vec<_> = Provider::ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Provider::ALL.len());
        assert_eq!(Provider::OpenAi.to_string(), "OpenAI");
        assert_eq!(Provider::AzureOpenAi.to_string(), "Azure OpenAI");
    }

    #[test]
    fn parses_every_name_it_prints_and_the_common_aliases() {
        for &provider in Provider::ALL {
            assert_eq!(provider.name().parse(), Ok(provider), "{provider:?}");
            assert_eq!(provider.to_string().parse(), Ok(provider), "{provider:?}");
            assert_eq!(provider.name().replace('_', "-").to_uppercase().parse(), Ok(provider), "{provider:?}");
        }
        let aliases = [
            ("claude", Provider::Anthropic),
            ("Google AI Studio", Provider::Gemini),
            ("vertex", Provider::VertexAi),
            ("azure", Provider::AzureOpenAi),
            ("aws-bedrock", Provider::Bedrock),
            ("x.ai", Provider::XAi),
            ("together_ai", Provider::Together),
        ];
        for (text, provider) in aliases {
            assert_eq!(text.parse(), Ok(provider), "{text}");
        }
        for text in ["", "gpt-4o", "open ai gateway", "anthropic2"] {
            let error = text.parse::<Provider>().unwrap_err();
            assert_eq!(error.input(), text);
            assert!(error.to_string().contains("vertex_ai, azure_openai"), "{error}");
        }
        let long = "x".repeat(10_000);
        assert_eq!(long.parse::<Provider>().unwrap_err().input().len(), MAX_ECHO, "bounded echo");
    }

    #[test]
    fn names_share_the_error_kinds_case() {
        use crate::ErrorKind;
        let snake = |name: &str| name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        assert!(Provider::ALL.iter().all(|p| snake(p.name())));
        assert!(snake(ErrorKind::ContextLengthExceeded.name()));
    }

    #[test]
    fn host_mappings_match_exact_and_subdomains() {
        let exact = HostMapping::parse("Gateway.Internal");
        assert!(exact.matches("gateway.internal"));
        assert!(!exact.matches("a.gateway.internal"));
        let wild = HostMapping::parse("*.corp.example");
        for (pattern, host, matches) in [
            ("https://gw.internal/v1", "gw.internal", true),
            ("http://GW.internal:8080/v1/chat?x=1", "gw.internal", true),
            ("https://user:pass@gw.internal", "gw.internal", true),
            ("gw.internal/v1", "gw.internal", true),
            ("https://*.corp.example/v1", "llm.corp.example", true),
            ("https://*.corp.example/v1", "corp.example", false),
            ("https://gw.internal/v1", "v1", false),
            ("[::1]:8080", "[::1]", true),
        ] {
            assert_eq!(HostMapping::parse(pattern).matches(host), matches, "{pattern} against {host}");
        }
        assert!(wild.matches("llm.corp.example"));
        assert!(wild.matches("a.b.corp.example"));
        assert!(!wild.matches("corp.example"));
        assert!(!wild.matches("evilcorp.example"));
    }
}
