//! How a [`RedisStore`] reaches Redis: one node or a cluster, connected with
//! the store's bound on each call set before the first connection.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value};

use super::RedisStore;

/// A connection to one Redis node, or to a Redis Cluster: each sends a
/// command to the node that holds its keys, and reconnects on its own.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// Builds a [`RedisStore`]: its key prefix and its bound on each Redis call,
/// set before it connects, so that the connection is made with that bound.
///
/// | setting | default |
/// |---|---|
/// | [`prefix`](Self::prefix) | [`RedisStore::DEFAULT_PREFIX`] (`llmretry:`) |
/// | [`timeout`](Self::timeout) | [`RedisStore::DEFAULT_TIMEOUT`] (250 ms) |
///
/// ```no_run
/// # async fn demo() -> Result<(), reqwest_llm_retry::redis::RedisError> {
/// use std::time::Duration;
/// use reqwest_llm_retry::RedisStore;
/// let store = RedisStore::builder().timeout(Duration::from_millis(100)).connect("redis://10.0.0.5:6379/").await?;
/// let nodes = ["redis://10.0.1.1:6379/", "redis://10.0.1.2:6379/", "redis://10.0.1.3:6379/"];
/// let cluster = RedisStore::builder().prefix("chat-fleet:").connect_cluster(nodes).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    pub(super) prefix: String,
    timeout: Duration,
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        RedisStoreBuilder { prefix: RedisStore::DEFAULT_PREFIX.to_owned(), timeout: RedisStore::DEFAULT_TIMEOUT }
    }
}

impl RedisStoreBuilder {
    /// Prefixes every key with `prefix`: the namespace before the format
    /// version (see the key format in [`RedisStore`]'s docs). Fleets that must
    /// not share pacing (two environments on one Redis) use two prefixes.
    ///
    /// Braces are the store's own (Redis Cluster hash tags): a `{` or `}` in
    /// `prefix` is written `(` or `)`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().replace('{', "(").replace('}', ")");
        self
    }

    /// Bounds each Redis call, and each attempt to connect: past it, the
    /// store answers from its memory, and leaves Redis alone for a second. At
    /// least 1 ms.
    ///
    /// A request waits at most this long for the store before each attempt
    /// (once per second of a Redis outage, then not at all).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Connects to one Redis node at `url` (`redis://host:port/db`, or
    /// `rediss://` with a TLS feature of the `redis` crate). Fails if Redis
    /// cannot be reached now; later outages are absorbed.
    pub async fn connect(self, url: &str) -> RedisResult<RedisStore> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let connection = client.get_connection_manager_with_config(config).await?;
        Ok(self.with_connection(connection))
    }

    /// Connects to a Redis Cluster through `nodes` (any of its nodes, as
    /// `redis://host:port/`; it finds the others). Fails if none can be
    /// reached now; later outages, failovers and resharding are absorbed.
    pub async fn connect_cluster<T: IntoConnectionInfo>(
        self,
        nodes: impl IntoIterator<Item = T>,
    ) -> RedisResult<RedisStore> {
        let client =
            ClusterClientBuilder::new(nodes).connection_timeout(self.timeout).response_timeout(self.timeout).build()?;
        let connection = client.get_async_connection().await?;
        Ok(self.with_cluster_connection(connection))
    }

    /// Uses a connection to one node made elsewhere. Its own response timeout,
    /// if shorter than [`timeout`](Self::timeout), cuts calls shorter.
    pub fn with_connection(self, connection: ConnectionManager) -> RedisStore {
        RedisStore::new(Connection::Single(connection), self.prefix, self.timeout)
    }

    /// Uses a connection to a Redis Cluster made elsewhere. Its own response
    /// timeout, if shorter than [`timeout`](Self::timeout), cuts calls shorter.
    pub fn with_cluster_connection(self, connection: ClusterConnection) -> RedisStore {
        RedisStore::new(Connection::Cluster(connection), self.prefix, self.timeout)
    }
}
