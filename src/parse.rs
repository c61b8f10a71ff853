//! Reading a provider's error body into provider-neutral fields.
//!
//! Error envelopes differ: nested `error` (OpenAI, Groq, Azure), `type:"error"`
//! plus `error` (Anthropic), `google.rpc.Status` with typed `details`
//! (Gemini, Vertex), a flat `object:"error"` (Mistral), numeric codes
//! (OpenRouter), JSON arrays around the error (Gemini streaming and its
//! OpenAI-compatible endpoint), JSON inside the message (proxies), the type in
//! a header (Bedrock), and HTML or nothing at all from a gateway. The parser is
//! tolerant: it takes what it can find, never fails, and bounds what it keeps.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::retry_after::parse_go_duration;

/// Longest message kept, in bytes (cut on a char boundary).
const MAX_MESSAGE: usize = 2048;
/// Longest type or code string kept.
const MAX_CODE: usize = 128;
/// How many finer codes are kept (Gemini can list many quota violations).
const MAX_SUBCODES: usize = 16;
/// How deep JSON-in-a-message is followed (gemini-cli follows 10 levels).
const MAX_NESTING: usize = 10;

/// What could be read from an error body (and the headers that carry error data).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ParsedError {
    /// The provider's own type or status string (`rate_limit_error`, `RESOURCE_EXHAUSTED`).
    pub(crate) error_type: Option<String>,
    /// The finer code (`insufficient_quota`, `enforced_spend_limit_reached`, a quota id).
    pub(crate) code: Option<String>,
    /// Further machine-readable signals, matched by rules like `code`:
    /// Azure `innererror.code`, Gemini quota ids and `ErrorInfo.reason`,
    /// OpenRouter `metadata.limit_source`, Vertex legacy `errors[].reason`.
    pub(crate) subcodes: Vec<String>,
    /// Human-readable message.
    pub(crate) message: Option<String>,
    /// A request id found in the body (Anthropic `request_id`).
    pub(crate) request_id: Option<String>,
    /// Gemini `google.rpc.RetryInfo.retryDelay`.
    pub(crate) retry_delay: Option<Duration>,
}

impl ParsedError {
    /// Every code a rule's `code` pattern is matched against.
    pub(crate) fn codes(&self) -> impl Iterator<Item = &str> {
        self.code.iter().chain(self.subcodes.iter()).map(String::as_str)
    }

    fn push_subcode(&mut self, code: &str) {
        if self.subcodes.len() < MAX_SUBCODES && !code.is_empty() {
            self.subcodes.push(clip(code, MAX_CODE));
        }
    }
}

/// Parses a (possibly truncated) error body. `status` lets codes that merely
/// repeat the HTTP status (Azure `"429"`, OpenRouter `429`) be dropped.
pub(crate) fn parse_error_body(body: &[u8], status: u16) -> ParsedError {
    let mut parsed = ParsedError::default();
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => read_json(&value, status, &mut parsed, 0),
        Err(_) => read_text(body, status, &mut parsed),
    }
    parsed.message = parsed.message.map(|m| clean_message(&m));
    parsed
}

fn read_json(value: &Value, status: u16, out: &mut ParsedError, depth: usize) {
    let value = unwrap_arrays(value);
    let Some(top) = value.as_object() else {
        if let Some(text) = value.as_str() {
            out.message.get_or_insert_with(|| text.to_owned());
        }
        return;
    };
    let error = match top.get("error") {
        Some(Value::Object(inner)) => inner,
        Some(Value::String(text)) => {
            out.message.get_or_insert_with(|| text.clone());
            top
        }
        Some(other) if other.is_array() => match unwrap_arrays(other).as_object() {
            Some(inner) => inner,
            None => top,
        },
        _ => top,
    };
    read_error_object(error, status, out);
    if let Some(id) = top.get("request_id").and_then(Value::as_str) {
        out.request_id.get_or_insert_with(|| clip(id, MAX_CODE));
    }
    follow_nested_message(status, out, depth);
}

/// `[[{"error":…}]]` → `{"error":…}`; the first element is the one providers fill.
fn unwrap_arrays(mut value: &Value) -> &Value {
    for _ in 0..MAX_NESTING {
        match value.as_array().and_then(|items| items.first()) {
            Some(first) => value = first,
            None => break,
        }
    }
    value
}

