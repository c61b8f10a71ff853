//! What each provider's stream events mean: output, the end, or an error.
//!
//! Data, not code: each provider has a row naming the events and JSON fields
//! that carry output, and every in-band error is mapped to the status the
//! same error has when the provider sends it as a status, so that it is
//! judged by the provider's own retry table.

use http::StatusCode;
use serde_json::{Map, Value};

use super::sse::Event;
use crate::provider::Provider;

/// How a provider's stream says "output", "done" and "error".
#[derive(Debug)]
pub(crate) struct StreamFormat {
    /// Event names that carry output; `*x` matches every name ending in `x`.
    output_events: &'static [&'static str],
    /// Event names that end the stream.
    end_events: &'static [&'static str],
    /// Event names whose data is an error.
    error_events: &'static [&'static str],
    /// Paths into an unnamed event's JSON whose value, when not empty, is
    /// output; `*` walks every element of an array.
    output_fields: &'static [&'static [&'static str]],
}

/// Anthropic Messages: `message_start`, `ping` and `content_block_start`
/// come first; text, thinking and tool input arrive as `content_block_delta`.
static ANTHROPIC: StreamFormat = StreamFormat {
    output_events: &["content_block_delta"],
    end_events: &["message_stop"],
    error_events: &["error"],
    output_fields: &[],
};

/// OpenAI Chat Completions (unnamed chunks; the first has only the role) and
/// Responses (named events; output is every `*.delta`). OpenAI-compatible
/// hosts follow the Chat Completions form.
static OPENAI: StreamFormat = StreamFormat {
    output_events: &["*.delta"],
    end_events: &["response.completed", "response.incomplete"],
    error_events: &["error", "response.failed"],
    output_fields: &[
        &["choices", "*", "delta", "content"],
        &["choices", "*", "delta", "tool_calls"],
        &["choices", "*", "delta", "function_call"],
        &["choices", "*", "delta", "refusal"],
        &["choices", "*", "delta", "reasoning_content"],
        &["choices", "*", "delta", "reasoning"],
        &["choices", "*", "delta", "audio"],
        &["choices", "*", "text"],
        &["choices", "*", "finish_reason"],
    ],
};

/// Gemini `streamGenerateContent?alt=sse`: every chunk is a
/// `GenerateContentResponse`, the first one already with output.
static GEMINI: StreamFormat = StreamFormat {
    output_events: &[],
    end_events: &[],
    error_events: &[],
    output_fields: &[&["candidates"], &["promptFeedback"]],
};

/// Vertex AI serves Gemini, Claude (`streamRawPredict`, Anthropic events)
/// and an OpenAI-compatible endpoint from one host.
static VERTEX: StreamFormat = StreamFormat {
    output_events: &["content_block_delta"],
    end_events: &["message_stop"],
    error_events: &["error"],
    output_fields: &[
        &["candidates"],
        &["promptFeedback"],
        &["choices", "*", "delta", "content"],
        &["choices", "*", "delta", "tool_calls"],
        &["choices", "*", "finish_reason"],
    ],
};

/// The stream format of a provider, `None` where it is not a known
/// `text/event-stream` form (unknown hosts; Bedrock's binary event stream).
pub(crate) fn stream_format(provider: Provider) -> Option<&'static StreamFormat> {
    match provider {
        Provider::Anthropic => Some(&ANTHROPIC),
        Provider::Gemini => Some(&GEMINI),
        Provider::VertexAi => Some(&VERTEX),
        Provider::Unknown | Provider::Bedrock => None,
        // OpenAI, Azure OpenAI and the OpenAI-compatible hosts.
        _ => Some(&OPENAI),
    }
}

/// What an event before the first output tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Nothing the caller needs yet (`message_start`, `ping`, a role chunk).
    Preamble,
    /// Output, or the end of the stream: from here on the stream is the caller's.
    Output,
    /// An error, as the status and body the same error has when sent as a status.
    Error(InBandError),
}

/// An error event, restated as an error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InBandError {
    /// The status the provider gives the same error.
    pub(crate) status: StatusCode,
    /// `{"error":{…}}`: the error object in the envelope the body parser reads.
    pub(crate) body: Vec<u8>,
}

