//! A cache's use of its shared store: the fleet-wide single flight, the rejection of a
//! refused token, and the fallback to a fetch of its own when the store fails.
//!
//! The lock protocol (see the [module docs](crate::store)): read the store; on a miss take
//! the lock with `set_if_absent(lock key, owner, lock TTL)`, read again, fetch, write the
//! token with a TTL that ends at its refresh point, and release the lock with
//! `delete_if(lock key, owner)`. An instance that finds the lock taken polls the store
//! (and the lock) with backoff until [`StoreOptions::lock_wait`] has passed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::TokenStore;
use super::options::StoreOptions;
use super::value::Codec;
use super::warn::WarnLimiter;
use crate::BoxError;
use crate::error::Error;
use crate::key::CacheKey;
use crate::token::Token;

/// The shortest store call timeout: 1 millisecond.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// The longest lock TTL and lock wait: one day (and no `Instant` overflow).
const MAX_LOCK: Duration = Duration::from_secs(24 * 3600);

/// The first pause of an instance waiting for another one's token: 10 milliseconds.
const FIRST_POLL: Duration = Duration::from_millis(10);
/// The longest pause between two polls of a waiting instance: 250 milliseconds.
pub(super) const MAX_POLL: Duration = Duration::from_millis(250);

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
        // The cache key is the hash tag: in a Redis Cluster the token and its lock (and any
        // other key made from `key` plus a suffix) hash to one slot.
        let key = format!("{}{{{}}}", options.prefix, key.to_hex());
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

/// Where the fleet-wide single flight leaves an instance.
enum Turn {
    /// A usable token was in the store.
    Stored(Token),
    /// This instance holds the refresh lock, under this owner value.
    Locked(String),
    /// The store failed, or the lock was held too long: fetch without the store.
    Alone(Error),
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
    /// A token for the cache: from the store, or fetched with `fetch` under the fleet-wide
    /// lock and stored, or (when the store fails) fetched without it. `fetch` is called at
    /// most once. `replacing` is the token the cache has now, which is not taken back from
    /// the store.
    pub(crate) async fn obtain<F, Fut>(
        &self,
        margin: Duration,
        replacing: Option<&Token>,
        fetch: F,
    ) -> Result<Token, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, Error>>,
    {
        let replacing = replacing.map(digest);
        let replacing = replacing.as_ref();
        let owner = match self.take_turn(margin, replacing).await {
            Turn::Stored(token) => return Ok(token),
            Turn::Locked(owner) => owner,
            Turn::Alone(error) => {
                self.warn.warn(
                    &error,
                    "token store unavailable; fetching a token without it",
                );
                return fetch().await;
            }
        };
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

    /// Reads the store, and on a miss takes the refresh lock or waits, polling with
    /// backoff, for the token of the instance that holds it.
    async fn take_turn(&self, margin: Duration, replacing: Option<&Digest32>) -> Turn {
        match self.read(margin, replacing).await {
            Ok(Some(token)) => {
                tracing::debug!(target: "tower_oauth", "token taken from the store");
                return Turn::Stored(token);
            }
            Ok(None) => {}
            Err(error) => return Turn::Alone(error),
        }
        let mut owner = [0u8; 16];
        if getrandom::fill(&mut owner).is_err() {
            return Turn::Alone(Error::store("no randomness for a lock owner", None));
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
                Ok(true) => return Turn::Locked(owner),
                Ok(false) => {}
                Err(error) => return Turn::Alone(error),
            }
            let now = Instant::now();
            if now >= deadline {
                let error = Error::store("another instance held the refresh lock too long", None);
                return Turn::Alone(error);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
            match self.read(margin, replacing).await {
                Ok(Some(token)) => {
                    tracing::debug!(target: "tower_oauth", "token taken from the store after waiting");
                    return Turn::Stored(token);
                }
                Ok(None) => {}
                Err(error) => return Turn::Alone(error),
            }
        }
    }

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
        if token.usable_for(margin, SystemTime::now()).is_zero() {
            return Ok(None);
        }
        Ok(Some(token))
    }

    fn rejected_lock(&self) -> MutexGuard<'_, Option<Digest32>> {
        self.rejected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `token` with a TTL that ends at its refresh point; nothing if that is past.
    async fn write(&self, token: &Token, margin: Duration) -> Result<(), Error> {
        let ttl = token.usable_for(margin, SystemTime::now());
        if ttl < Duration::from_millis(1) {
            return Ok(());
        }
        let value = self.codec.encode(token, &self.key)?;
        self.call("write failed", self.store.set(&self.key, &value, ttl))
            .await?;
        tracing::debug!(target: "tower_oauth", ttl_ms = ttl.as_millis() as u64, "token written to the store");
        Ok(())
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
