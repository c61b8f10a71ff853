//! What a request costs in tokens, estimated from its body without parsing it.
//!
//! Why not a tokenizer: the providers' own limiters do not run one either.
//! OpenAI's rate-limit guide says the limit is counted from the characters
//! of the request and the `max_tokens` it asks for; Anthropic estimates a
//! request's output from `max_tokens` when it starts (see
//! `docs/token-budgets.md`). So the input is the body's length at about four
//! bytes a token (one division, no scan), and the output is the number the
//! request reserves, found by a bounded search of the body's two ends, where
//! serializers put top-level fields, not a JSON parse.

use crate::provider::Provider;

/// Bytes a token, as the providers' limiters estimate English text.
const BYTES_PER_TOKEN: u64 = 4;

/// How many bytes of each end of a body are searched for the output
/// reservation: top-level fields come before or after the messages, and a
/// body of megabytes is not read through on every send.
const SCAN: usize = 8 * 1024;

/// The fields that reserve output: Chat Completions and Anthropic
/// (`max_tokens`), OpenAI's newer models (`max_completion_tokens`), the
/// Responses API (`max_output_tokens`), Gemini (`generationConfig.maxOutputTokens`).
const OUTPUT_FIELDS: [&[u8]; 4] =
    [b"\"max_tokens\"", b"\"max_completion_tokens\"", b"\"max_output_tokens\"", b"\"maxOutputTokens\""];

/// The token limits a provider states, each a slot of a request's cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Tokens per window, input and output together (OpenAI `x-ratelimit-*-tokens`).
    Tokens = 0,
    /// Input tokens per window (Anthropic ITPM).
    Input = 1,
    /// Output tokens per window (Anthropic OTPM).
    Output = 2,
}

impl Family {
    pub(crate) const ALL: [Family; 3] = [Family::Tokens, Family::Input, Family::Output];
}

/// A request's estimated tokens: what it sends, and the output it reserves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cost {
    pub(crate) input: u64,
    pub(crate) output: u64,
}

impl Cost {
    /// The estimate for `body`: its bytes at four a token, and its reservation.
    pub(crate) fn of(body: &[u8]) -> Cost {
        Cost { input: input_tokens(body.len()), output: reserved_output(body).unwrap_or(0) }
    }

    /// What the limit `family` of `provider` counts of this cost; `None` when
    /// the family is not spent against (what it counts is not said).
    pub(crate) fn in_family(self, provider: Provider, family: Family) -> Option<u64> {
        match counts(provider, family)? {
            Counts::Input => Some(self.input),
            Counts::Output => Some(self.output),
            Counts::Both => Some(self.input.saturating_add(self.output)),
        }
    }

    /// The cost per family, in [`Family`] order.
    pub(crate) fn per_family(self, provider: Provider) -> [Option<u64>; 3] {
        Family::ALL.map(|family| self.in_family(provider, family))
    }
}

/// What a provider's token limit counts at admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counts {
    Input,
    Output,
    Both,
}

/// The table: which part of a request each provider's token limits count.
///
/// - Anthropic's `tokens` family is "the most restrictive token limit in
///   effect", input or output, so it is not spent against (its `remaining: 0`
///   still cools the key down); input and output have limits of their own.
/// - Gemini's and Vertex AI's token quotas count input tokens
///   (`GenerateContentInputTokensPerModelPerMinute`).
/// - OpenAI, Azure and the OpenAI-compatible hosts count the input and the
///   `max_tokens` the request reserves.
fn counts(provider: Provider, family: Family) -> Option<Counts> {
    match (provider, family) {
        (Provider::Anthropic, Family::Tokens) => None,
        (Provider::Gemini | Provider::VertexAi, Family::Tokens) => Some(Counts::Input),
        (_, Family::Tokens) => Some(Counts::Both),
        (_, Family::Input) => Some(Counts::Input),
        (_, Family::Output) => Some(Counts::Output),
    }
}

/// Input tokens of a body of `len` bytes.
pub(crate) fn input_tokens(len: usize) -> u64 {
    (len as u64).div_ceil(BYTES_PER_TOKEN)
}