impl StreamFormat {
    /// What `event` says.
    pub(crate) fn classify(&self, event: &Event) -> Seen {
        let name = &event.name[..];
        if names(self.error_events, name) {
            return Seen::Error(in_band_error(&json_of(&event.data).unwrap_or(Value::Null), &event.data));
        }
        if names(self.output_events, name) || names(self.end_events, name) {
            return Seen::Output;
        }
        let data = event.data.trim_ascii();
        if data == b"[DONE]" {
            return Seen::Output;
        }
        let Some(value) = json_of(data) else {
            return Seen::Preamble;
        };
        if is_error(&value) {
            return Seen::Error(in_band_error(&value, data));
        }
        let output = self.output_fields.iter().any(|path| non_empty_at(&value, path));
        if output { Seen::Output } else { Seen::Preamble }
    }
}

/// Whether `name` is in `table` (`*suffix` rows match by suffix).
fn names(table: &[&str], name: &[u8]) -> bool {
    !name.is_empty()
        && table.iter().any(|row| match row.strip_prefix('*') {
            Some(suffix) => name.ends_with(suffix.as_bytes()),
            None => row.as_bytes() == name,
        })
}

/// The event's JSON, when it has any (`[{…}]` unwrapped to `{…}`).
fn json_of(data: &[u8]) -> Option<Value> {
    let data = data.trim_ascii();
    if !matches!(data.first(), Some(b'{' | b'[')) {
        return None;
    }
    let value: Value = serde_json::from_slice(data).ok()?;
    Some(match value {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    })
}

/// The error in one event's data, whatever the event's name, as the
/// provider would send it as a status; `None` when the event is no error.
pub(crate) fn error_in(data: &[u8]) -> Option<InBandError> {
    let value = json_of(data)?;
    is_error(&value).then(|| in_band_error(&value, data))
}

/// Whether a data payload is an error, whatever its event name: a truthy
/// `error` member (OpenAI Chat Completions, Gemini, OpenRouter, Anthropic),
/// or a `type` of `error` or `response.failed` (OpenAI Responses).
fn is_error(value: &Value) -> bool {
    let Some(object) = value.as_object() else {
        return false;
    };
    let truthy = |v: &Value| !matches!(v, Value::Null | Value::Bool(false));
    object.get("error").is_some_and(truthy)
        || matches!(object.get("type").and_then(Value::as_str), Some("error" | "response.failed"))
}

fn non_empty_at(value: &Value, path: &[&str]) -> bool {
    let Some((step, rest)) = path.split_first() else {
        return match value {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(items) => !items.is_empty(),
            Value::Object(members) => !members.is_empty(),
            Value::Bool(_) | Value::Number(_) => true,
        };
    };
    match (*step, value) {
        ("*", Value::Array(items)) => items.iter().any(|item| non_empty_at(item, rest)),
        (key, Value::Object(members)) => members.get(key).is_some_and(|inner| non_empty_at(inner, rest)),
        _ => false,
    }
}

/// The error object of an error payload, in the `{"error":{…}}` envelope,
/// and the status the provider sends the same error with.
fn in_band_error(value: &Value, raw: &[u8]) -> InBandError {
    let object = error_object(value).unwrap_or_else(|| {
        // Not JSON, or JSON with no error object: what it says is the message.
        let text = String::from_utf8_lossy(raw.trim_ascii()).into_owned();
        let message = match value {
            Value::Object(top) => top.get("error").and_then(Value::as_str).map_or(text, str::to_owned),
            _ => text,
        };
        Map::from_iter([("message".to_owned(), Value::String(message))])
    });
    let status = status_of(&object);
    let mut envelope = Map::from_iter([("error".to_owned(), Value::Object(object))]);
    if let Some(id) = value.get("request_id").filter(|id| id.is_string()) {
        envelope.insert("request_id".to_owned(), id.clone());
    }
    InBandError { status, body: Value::Object(envelope).to_string().into_bytes() }
}