fn read_error_object(error: &Map<String, Value>, status: u16, out: &mut ParsedError) {
    let text = |key: &str| error.get(key).and_then(Value::as_str).map(|s| clip(s, MAX_CODE));
    // Google puts its canonical code in `status`; everyone else in `type`.
    if out.error_type.is_none() {
        out.error_type = text("status").or_else(|| text("type"));
    }
    if out.code.is_none() {
        out.code = error.get("code").and_then(|code| code_string(code, status));
    }
    if out.message.is_none() {
        out.message = match error.get("message") {
            Some(Value::String(m)) => Some(m.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
    }
    // Anthropic: error.details.error_code (e.g. enforced_spend_limit_reached).
    if let Some(code) = error.get("details").and_then(|d| d.get("error_code")).and_then(Value::as_str) {
        match out.code {
            None => out.code = Some(clip(code, MAX_CODE)),
            Some(_) => out.push_subcode(code),
        }
    }
    // Azure: innererror.code (e.g. ResponsibleAIPolicyViolation).
    if let Some(code) = error.get("innererror").and_then(|e| e.get("code")).and_then(Value::as_str) {
        out.push_subcode(code);
    }
    if let Some(metadata) = error.get("metadata").and_then(Value::as_object) {
        read_openrouter_metadata(metadata, out);
    }
    if let Some(details) = error.get("details").and_then(Value::as_array) {
        read_google_details(details, out);
    }
    // Vertex AI's legacy errors[].reason (e.g. rateLimitExceeded).
    if let Some(errors) = error.get("errors").and_then(Value::as_array) {
        for reason in errors.iter().filter_map(|e| e.get("reason").and_then(Value::as_str)) {
            out.push_subcode(reason);
        }
    }
}

/// A string code, or a number that is not merely the HTTP status again.
fn code_string(code: &Value, status: u16) -> Option<String> {
    let code = match code {
        Value::String(s) => clip(s, MAX_CODE),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!code.is_empty() && code != status.to_string()).then_some(code)
}

fn read_openrouter_metadata(metadata: &Map<String, Value>, out: &mut ParsedError) {
    if let Some(source) = metadata.get("limit_source").and_then(Value::as_str) {
        out.push_subcode(source);
    }
    if metadata.contains_key("reasons") || metadata.contains_key("flagged_input") {
        out.push_subcode("moderation");
    }
    // An upstream provider's own error, passed through as a string.
    if out.message.as_deref() == Some("Provider returned error")
        && let Some(raw) = metadata.get("raw").and_then(Value::as_str)
    {
        out.message = Some(format!("Provider returned error: {raw}"));
    }
}

/// `google.rpc.Status.details`: RetryInfo, QuotaFailure, ErrorInfo.
fn read_google_details(details: &[Value], out: &mut ParsedError) {
    for detail in details {
        let kind = detail.get("@type").and_then(Value::as_str).unwrap_or_default();
        let kind = kind.rsplit('.').next().unwrap_or_default();
        match kind {
            "RetryInfo" => {
                if let Some(delay) = detail.get("retryDelay").and_then(Value::as_str) {
                    out.retry_delay = out.retry_delay.or_else(|| parse_go_duration(delay));
                }
            }
            "QuotaFailure" => {
                let violations = detail.get("violations").and_then(Value::as_array);
                for id in violations.into_iter().flatten().filter_map(|v| v.get("quotaId").and_then(Value::as_str)) {
                    out.push_subcode(id);
                }
            }
            "ErrorInfo" => {
                if let Some(reason) = detail.get("reason").and_then(Value::as_str) {
                    out.push_subcode(reason);
                }
                let quota_limit = detail.get("metadata").and_then(|m| m.get("quota_limit"));
                if let Some(limit) = quota_limit.and_then(Value::as_str) {
                    out.push_subcode(limit);
                }
            }
            _ => {}
        }
    }
    // The most telling quota id becomes the code users see: a per-day one if any.
    if out.code.is_none() {
        let daily = out.subcodes.iter().find(|c| is_daily_quota(c));
        out.code = daily.or_else(|| out.subcodes.first()).cloned();
    }
}

pub(crate) fn is_daily_quota(code: &str) -> bool {
    let lower = code.to_ascii_lowercase();
    lower.contains("perday") || lower.contains("daily")
}

/// Proxies wrap a provider's JSON error inside their own message string.
fn follow_nested_message(status: u16, out: &mut ParsedError, depth: usize) {
    if depth >= MAX_NESTING {
        return;
    }
    let Some(message) = out.message.as_deref() else { return };
    let Some(start) = message.find(['{', '[']) else { return };
    let mut stream = serde_json::Deserializer::from_str(&message[start..]).into_iter::<Value>();
    let Some(Ok(inner)) = stream.next() else { return };
    let has_error = {
        let inner = unwrap_arrays(&inner);
        inner.get("error").is_some() || inner.get("message").is_some()
    };
    if !has_error {
        return;
    }
    // The innermost error is the real one: it replaces what the wrapper said.
    let mut nested = ParsedError::default();
    read_json(&inner, status, &mut nested, depth + 1);
    let outer = std::mem::take(out);
    *out = ParsedError {
        error_type: nested.error_type.or(outer.error_type),
        code: nested.code.or(outer.code),
        subcodes: nested.subcodes.into_iter().chain(outer.subcodes).take(MAX_SUBCODES).collect(),
        message: nested.message.or(outer.message),
        request_id: nested.request_id.or(outer.request_id),
        retry_delay: nested.retry_delay.or(outer.retry_delay),
    };
}

/// A body that is not JSON: HTML from a gateway, plain text, truncated JSON.
fn read_text(body: &[u8], status: u16, out: &mut ParsedError) {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return;
    }
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        salvage_truncated_json(trimmed, status, out);
        if out.message.is_some() {
            return;
        }
    }
    let lower = trimmed.to_ascii_lowercase();
    if lower.contains("<html") || lower.starts_with("<!doctype") {
        out.message = html_element(trimmed, &lower, "title").or_else(|| html_element(trimmed, &lower, "h1"));
        if out.message.is_some() {
            return;
        }
    }
    out.message = Some(trimmed.to_owned());
}

