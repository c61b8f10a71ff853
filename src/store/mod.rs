//! Where a fleet acts as one client: the [`SharedStore`] the middleware shares
//! its pacing and its view of provider health through, beyond its own clones.
//!
//! [`MemoryStore`] shares them between middlewares of one process,
//! `RedisStore` (feature `redis`, a single node or a Redis Cluster) between
//! the processes of a fleet. Set one with
//! [`shared_store`](crate::LlmRetryMiddlewareBuilder::shared_store).
//!
//! A store keeps three things, each for everyone who shares it:
//!
//! - **cooldowns** per rate-limit key ("requests with this key wait until
//!   then"), set by a 429's wait or a used-up rate-limit window;
//! - **windows** per rate-limit key, one for requests and one for each token
//!   limit: the current window's end, length, limit and what is spent of it,
//!   so that N processes spend one window's budget between them instead of
//!   each spending all of it ([`Window`]); a send spends its request and its
//!   estimated tokens in one atomic call ([`Spend`]);
//! - **outages** per provider host: whether it is down, when its next probe
//!   is due, and who holds the probe lease, so that one probe at a time serves
//!   the whole fleet ([`OutageQuery`], [`OutageTurn`], [`OutageReport`]).
//!
//! Rate-limit keys name the provider, the host, the port and a keyed hash of
//! the credential (never the credential); outage keys name the host and port,
//! and the model for a model with a fallback configured.
//! A store outage never fails or stalls a request: each call is bounded, and
//! memory answers past the bound.
//!
//! # Why the trait is sealed
//!
//! [`SharedStore`] can be named, passed and called, but not implemented
//! outside this crate. Its methods are a protocol whose rules (how a fleet's
//! window rolls, where its guards fall, who gets the probe lease) live in this
//! module, and which grows: token budgets added windows to each key, and the
//! rules will keep being tuned from what fleets measure. A store
//! written elsewhere would have to re-derive those rules and follow every
//! change to them; a public, implementable trait would make each new method
//! or field a breaking change. Sealed, the protocol can change in a minor
//! release, as with the sealed extension traits of tokio or reqwest. What is
//! promised to a fleet instead is the key format of each store (see
//! `RedisStore`): processes of two releases read each other's keys while a
//! deploy rolls.
//!
//! The methods stay public so that a program can check its store directly
//! (for instance a Redis deployment, before taking traffic); the types they
//! take and return are `#[non_exhaustive]`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

mod memory;
pub(crate) mod outage;
#[cfg(feature = "redis")]
mod redis;
mod spend;
pub(crate) mod window;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisStore, RedisStoreBuilder};
pub use memory::MemoryStore;
pub use outage::{OutageQuery, OutageReport, OutageTurn};
pub use spend::{Spend, TokenSpend};
pub use window::Window;

/// The future a [`SharedStore`] method returns: boxed and `Send`, borrowing the
/// store and the key.
///
/// Boxed rather than an associated type: the middleware holds its store as
/// `Arc<dyn SharedStore>`, so that its own type has no store parameter, and a
/// trait object cannot have unnamed associated types. The one allocation per
/// call is nothing beside a store's round trip, and a middleware without a
/// store never makes one.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The seal: a supertrait no other crate can name, so no other crate can
/// implement [`SharedStore`] (see the module docs for why).
mod sealed {
    pub trait Sealed {}
}

