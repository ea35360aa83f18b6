//! One token for a fleet through a real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`): each "instance" is a layer with a connection of its own.
//! Every test that needs Redis runs twice, on the same body: `single::<name>` on that
//! Redis, and `cluster::<name>` on a Redis Cluster (`REDIS_CLUSTER_URLS`, comma-separated,
//! default the 3 nodes `scripts/redis-cluster.sh start` runs on 127.0.0.1:7001-7003).
//!
//! The tests that need Redis are `#[ignore]`d: `cargo test` reports them as ignored, and
//! `cargo test -- --include-ignored` (what `.ci/run` runs, with Redis started) runs them.
//! Run so with Redis unreachable, they skip with a printed reason, unless `CI` is set. The
//! tests of an unreachable or broken Redis need none and always run. Each test writes under
//! a random key prefix and deletes its keys when done, pass or fail. Redis TTLs run on the
//! real clock, so the refresh-cycle test sleeps for real (about 7 s).
#![cfg(feature = "redis")]

mod support;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use http::Request;
use secrecy::ExposeSecret;
use support::auth_server::{AuthServer, AuthServerConfig, FailureMode};
use support::{client_for, echo_auth};
use tokio::sync::oneshot;
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth::store::{CacheKey, EncryptionKey, RedisStore, StoreOptions};
use tower_oauth::{ClientCredentials, Error, OAuthLayer, Token, TokenSource};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The nodes of the test Redis Cluster.
fn cluster_urls() -> Vec<String> {
    std::env::var("REDIS_CLUSTER_URLS")
        .unwrap_or_else(|_| {
            "redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003".to_owned()
        })
        .split(',')
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect()
}

/// What a test's store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// One Redis server at `REDIS_URL`.
    Single,
    /// A Redis Cluster at `REDIS_CLUSTER_URLS`.
    Cluster,
}

impl Backend {
    /// The URLs of its nodes (one for a single server).
    fn urls(self) -> Vec<String> {
        match self {
            Backend::Single => vec![redis_url()],
            Backend::Cluster => cluster_urls(),
        }
    }

    /// A store with a connection of its own.
    fn store(self) -> RedisStore {
        match self {
            Backend::Single => RedisStore::open(&redis_url()).expect("Redis URL"),
            Backend::Cluster => RedisStore::open_cluster(&cluster_urls()).expect("cluster URLs"),
        }
    }

    /// What to name in a skip or failure message, and the variable that sets it.
    fn describe(self) -> String {
        match self {
            Backend::Single => format!("Redis at {} (REDIS_URL)", redis_url()),
            Backend::Cluster => format!(
                "a Redis Cluster at {} (REDIS_CLUSTER_URLS)",
                cluster_urls().join(",")
            ),
        }
    }
}

/// A test connection: to the one server, or to the cluster (which routes by key).
#[derive(Clone)]
enum Conn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    async fn connect(backend: Backend) -> redis::RedisResult<Conn> {
        let mut conn = match backend {
            Backend::Single => Conn::Single(
                redis::Client::open(redis_url().as_str())?
                    .get_multiplexed_async_connection()
                    .await?,
            ),
            Backend::Cluster => Conn::Cluster(
                redis::cluster::ClusterClient::new(cluster_urls())?
                    .get_async_connection()
                    .await?,
            ),
        };
        let _: String = conn.query(&redis::cmd("PING")).await?;
        Ok(conn)
    }

    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

/// A raw connection for checks and clean-up, with this test's random key prefix.
struct Redis {
    backend: Backend,
    conn: Conn,
    prefix: String,
}

