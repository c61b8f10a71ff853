//! Each child's store calls, timed where they are made: a `tracing`
//! subscriber reading the store's `Redis store call` TRACE events.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

tokio::task_local! {
    /// The store time spent so far by the request this task is sending.
    pub static SPENT_IN_STORE: Cell<Duration>;
}

/// The longest store call, in microseconds.
pub static LONGEST_US: AtomicU64 = AtomicU64::new(0);
/// Store calls that took over 250 ms.
pub static SLOW: AtomicUsize = AtomicUsize::new(0);

/// A `tracing` subscriber that only reads the store's `Redis store call`
/// events (their `elapsed_us`): a child's store calls, timed where they are made.
pub struct StoreCalls;

impl tracing::Subscriber for StoreCalls {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.fields().field("elapsed_us").is_some()
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Elapsed(Option<u64>);
        impl tracing::field::Visit for Elapsed {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "elapsed_us" {
                    self.0 = Some(value);
                }
            }

            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut elapsed = Elapsed(None);
        event.record(&mut elapsed);
        let Some(us) = elapsed.0 else { return };
        LONGEST_US.fetch_max(us, Ordering::Relaxed);
        if us > 250_000 {
            SLOW.fetch_add(1, Ordering::Relaxed);
        }
        let _ = SPENT_IN_STORE.try_with(|spent| spent.set(spent.get() + Duration::from_micros(us)));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