/// What a fleet shares: cooldowns, windows and outages (see the [module docs](self)).
///
/// Implemented by [`MemoryStore`] and `RedisStore`, and
/// by `Arc<S>` of either, so that one store serves several middlewares.
/// Sealed: it cannot be implemented outside this crate (see
/// [why](self#why-the-trait-is-sealed)).
///
/// ```
/// use std::sync::Arc;
/// use reqwest_llm_retry::{LlmRetryMiddleware, MemoryStore};
/// let store = Arc::new(MemoryStore::new());
/// let chat = LlmRetryMiddleware::builder().shared_store(store.clone()).build();
/// let batch = LlmRetryMiddleware::builder().max_retries(8).shared_store(store).build();
/// ```
pub trait SharedStore: sealed::Sealed + Send + Sync + fmt::Debug + 'static {
    /// Requests with `key` wait until `until`; a later time already kept stays.
    /// Told of each cooldown a response sets.
    fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()>;

    /// Asked before each send: spends one request of the key's current
    /// request window, and the send's estimated tokens of each of its token
    /// windows, for everyone sharing the store; or, when the key cools down,
    /// or one of its windows has no room or its boundary is too near, spends
    /// nothing and says when to ask again (the latest of those times). `spend`
    /// says what the asking middleware knows of each window (from rate-limit
    /// headers, or learned; `None` when it knows nothing yet) and what the
    /// send costs in it; the store hears it even when it spends nothing. Every
    /// window is spent, or none: one atomic operation (in Redis, one script call).
    ///
    /// The store keeps one end and one length for everyone per window and
    /// rolls windows by that length, so that the fleet agrees on where windows
    /// begin; the ends servers tell correct it (see [`Window::told`]), and
    /// what an asker knows is used of a window raises the store's count (see
    /// [`Window::used`]); nothing goes within a small guard either side of a
    /// boundary (2 ms plus 1/32 of the window), so that an end a few
    /// milliseconds off costs no 429. Sends are counted in the request window
    /// before anyone knows it; a token window opens with its first view.
    fn spend<'a>(&'a self, key: &'a str, spend: Spend) -> StoreFuture<'a, Option<SystemTime>>;

    /// Asked before a request goes to a host in an outage (when its process's
    /// turn to probe has come), and before a retry to a host whose requests
    /// have started failing: whose turn it is to probe `host` (`host:port`,
    /// or `host:port/model` for a model with a fallback configured, across
    /// every credential), for everyone sharing the store.
    fn outage<'a>(&'a self, host: &'a str, query: OutageQuery) -> StoreFuture<'a, OutageTurn>;

    /// Told how a probe granted by [`outage`](Self::outage) went, or that a
    /// request to `host` succeeded after it was down.
    fn report_outage<'a>(&'a self, host: &'a str, report: OutageReport) -> StoreFuture<'a, ()>;
}

impl<S: SharedStore + ?Sized> sealed::Sealed for Arc<S> {}

/// One store behind several middlewares.
impl<S: SharedStore + ?Sized> SharedStore for Arc<S> {
    fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
        (**self).extend(key, until)
    }

    fn spend<'a>(&'a self, key: &'a str, spend: Spend) -> StoreFuture<'a, Option<SystemTime>> {
        (**self).spend(key, spend)
    }

    fn outage<'a>(&'a self, host: &'a str, query: OutageQuery) -> StoreFuture<'a, OutageTurn> {
        (**self).outage(host, query)
    }

    fn report_outage<'a>(&'a self, host: &'a str, report: OutageReport) -> StoreFuture<'a, ()> {
        (**self).report_outage(host, report)
    }
}

/// A store for this crate's tests: a [`MemoryStore`] whose answers a test can
/// replace, counting the questions it is asked.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct TestStore {
    pub(crate) memory: MemoryStore,
    /// Replaces every answer of [`SharedStore::spend`].
    pub(crate) spend: Option<fn() -> Option<SystemTime>>,
    /// Replaces every answer of [`SharedStore::outage`].
    pub(crate) outage: Option<fn() -> OutageTurn>,
    /// How many times [`SharedStore::outage`] was asked.
    pub(crate) outage_asked: std::sync::atomic::AtomicUsize,
    /// What [`SharedStore::spend`] was asked, in order.
    pub(crate) spent: std::sync::Mutex<Vec<Spend>>,
}

#[cfg(test)]
impl sealed::Sealed for TestStore {}

#[cfg(test)]
impl SharedStore for TestStore {
    fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
        self.memory.extend(key, until)
    }

    fn spend<'a>(&'a self, key: &'a str, spend: Spend) -> StoreFuture<'a, Option<SystemTime>> {
        self.spent.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(spend);
        match self.spend {
            Some(answer) => Box::pin(std::future::ready(answer())),
            None => self.memory.spend(key, spend),
        }
    }

    fn outage<'a>(&'a self, host: &'a str, query: OutageQuery) -> StoreFuture<'a, OutageTurn> {
        self.outage_asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.outage {
            Some(answer) => Box::pin(std::future::ready(answer())),
            None => self.memory.outage(host, query),
        }
    }

    fn report_outage<'a>(&'a self, host: &'a str, report: OutageReport) -> StoreFuture<'a, ()> {
        self.memory.report_outage(host, report)
    }
}
