//! The `tracing` events of the fallback, listed in the crate docs' table.

use crate::kind::ErrorKind;
use crate::provider::Provider;

use super::locate::Refusal;

// The integration tests' log capture; its process-wide `logs()` is theirs.
#[cfg(test)]
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/support/logs.rs"]
mod captured_logs;

/// The warning a request logs when it goes to its fallback model: `kind` is
/// what ended its attempts on `from` ([`ErrorKind::Timeout`] for a timeout
/// without a response). Model names come from the configuration, never
/// from the request.
#[cold]
pub(crate) fn falling_back(provider: Provider, from: &str, to: &str, kind: ErrorKind) {
    tracing::warn!(provider = provider.name(), from, to, kind = kind.name(), "falling back to another model");
}

/// The debug event of a request that has a fallback but cannot be rewritten
/// (a signed request, a streamed body, no model where its provider puts it).
#[cold]
pub(crate) fn not_falling_back(provider: Provider, from: &str, refusal: Refusal) {
    tracing::debug!(
        provider = provider.name(),
        from,
        reason = refusal.name(),
        "not falling back: the request cannot name another model"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fallback::event::captured_logs::Captured;

    #[test]
    fn the_events_carry_provider_models_and_reason() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            falling_back(Provider::Anthropic, "claude-opus-4", "claude-sonnet-4", ErrorKind::Overloaded);
            not_falling_back(Provider::Bedrock, "anthropic.claude-opus-4-v1:0", Refusal::Signed);
        });
        let text = captured.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for field in [
            " WARN ",
            "falling back to another model",
            "provider=\"anthropic\"",
            "from=\"claude-opus-4\"",
            "to=\"claude-sonnet-4\"",
            "kind=\"overloaded\"",
        ] {
            assert!(lines[0].contains(field), "{field} missing in {}", lines[0]);
        }
        for field in [" DEBUG ", "provider=\"bedrock\"", "from=\"anthropic.claude-opus-4-v1:0\"", "reason=\"signed\""] {
            assert!(lines[1].contains(field), "{field} missing in {}", lines[1]);
        }
    }
}