impl Redis {
    /// `None` (after saying why) if Redis (or the cluster) is unreachable and `CI` is not
    /// set.
    async fn connect(test: &str, backend: Backend) -> Option<Redis> {
        let failure =
            match tokio::time::timeout(Duration::from_secs(2), Conn::connect(backend)).await {
                Ok(Ok(conn)) => {
                    let mut id = [0u8; 8];
                    getrandom::fill(&mut id).expect("randomness");
                    let prefix = format!("tower-oauth-test:{test}:{}:", hex::encode(id));
                    return Some(Redis {
                        backend,
                        conn,
                        prefix,
                    });
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 2 s".to_owned(),
            };
        let what = backend.describe();
        if std::env::var_os("CI").is_some() {
            panic!("{what} is required when CI is set: {failure}");
        }
        eprintln!("skipping {test}: {what} unreachable ({failure})");
        None
    }

    /// One instance: a layer with a store (and a connection) of its own.
    fn instance(&self, source: impl TokenSource, options: StoreOptions) -> OAuthLayer {
        OAuthLayer::builder(source)
            .store(self.backend.store())
            .store_options(options)
            .build()
    }

    /// The key of the token of `source` under this test's prefix.
    fn key_of(&self, source: &impl TokenSource) -> String {
        format!(
            "{}{{{}}}",
            self.prefix,
            source.cache_key().expect("key").to_hex()
        )
    }

    /// Options with this test's prefix. The timeout per Redis call is 2 s here rather
    /// than 250 ms: it is not what these tests are about, and on a loaded 2-core machine
    /// a call can wait that long for a CPU; the instance would then (rightly) fetch on its
    /// own and the exact counts would be off by one. The tests of an unreachable Redis use
    /// the default.
    fn options(&self) -> StoreOptions {
        StoreOptions::new()
            .prefix(self.prefix.clone())
            .timeout(Duration::from_secs(2))
    }

    /// The keys under this test's prefix on every node, sorted.
    async fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for url in self.backend.urls() {
            let client = redis::Client::open(url.as_str()).expect("URL");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("node");
            let on_node: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query_async(&mut conn)
                .await
                .expect("KEYS");
            keys.extend(on_node);
        }
        keys.sort();
        keys
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let cmd = redis::cmd("GET").arg(key).to_owned();
        self.conn.clone().query(&cmd).await.expect("GET")
    }

    async fn set(&self, key: &str, value: &[u8]) {
        let cmd = redis::cmd("SET").arg(key).arg(value).to_owned();
        let () = self.conn.clone().query(&cmd).await.expect("SET");
    }

