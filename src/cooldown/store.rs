//! The store protocol: where cooldowns live beyond one middleware, and the
//! in-memory store.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::SWEEP_AT;

/// The future a [`CooldownStore`] method returns: boxed and `Send`, borrowing the
/// store and the key.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where cooldowns live: "requests with this key should not be sent before then".
///
/// The middleware always keeps cooldowns in its own memory; a store set with
/// [`cooldown_store`](crate::LlmRetryMiddlewareBuilder::cooldown_store) shares
/// them further: [`MemoryCooldownStore`] between middlewares of one process,
/// `RedisCooldownStore` (feature `redis`) across a fleet, or your own. It is
/// asked ([`get`](Self::get)) before each send, and told
/// ([`extend`](Self::extend)) of each cooldown a response sets.
///
/// Keys name the provider, the host, the port and a fingerprint of the
/// credential; they never contain a secret. Implementations must never fail or
/// stall a request: bound each call, and on an outage answer from memory and log.
///
/// # Why boxed futures
///
/// The methods return a [`StoreFuture`] written out, rather than through
/// `#[async_trait]` or an associated future type: the middleware holds its store
/// as `Arc<dyn CooldownStore>`, so that its type has no store parameter, and a
/// trait object cannot have unnamed associated types. Implementors need no macro;
/// the one allocation per call is nothing beside a store's round trip, and a
/// middleware without a store never calls one.
///
/// # Implementing it
///
/// Wrap an `async` block in `Box::pin`; a store that answers at once can return
/// `Box::pin(std::future::ready(value))`.
///
/// ```
/// use std::collections::HashMap;
/// use std::time::SystemTime;
///
/// use reqwest_llm_retry::{CooldownStore, LlmRetryMiddleware, StoreFuture};
/// use tokio::sync::RwLock;
///
/// /// Cooldowns behind an async lock (a stand-in for a remote service).
/// #[derive(Debug, Default)]
/// struct SharedCooldowns {
///     until: RwLock<HashMap<String, SystemTime>>,
/// }
///
/// impl CooldownStore for SharedCooldowns {
///     fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<SystemTime>> {
///         Box::pin(async move {
///             let until = self.until.read().await.get(key).copied()?;
///             (until > SystemTime::now()).then_some(until)
///         })
///     }
///
///     fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
///         Box::pin(async move {
///             let mut map = self.until.write().await;
///             let entry = map.entry(key.to_owned()).or_insert(until);
///             *entry = (*entry).max(until);
///         })
///     }
/// }
///
/// let middleware = LlmRetryMiddleware::builder().cooldown_store(SharedCooldowns::default()).build();
/// # let _ = middleware;
/// ```
pub trait CooldownStore: Send + Sync + fmt::Debug + 'static {
    /// The time before which requests with `key` should wait, if any.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<SystemTime>>;

    /// Requests with `key` should wait until `until`; an existing later time is kept.
    fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()>;
}

/// A [`CooldownStore`] in this process's memory.
///
/// The middleware needs no store to share cooldowns among its own clones;
/// this one shares them among middlewares built separately (say, one per
/// client with different settings), through an `Arc`:
///
/// ```
/// use std::sync::Arc;
/// use reqwest_llm_retry::{LlmRetryMiddleware, MemoryCooldownStore};
/// let store = Arc::new(MemoryCooldownStore::new());
/// let chat = LlmRetryMiddleware::builder().cooldown_store(store.clone()).build();
/// let batch = LlmRetryMiddleware::builder().max_retries(8).cooldown_store(store).build();
/// ```
#[derive(Debug, Default)]
pub struct MemoryCooldownStore {
    map: Mutex<HashMap<String, SystemTime>>,
}

impl MemoryCooldownStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, SystemTime>> {
        // A panic elsewhere while holding the lock leaves a map that is still valid.
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Synchronous form of [`CooldownStore::get`].
    pub(crate) fn get_now(&self, key: &str) -> Option<SystemTime> {
        let now = SystemTime::now();
        self.lock().get(key).copied().filter(|until| *until > now)
    }

    /// Synchronous form of [`CooldownStore::extend`].
    pub(crate) fn extend_now(&self, key: &str, until: SystemTime) {
        let mut map = self.lock();
        if map.len() >= SWEEP_AT {
            let now = SystemTime::now();
            map.retain(|_, until| *until > now);
        }
        let entry = map.entry(key.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }
}

/// One store behind several middlewares.
impl<S: CooldownStore + ?Sized> CooldownStore for Arc<S> {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<SystemTime>> {
        (**self).get(key)
    }

    fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
        (**self).extend(key, until)
    }
}

impl CooldownStore for MemoryCooldownStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<SystemTime>> {
        Box::pin(std::future::ready(self.get_now(key)))
    }

    fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
        self.extend_now(key, until);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn memory_store_keeps_the_later_time_and_sweeps() {
        let store = MemoryCooldownStore::new();
        let later = SystemTime::now() + Duration::from_secs(10);
        store.extend_now("k", later);
        store.extend_now("k", SystemTime::now() + Duration::from_secs(1));
        assert_eq!(store.get_now("k"), Some(later));
        for i in 0..2 * SWEEP_AT {
            store.extend_now(&format!("old{i}"), SystemTime::now() - Duration::from_secs(1));
        }
        assert!(store.lock().len() <= SWEEP_AT + 1);
    }
}
