//! Which part of a credential names it: what the rate-limit key hashes.
//!
//! Most credentials are the same bytes on every request (`Bearer sk-…`,
//! `x-api-key`, `api-key`, `x-goog-api-key`, `?key=`, a long-term Bedrock API
//! key), and the whole value names them. Two are not, and hashing them whole
//! would give every request a key of its own, so that nothing is paced and
//! the key map and a fleet's store gain one entry per request:
//!
//! - an AWS SigV4 `Authorization` header (Bedrock) carries a signature that
//!   changes with every request; its `Credential=AKID/date/region/service/aws4_request`
//!   names the access key and its scope;
//! - a short-term Bedrock API key (`Bearer bedrock-api-key-…`) is a presigned
//!   SigV4 URL in base64, new each time one is generated; its
//!   `X-Amz-Credential` names the access key that signed it.
//!
//! Both are named by the access key, the region and the service; the scope's
//! date is left out, so that a cooldown does not end at midnight UTC. A SigV4
//! signature and a short-term key of one access key are one credential.

use std::borrow::Cow;

/// The start of a SigV4 `Authorization` value (`AWS4-HMAC-SHA256`, `AWS4-ECDSA-P256-SHA256`).
const SIGV4: &[u8] = b"AWS4-";
/// The start of a short-term Bedrock API key, as a bearer token.
const BEDROCK_SHORT_TERM: &[u8] = b"Bearer bedrock-api-key-";
/// Marks the parts of an AWS identity in the hash, apart from any whole value.
const AWS_IDENTITY: &[u8] = b"aws4-identity";
/// Longest short-term key decoded (they are about 1.5 KiB): memory stays bounded.
const MAX_TOKEN: usize = 16 * 1024;

/// Calls `part` with each part of `value` that names the credential, in order:
/// the whole value, or the parts of an AWS identity. The common case costs two
/// prefix compares.
pub(super) fn identity(value: &[u8], mut part: impl FnMut(&[u8])) {
    // On the first byte first: `Bearer sk-…` is told from a short-term key by its eighth.
    let aws = match value.first() {
        Some(b'A') if value.starts_with(SIGV4) => sigv4_credential(value).map(Cow::Borrowed),
        Some(b'B') => value.strip_prefix(BEDROCK_SHORT_TERM).and_then(short_term_credential).map(Cow::Owned),
        _ => None,
    };
    match aws {
        Some(credential) => aws_identity(&credential, part),
        None => part(value),
    }
}

/// `AKID/date/region/service/aws4_request` as (access key, region, service):
/// the parts after the date. SigV4a's scope has no region: then the rest is
/// the service alone.
fn aws_identity(credential: &[u8], mut part: impl FnMut(&[u8])) {
    let mut fields = credential.splitn(3, |b| *b == b'/');
    let (access_key, _date, scope) = (fields.next(), fields.next(), fields.next());
    part(AWS_IDENTITY);
    part(access_key.unwrap_or_default());
    part(scope.unwrap_or_default());
}

/// The `Credential=` value of a SigV4 `Authorization` header.
fn sigv4_credential(value: &[u8]) -> Option<&[u8]> {
    const NAME: &[u8] = b"Credential=";
    let start = value.windows(NAME.len()).position(|w| w == NAME)? + NAME.len();
    let rest = &value[start..];
    let end = rest.iter().position(|b| *b == b',' || b.is_ascii_whitespace()).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|credential| !credential.is_empty())
}

/// The `X-Amz-Credential` of a short-term Bedrock API key (base64 of a
/// presigned URL), percent-decoded.
fn short_term_credential(token: &[u8]) -> Option<Vec<u8>> {
    const NAME: &[u8] = b"X-Amz-Credential=";
    if token.len() > MAX_TOKEN {
        return None;
    }
    let url = base64(token)?;
    let start = url.windows(NAME.len()).position(|w| w == NAME)? + NAME.len();
    let rest = &url[start..];
    let encoded = &rest[..rest.iter().position(|b| *b == b'&').unwrap_or(rest.len())];
    Some(percent_decode(encoded)).filter(|credential| !credential.is_empty())
}

