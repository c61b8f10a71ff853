//! Keeping credentials out of messages, logs, `Debug` and `Display`.
//!
//! The middleware never logs headers or URLs. What it does show is the
//! provider's message, and servers echo what they were sent (a key in a
//! "not valid" message, a proxy quoting the request URL), so every credential
//! the request carried is blanked out of the message before anyone sees it.

use reqwest::Request;

const REDACTED: &str = "[REDACTED]";

/// Headers that carry credentials, in lower case.
const SECRET_HEADERS: &[&str] =
    &["authorization", "proxy-authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie"];

/// Query parameters that carry credentials.
const SECRET_PARAMS: &[&str] = &["key", "api_key", "api-key", "apikey", "access_token", "token"];

/// Values shorter than this are not treated as secrets: blanking every "a"
/// in a message would destroy it and protect nothing.
const MIN_SECRET_LEN: usize = 6;

/// The credentials one request carries.
#[derive(Default)]
pub(crate) struct Secrets(Vec<String>);

// Deliberately opaque: the whole point is that these never print.
impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

impl Secrets {
    pub(crate) fn of(request: &Request) -> Secrets {
        let mut found = Vec::new();
        for name in SECRET_HEADERS {
            for value in request.headers().get_all(*name) {
                let Ok(value) = value.to_str() else { continue };
                // `Bearer sk-…`: the token alone is what a server would echo.
                if let Some((_, token)) = value.split_once(' ') {
                    found.push(token.trim().to_owned());
                }
                found.push(value.trim().to_owned());
            }
        }
        for (name, value) in request.url().query_pairs() {
            if SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p)) {
                found.push(value.into_owned());
            }
        }
        found.retain(|s| s.len() >= MIN_SECRET_LEN);
        // Longest first, so a token inside its own `Bearer …` header value is covered too.
        found.sort_unstable_by_key(|s| std::cmp::Reverse(s.len()));
        found.dedup();
        Secrets(found)
    }

    /// `text` with every known secret, and every `key=…` value, blanked out.
    /// A text cut short (a message clipped to its length limit, a body read
    /// up to the parse limit) can end with the start of a secret: that is
    /// blanked too.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.0 {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        for secret in &self.0 {
            let cut = (MIN_PARTIAL_LEN..secret.len())
                .rev()
                .find(|&n| secret.is_char_boundary(n) && out.ends_with(&secret[..n]));
            if let Some(n) = cut {
                out.truncate(out.len() - n);
                out.push_str(REDACTED);
            }
        }
        redact_key_params(&out)
    }
}

/// The shortest start of a secret blanked at the end of a cut text.
const MIN_PARTIAL_LEN: usize = 4;

/// A transport error as reqwest made it, its URL's credentials blanked:
/// reqwest prints the URL in `Display` and `Debug`, and a Gemini URL carries
/// `?key=`. The error itself is kept, so `is_timeout()`/`is_connect()` still work.
pub(crate) fn redact_error(mut error: reqwest_middleware::Error) -> reqwest_middleware::Error {
    if let reqwest_middleware::Error::Reqwest(inner) = &mut error
        && let Some(url) = inner.url_mut()
    {
        redact_url(url);
    }
    error
}

/// Blanks the password and every secret query value, leaving the rest as it was.
fn redact_url(url: &mut reqwest::Url) {
    if url.password().is_some() {
        let _ = url.set_password(Some(REDACTED));
    }
    let Some(query) = url.query() else { return };
    let is_secret = |pair: &str| {
        let name = pair.split('=').next().unwrap_or_default();
        SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p))
    };
    if !query.split('&').any(is_secret) {
        return;
    }
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret(pair) => format!("{name}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect();
    url.set_query(Some(&redacted.join("&")));
}

