//! Where the stores under test live, and what every test needs around them.

use std::time::{Duration, SystemTime};

use redis::FromRedisValue;
use reqwest_llm_retry::RedisStore;

pub const MS: fn(u64) -> Duration = Duration::from_millis;

/// A Redis deployment the store runs against.
#[derive(Debug, Clone, Copy)]
pub enum Deployment {
    /// One node, at `REDIS_URL`.
    Single,
    /// A Redis Cluster, through `REDIS_CLUSTER_URLS`.
    Cluster,
}

impl Deployment {
    /// The variable naming the deployment, and its URLs.
    fn urls(self) -> (&'static str, Vec<String>) {
        let (variable, default) = match self {
            Deployment::Single => ("REDIS_URL", "redis://127.0.0.1:6379/"),
            Deployment::Cluster => {
                ("REDIS_CLUSTER_URLS", "redis://127.0.0.1:7000/,redis://127.0.0.1:7001/,redis://127.0.0.1:7002/")
            }
        };
        let urls = std::env::var(variable).unwrap_or_else(|_| default.to_owned());
        (variable, urls.split(',').map(str::trim).filter(|url| !url.is_empty()).map(str::to_owned).collect())
    }

    /// A store with its own connection and memory, keys under `prefix`, or
    /// `None` (with the reason on stderr) when the deployment is not reachable outside CI.
    pub async fn store(self, prefix: &str) -> Option<RedisStore> {
        let builder = RedisStore::builder().prefix(prefix);
        let (variable, urls) = self.urls();
        let connected = match self {
            Deployment::Single => builder.connect(&urls[0]).await,
            Deployment::Cluster => builder.connect_cluster(urls.iter().map(String::as_str)).await,
        };
        match connected {
            Ok(store) => Some(store),
            Err(error) if !required() => {
                eprintln!("SKIPPED: no {self:?} Redis reachable at {urls:?} ({error}); start one, or set {variable}");
                None
            }
            Err(error) => panic!("CI must provide the {self:?} Redis at {urls:?} ({variable}): {error}"),
        }
    }

    /// Two stores, as two processes would have.
    pub async fn two_stores(self, prefix: &str) -> Option<(RedisStore, RedisStore)> {
        Some((self.store(prefix).await?, self.store(prefix).await?))
    }

    /// A connection of the test's own, to read what the stores wrote.
    pub async fn inspect(self) -> Inspector {
        let (_, urls) = self.urls();
        match self {
            Deployment::Single => {
                let client = redis::Client::open(urls[0].as_str()).unwrap();
                Inspector::Single(client.get_multiplexed_async_connection().await.unwrap())
            }
            Deployment::Cluster => {
                let client = redis::cluster::ClusterClient::new(urls.iter().map(String::as_str)).unwrap();
                Inspector::Cluster(client.get_async_connection().await.unwrap())
            }
        }
    }
}

/// Whether these tests must run: in CI a missing Redis is a failure, not a skip.
fn required() -> bool {
    std::env::var_os("CI").is_some_and(|ci| !ci.is_empty() && ci != "false" && ci != "0")
}

/// A test's own connection to a deployment (a cluster's routes each command to its key's node).
pub enum Inspector {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Inspector {
    pub async fn query<T: FromRedisValue>(&mut self, command: &mut redis::Cmd) -> T {
        match self {
            Inspector::Single(connection) => command.query_async(connection).await.unwrap(),
            Inspector::Cluster(connection) => command.query_async(connection).await.unwrap(),
        }
    }

    /// The keys under `prefix`, each checked to expire (`PX`): one that is gone by the time
    /// its expiry is read (-2) has expired.
    pub async fn keys_that_expire(&mut self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = self.query(redis::cmd("KEYS").arg(format!("{prefix}*"))).await;
        for key in &keys {
            let ttl: i64 = self.query(redis::cmd("PTTL").arg(key)).await;
            assert!(ttl == -2 || ttl > 0, "{key} has no expiry ({ttl})");
        }
        keys.sort();
        keys
    }
}

pub fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
    format!("reqwest-llm-retry-test:{test}:{nanos}:")
}

pub fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// `ms` since the epoch, as the store keeps times.
pub fn at_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + MS(ms)
}
