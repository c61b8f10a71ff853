//! The model named in a URL path: Gemini and Vertex AI
//! (`…/models/{model}:generateContent`), Bedrock (`/model/{id}/converse`),
//! Azure OpenAI deployments (`/openai/deployments/{name}/chat/completions`).
//!
//! The path is searched as the URL holds it, percent-encoded; the model is
//! compared decoded, and a replacement is encoded the way its provider's own
//! clients send it.

use std::borrow::Cow;
use std::ops::Range;

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// A place in a URL path where a provider names the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathSite {
    /// The segment after `models`, up to its first `:` (the method):
    /// `/v1beta/models/gemini-2.5-pro:generateContent`,
    /// `…/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict`.
    GoogleModel,
    /// The segment after `model`, followed by the operation:
    /// `/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke`.
    BedrockModel,
    /// The segment after `deployments`, followed by the operation:
    /// `/openai/deployments/gpt-4o-prod/chat/completions`.
    AzureDeployment,
}

/// Bedrock model ids and ARNs travel with everything but the unreserved
/// characters encoded (`:` as `%3A`, `/` as `%2F`), as the AWS SDKs send them.
const BEDROCK: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A path segment's reserved characters, and `:`, which ends a Google model.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%')
    .add(b':');

impl PathSite {
    /// Every site, in the order a request of unknown provider is searched.
    #[cfg(test)]
    pub(crate) const ALL: [PathSite; 3] = [PathSite::GoogleModel, PathSite::BedrockModel, PathSite::AzureDeployment];

    /// The segment that comes before the model.
    fn marker(self) -> &'static str {
        match self {
            PathSite::GoogleModel => "models",
            PathSite::BedrockModel => "model",
            PathSite::AzureDeployment => "deployments",
        }
    }

    /// The byte range of the model, still encoded, in `path` (a URL's path).
    pub(crate) fn find(self, path: &str) -> Option<Range<usize>> {
        let mut segments = segments(path).peekable();
        while let Some((_, segment)) = segments.next() {
            if segment != self.marker() {
                continue;
            }
            let &(start, next) = segments.peek()?;
            let end = match self {
                PathSite::GoogleModel => position(next, b':').map(|colon| start + colon),
                // An operation must follow: `/model/{id}` alone names no call.
                PathSite::BedrockModel | PathSite::AzureDeployment => {
                    (path.len() > start + next.len()).then_some(start + next.len())
                }
            };
            if let Some(end) = end.filter(|&end| end > start) {
                return Some(start..end);
            }
        }
        None
    }

    /// `name`, encoded for this site.
    pub(crate) fn encode(self, name: &str) -> String {
        let set = match self {
            PathSite::BedrockModel => BEDROCK,
            PathSite::GoogleModel | PathSite::AzureDeployment => SEGMENT,
        };
        utf8_percent_encode(name, set).to_string()
    }
}

/// The model in an encoded path span, decoded; `None` when it does not
/// decode to UTF-8.
pub(crate) fn decode(encoded: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(encoded).decode_utf8().ok()
}

/// The path's segments with their byte offsets. A plain loop over a path
/// of a hundred bytes costs a third of `str::split`'s `memchr` per segment.
fn segments(path: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        let rest = path.get(from..)?;
        let end = position(rest, b'/').map(|slash| from + slash);
        start = end.map(|slash| slash + 1);
        Some((from, path.get(from..end.unwrap_or(path.len()))?))
    })
}