/// The text of the first `<tag>…</tag>`, entities left as they are.
fn html_element(text: &str, lower: &str, tag: &str) -> Option<String> {
    let open = lower.find(&format!("<{tag}"))?;
    let content = open + lower[open..].find('>')? + 1;
    let close = content + lower[content..].find(&format!("</{tag}"))?;
    let inner = text.get(content..close)?.trim();
    (!inner.is_empty()).then(|| inner.to_owned())
}

/// JSON cut off by the body limit or a dropped connection: take the string
/// fields that arrived whole.
fn salvage_truncated_json(text: &str, status: u16, out: &mut ParsedError) {
    let field = |key: &str| string_field(text, key);
    out.message = field("message");
    out.error_type = field("status").or_else(|| field("type")).map(|s| clip(&s, MAX_CODE));
    out.code = field("code").map(|s| clip(&s, MAX_CODE)).filter(|c| *c != status.to_string());
}

/// The first `"key": "value"` in possibly broken JSON text, unescaped.
fn string_field(text: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\"");
    let mut search = text;
    while let Some(at) = search.find(&needle) {
        let rest = search[at + needle.len()..].trim_start();
        if let Some(value) = rest.strip_prefix(':').map(str::trim_start)
            && value.starts_with('"')
        {
            let mut stream = serde_json::Deserializer::from_str(value).into_iter::<String>();
            if let Some(Ok(s)) = stream.next() {
                return Some(s);
            }
        }
        search = &search[at + needle.len()..];
    }
    None
}

/// Bounded, trimmed, and free of control characters that could forge log
/// lines or drive a terminal; newlines and tabs stay.
fn clean_message(message: &str) -> String {
    let cleaned: String =
        message.trim().chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { ' ' } else { c }).collect();
    clip(&cleaned, MAX_MESSAGE)
}