/// `error` (Chat Completions, Gemini, Anthropic), `response.error`
/// (Responses `response.failed`), or the payload itself (Responses `error`,
/// whose `type` is the event's and not the error's).
fn error_object(value: &Value) -> Option<Map<String, Value>> {
    let top = value.as_object()?;
    if let Some(Value::Object(error)) = top.get("error") {
        return Some(error.clone());
    }
    if let Some(Value::Object(error)) = top.get("response").and_then(|r| r.get("error")) {
        return Some(error.clone());
    }
    if top.contains_key("error") {
        return None;
    }
    let mut flat = top.clone();
    if matches!(flat.get("type").and_then(Value::as_str), Some("error" | "response.failed")) {
        flat.remove("type");
    }
    flat.remove("sequence_number");
    Some(flat)
}

/// Each provider's error names and codes, with the status it sends them
/// with. A code is looked up before a type: it is the finer of the two
/// (`server_error` / `server_is_overloaded`).
const STATUS_OF_NAME: &[(&str, u16)] = &[
    // Anthropic error types.
    ("invalid_request_error", 400),
    ("authentication_error", 401),
    ("billing_error", 402),
    ("permission_error", 403),
    ("not_found_error", 404),
    ("request_too_large", 413),
    ("rate_limit_error", 429),
    ("api_error", 500),
    ("timeout_error", 504),
    ("overloaded_error", 529),
    // OpenAI types and codes.
    ("invalid_api_key", 401),
    ("model_not_found", 404),
    ("context_length_exceeded", 400),
    ("invalid_prompt", 400),
    ("rate_limit_exceeded", 429),
    ("insufficient_quota", 429),
    ("tokens", 429),
    ("requests", 429),
    ("server_error", 500),
    ("server_is_overloaded", 503),
    ("slow_down", 503),
    // google.rpc canonical codes (Gemini `status`).
    ("INVALID_ARGUMENT", 400),
    ("FAILED_PRECONDITION", 400),
    ("OUT_OF_RANGE", 400),
    ("UNAUTHENTICATED", 401),
    ("PERMISSION_DENIED", 403),
    ("NOT_FOUND", 404),
    ("ABORTED", 409),
    ("ALREADY_EXISTS", 409),
    ("RESOURCE_EXHAUSTED", 429),
    ("CANCELLED", 499),
    ("INTERNAL", 500),
    ("UNKNOWN", 500),
    ("DATA_LOSS", 500),
    ("UNIMPLEMENTED", 501),
    ("UNAVAILABLE", 503),
    ("DEADLINE_EXCEEDED", 504),
];

