//! Shared token stores: one token per lifetime for a whole fleet of instances.
//!
//! Without a store, each instance (each process) fetches and caches its own token. With a
//! [`TokenStore`] shared by the instances, such as `RedisStore` (feature `redis`), they
//! share one token, and a refresh is single-flight across the fleet.
//!
//! The lock-free slot of the [`TokenCache`](crate::TokenCache) stays in front: a request
//! with a usable token in its process makes no call to the store at all. The store is
//! consulted only when the local token needs replacing:
//!
//! 1. Read the store. A usable token there (one that is not past its refresh point and
//!    is not the token being replaced) is taken as is.
//! 2. On a miss, take the fleet-wide lock (`set_if_absent(lock key, owner, lock TTL)`),
//!    read again, fetch from the [`TokenSource`](crate::TokenSource) only if still
//!    needed, write the token with a TTL that ends at its refresh point (expiry less the
//!    refresh margin), and release the lock if it still holds it (compare-and-delete).
//! 3. Instances that find the lock taken poll the store, with backoff from 10 ms to
//!    250 ms, and take the token once it appears. Each poll also tries the lock, so if
//!    its holder died, another instance takes over once the lock TTL has passed.
//!
//! A store that fails, is slow or holds garbage never fails a request by itself: each
//! call is bounded by [`StoreOptions::timeout`] (250 ms by default), and on any failure
//! the instance fetches a token on its own, single-flight within the process, and says
//! so with a `warn` event (at most one every 10 seconds per cache; the others are `debug`).
//!
//! A token the API refused (a 401) is dropped from the store only if the store still
//! holds that very token ([`TokenCache::reject`](crate::TokenCache::reject)), so the
//! fleet makes one refresh, not one per instance.
//!
//! ```
//! use std::time::Duration;
//! use tower_oauth::store::{CacheKey, MemoryStore, StoreOptions};
//! use tower_oauth::{source_fn, OAuthLayer, Token};
//!
//! let layer = OAuthLayer::builder(source_fn(|| async {
//!     Ok(Token::new("t", Duration::from_secs(600)))
//! }))
//! // In production: RedisStore::open("redis://...")? (feature `redis`).
//! .store(MemoryStore::new())
//! .store_options(
//!     StoreOptions::new()
//!         .prefix("billing:")
//!         // ClientCredentials has a key of its own; other sources need one.
//!         .key(CacheKey::builder("static").field("name", "t").build())
//!         .timeout(Duration::from_millis(100)),
//! )
//! .build();
//! # let _ = layer;
//! ```
//!
//! # Keys and values
//!
//! A token is stored under `<prefix><64 hex digits>`, the hex being the SHA-256
//! [`CacheKey`] of everything that makes the token what it is (for
//! [`ClientCredentials`](crate::ClientCredentials): token URL, client id, a hash of the
//! secret, sorted scopes, audience, resources and other parameters). Its lock is the same
//! key with `:lock` appended. The value is JSON with the token and its absolute expiry,
//! sealed with AES-256-GCM if an `EncryptionKey` is set (feature `encryption`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::cache::usable_for;
use crate::{BoxError, Error, Token};

mod key;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod value;

pub use key::{CacheKey, CacheKeyBuilder};
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;
#[cfg(feature = "encryption")]
pub use value::EncryptionKey;

use value::Codec;

/// The default key prefix: `tower-oauth:`.
pub const DEFAULT_PREFIX: &str = "tower-oauth:";
/// The default timeout of one call to the store: 250 milliseconds.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(250);
/// The first pause of an instance waiting for another one's token: 10 milliseconds.
const FIRST_POLL: Duration = Duration::from_millis(10);
/// The longest pause between two polls of a waiting instance: 250 milliseconds.
const MAX_POLL: Duration = Duration::from_millis(250);
/// At most one `warn` event every this long per cache; the others are `debug`.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// The shortest store call timeout: 1 millisecond.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// The longest lock TTL and lock wait: one day (and no `Instant` overflow).
const MAX_LOCK: Duration = Duration::from_secs(24 * 3600);

/// A key-value store shared by the instances of a service, where they keep one token.
///
/// Implement it to share tokens through something other than Redis (memcached, a
/// database...). Keys are UTF-8 strings without secrets; values are opaque bytes (JSON, or
/// binary when encrypted). The layer applies its own timeout to every call, so an
/// implementation need not; errors are any error type, and are logged without their
/// details reaching the requests.
///
/// The lock of the single-flight refresh is built from
/// [`set_if_absent`](TokenStore::set_if_absent) and [`delete_if`](TokenStore::delete_if):
/// both must be atomic in the store.
pub trait TokenStore: Send + Sync + 'static {
    /// The value under `key`, or `None` if there is none or it has expired.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, BoxError>> + Send;

    /// Stores `value` under `key`, replacing any value, until `ttl` has passed.
    fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Stores `value` under `key` until `ttl` has passed, only if `key` has no live value
    /// (Redis `SET key value NX PX ttl`). True if it stored it.
    fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Deletes `key` only if its value is `expected`, in one atomic step
    /// (compare-and-delete). True if it deleted it.
    fn delete_if(
        &self,
        key: &str,
        expected: &[u8],
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;
}

