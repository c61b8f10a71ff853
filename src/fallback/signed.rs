//! Requests whose signature covers their URL or body.
//!
//! AWS Signature Version 4 (and Google's V4, built on it) signs the path,
//! the query and a hash of the body. Changing the model in either makes the
//! signature wrong: the provider answers 403 `SignatureDoesNotMatch`, and
//! this middleware cannot sign again without the caller's credentials. Such
//! a request is never rewritten.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use url::Url;

/// `Authorization` schemes that sign the request (`AWS4-HMAC-SHA256`,
/// SigV4a's `AWS4-ECDSA-P256-SHA256`, `GOOG4-RSA-SHA256`, …), compared
/// ignoring ASCII case.
const SIGNING_SCHEMES: &[&str] = &["AWS4-", "GOOG4-"];

/// Query parameters of a presigned URL, compared ignoring ASCII case.
const SIGNATURE_PARAMETERS: &[&str] = &["X-Amz-Signature", "X-Goog-Signature"];

/// Whether the request carries a signature over its URL or body.
pub(crate) fn is_signed(url: &Url, headers: &HeaderMap) -> bool {
    let signed_header = headers.get_all(AUTHORIZATION).iter().any(|value| {
        let value = value.as_bytes();
        SIGNING_SCHEMES
            .iter()
            .any(|scheme| value.get(..scheme.len()).is_some_and(|v| v.eq_ignore_ascii_case(scheme.as_bytes())))
    });
    signed_header
        || url.query().is_some()
            && url.query_pairs().any(|(name, _)| SIGNATURE_PARAMETERS.iter().any(|p| name.eq_ignore_ascii_case(p)))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn signed(url: &str, authorization: Option<&str>) -> bool {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        is_signed(&Url::parse(url).unwrap(), &headers)
    }

    #[test]
    fn signatures_are_recognised_and_bearer_tokens_are_not() {
        let bedrock = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse";
        let sigv4 = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/bedrock/aws4_request, \
                     SignedHeaders=host;x-amz-date, Signature=abc";
        let cases: &[(&str, Option<&str>, bool)] = &[
            (bedrock, Some(sigv4), true),
            (bedrock, Some("aws4-hmac-sha256 Credential=x"), true),
            (bedrock, Some("AWS4-ECDSA-P256-SHA256 Credential=x"), true),
            (bedrock, Some("GOOG4-RSA-SHA256 Credential=x"), true),
            (&format!("{bedrock}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc"), None, true),
            (&format!("{bedrock}?x-amz-signature=abc"), None, true),
            (&format!("{bedrock}?X-Goog-Signature=abc"), None, true),
            // Bedrock API keys and every other provider's keys are bearer tokens: not signatures.
            (bedrock, Some("Bearer ABSKQmVkcm9ja0FQSUtleQ"), false),
            ("https://api.openai.com/v1/chat/completions", Some("Bearer sk-proj-123"), false),
            ("https://generativelanguage.googleapis.com/v1beta/models/g:generateContent?key=AIza", None, false),
            (bedrock, Some("AWS4"), false),
            (bedrock, None, false),
        ];
        for &(url, authorization, want) in cases {
            assert_eq!(signed(url, authorization), want, "{url} {authorization:?}");
        }
    }
}
