//! Which requests share rate-limit state: the key, from provider, host, port
//! and a fingerprint of the credential.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use http::HeaderName;
use reqwest::Request;
use siphasher::sip128::{Hasher128, SipHasher13};
use url::Position;

use super::credential::identity;
use crate::provider::Provider;

/// Headers whose values identify the credential; `HeaderName`s, so that a
/// comparison is a tag compare rather than a string compare.
static CREDENTIAL_HEADERS: [HeaderName; 4] = [
    http::header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("x-goog-api-key"),
    HeaderName::from_static("api-key"),
];

/// The fingerprint key. Not a secret (the fingerprint only has to differ per
/// credential and agree across a fleet); it makes the hash keyed so a
/// fingerprint cannot be looked up in a table of unkeyed hashes.
const FINGERPRINT_KEY: [u8; 16] = *b"llm-retry-cooldn";

/// Which requests share rate-limit state: the same provider, host, port and credential.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    /// A hash of all four, for the in-process map.
    pub(super) id: u64,
    /// Whose limits these are: what a request's tokens count against, and the metrics of its waits.
    pub(crate) provider: Provider,
    /// The store's form, `"{provider}:{host}:{port}:{fingerprint}"`; made only
    /// when there is a store to ask, because this runs before every request.
    text: Option<String>,
}

impl Key {
    /// The key of `request` to `provider`; with its text form when `with_text`.
    pub(crate) fn of(provider: Provider, request: &Request, with_text: bool) -> Key {
        let url = request.url();
        // The in-process id needs no keyed hash (it never leaves the
        // process), only a cheap one: this runs before every request. The
        // URL up to its path is scheme, host and port in one slice.
        let mut id = FoldHash::new(provider as u64);
        id.write(url[..Position::BeforePath].as_bytes());
        let mut id = id.finish();
        for (name, value) in request.headers() {
            if let Some(which) = credential_header(name) {
                // Summed, so the order the headers were added in does not matter;
                // seeded by which header it is (0 and 1 seed the others).
                let mut pair = FoldHash::new(which as u64 + 2);
                identity(value.as_bytes(), |part| pair.write(part));
                id = id.wrapping_add(pair.finish());
            }
        }
        if url.query().is_some() {
            id = id.wrapping_add(query_keys_hash(url));
        }
        let text = with_text.then(|| {
            let host = url.host_str().unwrap_or_default();
            key_text(provider, host, url.port_or_known_default().unwrap_or_default(), request)
        });
        Key { id, provider, text }
    }

    /// The store's form of the key.
    pub(crate) fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    #[cfg(test)]
    pub(super) fn test(id: u64) -> Key {
        Key::test_for(Provider::OpenAi, id)
    }

    #[cfg(test)]
    pub(super) fn test_for(provider: Provider, id: u64) -> Key {
        Key { id, provider, text: Some(format!("test:{id}")) }
    }
}

/// Which of [`CREDENTIAL_HEADERS`] a header is, if any.
#[inline(never)]
fn credential_header(name: &HeaderName) -> Option<usize> {
    // A match on the name's text compares lengths first: most headers are
    // turned away without comparing a byte.
    match name.as_str() {
        "authorization" => Some(0),
        "x-api-key" => Some(1),
        "x-goog-api-key" => Some(2),
        "api-key" => Some(3),
        _ => None,
    }
}

/// The hash of the `key=` query values (Gemini's API keys); 0 without any.
#[cold]
fn query_keys_hash(url: &reqwest::Url) -> u64 {
    url.query_pairs().filter(|(name, _)| name == "key").fold(0, |sum, (_, value)| {
        let mut hash = FoldHash::new(1);
        hash.write(value.as_bytes());
        sum.wrapping_add(hash.finish())
    })
}

/// Every value of each [`CREDENTIAL_HEADERS`] name in that order, then
/// `key=` query values, as (name, value), each value as the parts that name
/// the credential ([`identity`]): what a store's fingerprint hashes.
fn for_each_credential(request: &Request, mut f: impl FnMut(&[u8], &[u8])) {
    for name in &CREDENTIAL_HEADERS {
        for value in request.headers().get_all(name) {
            identity(value.as_bytes(), |part| f(name.as_str().as_bytes(), part));
        }
    }
    if request.url().query().is_some() {
        for (name, value) in request.url().query_pairs().filter(|(name, _)| name == "key") {
            f(name.as_bytes(), value.as_bytes());
        }
    }
}