type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + 'a>>;

/// The object-safe face of a [`TokenStore`], so the cache does not carry its type.
pub(crate) trait DynStore: Send + Sync + 'static {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;
    fn set<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()>;
    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;
    fn delete_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> StoreFuture<'a, bool>;
    fn type_name(&self) -> &'static str;
}

impl<T: TokenStore> DynStore for T {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(TokenStore::get(self, key))
    }

    fn set<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(TokenStore::set(self, key, value, ttl))
    }

    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(TokenStore::set_if_absent(self, key, value, ttl))
    }

    fn delete_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> StoreFuture<'a, bool> {
        Box::pin(TokenStore::delete_if(self, key, expected))
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

/// How a layer uses its [`TokenStore`]. Set with
/// [`OAuthLayerBuilder::store_options`](crate::OAuthLayerBuilder::store_options).
///
/// | option | default |
/// | --- | --- |
/// | [`prefix`](StoreOptions::prefix) | `tower-oauth:` |
/// | [`key`](StoreOptions::key) | the source's [`cache_key`](crate::TokenSource::cache_key) |
/// | [`timeout`](StoreOptions::timeout) | 250 ms per call |
/// | [`lock_ttl`](StoreOptions::lock_ttl) | the fetch timeout + 2 s (12 s) |
/// | [`lock_wait`](StoreOptions::lock_wait) | the lock TTL + 1 s (13 s) |
/// | `encryption_key` | none: tokens are stored in clear |
#[derive(Clone, Debug)]
pub struct StoreOptions {
    prefix: String,
    key: Option<CacheKey>,
    timeout: Duration,
    lock_ttl: Option<Duration>,
    lock_wait: Option<Duration>,
    #[cfg(feature = "encryption")]
    encryption_key: Option<EncryptionKey>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            prefix: DEFAULT_PREFIX.to_owned(),
            key: None,
            timeout: DEFAULT_STORE_TIMEOUT,
            lock_ttl: None,
            lock_wait: None,
            #[cfg(feature = "encryption")]
            encryption_key: None,
        }
    }
}

impl StoreOptions {
    /// The defaults (see the table above).
    pub fn new() -> StoreOptions {
        StoreOptions::default()
    }

    /// The prefix of every key this layer writes (default `tower-oauth:`): a namespace in a
    /// store shared with other data.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The identity of the token, for a source without a
    /// [`cache_key`](crate::TokenSource::cache_key) of its own, or to override it. Layers
    /// with the same prefix and key share one token: give different tokens different keys.
    pub fn key(mut self, key: CacheKey) -> Self {
        self.key = Some(key);
        self
    }

    /// How long one call to the store may take (default 250 ms). A call that takes longer
    /// counts as a failure: the instance fetches a token on its own. At least 1
    /// millisecond (zero means 1 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long the fleet-wide refresh lock lives if its holder never releases it (it
    /// died). Default: the layer's fetch timeout plus 2 seconds (12 seconds with the
    /// default fetch timeout). Keep it above the fetch timeout, or a slow fetch lets a
    /// second instance fetch too. From 1 millisecond to one day (`Duration::MAX` means one
    /// day).
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = Some(ttl);
        self
    }

    /// How long an instance waits for the token another instance is fetching before it
    /// fetches one on its own. Default: the lock TTL plus 1 second. At most one day
    /// (`Duration::MAX` means one day).
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = Some(wait);
        self
    }

    /// Seals stored tokens with AES-256-GCM under `key` (feature `encryption`, on with
    /// `redis`). All instances sharing the tokens need the same key.
    #[cfg(feature = "encryption")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
    pub fn encryption_key(mut self, key: EncryptionKey) -> Self {
        self.encryption_key = Some(key);
        self
    }
}

/// The store part of a cache's configuration: no store, or a store and its options.
#[derive(Clone, Default)]
pub(crate) struct StoreConfig {
    pub(crate) store: Option<Arc<dyn DynStore>>,
    pub(crate) options: StoreOptions,
}