/// At most `max` bytes, cut on a char boundary.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, status: u16) -> ParsedError {
        parse_error_body(body.as_bytes(), status)
    }

    #[test]
    fn anthropic_envelope() {
        let p = parse(
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208656 tokens > 200000 maximum"},"request_id":"req_011CWdepJvA2D819tdYYq4h7"}"#,
            400,
        );
        assert_eq!(p.error_type.as_deref(), Some("invalid_request_error"));
        assert_eq!(p.message.as_deref(), Some("prompt is too long: 208656 tokens > 200000 maximum"));
        assert_eq!(p.request_id.as_deref(), Some("req_011CWdepJvA2D819tdYYq4h7"));
        assert_eq!(p.code, None);
    }

    #[test]
    fn anthropic_spend_limit_detail() {
        let p = parse(
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"spend limit","details":{"error_code":"enforced_spend_limit_reached"}}}"#,
            429,
        );
        assert_eq!(p.code.as_deref(), Some("enforced_spend_limit_reached"));
    }

    #[test]
    fn openai_envelope() {
        let p = parse(
            r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
            429,
        );
        assert_eq!(p.error_type.as_deref(), Some("insufficient_quota"));
        assert_eq!(p.code.as_deref(), Some("insufficient_quota"));
    }

    #[test]
    fn gemini_status_details() {
        let body = r#"{"error":{"code":429,"message":"You exceeded your current quota.\nPlease retry in 47.434392449s.","status":"RESOURCE_EXHAUSTED","details":[
          {"@type":"type.googleapis.com/google.rpc.Help","links":[]},
          {"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[
            {"quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier"},
            {"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
          {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"47s"}]}}"#;
        let p = parse(body, 429);
        assert_eq!(p.error_type.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(p.code.as_deref(), Some("GenerateRequestsPerDayPerProjectPerModel-FreeTier"));
        assert_eq!(p.retry_delay, Some(Duration::from_secs(47)));
        assert_eq!(p.subcodes.len(), 2);
        assert!(p.message.unwrap().contains("\nPlease retry"));
    }

    #[test]
    fn gemini_array_wrapped() {
        let p = parse(r#"[{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}]"#, 400);
        assert_eq!(p.error_type.as_deref(), Some("INVALID_ARGUMENT"));
        assert_eq!(p.code, None, "numeric code equal to the status is dropped");
        assert_eq!(p.message.as_deref(), Some("bad"));
    }

    #[test]
    fn azure_content_filter_and_string_status_code() {
        let p = parse(
            r#"{"error":{"message":"filtered","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#,
            400,
        );
        assert_eq!(p.error_type, None);
        assert_eq!(p.code.as_deref(), Some("content_filter"));
        assert_eq!(p.subcodes, vec!["ResponsibleAIPolicyViolation"]);
        let quota = parse(r#"{"error":{"code":"429","message":"Please retry after 86400 seconds."}}"#, 429);
        assert_eq!(quota.code, None);
    }

    #[test]
    fn mistral_flat_and_object_message() {
        let p = parse(
            r#"{"object":"error","message":"Rate limit exceeded","type":"rate_limited","param":null,"code":"1300"}"#,
            429,
        );
        assert_eq!(p.error_type.as_deref(), Some("rate_limited"));
        assert_eq!(p.code.as_deref(), Some("1300"));
        let p = parse(
            r#"{"object":"error","message":{"detail":[{"msg":"field required"}]},"type":"invalid_request_error"}"#,
            422,
        );
        assert_eq!(p.message.as_deref(), Some(r#"{"detail":[{"msg":"field required"}]}"#));
    }

    #[test]
    fn openrouter_metadata() {
        let p = parse(
            r#"{"error":{"code":402,"message":"busy","metadata":{"limit_source":"openrouter_in_flight_budget"}}}"#,
            402,
        );
        assert_eq!(p.subcodes, vec!["openrouter_in_flight_budget"]);
        let p = parse(
            r#"{"error":{"code":403,"message":"flagged","metadata":{"reasons":["x"],"flagged_input":"y"}}}"#,
            403,
        );
        assert_eq!(p.subcodes, vec!["moderation"]);
    }

    #[test]
    fn nested_json_in_message() {
        let inner = r#"{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
        let outer = serde_json::json!({"error": {"message": format!("upstream said: {inner}"), "type": "proxy_error"}});
        let p = parse(&outer.to_string(), 429);
        assert_eq!(p.error_type.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(p.message.as_deref(), Some("Resource exhausted"));
    }

    #[test]
    fn deeply_nested_message_is_bounded() {
        let mut body = r#"{"error":{"message":"bottom"}}"#.to_owned();
        for _ in 0..14 {
            body = serde_json::json!({"error": {"message": body}}).to_string();
        }
        let p = parse(&body, 500);
        assert!(p.message.is_some());
    }

    #[test]
    fn html_plain_empty_and_binary() {
        let p = parse("<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>", 502);
        assert_eq!(p.message.as_deref(), Some("502 Bad Gateway"));
        let p = parse("<!DOCTYPE html><html><body><h1>413 Request Entity Too Large</h1></body></html>", 413);
        assert_eq!(p.message.as_deref(), Some("413 Request Entity Too Large"));
        assert_eq!(parse("upstream connect error", 503).message.as_deref(), Some("upstream connect error"));
        assert_eq!(parse("", 500), ParsedError::default());
        let p = parse_error_body(&[0xff, 0xfe, b'o', b'k', 0x1b, b'['], 500);
        assert_eq!(p.message.as_deref(), Some("\u{fffd}\u{fffd}ok ["));
    }

    #[test]
    fn truncated_json_is_salvaged() {
        let p = parse(
            r#"{"error":{"message":"Rate limit reached for gpt-4o","type":"tokens","code":"rate_limit_exceeded","param":"#,
            429,
        );
        assert_eq!(p.message.as_deref(), Some("Rate limit reached for gpt-4o"));
        assert_eq!(p.error_type.as_deref(), Some("tokens"));
        assert_eq!(p.code.as_deref(), Some("rate_limit_exceeded"));
        let p = parse(r#"{"error":{"message":"cut in the mid"#, 500);
        assert_eq!(p.message.as_deref(), Some(r#"{"error":{"message":"cut in the mid"#));
    }

    #[test]
    fn long_messages_are_clipped_on_char_boundaries() {
        let body = serde_json::json!({"error": {"message": "é".repeat(5000)}}).to_string();
        let message = parse(&body, 400).message.unwrap();
        assert!(message.len() <= MAX_MESSAGE);
        assert!(message.chars().all(|c| c == 'é'));
    }
}
