//! The error-body parser and classifier, fed arbitrary bytes as the body of
//! an error response from any provider.
//!
//! Invariants: no panic; the strings kept are bounded whatever the body size;
//! `Display` and `Debug` format.
#![no_main]

use http::{HeaderMap, StatusCode};
use libfuzzer_sys::fuzz_target;
use reqwest_llm_retry::{LlmApiError, Provider};

/// The parser keeps at most 2 KiB of message; redacting `key=` values can
/// lengthen it (`key=a` becomes `key=[REDACTED]`), so allow for that.
const MAX_MESSAGE: usize = 8 * 1024;
const MAX_CODE: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&[p, s0, s1], body)) = data.split_first_chunk::<3>() else { return };
    let provider = Provider::ALL[usize::from(p) % Provider::ALL.len()];
    // Every 4xx and 5xx status, where the parser runs.
    let status = StatusCode::from_u16(400 + u16::from_le_bytes([s0, s1]) % 200).unwrap();
    let error = LlmApiError::parse(provider, status, &HeaderMap::new(), body);
    assert_eq!(error.status, status);
    assert_eq!(error.provider, provider);
    assert!(error.message.len() <= MAX_MESSAGE, "message of {} bytes", error.message.len());
    assert!(error.error_type.as_ref().is_none_or(|t| t.len() <= MAX_CODE));
    assert!(error.code.as_ref().is_none_or(|c| c.len() <= MAX_CODE));
    assert!(error.request_id.as_ref().is_none_or(|id| id.len() <= MAX_CODE));
    assert!(error.retry_after.is_none_or(|d| d.as_secs() <= 1 << 30));
    assert!(!error.fix().is_empty());
    let _ = (error.to_string(), format!("{error:?}"));
});