impl StoreConfig {
    /// The client of the store for a source whose own key is `source_key`; `None` without
    /// a store, or without any key (then with an error event).
    pub(crate) fn client(
        &self,
        source_key: Option<CacheKey>,
        fetch_timeout: Duration,
    ) -> Option<Arc<StoreClient>> {
        let store = self.store.clone()?;
        let options = &self.options;
        let Some(key) = options.key.or(source_key) else {
            tracing::error!(
                target: "tower_oauth",
                store = store.type_name(),
                "token store not used: the token source has no cache key; set one with StoreOptions::key"
            );
            return None;
        };
        let key = format!("{}{}", options.prefix, key.to_hex());
        let lock_ttl = options
            .lock_ttl
            .unwrap_or(fetch_timeout.saturating_add(Duration::from_secs(2)))
            .clamp(Duration::from_millis(1), MAX_LOCK);
        Some(Arc::new(StoreClient {
            store,
            lock_key: format!("{key}:lock"),
            key,
            timeout: options.timeout.max(MIN_TIMEOUT),
            lock_ttl,
            lock_wait: options
                .lock_wait
                .unwrap_or(lock_ttl + Duration::from_secs(1))
                .min(MAX_LOCK),
            codec: Codec {
                #[cfg(feature = "encryption")]
                key: options.encryption_key.clone(),
            },
            rejected: Mutex::new(None),
            warn: WarnLimiter::new(),
        }))
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("store", &self.store.as_ref().map(|s| s.type_name()))
            .field("options", &self.options)
            .finish()
    }
}

type Digest32 = [u8; 32];

fn digest(token: &Token) -> Digest32 {
    Sha256::digest(token.access_token().expose_secret().as_bytes()).into()
}

/// A cache's use of its store: the orchestration of the fleet-wide single flight.
pub(crate) struct StoreClient {
    store: Arc<dyn DynStore>,
    key: String,
    lock_key: String,
    timeout: Duration,
    lock_ttl: Duration,
    lock_wait: Duration,
    codec: Codec,
    /// SHA-256 of the last access token rejected here, never taken from the store again.
    rejected: Mutex<Option<Digest32>>,
    warn: WarnLimiter,
}