/// A fast 64-bit hash (multiply-fold, as in FxHash) for in-process ids.
struct FoldHash(u64);

impl FoldHash {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn new(seed: u64) -> Self {
        FoldHash(seed.wrapping_mul(Self::K))
    }

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }

    // One copy of the loop, however many callers: this is on every request's path.
    #[inline(never)]
    fn write(&mut self, bytes: &[u8]) {
        let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(word(chunk));
        }
        let rest = chunks.remainder();
        // The last eight bytes, overlapping the last chunk, rather than a copy of the rest.
        let tail = match bytes.len() {
            0 => 0,
            len if len >= 8 && !rest.is_empty() => word(&bytes[len - 8..]),
            _ => rest.iter().rev().fold(0, |tail, &b| tail << 8 | u64::from(b)),
        };
        // The length keeps ("ab", "c") apart from ("a", "bc").
        self.add(tail ^ (bytes.len() as u64) << 56);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `"{provider}:{host}:{port}:{fingerprint}"`, the fingerprint a keyed
/// SipHash-1-3 of the credential; the format is shared by a fleet through
/// its store, so it never changes.
#[cold]
fn key_text(provider: Provider, host: &str, port: u16, request: &Request) -> String {
    let mut hasher = SipHasher13::new_with_key(&FINGERPRINT_KEY);
    for_each_credential(request, |name, value| {
        hasher.write(name);
        hasher.write(value);
    });
    let fingerprint = hasher.finish128().as_u128();
    format!("{}:{host}:{port}:{fingerprint:032x}", provider.name())
}

/// `"{provider}:{host:port}:{fingerprint}"` for a request: the key a store sees.
#[cfg(test)]
pub(crate) fn cooldown_key(provider: Provider, request: &Request) -> String {
    Key::of(provider, request, true).text.unwrap_or_default()
}

/// Keys are already hashes: the map only folds their well-mixed high bits
/// (a multiply's) into the low ones it indexes by.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

