//! A token store in Redis.

use std::fmt;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::TokenStore;
use crate::BoxError;
use crate::error::Error;

/// Deletes `KEYS[1]` only if its value is `ARGV[1]`, atomically (one script).
static DELETE_IF: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
             return redis.call('DEL', KEYS[1]) \
         else \
             return 0 \
         end",
    )
});

/// A [`TokenStore`] in Redis (feature `redis`): the instances of a service share one token
/// and refresh it once for the whole fleet. See [`crate::store`] for how it is used.
///
/// It talks to Redis through a [`ConnectionManager`] (async, tokio, multiplexed), which
/// reconnects by itself after the connection drops. Made from a URL or a
/// [`redis::Client`], it connects lazily on its first use, so a layer can be built while
/// Redis is down; requests are then served by each instance's own fetches until Redis
/// is back. Cheap to clone; clones share the connection.
///
/// Made with [`RedisStore::open_cluster`] (or [`RedisStore::from_cluster_client`]) it works
/// the same against a Redis Cluster, through the redis crate's async cluster connection,
/// which follows `MOVED`/`ASK` redirections and refreshes its slot map by itself. Every key
/// the store writes carries its cache key as a hash tag (`{prefix}{<hex>}` and
/// `{prefix}{<hex>}:lock`), so a token and its lock live in one slot.
///
/// Commands: `GET key`, `SET key value PX ttl`, `SET lock value NX PX ttl`, and a Lua
/// compare-and-delete (`EVALSHA`, one key). For TLS (`rediss://`), enable the redis crate's
/// `tokio-rustls-comp` or `tokio-native-tls-comp` feature in your own `Cargo.toml`.
///
/// ```no_run
/// use tower_oauth::store::RedisStore;
/// use tower_oauth::{ClientCredentials, OAuthLayer};
///
/// # fn main() -> Result<(), tower_oauth::Error> {
/// let source = ClientCredentials::builder()
///     .token_url("https://auth.example.com/oauth2/token")
///     .client_id("my-service")
///     .client_secret(std::env::var("OAUTH_CLIENT_SECRET").unwrap_or_default())
///     .build()?;
/// let layer = OAuthLayer::builder(source)
///     .store(RedisStore::open("redis://redis.internal:6379/")?)
///     .build();
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub struct RedisStore {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    /// Made on first use, inside the runtime (both kinds spawn a task).
    connection: Mutex<Option<Connection>>,
    client: Option<Client>,
}

/// What a connection is made from on first use.
enum Client {
    Single(redis::Client, ConnectionManagerConfig),
    Cluster(ClusterClient, ClusterConfig),
}