/// The first `byte` in `text`.
fn position(text: &str, byte: u8) -> Option<usize> {
    text.bytes().position(|b| b == byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_site_finds_its_model_and_nothing_else() {
        use PathSite::*;
        let cases: &[(PathSite, &str, Option<&str>)] = &[
            (GoogleModel, "/v1beta/models/gemini-2.5-pro:generateContent", Some("gemini-2.5-pro")),
            (GoogleModel, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", Some("gemini-2.5-flash")),
            (
                GoogleModel,
                "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:generateContent",
                Some("gemini-2.0-flash-001"),
            ),
            (
                GoogleModel,
                "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict",
                Some("claude-sonnet-4@20250514"),
            ),
            // A project called `models` is not the model; the one after `models/` with a method is.
            (GoogleModel, "/v1/projects/models/locations/l/publishers/google/models/m:predict", Some("m")),
            (GoogleModel, "/v1beta/models/gemini-2.5-pro", None),
            (GoogleModel, "/v1beta/models/:generateContent", None),
            (GoogleModel, "/v1beta/tunedModels/mine:generateContent", None),
            (GoogleModel, "/v1beta/openai/chat/completions", None),
            (
                BedrockModel,
                "/model/anthropic.claude-3-5-haiku-20241022-v1:0/invoke",
                Some("anthropic.claude-3-5-haiku-20241022-v1:0"),
            ),
            (
                BedrockModel,
                "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-sonnet-4-v1%3A0/converse-stream",
                Some(
                    "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-sonnet-4-v1%3A0",
                ),
            ),
            (BedrockModel, "/model/meta.llama3-70b/", Some("meta.llama3-70b")),
            (BedrockModel, "/model/meta.llama3-70b", None),
            (BedrockModel, "/model//invoke", None),
            (BedrockModel, "/openai/v1/chat/completions", None),
            (AzureDeployment, "/openai/deployments/gpt-4o-prod/chat/completions", Some("gpt-4o-prod")),
            (AzureDeployment, "/openai/deployments/gpt-4o-prod", None),
            (AzureDeployment, "/openai/v1/chat/completions", None),
            (AzureDeployment, "/openai/deployments", None),
        ];
        for &(site, path, want) in cases {
            let got = site.find(path).map(|span| &path[span]);
            assert_eq!(got, want, "{site:?} in {path}");
        }
    }

    #[test]
    fn segments_are_cut_at_every_slash() {
        let cut = |path| segments(path).collect::<Vec<_>>();
        assert_eq!(cut("/a/bc/"), [(0, ""), (1, "a"), (3, "bc"), (6, "")]);
        assert_eq!(cut(""), [(0, "")]);
        assert_eq!(cut("a"), [(0, "a")]);
    }

    #[test]
    fn names_are_encoded_as_each_provider_sends_them() {
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-v1:0";
        assert_eq!(
            PathSite::BedrockModel.encode(arn),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-sonnet-4-v1%3A0"
        );
        assert_eq!(PathSite::BedrockModel.encode("a b~c_d.e-f"), "a%20b~c_d.e-f");
        assert_eq!(PathSite::BedrockModel.encode("a@b+c=d"), "a%40b%2Bc%3Dd", "all but the unreserved, as SigV4 does");
        assert_eq!(PathSite::GoogleModel.encode("a@b+c=d"), "a@b+c=d");
        // Vertex AI's `@version` stays as Google's clients write it; `:` would end the model.
        assert_eq!(PathSite::GoogleModel.encode("claude-sonnet-4@20250514"), "claude-sonnet-4@20250514");
        assert_eq!(PathSite::GoogleModel.encode("a:b/c?d%"), "a%3Ab%2Fc%3Fd%25");
        assert_eq!(PathSite::AzureDeployment.encode("gpt 4o"), "gpt%204o");
        for site in PathSite::ALL {
            for name in [arn, "claude-sonnet-4@20250514", "gpt 4o/mini:latest", "modèle"] {
                assert_eq!(decode(&site.encode(name)).as_deref(), Some(name), "{site:?} round trip");
            }
        }
    }

    #[test]
    fn decoding_borrows_plain_names_and_refuses_broken_utf8() {
        assert!(matches!(decode("gemini-2.5-pro"), Some(Cow::Borrowed("gemini-2.5-pro"))));
        assert_eq!(decode("a%3A0").as_deref(), Some("a:0"));
        assert_eq!(decode("%FF"), None);
    }
}