/// A map by key id.
pub(super) type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: &str, url: &str) -> Request {
        reqwest::Client::new().post(url).header("authorization", auth).build().unwrap()
    }

    #[test]
    fn keys_separate_credentials_hosts_and_providers_and_hide_the_key() {
        let a = cooldown_key(Provider::OpenAi, &request("Bearer sk-AAAA", "https://api.openai.com/v1/x"));
        let a2 = cooldown_key(Provider::OpenAi, &request("Bearer sk-AAAA", "https://api.openai.com/v1/y?alt=1"));
        let b = cooldown_key(Provider::OpenAi, &request("Bearer sk-BBBB", "https://api.openai.com/v1/x"));
        let c = cooldown_key(Provider::OpenAi, &request("Bearer sk-AAAA", "http://api.openai.com:8080/v1/x"));
        let d = cooldown_key(Provider::Anthropic, &request("Bearer sk-AAAA", "https://api.openai.com/v1/x"));
        assert_eq!(a, a2);
        assert!(a != b && a != c && a != d && b != c);
        assert!(a.starts_with("openai:api.openai.com:443:"), "{a}");
        assert!(!a.contains("AAAA"));
        // The in-process ids separate the same requests.
        let id = |provider, auth, url| Key::of(provider, &request(auth, url), false).id;
        let a = id(Provider::OpenAi, "Bearer sk-AAAA", "https://api.openai.com/v1/x");
        assert_eq!(a, id(Provider::OpenAi, "Bearer sk-AAAA", "https://api.openai.com/v1/y?alt=1"));
        let others = [
            id(Provider::OpenAi, "Bearer sk-BBBB", "https://api.openai.com/v1/x"),
            id(Provider::OpenAi, "Bearer sk-AAAA", "http://api.openai.com:8080/v1/x"),
            id(Provider::Anthropic, "Bearer sk-AAAA", "https://api.openai.com/v1/x"),
            id(Provider::Gemini, "", "https://api.openai.com/v1/x?key=AIza1"),
            id(Provider::Gemini, "", "https://api.openai.com/v1/x?key=AIza2"),
        ];
        for (i, other) in others.iter().enumerate() {
            assert!(*other != a && others[..i].iter().all(|o| o != other), "{i}");
        }
        let g1 = cooldown_key(Provider::Gemini, &request("", "https://x.example/v1?key=AIza1"));
        let g2 = cooldown_key(Provider::Gemini, &request("", "https://x.example/v1?key=AIza2"));
        assert!(g1 != g2 && !g1.contains("AIza"));
    }

    #[test]
    fn credential_headers_are_found_by_name() {
        for (which, name) in CREDENTIAL_HEADERS.iter().enumerate() {
            assert_eq!(credential_header(name), Some(which), "{name}");
        }
        for other in [http::header::CONTENT_TYPE, HeaderName::from_static("x-api-key2"), HeaderName::from_static("api")]
        {
            assert_eq!(credential_header(&other), None, "{other}");
        }
    }

    #[test]
    fn keys_keep_their_format_across_versions() {
        // A fleet sharing a Redis store may run several versions: keys must not change.
        let key = cooldown_key(Provider::OpenAi, &request("Bearer sk-AAAA", "http://api.openai.com:8080/v1/x"));
        assert_eq!(key, "openai:api.openai.com:8080:813f88be1d7d9385dc89f7235a444860");
        let key = cooldown_key(Provider::Gemini, &request("", "https://x.example/v1?key=AIza1"));
        assert_eq!(key, "gemini:x.example:443:cbe99358c5a5b5938c5afc2ce7eecc0e");
    }

    /// Both forms of the key (the in-process id and the store's text) of a
    /// request to Bedrock's host carrying `headers`.
    fn keys_with(headers: &[(&str, &str)]) -> (u64, String) {
        let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse";
        let request = headers
            .iter()
            .fold(reqwest::Client::new().post(url), |request, (name, value)| request.header(*name, *value))
            .build()
            .unwrap();
        (Key::of(Provider::Bedrock, &request, false).id, cooldown_key(Provider::Bedrock, &request))
    }

    #[test]
    fn each_credential_header_shares_a_key_per_value_and_never_across_values() {
        // Each header, and the start of a value of its form, before a secret.
        let forms = [
            ("x-api-key", "sk-ant-api03-"),
            ("api-key", "4f9a2c7e1b8d"),
            ("x-goog-api-key", "AIzaSy"),
            // A long-term Bedrock API key: a bearer token, the same bytes on every request.
            ("authorization", "Bearer ABSKQmVkcm9ja0FQSUtleS1"),
        ];
        let mut seen = Vec::new();
        for (name, form) in forms {
            let value = |secret: &str| format!("{form}{secret}");
            let first = keys_with(&[(name, &value("AAAA")), ("content-type", "application/json")]);
            assert_eq!(keys_with(&[(name, &value("AAAA"))]), first, "{name}: the same credential, one key");
            let other = keys_with(&[(name, &value("BBBB"))]);
            assert!(other.0 != first.0 && other.1 != first.1, "{name}: another credential, another key");
            assert!(!first.1.contains("AAAA"), "{name}: {}", first.1);
            seen.extend([first, other]);
        }
        for (i, key) in seen.iter().enumerate() {
            assert!(seen[..i].iter().all(|k| k.0 != key.0 && k.1 != key.1), "{i}: no two credentials share a key");
        }
    }

    #[test]
    fn one_secret_under_two_header_names_is_two_credentials() {
        let secret = "sk-same-secret-0123456789";
        let names = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];
        let keys: Vec<_> = names.iter().map(|name| keys_with(&[(name, secret)])).collect();
        for (i, key) in keys.iter().enumerate() {
            assert!(keys[..i].iter().all(|k| k.0 != key.0 && k.1 != key.1), "{}", names[i]);
        }
    }

    #[test]
    fn signed_requests_share_a_key_per_access_key_not_per_signature() {
        let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse";
        let signed = |akid: &str, date: &str, signature: &str| {
            format!(
                "AWS4-HMAC-SHA256 Credential={akid}/{date}/us-east-1/bedrock/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature={signature}"
            )
        };
        let keys = |auth: &str| {
            let request = request(auth, url);
            (Key::of(Provider::Bedrock, &request, false).id, cooldown_key(Provider::Bedrock, &request))
        };
        let first = keys(&signed("AKIDAAAA", "20260101", "9f86d081884c7d65"));
        assert_eq!(keys(&signed("AKIDAAAA", "20260101", "60303ae22b998861")), first, "another signature");
        assert_eq!(keys(&signed("AKIDAAAA", "20260102", "fd61a03af4f77d87")), first, "past midnight UTC");
        let other = keys(&signed("AKIDBBBB", "20260101", "9f86d081884c7d65"));
        assert!(other.0 != first.0 && other.1 != first.1, "another access key");
        assert!(!first.1.contains("AKID"), "{}", first.1);
    }
}