/// The output a JSON body reserves (`"max_tokens": 256`), searched for in its
/// first and last [`SCAN`] bytes; `None` when neither says.
pub(crate) fn reserved_output(body: &[u8]) -> Option<u64> {
    let head = &body[..body.len().min(SCAN)];
    let tail = &body[body.len().saturating_sub(SCAN).max(head.len())..];
    find_reservation(head).or_else(|| find_reservation(tail))
}

/// The first output field in `bytes` that is a JSON key with a whole number.
fn find_reservation(bytes: &[u8]) -> Option<u64> {
    let mut at = 0;
    while let Some(quote) = bytes[at..].iter().position(|b| *b == b'"') {
        let start = at + quote;
        // A quote escaped inside a string (`\"max_tokens\"` in a prompt) is text, not a key.
        let escaped = start > 0 && bytes[start - 1] == b'\\';
        if !escaped
            && let Some(field) = OUTPUT_FIELDS.iter().find(|field| bytes[start..].starts_with(field))
            && let Some(value) = number_after_colon(&bytes[start + field.len()..])
        {
            return Some(value);
        }
        at = start + 1;
    }
    None
}

/// `: 256` at the start of `rest` (whitespace allowed around the colon).
fn number_after_colon(rest: &[u8]) -> Option<u64> {
    let rest = rest.trim_ascii_start().strip_prefix(b":")?.trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 12 {
        return None;
    }
    rest[..digits].iter().try_fold(0u64, |n, b| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_reservations_in_each_providers_shape() {
        let table: [(&str, Option<u64>); 10] = [
            (r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":256}"#, Some(256)),
            (r#"{"model":"o3","max_completion_tokens": 4000,"messages":[]}"#, Some(4000)),
            (r#"{"model":"claude","max_tokens" : 1024,"messages":[]}"#, Some(1024)),
            (r#"{"model":"gpt-5","input":"hi","max_output_tokens":512}"#, Some(512)),
            (r#"{"contents":[],"generationConfig":{"temperature":1,"maxOutputTokens":2048}}"#, Some(2048)),
            // In a prompt the field is text, escaped; a schema property is an object.
            (r#"{"messages":[{"content":"set \"max_tokens\": 99"}]}"#, None),
            (r#"{"tools":[{"parameters":{"max_tokens":{"type":"integer"}}}],"max_tokens":64}"#, Some(64)),
            (r#"{"max_tokens":null}"#, None),
            (r#"{"max_tokens":99999999999999999}"#, None),
            ("not json at all \"max_tokens", None),
        ];
        for (body, expected) in table {
            assert_eq!(reserved_output(body.as_bytes()), expected, "{body}");
        }
    }

    #[test]
    fn only_the_ends_of_a_large_body_are_searched() {
        let prompt = "x".repeat(3 * SCAN);
        let tail = format!(r#"{{"messages":[{{"content":"{prompt}"}}],"max_tokens":300}}"#);
        assert_eq!(reserved_output(tail.as_bytes()), Some(300));
        let head = format!(r#"{{"max_tokens":200,"messages":[{{"content":"{prompt}"}}]}}"#);
        assert_eq!(reserved_output(head.as_bytes()), Some(200));
        let middle = format!(r#"{{"messages":[{{"content":"{prompt}"}}],"max_tokens":7,"x":"{prompt}"}}"#);
        assert_eq!(reserved_output(middle.as_bytes()), None, "past the bound, nothing is read");
        // A body shorter than both ends together is searched once, whole.
        assert_eq!(reserved_output(br#"{"max_tokens":5}"#), Some(5));
        assert_eq!(reserved_output(b""), None);
    }

    #[test]
    fn what_each_provider_counts() {
        let cost = Cost::of(br#"{"model":"m","max_tokens":256,"messages":[]}"#);
        assert_eq!(cost, Cost { input: 11, output: 256 });
        assert_eq!(cost.per_family(Provider::OpenAi), [Some(267), Some(11), Some(256)]);
        assert_eq!(cost.per_family(Provider::AzureOpenAi)[0], Some(267));
        assert_eq!(cost.per_family(Provider::Anthropic), [None, Some(11), Some(256)]);
        assert_eq!(cost.per_family(Provider::Gemini)[0], Some(11));
        assert_eq!(input_tokens(0), 0);
        assert_eq!(input_tokens(9), 3);
    }
}