/// The status of an error object: a numeric `code` that is an error status
/// (Gemini, OpenRouter), else its `status`, `code` or `type` by name, else
/// 500: an error the server sends before any output, with no name this
/// crate knows, is the server's.
fn status_of(error: &Map<String, Value>) -> StatusCode {
    let numeric = error.get("code").and_then(Value::as_u64).filter(|code| (400..=599).contains(code));
    let named = || {
        ["status", "code", "type"].iter().filter_map(|key| error.get(*key)?.as_str()).find_map(|name| {
            STATUS_OF_NAME
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(name))
                .map(|&(_, status)| u64::from(status))
        })
    };
    numeric
        .or_else(named)
        .and_then(|code| StatusCode::from_u16(u16::try_from(code).ok()?).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, data: &str) -> Event {
        Event { name: name.into(), data: data.into() }
    }

    fn error_status(format: &StreamFormat, event: &Event) -> u16 {
        match format.classify(event) {
            Seen::Error(error) => error.status.as_u16(),
            other => panic!("{event:?} gave {other:?}"),
        }
    }

    #[test]
    fn anthropic_events() {
        let f = &ANTHROPIC;
        assert_eq!(f.classify(&named("message_start", r#"{"type":"message_start","message":{}}"#)), Seen::Preamble);
        assert_eq!(f.classify(&named("ping", r#"{"type": "ping"}"#)), Seen::Preamble);
        assert_eq!(f.classify(&named("content_block_start", r#"{"type":"content_block_start"}"#)), Seen::Preamble);
        assert_eq!(f.classify(&named("content_block_delta", "{}")), Seen::Output);
        assert_eq!(f.classify(&named("message_stop", "{}")), Seen::Output);
        let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(error_status(f, &named("error", overloaded)), 529);
        let limited = r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
        assert_eq!(error_status(f, &named("error", limited)), 429);
        assert_eq!(error_status(f, &named("error", "not json")), 500);
    }

    #[test]
    fn openai_chat_chunks() {
        let f = &OPENAI;
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        assert_eq!(f.classify(&named("", role)), Seen::Preamble);
        let text = r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        assert_eq!(f.classify(&named("", text)), Seen::Output);
        let tool = r#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#;
        assert_eq!(f.classify(&named("", tool)), Seen::Output);
        assert_eq!(f.classify(&named("", r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#)), Seen::Output);
        assert_eq!(f.classify(&named("", "[DONE]")), Seen::Output);
        let overloaded = r#"{"error":{"message":"overloaded","type":"server_error","code":"server_is_overloaded"}}"#;
        assert_eq!(error_status(f, &named("", overloaded)), 503);
        let quota = r#"{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert_eq!(error_status(f, &named("", quota)), 429);
        assert_eq!(error_status(f, &named("", r#"{"error":{"message":"?","type":"server_error"}}"#)), 500);
        assert_eq!(error_status(f, &named("", r#"{"error":{"code":502,"message":"upstream"}}"#)), 502);
        assert_eq!(f.classify(&named("", r#"{"error":null,"choices":[]}"#)), Seen::Preamble);
    }

    #[test]
    fn openai_responses_events() {
        let f = &OPENAI;
        assert_eq!(f.classify(&named("response.created", r#"{"type":"response.created"}"#)), Seen::Preamble);
        assert_eq!(f.classify(&named("response.output_item.added", "{}")), Seen::Preamble);
        assert_eq!(f.classify(&named("response.output_text.delta", "{}")), Seen::Output);
        assert_eq!(f.classify(&named("response.reasoning_summary_text.delta", "{}")), Seen::Output);
        let limited = r#"{"type":"error","code":"rate_limit_exceeded","message":"Rate limit reached","param":null,"sequence_number":2}"#;
        let Seen::Error(error) = f.classify(&named("error", limited)) else { panic!() };
        assert_eq!(error.status, 429);
        let body: Value = serde_json::from_slice(&error.body).unwrap();
        assert_eq!(
            body["error"],
            serde_json::json!({"code":"rate_limit_exceeded","message":"Rate limit reached","param":null})
        );
        let failed = r#"{"type":"response.failed","response":{"id":"resp_1","status":"failed","error":{"code":"server_error","message":"boom"}}}"#;
        assert_eq!(error_status(f, &named("response.failed", failed)), 500);
        let overloaded = r#"{"type":"error","code":"server_is_overloaded","message":"busy"}"#;
        assert_eq!(error_status(f, &named("", overloaded)), 503, "found by its type even without an event name");
    }

    #[test]
    fn gemini_chunks() {
        let f = &GEMINI;
        let text = r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"}}]}"#;
        assert_eq!(f.classify(&named("", text)), Seen::Output);
        let unavailable = r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#;
        assert_eq!(error_status(f, &named("", unavailable)), 503);
        assert_eq!(error_status(f, &named("", &format!("[{unavailable}]"))), 503, "array-wrapped");
        let exhausted = r#"{"error":{"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(error_status(f, &named("", exhausted)), 429);
        assert_eq!(f.classify(&named("", r#"{"usageMetadata":{}}"#)), Seen::Preamble);
    }

    #[test]
    fn providers_without_a_known_stream_have_no_format() {
        assert!(stream_format(Provider::Unknown).is_none());
        assert!(stream_format(Provider::Bedrock).is_none());
        assert!(std::ptr::eq(stream_format(Provider::Groq).unwrap(), &OPENAI));
        assert!(std::ptr::eq(stream_format(Provider::AzureOpenAi).unwrap(), &OPENAI));
    }
}