/// One Redis server (through a connection manager) or a Redis Cluster.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisStore {
    /// A store at `url` (`redis://[user:password@]host[:port][/db]`), connected on first
    /// use. Each call to `open` makes its own connection.
    ///
    /// # Errors
    /// [`Error::is_config`] if the URL does not parse. The error does not repeat the URL,
    /// which may hold a password.
    pub fn open(url: &str) -> Result<RedisStore, Error> {
        let client =
            redis::Client::open(url).map_err(|_| Error::config("the Redis URL does not parse"))?;
        Ok(RedisStore::from_client(client))
    }

    /// A store on `client`, connected on first use with this crate's defaults: one
    /// second to connect or answer, two retries 50 ms to 1 s apart.
    pub fn from_client(client: redis::Client) -> RedisStore {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        RedisStore::from_client_with_config(client, config)
    }

    /// A store on `client`, connected on first use with the connection manager `config`.
    pub fn from_client_with_config(
        client: redis::Client,
        config: ConnectionManagerConfig,
    ) -> RedisStore {
        RedisStore::lazy(Client::Single(client, config))
    }

    /// A store on a connection manager you made.
    pub fn from_connection_manager(manager: ConnectionManager) -> RedisStore {
        RedisStore::made(Connection::Single(manager))
    }

    /// A store in the Redis Cluster whose nodes (some or all of them) are at `urls`
    /// (`redis://[user:password@]host:port`), connected on first use with this crate's
    /// defaults: one second to connect to a node or for an answer, two retries. The
    /// cluster's other nodes are found from these. Each call makes its own connections.
    ///
    /// # Errors
    /// [`Error::is_config`] if `urls` is empty, a URL does not parse, or the URLs differ in
    /// their user or password. The error does not repeat the URLs, which may hold a
    /// password.
    ///
    /// ```no_run
    /// use tower_oauth::store::RedisStore;
    ///
    /// # fn main() -> Result<(), tower_oauth::Error> {
    /// let store = RedisStore::open_cluster(&[
    ///     "redis://redis-0.internal:6379",
    ///     "redis://redis-1.internal:6379",
    ///     "redis://redis-2.internal:6379",
    /// ])?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn open_cluster<S: AsRef<str>>(urls: &[S]) -> Result<RedisStore, Error> {
        if urls.is_empty() {
            return Err(Error::config("no Redis Cluster node URL"));
        }
        let client = ClusterClientBuilder::new(urls.iter().map(|u| u.as_ref()))
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(1))
            .retries(2)
            .build()
            .map_err(|_| {
                Error::config(
                    "a Redis Cluster URL does not parse, or the URLs differ in their credentials",
                )
            })?;
        Ok(RedisStore::from_cluster_client(client))
    }

    /// A store in the Redis Cluster of `client`, connected on first use with this
    /// crate's defaults: one second to connect to a node or for an answer (the retries
    /// are the client's).
    pub fn from_cluster_client(client: ClusterClient) -> RedisStore {
        let config = ClusterConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(1));
        RedisStore::from_cluster_client_with_config(client, config)
    }

    /// A store in the Redis Cluster of `client`, connected on first use with the
    /// connection `config` (its timeouts replace the client's).
    pub fn from_cluster_client_with_config(
        client: ClusterClient,
        config: ClusterConfig,
    ) -> RedisStore {
        RedisStore::lazy(Client::Cluster(client, config))
    }

    /// A store on a Redis Cluster connection you made.
    pub fn from_cluster_connection(connection: ClusterConnection) -> RedisStore {
        RedisStore::made(Connection::Cluster(connection))
    }

    fn lazy(client: Client) -> RedisStore {
        RedisStore {
            inner: std::sync::Arc::new(Inner {
                connection: Mutex::new(None),
                client: Some(client),
            }),
        }
    }

    fn made(connection: Connection) -> RedisStore {
        RedisStore {
            inner: std::sync::Arc::new(Inner {
                connection: Mutex::new(Some(connection)),
                client: None,
            }),
        }
    }

    fn connection(&self) -> Result<Connection, BoxError> {
        let mut connection = self
            .inner
            .connection
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(connection) = &*connection {
            return Ok(connection.clone());
        }
        let made = match &self.inner.client {
            None => return Err("no Redis connection".into()),
            Some(Client::Single(client, config)) => Connection::Single(
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?,
            ),
            Some(Client::Cluster(client, config)) => {
                Connection::Cluster(client.get_pending_async_connection_with_config(config.clone()))
            }
        };
        *connection = Some(made.clone());
        Ok(made)
    }
}

fn millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

impl TokenStore for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BoxError> {
        let mut conn = self.connection()?;
        let value: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
        Ok(value)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), BoxError> {
        let mut conn = self.connection()?;
        let () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, BoxError> {
        let mut conn = self.connection()?;
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    async fn delete_if(&self, key: &str, expected: &[u8]) -> Result<bool, BoxError> {
        let mut conn = self.connection()?;
        let deleted: i64 = DELETE_IF
            .key(key)
            .arg(expected)
            .invoke_async(&mut conn)
            .await?;
        Ok(deleted == 1)
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection info may hold a password: show nothing of it.
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}