/// `…?key=AIza…&alt=sse` → `…?key=[REDACTED]&alt=sse`, for keys we were not told about.
pub(crate) fn redact_key_params(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find("key=") {
        let value_start = search + found + "key=".len();
        let value_end = text[value_start..]
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace() || c == ',' || c == ')')
            .map_or(text.len(), |i| value_start + i);
        if value_end > value_start {
            out.push_str(&text[copied..value_start]);
            out.push_str(REDACTED);
            copied = value_end;
        }
        search = value_end.max(value_start);
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_header_and_query_secrets() {
        let client = reqwest::Client::new();
        let request = client
            .post("https://generativelanguage.googleapis.com/v1beta/models/x:generateContent?key=AIzaSECRET123&alt=sse")
            .header("authorization", "Bearer sk-proj-SECRET456")
            .header("x-api-key", "sk-ant-SECRET789")
            .header("api-key", "short")
            .build()
            .unwrap();
        let secrets = Secrets::of(&request);
        let message =
            "bad key sk-proj-SECRET456 or sk-ant-SECRET789 at /v1?key=AIzaSECRET123 (Bearer sk-proj-SECRET456) short";
        let redacted = secrets.redact(message);
        for secret in ["SECRET456", "SECRET789", "SECRET123"] {
            assert!(!redacted.contains(secret), "{redacted}");
        }
        assert!(redacted.ends_with("short"), "short values are left alone: {redacted}");
        assert_eq!(format!("{secrets:?}"), "Secrets(4 redacted)");
    }

    #[test]
    fn every_copy_of_a_secret_is_blanked() {
        let request = reqwest::Client::new()
            .post("https://api.openai.com/v1/x")
            .header("x-api-key", "sk-ant-SECRET789")
            .build()
            .unwrap();
        let echoed = "sk-ant-SECRET789 is invalid; key sk-ant-SECRET789, again sk-ant-SECRET789";
        assert_eq!(Secrets::of(&request).redact(echoed), "[REDACTED] is invalid; key [REDACTED], again [REDACTED]");
    }

    #[test]
    fn cookies_and_proxy_credentials_are_secrets() {
        let request = reqwest::Client::new()
            .post("https://api.openai.com/v1/x")
            .header("cookie", "session=COOKIE-SECRET-1")
            .header("proxy-authorization", "Basic UFJPWFktU0VDUkVU")
            .build()
            .unwrap();
        let redacted = Secrets::of(&request).redact("sent session=COOKIE-SECRET-1 via UFJPWFktU0VDUkVU");
        assert_eq!(redacted, "sent [REDACTED] via [REDACTED]");
    }

    #[test]
    fn the_start_of_a_cut_secret_is_blanked() {
        let secrets = Secrets(vec!["sk-proj-SECRET456".to_owned()]);
        assert_eq!(secrets.redact("bad key sk-proj-SEC"), "bad key [REDACTED]");
        assert_eq!(secrets.redact("ends with sk-"), "ends with sk-", "too short to tell");
        assert_eq!(secrets.redact("sk-proj-SECRET456 sk-proj"), "[REDACTED] [REDACTED]");
    }

    #[test]
    fn urls_lose_their_credentials_and_keep_the_rest() {
        let mut url = reqwest::Url::parse("https://u:pw@host/v1?alt=sse&key=AIza%2Bx&API_KEY=k2&q=a+b").unwrap();
        redact_url(&mut url);
        assert_eq!(url.as_str(), "https://u:%5BREDACTED%5D@host/v1?alt=sse&key=[REDACTED]&API_KEY=[REDACTED]&q=a+b");
        let mut plain = reqwest::Url::parse("https://host/v1?alt=sse").unwrap();
        redact_url(&mut plain);
        assert_eq!(plain.as_str(), "https://host/v1?alt=sse");
    }

    #[test]
    fn key_params_are_blanked_even_when_unknown() {
        assert_eq!(redact_key_params("GET /v1?key=abc&alt=sse"), "GET /v1?key=[REDACTED]&alt=sse");
        assert_eq!(redact_key_params("api_KEY=xyz"), "api_KEY=[REDACTED]");
        assert_eq!(redact_key_params("key="), "key=");
        assert_eq!(redact_key_params("no secrets, monkey business"), "no secrets, monkey business");
        assert_eq!(redact_key_params("é key=ü"), "é key=[REDACTED]");
        // The value ends where a URL, a quote or prose ends it: the rest of the message stays.
        for end in ["&alt=sse", "\" is bad", "' is bad", " is bad", "\tis bad", ", is bad", ") is bad"] {
            assert_eq!(redact_key_params(&format!("key=abc{end}")), format!("key=[REDACTED]{end}"), "{end:?}");
        }
    }
}