/// Standard or URL-safe base64, padded or not; `None` on any other byte.
fn base64(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let (mut bits, mut count) = (0u32, 0u32);
    for &byte in text.iter().take_while(|b| **b != b'=') {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6 | u32::from(value)) & 0xFFFF;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

/// `%2F` as `/`; a `%` not followed by two hex digits is kept as is.
fn percent_decode(text: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let escaped = (text[i] == b'%').then(|| Some(hex(*text.get(i + 1)?)? * 16 + hex(*text.get(i + 2)?)?));
        match escaped.flatten() {
            Some(byte) => {
                out.push(byte as u8);
                i += 3;
            }
            None => {
                out.push(text[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(value: &str) -> Vec<String> {
        let mut parts = Vec::new();
        identity(value.as_bytes(), |part| parts.push(String::from_utf8_lossy(part).into_owned()));
        parts
    }

    /// A short-term Bedrock API key for `credential` (URL-encoded), as the token generators make it.
    fn short_term(credential: &str, signature: &str) -> String {
        let url = format!(
            "bedrock.amazonaws.com/?Action=CallWithBearerToken&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential={credential}&X-Amz-Date=20260101T000000Z&X-Amz-Expires=43200\
             &X-Amz-SignedHeaders=host&X-Amz-Signature={signature}&Version=1"
        );
        format!("Bearer bedrock-api-key-{}", encode(url.as_bytes()))
    }

    /// Standard base64, padded (for the tests' tokens only).
    fn encode(bytes: &[u8]) -> String {
        const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
            for i in 0..4 {
                let c = if i <= chunk.len() { ABC[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' };
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn a_credential_is_named_by_its_identity_not_its_signature() {
        let aws = |akid: &str, region: &str| vec!["aws4-identity".to_owned(), akid.to_owned(), region.to_owned()];
        let rows: &[(&str, Vec<String>)] = &[
            ("Bearer sk-proj-AAAA", vec!["Bearer sk-proj-AAAA".to_owned()]),
            (
                "Bearer ABSKQmVkcm9ja0FQSUtleS1sb25nLXRlcm0=",
                vec!["Bearer ABSKQmVkcm9ja0FQSUtleS1sb25nLXRlcm0=".to_owned()],
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
                aws("AKIDEXAMPLE", "us-east-1/bedrock/aws4_request"),
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260102/us-east-1/bedrock/aws4_request,SignedHeaders=host,Signature=00",
                aws("AKIDEXAMPLE", "us-east-1/bedrock/aws4_request"),
            ),
            (
                "AWS4-ECDSA-P256-SHA256 Credential=AKIDEXAMPLE/20260101/bedrock/aws4_request, SignedHeaders=host, Signature=30",
                aws("AKIDEXAMPLE", "bedrock/aws4_request"),
            ),
            // Not SigV4 after all: the whole value.
            (
                "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
                vec!["AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00".to_owned()],
            ),
            (
                "AWS4-HMAC-SHA256 Credential=, Signature=00",
                vec!["AWS4-HMAC-SHA256 Credential=, Signature=00".to_owned()],
            ),
            ("Bearer bedrock-api-key-!!!", vec!["Bearer bedrock-api-key-!!!".to_owned()]),
        ];
        for (value, expected) in rows {
            assert_eq!(&parts(value), expected, "{value}");
        }
        let token = short_term("AKIDEXAMPLE%2F20260101%2Fus-east-1%2Fbedrock%2Faws4_request", "abc");
        assert_eq!(parts(&token), aws("AKIDEXAMPLE", "us-east-1/bedrock/aws4_request"));
        let other = short_term("AKIDEXAMPLE%2F20260101%2Fus-east-1%2Fbedrock%2Faws4_request", "def");
        assert_ne!(token, other, "a new signature");
        assert_eq!(parts(&other), parts(&token), "the same identity");
        let no_credential = format!("Bearer bedrock-api-key-{}", encode(b"bedrock.amazonaws.com/?Action=x&Version=1"));
        assert_eq!(parts(&no_credential), [no_credential.as_str()]);
    }

    #[test]
    fn base64_and_percent_decoding() {
        for text in ["", "a", "ab", "abc", "abcd", "bedrock.amazonaws.com/?X-Amz-Credential=A%2FB&Version=1"] {
            assert_eq!(base64(encode(text.as_bytes()).as_bytes()).as_deref(), Some(text.as_bytes()), "{text}");
        }
        assert_eq!(base64(b"-_-_"), base64(b"+/+/"), "URL-safe alphabet");
        assert_eq!(base64(b"YWJj"), Some(b"abc".to_vec()), "unpadded");
        assert_eq!(base64(b"YW Jj"), None);
        assert_eq!(percent_decode(b"A%2FB%2f%zz%4"), b"A/B/%zz%4");
        let huge = format!("Bearer bedrock-api-key-{}", "A".repeat(MAX_TOKEN + 1));
        assert_eq!(parts(&huge), [huge.as_str()], "too long to decode: hashed whole");
    }
}