    async fn pttl(&self, key: &str) -> i64 {
        let cmd = redis::cmd("PTTL").arg(key).to_owned();
        self.conn.clone().query(&cmd).await.expect("PTTL")
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`; cluster only).
    async fn keyslot(&self, key: &str) -> i64 {
        let cmd = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).to_owned();
        self.conn
            .clone()
            .query(&cmd)
            .await
            .expect("CLUSTER KEYSLOT")
    }
}

/// Deletes the test's keys on every node, also when the test failed.
impl Drop for Redis {
    fn drop(&mut self) {
        let clean = |url: &str| -> redis::RedisResult<()> {
            let client = redis::Client::open(url)?;
            let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query(&mut conn)?;
            // One at a time: in a cluster, keys of different slots cannot go in one DEL.
            for key in keys {
                redis::cmd("DEL").arg(&key).query::<i64>(&mut conn)?;
            }
            Ok(())
        };
        for url in self.backend.urls() {
            if let Err(e) = clean(&url) {
                eprintln!("test keys under {} not deleted: {e}", self.prefix);
            }
        }
    }
}

/// `n` concurrent requests through `layer`; the `Authorization` header each one carried.
async fn calls(layer: &OAuthLayer, n: usize) -> Vec<String> {
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(echo_auth::<String>());
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(Request::new(String::new())).await })
        })
        .collect();
    let mut headers = Vec::with_capacity(n);
    for task in tasks {
        headers.push(task.await.expect("task").expect("request").into_body());
    }
    headers
}

/// `n` concurrent requests on each instance, all at once; every header carried.
async fn fleet_calls(layers: &[OAuthLayer], n: usize) -> Vec<String> {
    let tasks: Vec<_> = layers
        .iter()
        .map(|layer| {
            let layer = layer.clone();
            tokio::spawn(async move { calls(&layer, n).await })
        })
        .collect();
    let mut headers = Vec::new();
    for task in tasks {
        headers.extend(task.await.expect("instance"));
    }
    headers
}

fn secret(token: &Token) -> String {
    token.access_token().expose_secret().to_owned()
}

async fn cold_store_8_instances_200_concurrent_calls_each_make_exactly_one_token_request(
    backend: Backend,
) {
    let Some(redis) = Redis::connect("cold", backend).await else {
        return;
    };
    let server = AuthServer::start(AuthServerConfig {
        // Long enough that all 8 instances miss the store and race for the lock.
        token_delay: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let layers: Vec<_> = (0..8)
        .map(|_| redis.instance(client_for(&server), redis.options()))
        .collect();

    let headers = fleet_calls(&layers, 200).await;

    assert_eq!(server.token_requests(), 1);
    assert_eq!(headers.len(), 1600);
    assert!(headers[0].starts_with("Bearer tok"), "{}", headers[0]);
    assert!(
        headers.iter().all(|h| h == &headers[0]),
        "one token for all"
    );
    let keys = redis.keys().await;
    assert_eq!(keys.len(), 1, "one token and no lock left: {keys:?}");
    let token = layers[0].cache().current().expect("cached");
    assert_eq!(keys[0], redis.key_of(&client_for(&server)));
    if backend == Backend::Cluster {
        let lock = format!("{}:lock", keys[0]);
        assert_eq!(
            redis.keyslot(&keys[0]).await,
            redis.keyslot(&lock).await,
            "the token and its lock in one slot"
        );
    }
    assert!(!keys[0].contains(&secret(&token)));
    assert!(!keys[0].contains(&server.config().client_secret));
    // The entry ends at expiry (3600 s) less the refresh margin (60 s).
    let pttl = redis.pttl(&keys[0]).await;
    assert!((3_530_000..=3_540_000).contains(&pttl), "PTTL {pttl} ms");
    let value = redis.get(&keys[0]).await.expect("value");
    let json: serde_json::Value = serde_json::from_slice(&value).expect("JSON");
    let expires_at_ms = json["expires_at_ms"].as_u64().expect("expires_at_ms");
    let issued_at_ms = json["issued_at_ms"].as_u64().expect("issued_at_ms");
    assert_eq!(expires_at_ms - issued_at_ms, 3_600_000);
    assert_eq!(json["access_token"], secret(&token));
}

/// A token that lives 2 s with a 1 s refresh margin: one refresh cycle per second.
const CYCLE_LIFETIME_SECS: u64 = 2;
const CYCLE_MARGIN: Duration = Duration::from_secs(1);
const REFRESH_CYCLES: usize = 5;

/// One instance of the refresh-cycle test.
fn cycling_instance(
    backend: Backend,
    source: ClientCredentials,
    options: StoreOptions,
) -> OAuthLayer {
    OAuthLayer::builder(source)
        .refresh_margin(CYCLE_MARGIN)
        // Refresh ahead is the default; said here because the test is about it.
        .refresh_ahead(true)
        .store(backend.store())
        .store_options(options)
        .build()
}

/// Runs a cold start and `REFRESH_CYCLES` refreshes on `n` instances sharing a store;
/// the token requests they made.
async fn refresh_cycles(n: usize, redis: &Redis, prefix: &str) -> usize {
    let server = AuthServer::start(AuthServerConfig {
        expires_in: CYCLE_LIFETIME_SECS,
        ..Default::default()
    })
    .await;
    let options = redis.options().prefix(format!("{}{prefix}", redis.prefix));
    let layers: Vec<_> = (0..n)
        .map(|_| cycling_instance(redis.backend, client_for(&server), options.clone()))
        .collect();
    let mut seen = HashSet::new();
    for cycle in 0..=REFRESH_CYCLES {
        let headers = fleet_calls(&layers, 20).await;
        assert!(
            headers.iter().all(|h| h == &headers[0]),
            "{n} instances, cycle {cycle}: one token for all"
        );
        assert!(seen.insert(headers[0].clone()), "a new token each cycle");
        assert_eq!(
            server.token_requests(),
            cycle + 1,
            "{n} instances, cycle {cycle}"
        );
        if cycle == REFRESH_CYCLES {
            break;
        }
        // Sleep past the refresh point of the token: expiry less the margin.
        let token = layers[0].cache().current().expect("cached");
        let due = token.expires_at() - CYCLE_MARGIN + Duration::from_millis(100);
        let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
        tokio::time::sleep(wait).await;
    }
    server.token_requests()
}

async fn over_5_refresh_cycles_8_instances_make_as_many_token_requests_as_one(backend: Backend) {
    let Some(redis) = Redis::connect("cycles", backend).await else {
        return;
    };
    // Both fleets run at once, on stores of their own, to keep the test short.
    let (one, eight) = tokio::join!(
        refresh_cycles(1, &redis, "one:"),
        refresh_cycles(8, &redis, "eight:"),
    );
    assert_eq!(
        one,
        REFRESH_CYCLES + 1,
        "one instance: cold start + 5 refreshes"
    );
    assert_eq!(eight, one, "8 instances make as many token requests as one");
}

/// A source that has the identity of `inner` but whose fetch never ends: the instance
/// holding the lock dies in the middle of it.
struct DyingSource {
    inner: ClientCredentials,
    started: Mutex<Option<oneshot::Sender<()>>>,
}

impl TokenSource for DyingSource {
    async fn fetch(&self) -> Result<Token, Error> {
        if let Some(started) = self.started.lock().unwrap().take() {
            let _ = started.send(());
        }
        std::future::pending().await
    }

    fn cache_key(&self) -> Option<CacheKey> {
        self.inner.cache_key()
    }
}

async fn lock_holder_dying_mid_fetch_another_instance_gets_a_token_within_the_lock_ttl(
    backend: Backend,
) {
    let Some(redis) = Redis::connect("dying", backend).await else {
        return;
    };
    let server = AuthServer::start_default().await;
    let lock_ttl = Duration::from_millis(1500);
    let options = redis.options().lock_ttl(lock_ttl);

    // Instance A runs on a runtime of its own, takes the lock, starts its fetch, and dies.
    let (started_tx, started_rx) = oneshot::channel();
    let a = redis.instance(
        DyingSource {
            inner: client_for(&server),
            started: Mutex::new(Some(started_tx)),
        },
        options.clone(),
    );
    let runtime_a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let cache_a = a.cache().clone();
    runtime_a.spawn(async move { cache_a.token().await });
    started_rx.await.expect("A started its fetch");
    runtime_a.shutdown_background();
    let key = redis.key_of(&client_for(&server));
    // Taken before the lock's PTTL is read, so the lock expires at least `lock_left`
    // after `started`, whatever the delays in between.
    let started = std::time::Instant::now();
    let lock_left = redis.pttl(&format!("{key}:lock")).await;
    assert!(lock_left > 0, "A holds the lock: PTTL {lock_left}");
    let lock_left = Duration::from_millis(lock_left as u64);

    let b = redis.instance(client_for(&server), options);
    let token = tokio::time::timeout(Duration::from_secs(10), b.cache().token())
        .await
        .expect("B is not stuck")
        .expect("B gets a token");
    let waited = started.elapsed();

    assert!(
        waited >= lock_left,
        "B waited for the lock: {waited:?} < {lock_left:?}"
    );
    // Within the lock TTL, plus one poll (at most 250 ms) and the token request.
    assert!(waited <= lock_left + Duration::from_secs(1), "{waited:?}");
    assert_eq!(server.token_requests(), 1);
    let keys = redis.keys().await;
    assert_eq!(keys, vec![key.clone()], "only 1 token stored, no lock left");
    let stored = b.cache().stored_token().await.unwrap().expect("stored");
    assert_eq!(secret(&stored), secret(&token));
}

async fn a_401_on_all_8_instances_makes_exactly_one_token_request(backend: Backend) {
    let Some(redis) = Redis::connect("reject", backend).await else {
        return;
    };
    let server = AuthServer::start(AuthServerConfig {
        token_delay: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let layers: Vec<_> = (0..8)
        .map(|_| redis.instance(client_for(&server), redis.options()))
        .collect();
    fleet_calls(&layers, 10).await;
    assert_eq!(server.token_requests(), 1);
    let t = layers[0].cache().current().expect("cached");
    assert!(server.revoke(&secret(&t)));

    // Each instance is told its token got a 401 and sends requests again right away, all
    // instances at once.
    let tasks: Vec<_> = layers
        .iter()
        .map(|layer| {
            let layer = layer.clone();
            let t = t.clone();
            tokio::spawn(async move {
                layer.cache().reject(&t);
                calls(&layer, 200).await
            })
        })
        .collect();
    let mut headers = Vec::new();
    for task in tasks {
        headers.extend(task.await.expect("instance"));
    }

    assert_eq!(
        server.token_requests(),
        2,
        "exactly 1 token request after the 401"
    );
    assert_eq!(headers.len(), 1600);
    assert!(
        headers.iter().all(|h| h == &headers[0]),
        "one new token for all"
    );
    let t2 = layers[7].cache().current().expect("cached");
    assert_ne!(secret(&t2), secret(&t));
    assert!(server.is_valid(&secret(&t2)));

    // A late 401 with the old token leaves the new one in the store.
    layers[3].cache().reject(&t);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stored = layers[0]
        .cache()
        .stored_token()
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(secret(&stored), secret(&t2));
    assert_eq!(server.token_requests(), 2);
}

async fn a_401_deletes_the_shared_entry_while_it_still_holds_the_token(backend: Backend) {
    let Some(redis) = Redis::connect("reject-delete", backend).await else {
        return;
    };
    let server = AuthServer::start_default().await;
    let a = redis.instance(client_for(&server), redis.options());
    let t = a.cache().token().await.expect("token");
    assert_eq!(redis.keys().await.len(), 1);

    a.cache().reject(&t);
    // The compare-and-delete runs in the background; give it a moment.
    for _ in 0..50 {
        if redis.keys().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        redis.keys().await.is_empty(),
        "the rejected token left the store"
    );
    assert!(a.cache().current().is_none());

    // An instance that never saw the 401 starts now: it does not get the rejected token.
    let fresh = redis.instance(client_for(&server), redis.options());
    let t2 = fresh.cache().token().await.expect("token");
    assert_ne!(secret(&t2), secret(&t));
    assert_eq!(server.token_requests(), 2);
}

async fn sources_differing_only_in_scope_audience_or_secret_never_share_a_token(backend: Backend) {
    let Some(redis) = Redis::connect("identity", backend).await else {
        return;
    };
    let server = AuthServer::start(AuthServerConfig {
        extra_secrets: vec!["rotated-secret".to_owned()],
        ..Default::default()
    })
    .await;
    let source = |scope: &str, audience: &str, secret: &str| {
        ClientCredentials::builder()
            .token_url(server.token_url())
            .client_id(&server.config().client_id)
            .client_secret(secret)
            .scope(scope)
            .audience(audience)
            .build()
            .expect("valid configuration")
    };
    let s1 = server.config().client_secret.clone();
    let sources = [
        ("base", source("orders.read", "api-1", &s1)),
        ("scope", source("orders.write", "api-1", &s1)),
        ("audience", source("orders.read", "api-2", &s1)),
        ("secret", source("orders.read", "api-1", "rotated-secret")),
    ];
    let keys: Vec<CacheKey> = sources
        .iter()
        .map(|(_, s)| s.cache_key().expect("key"))
        .collect();
    let distinct: HashSet<_> = keys.iter().collect();
    assert_eq!(
        distinct.len(),
        4,
        "the base and 3 variants, each with its own key"
    );
    // Same identity, scopes in another order: the same key.
    assert_eq!(
        source("b a", "api-1", &s1).cache_key(),
        source("a b", "api-1", &s1).cache_key()
    );

    // Two instances per source; the first of each fetches, the second reads the store.
    let first: Vec<_> = sources
        .iter()
        .map(|(_, s)| redis.instance(s.clone(), redis.options()))
        .collect();
    let second: Vec<_> = sources
        .iter()
        .map(|(_, s)| redis.instance(s.clone(), redis.options()))
        .collect();
    let mut tokens = Vec::new();
    for layer in &first {
        tokens.push(secret(&layer.cache().token().await.expect("token")));
    }
    for ((name, _), (layer, token)) in sources.iter().zip(second.iter().zip(&tokens)) {
        let got = secret(&layer.cache().token().await.expect("token"));
        assert_eq!(&got, token, "{name}: its own token, from the store");
    }
    assert_eq!(server.token_requests(), 4);
    assert_eq!(
        tokens.iter().collect::<HashSet<_>>().len(),
        4,
        "never crossed"
    );

    let stored = redis.keys().await;
    let expected: Vec<String> = {
        let mut k: Vec<_> = keys
            .iter()
            .map(|k| format!("{}{{{}}}", redis.prefix, k.to_hex()))
            .collect();
        k.sort();
        k
    };
    assert_eq!(stored, expected);
    for key in &stored {
        assert!(!key.contains(&s1) && !key.contains("rotated-secret"));
        assert!(tokens.iter().all(|t| !key.contains(t.as_str())));
        let value = redis.get(key).await.expect("value");
        let text = String::from_utf8_lossy(&value);
        assert!(!text.contains(&s1) && !text.contains("rotated-secret"));
    }
}

/// DPoP (RFC 9449): a bound token is worth nothing without its key, so the store keys it by
/// the key's thumbprint too. Two instances with the same key share 1 token; an instance
/// with another key fetches its own, and the two are never crossed. (The test server does
/// not bind tokens: it answers `Bearer`, which the downgrade option accepts.)
async fn dpop_tokens_are_shared_only_by_instances_with_the_same_key(backend: Backend) {
    use tower_oauth::endpoint::dpop::{Dpop, DpopKey};
    let Some(redis) = Redis::connect("dpop", backend).await else {
        return;
    };
    let server = AuthServer::start_default().await;
    let source = |dpop: &Dpop| {
        ClientCredentials::builder()
            .token_url(server.token_url())
            .client_id(&server.config().client_id)
            .client_secret(&server.config().client_secret)
            .dpop(dpop.clone().allowing_bearer_downgrade())
            .build()
            .expect("valid configuration")
    };
    let key = DpopKey::generate_es256().expect("key");
    let (a, b) = (Dpop::new(key.clone()), Dpop::new(key));
    let other = Dpop::new(DpopKey::generate_es256().expect("key"));
    let mut tokens = Vec::new();
    for dpop in [&a, &b, &other] {
        let layer = redis.instance(source(dpop), redis.options());
        tokens.push(secret(&layer.cache().token().await.expect("token")));
    }
    assert_eq!(tokens[0], tokens[1], "the same key: one shared token");
    assert_ne!(tokens[0], tokens[2], "another key: never that token");
    assert_eq!(server.token_requests(), 2);
    assert_eq!(redis.keys().await.len(), 2);
}

async fn encrypted_values_cannot_be_read_back_with_a_wrong_key(backend: Backend) {
    let Some(redis) = Redis::connect("encryption", backend).await else {
        return;
    };
    let server = AuthServer::start_default().await;
    let k1 = EncryptionKey::from_bytes([7; 32]);
    let k2 = EncryptionKey::from_bytes([8; 32]);
    let a = redis.instance(
        client_for(&server),
        redis.options().encryption_key(k1.clone()),
    );
    let a2 = redis.instance(client_for(&server), redis.options().encryption_key(k1));
    let b = redis.instance(client_for(&server), redis.options().encryption_key(k2));
    let plain = redis.instance(client_for(&server), redis.options());

    let ta = a.cache().token().await.expect("token");
    let keys = redis.keys().await;
    assert_eq!(keys.len(), 1);
    let value = redis.get(&keys[0]).await.expect("value");
    assert!(value.starts_with(b"aes256gcm:v1:"));
    let token_bytes = secret(&ta).into_bytes();
    assert!(
        !value.windows(token_bytes.len()).any(|w| w == token_bytes),
        "no bearer token in the dump"
    );
    // The same key reads it back without a token request.
    assert_eq!(secret(&a2.cache().token().await.unwrap()), secret(&ta));
    assert_eq!(server.token_requests(), 1);

    // A wrong key: a typed error...
    let err = b.cache().stored_token().await.expect_err("wrong key");
    assert!(err.is_store(), "{err}");
    assert!(!format!("{err} {err:?}").contains(&secret(&ta)));
    let err = plain.cache().stored_token().await.expect_err("no key");
    assert!(err.is_store(), "{err}");
    // ...then a refetch, and requests go on.
    let tb = b.cache().token().await.expect("refetched");
    assert_ne!(secret(&tb), secret(&ta));
    assert_eq!(server.token_requests(), 2);
    let headers = calls(&b, 10).await;
    assert!(
        headers
            .iter()
            .all(|h| h == &format!("Bearer {}", secret(&tb)))
    );
}

/// A loopback address where nothing listens any more.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("redis://{addr}")
}

/// A loopback server that accepts connections and never answers, or answers garbage once.
async fn fake_redis(garbage: bool) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            if garbage {
                let _ = socket
                    .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n\x00\xff")
                    .await;
            }
            // Never answers (more): the socket stays open.
            held.push(socket);
        }
    });
    (format!("redis://{addr}"), task)
}

/// 100 concurrent requests through an instance whose Redis is at `url`: all succeed,
/// within 2 s (the store timeout is 250 ms), with one token request.
async fn requests_succeed_without_redis(url: &str) {
    requests_succeed_without_store(RedisStore::open(url).expect("URL")).await;
}

/// As above, with `store`.
async fn requests_succeed_without_store(store: RedisStore) {
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::builder(client_for(&server))
        .store(store)
        .build();
    let headers = tokio::time::timeout(Duration::from_secs(2), calls(&layer, 100))
        .await
        .expect("no request waits on Redis beyond its timeout");
    assert_eq!(headers.len(), 100);
    assert!(headers[0].starts_with("Bearer tok"));
    assert!(headers.iter().all(|h| h == &headers[0]));
    assert_eq!(
        server.token_requests(),
        1,
        "single flight in the process still"
    );
    let err = tokio::time::timeout(Duration::from_secs(2), layer.cache().stored_token())
        .await
        .expect("bounded")
        .expect_err("no store");
    assert!(err.is_store(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_at_a_closed_port_requests_succeed_through_the_local_fallback() {
    requests_succeed_without_redis(&closed_port().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_at_closed_ports_requests_succeed_through_the_local_fallback() {
    let urls = [
        closed_port().await,
        closed_port().await,
        closed_port().await,
    ];
    requests_succeed_without_store(RedisStore::open_cluster(&urls).expect("URLs")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_that_never_answers_requests_succeed_within_the_timeout() {
    let (url, task) = fake_redis(false).await;
    requests_succeed_without_store(RedisStore::open_cluster(&[url]).expect("URL")).await;
    task.abort();
}

#[test]
fn redis_cluster_without_a_node_url_is_a_config_error() {
    let err = RedisStore::open_cluster::<&str>(&[]).expect_err("no node");
    assert!(err.is_config(), "{err}");
    let err = RedisStore::open_cluster(&["redis://user:hunter2@[::1"]).expect_err("bad URL");
    assert!(err.is_config(), "{err}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_never_answers_requests_succeed_within_the_timeout() {
    let (url, task) = fake_redis(false).await;
    requests_succeed_without_redis(&url).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_answering_garbage_requests_succeed_through_the_local_fallback() {
    let (url, task) = fake_redis(true).await;
    requests_succeed_without_redis(&url).await;
    task.abort();
}

async fn garbage_under_the_key_is_replaced_by_a_good_token(backend: Backend) {
    let Some(redis) = Redis::connect("garbage", backend).await else {
        return;
    };
    let server = AuthServer::start_default().await;
    let key = redis.key_of(&client_for(&server));
    redis.set(&key, b"\xff not a token").await;
    let layer = redis.instance(client_for(&server), redis.options());
    assert!(layer.cache().stored_token().await.unwrap_err().is_store());
    let headers = calls(&layer, 50).await;
    assert!(headers.iter().all(|h| h == &headers[0]));
    assert_eq!(server.token_requests(), 1);
    let stored = layer.cache().stored_token().await.unwrap().expect("stored");
    assert_eq!(format!("Bearer {}", secret(&stored)), headers[0]);
}

async fn debug_output_shows_no_secret(backend: Backend) {
    let Some(redis) = Redis::connect("debug", backend).await else {
        return;
    };
    let server = AuthServer::start_default().await;
    let layer = redis.instance(
        client_for(&server),
        redis
            .options()
            .encryption_key(EncryptionKey::from_bytes([9; 32])),
    );
    let token = layer.cache().token().await.unwrap();
    let store = RedisStore::open("redis://user:hunter2@127.0.0.1:1/").unwrap();
    let cluster = RedisStore::open_cluster(&["redis://user:hunter2@127.0.0.1:1/"]).unwrap();
    let text = format!("{layer:?} {store:?} {cluster:?}");
    assert!(!text.contains(&secret(&token)));
    assert!(!text.contains(&server.config().client_secret));
    assert!(!text.contains("hunter2"));
    assert!(text.contains("RedisStore"), "{text}");
}

/// The tests above that need Redis, each on one server (`single::<name>`) and on a
/// Redis Cluster (`cluster::<name>`).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod single {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs Redis at 127.0.0.1:6379 (REDIS_URL)"]
                async fn $name() {
                    super::$name(super::Backend::Single).await;
                }
            )*
        }

        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs a Redis Cluster (REDIS_CLUSTER_URLS)"]
                async fn $name() {
                    super::$name(super::Backend::Cluster).await;
                }
            )*
        }
    };
}

on_both_backends!(
    cold_store_8_instances_200_concurrent_calls_each_make_exactly_one_token_request,
    over_5_refresh_cycles_8_instances_make_as_many_token_requests_as_one,
    lock_holder_dying_mid_fetch_another_instance_gets_a_token_within_the_lock_ttl,
    a_401_on_all_8_instances_makes_exactly_one_token_request,
    a_401_deletes_the_shared_entry_while_it_still_holds_the_token,
    sources_differing_only_in_scope_audience_or_secret_never_share_a_token,
    encrypted_values_cannot_be_read_back_with_a_wrong_key,
    dpop_tokens_are_shared_only_by_instances_with_the_same_key,
    garbage_under_the_key_is_replaced_by_a_good_token,
    debug_output_shows_no_secret,
);

/// Requests from each of `layers`, one every 20 ms per instance, for `load`: how many
/// succeeded and how many failed.
async fn steady_load(layers: &[OAuthLayer], load: Duration) -> (usize, usize) {
    let end = tokio::time::Instant::now() + load;
    let tasks: Vec<_> = layers
        .iter()
        .map(|layer| {
            let svc = ServiceBuilder::new()
                .layer(layer.clone())
                .service(echo_auth::<String>());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0, 0);
                while tokio::time::Instant::now() < end {
                    match svc.clone().oneshot(Request::new(String::new())).await {
                        Ok(_) => ok += 1,
                        Err(_) => failed += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for task in tasks {
        let (o, f) = task.await.expect("instance");
        ok += o;
        failed += f;
    }
    (ok, failed)
}

/// The shortest time between two token requests the server saw after `from`.
fn shortest_gap(server: &AuthServer, from: tokio::time::Instant) -> Option<Duration> {
    let times: Vec<_> = server
        .token_request_log()
        .into_iter()
        .map(|r| r.at)
        .filter(|at| *at >= from)
        .collect();
    times.windows(2).map(|w| w[1].duration_since(w[0])).min()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis at 127.0.0.1:6379 (REDIS_URL)"]
async fn invalid_client_for_10_s_on_8_instances_without_a_token_makes_at_most_11_token_requests() {
    let Some(redis) = Redis::connect("outage-invalid-client", Backend::Single).await else {
        return;
    };
    let server = AuthServer::start(AuthServerConfig {
        failure: FailureMode::InvalidClient,
        ..Default::default()
    })
    .await;
    let key = CacheKey::builder("test").field("name", "outage").build();
    let layers: Vec<_> = (0..8)
        .map(|_| redis.instance(client_for(&server), redis.options().key(key)))
        .collect();
    let started = tokio::time::Instant::now();
    let (ok, failed) = steady_load(&layers, Duration::from_secs(10)).await;
    let requests = server.token_requests();
    eprintln!("{failed} requests failed, {requests} token requests in 10 s");
    assert_eq!(ok, 0);
    assert!(failed >= 8 * 100, "{failed}");
    // At most one per 1 s failure window for the fleet (about 80 without the record).
    assert!(requests <= 11, "{requests} token requests");
    let gap = shortest_gap(&server, started).expect("more than one token request");
    // The failure window, less the time between the holder's fetch and its record.
    assert!(gap >= Duration::from_millis(900), "{gap:?}");
    let failure = format!("{}{{{}}}:failure", redis.prefix, key.to_hex());
    let raw = redis.get(&failure).await;
    if let Some(raw) = raw {
        let text = String::from_utf8(raw).expect("JSON");
        assert!(text.contains("invalid_client"), "{text}");
        assert!(!text.contains(&server.config().client_secret), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis at 127.0.0.1:6379 (REDIS_URL)"]
async fn a_503_with_retry_after_5_while_8_instances_hold_a_valid_token_makes_one_token_request_per_5_s()
 {
    let Some(redis) = Redis::connect("outage-retry-after", Backend::Single).await else {
        return;
    };
    let server = AuthServer::start(AuthServerConfig {
        expires_in: 24,
        retry_after: Some("5".to_owned()),
        ..Default::default()
    })
    .await;
    // A 24 s token with a 12 s margin: usable for 12 s, valid for 12 s more.
    let layers: Vec<_> = (0..8)
        .map(|_| {
            OAuthLayer::builder(client_for(&server))
                .refresh_margin(Duration::from_secs(12))
                .store(RedisStore::open(&redis_url()).expect("Redis URL"))
                .store_options(redis.options())
                .build()
        })
        .collect();
    fleet_calls(&layers, 10).await;
    assert_eq!(server.token_requests(), 1);
    server.set_failure(FailureMode::TemporarilyUnavailable);
    let failing = tokio::time::Instant::now();
    // Until 1 s before the token expires: every request has the valid token.
    let (ok, failed) = steady_load(&layers, Duration::from_secs(22)).await;
    let requests = server.token_requests() - 1;
    eprintln!("{ok} requests succeeded, {requests} token requests answered 503");
    assert_eq!(failed, 0);
    assert!(ok >= 8 * 200, "{ok}");
    // The refresh starts at 12 s at the latest (9 s with refresh ahead): then at most one
    // token request per 5 s for the fleet.
    assert!((1..=3).contains(&requests), "{requests} token requests");
    if let Some(gap) = shortest_gap(&server, failing) {
        assert!(gap >= Duration::from_millis(4900), "{gap:?}");
    }
}
