//! Keys built once, for the two metrics recorded on every success: the success counter (per
//! provider) and the headroom gauges (per provider and host).
//!
//! Why: a key built per call allocates its labels and hashes them, about 500 instructions a
//! series even with no recorder installed; a success stating four limits paid five of them,
//! some 3 % of a whole request. A kept key costs a lookup. Only keys are kept, never the
//! recorder's handles, so a recorder installed after the first request still sees everything.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ::metrics::{Key, Label, Level, Metadata, SharedString, with_recorder};

use super::labels::{LIMITS, SUCCESS};
use super::{REMAINING, REQUESTS};
use crate::provider::Provider;

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Hosts whose keys are kept; past it, a host's keys are built for each response (the same
/// series, only slower).
const MAX_HOSTS: usize = 64;

/// Counts a success of `provider`.
pub(super) fn count_success(provider: Provider) {
    static KEYS: OnceLock<Vec<Key>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let mut keys = vec![Key::from_static_name(REQUESTS); Provider::ALL.len()];
        for &provider in Provider::ALL {
            let labels = vec![Label::new("provider", provider.name()), Label::new("outcome", SUCCESS)];
            keys[provider as usize] = Key::from_parts(REQUESTS, labels);
        }
        keys
    });
    with_recorder(|recorder| recorder.register_counter(&keys[provider as usize], &METADATA).increment(1));
}

/// The headroom gauges' keys of one provider and host, one per limit of [`LIMITS`].
#[derive(Debug)]
struct Headroom {
    provider: Provider,
    host: SharedString,
    keys: [Key; 4],
}

impl Headroom {
    fn new(provider: Provider, host: &str) -> Headroom {
        let host = SharedString::from(Arc::<str>::from(host));
        let keys = LIMITS.map(|limit| {
            let labels = vec![
                Label::new("provider", provider.name()),
                Label::new("host", host.clone()),
                Label::new("limit", limit),
            ];
            Key::from_parts(REMAINING, labels)
        });
        Headroom { provider, host, keys }
    }
}

/// Sets the headroom gauges of `provider` and `host`: `(index in LIMITS, remaining)` each.
pub(super) fn set_headroom(provider: Provider, host: &str, remaining: impl Iterator<Item = (usize, u64)>) {
    let mut headroom = None;
    for (limit, left) in remaining {
        let headroom = headroom.get_or_insert_with(|| kept(provider, host));
        with_recorder(|recorder| recorder.register_gauge(&headroom.keys[limit], &METADATA).set(left as f64));
    }
}

/// The kept keys of `provider` and `host`, kept from now on while there is room.
fn kept(provider: Provider, host: &str) -> Arc<Headroom> {
    static HOSTS: Mutex<Vec<Arc<Headroom>>> = Mutex::new(Vec::new());
    let mut hosts = HOSTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = hosts.iter().find(|kept| kept.provider == provider && *kept.host == *host) {
        return found.clone();
    }
    let made = Arc::new(Headroom::new(provider, host));
    if hosts.len() < MAX_HOSTS {
        hosts.push(made.clone());
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_provider_has_its_own_success_key() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, || {
            for &provider in Provider::ALL {
                count_success(provider);
            }
        });
        let mut providers: Vec<String> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, ..)| {
                let labels: Vec<_> = key.key().labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
                assert_eq!(key.key().name(), "llm_retry_requests_total");
                assert_eq!(labels[1], "outcome=success");
                labels[0].clone()
            })
            .collect();
        providers.sort();
        let mut expected: Vec<_> = Provider::ALL.iter().map(|p| format!("provider={}", p.name())).collect();
        expected.sort();
        assert_eq!(providers, expected);
    }

    #[test]
    fn keys_are_kept_per_provider_and_host() {
        let a = kept(Provider::OpenAi, "kept.example");
        assert!(Arc::ptr_eq(&a, &kept(Provider::OpenAi, "kept.example")));
        assert!(!Arc::ptr_eq(&a, &kept(Provider::Groq, "kept.example")));
        assert!(!Arc::ptr_eq(&a, &kept(Provider::OpenAi, "other.example")));
        let labels: Vec<_> = a.keys[3].labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
        let expected = [("provider", "openai"), ("host", "kept.example"), ("limit", "output_tokens")];
        assert_eq!(labels, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
    }
}