impl StoreClient {
    /// A call to the store, bounded by the timeout.
    async fn call<T>(&self, what: &'static str, call: StoreFuture<'_, T>) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Error::store(what, Some(error))),
            Err(_) => Err(Error::store("call timed out", None)),
        }
    }

    /// The token in the store if there is one this cache can use now: readable, not
    /// rejected here, not `replacing`, and not past its refresh point.
    async fn read(
        &self,
        margin: Duration,
        replacing: Option<&Digest32>,
    ) -> Result<Option<Token>, Error> {
        let Some(raw) = self.call("read failed", self.store.get(&self.key)).await? else {
            return Ok(None);
        };
        let token = match self.codec.decode(&raw, &self.key) {
            Ok(token) => token,
            Err(error) => {
                self.warn
                    .warn(&error, "stored token unreadable; fetching a new one");
                return Ok(None);
            }
        };
        let seen = digest(&token);
        if Some(&seen) == replacing || Some(seen) == *self.rejected_lock() {
            return Ok(None);
        }
        if usable_for(&token, margin, SystemTime::now()).is_zero() {
            return Ok(None);
        }
        Ok(Some(token))
    }

    fn rejected_lock(&self) -> std::sync::MutexGuard<'_, Option<Digest32>> {
        self.rejected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A token for the cache: from the store, or fetched under the fleet-wide lock and
    /// stored, or (when the store fails) fetched without it. `replacing` is the token the
    /// cache has now, which is not taken back from the store.
    pub(crate) async fn obtain<F, Fut>(
        &self,
        margin: Duration,
        replacing: Option<&Token>,
        fetch: F,
    ) -> Result<Token, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Token, Error>>,
    {
        let replacing = replacing.map(digest);
        let replacing = replacing.as_ref();
        match self.read(margin, replacing).await {
            Ok(Some(token)) => {
                tracing::debug!(target: "tower_oauth", "token taken from the store");
                return Ok(token);
            }
            Ok(None) => {}
            Err(error) => return self.fallback(&error, fetch).await,
        }
        let mut owner = [0u8; 16];
        if getrandom::fill(&mut owner).is_err() {
            let error = Error::store("no randomness for a lock owner", None);
            return self.fallback(&error, fetch).await;
        }
        let owner = hex::encode(owner);
        let now = Instant::now();
        let deadline = now.checked_add(self.lock_wait).unwrap_or(now);
        let mut pause = FIRST_POLL;
        loop {
            let lock = self
                .store
                .set_if_absent(&self.lock_key, owner.as_bytes(), self.lock_ttl);
            match self.call("lock failed", lock).await {
                Ok(true) => {
                    return self
                        .fetch_holding_lock(&owner, margin, replacing, fetch)
                        .await;
                }
                Ok(false) => {}
                Err(error) => return self.fallback(&error, fetch).await,
            }
            let now = Instant::now();
            if now >= deadline {
                let error = Error::store("another instance held the refresh lock too long", None);
                return self.fallback(&error, fetch).await;
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
            match self.read(margin, replacing).await {
                Ok(Some(token)) => {
                    tracing::debug!(target: "tower_oauth", "token taken from the store after waiting");
                    return Ok(token);
                }
                Ok(None) => {}
                Err(error) => return self.fallback(&error, fetch).await,
            }
        }
    }

    async fn fetch_holding_lock<F, Fut>(
        &self,
        owner: &str,
        margin: Duration,
        replacing: Option<&Digest32>,
        fetch: F,
    ) -> Result<Token, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Token, Error>>,
    {
        // Another instance may have stored a token between our read and our lock.
        let result = match self.read(margin, replacing).await {
            Ok(Some(token)) => Ok(token),
            Ok(None) | Err(_) => {
                let fetched = fetch().await;
                if let Ok(token) = &fetched
                    && let Err(error) = self.write(token, margin).await
                {
                    self.warn.warn(&error, "token not written to the store");
                }
                fetched
            }
        };
        let unlock = self.store.delete_if(&self.lock_key, owner.as_bytes());
        if let Err(error) = self.call("unlock failed", unlock).await {
            tracing::debug!(target: "tower_oauth", %error, "refresh lock not released; it expires by itself");
        }
        result
    }

    async fn write(&self, token: &Token, margin: Duration) -> Result<(), Error> {
        let ttl = usable_for(token, margin, SystemTime::now());
        if ttl < Duration::from_millis(1) {
            return Ok(());
        }
        let value = self.codec.encode(token, &self.key)?;
        self.call("write failed", self.store.set(&self.key, &value, ttl))
            .await?;
        tracing::debug!(target: "tower_oauth", ttl_ms = ttl.as_millis() as u64, "token written to the store");
        Ok(())
    }

    async fn fallback<F, Fut>(&self, error: &Error, fetch: F) -> Result<Token, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Token, Error>>,
    {
        self.warn.warn(
            error,
            "token store unavailable; fetching a token without it",
        );
        fetch().await
    }

    /// `token` was refused by the API: never take it from the store again, and delete it
    /// from the store, in the background, if the store still holds it.
    pub(crate) fn reject(self: &Arc<Self>, token: &Token) {
        let rejected = digest(token);
        *self.rejected_lock() = Some(rejected);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            match this.delete_if_holds(&rejected).await {
                Ok(true) => {
                    tracing::debug!(target: "tower_oauth", "rejected token deleted from the store");
                }
                Ok(false) => {}
                Err(error) => {
                    this.warn
                        .warn(&error, "rejected token not deleted from the store");
                }
            }
        });
    }

    async fn delete_if_holds(&self, rejected: &Digest32) -> Result<bool, Error> {
        let Some(raw) = self.call("read failed", self.store.get(&self.key)).await? else {
            return Ok(false);
        };
        match self.codec.decode(&raw, &self.key) {
            Ok(token) if digest(&token) == *rejected => {
                self.call("delete failed", self.store.delete_if(&self.key, &raw))
                    .await
            }
            _ => Ok(false),
        }
    }

    /// What the store holds for this cache, as is.
    pub(crate) async fn stored_token(&self) -> Result<Option<Token>, Error> {
        match self.call("read failed", self.store.get(&self.key)).await? {
            Some(raw) => self.codec.decode(&raw, &self.key).map(Some),
            None => Ok(None),
        }
    }
}

/// At most one `warn` event per [`WARN_EVERY`]; the others go to `debug`, and the next
/// `warn` says how many there were.
struct WarnLimiter {
    start: std::time::Instant,
    /// Milliseconds since `start` before which no `warn` is emitted.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl WarnLimiter {
    fn new() -> WarnLimiter {
        WarnLimiter {
            start: std::time::Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// True if this one goes out as a `warn`.
    fn warn(&self, error: &Error, what: &'static str) -> bool {
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        let loud = now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + WARN_EVERY.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if loud {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(target: "tower_oauth", %error, suppressed, "{what}");
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "tower_oauth", %error, "{what}");
        }
        loud
    }
}

impl fmt::Debug for StoreClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreClient")
            .field("store", &self.store.type_name())
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .field("lock_ttl", &self.lock_ttl)
            .field("lock_wait", &self.lock_wait)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
