//! The event-stream reader and the stream tables, fed arbitrary bytes cut
//! into arbitrary chunks, as the start of a `200` stream from any provider.
//!
//! Invariants: no panic; the events do not depend on where the body was
//! cut; every error event classifies to an error status, and
//! `LlmApiError::from_stream_event` agrees that its data is an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reqwest_llm_retry::{LlmApiError, Provider, __read_stream_events as read_events};

fuzz_target!(|data: &[u8]| {
    let Some((&[p, cuts], body)) = data.split_first_chunk::<2>() else { return };
    let provider = Provider::ALL[usize::from(p) % Provider::ALL.len()];
    let whole = read_events(provider, &[body]);
    // Cut the body at up to eight places chosen by the input.
    let mut chunks = Vec::new();
    let mut rest = body;
    for i in 0..cuts % 8 {
        let at = (usize::from(cuts).wrapping_mul(31).wrapping_add(usize::from(i) * 97)) % (rest.len() + 1);
        let (head, tail) = rest.split_at(at);
        chunks.push(head);
        rest = tail;
    }
    chunks.push(rest);
    assert_eq!(read_events(provider, &chunks), whole, "events depend on the cuts");
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(read_events(provider, &bytes), whole, "events depend on the cuts");
    for (_, data, seen) in &whole {
        if let Some(status) = seen.strip_prefix("error ") {
            let status: u16 = status.parse().unwrap();
            assert!((400..600).contains(&status), "{seen}");
            if let Some(error) = LlmApiError::from_stream_event(provider, data) {
                assert_eq!(error.status.as_u16(), status);
                let _ = (error.to_string(), format!("{error:?}"));
            }
        }
    }
});
