//! The store part of a cache's configuration, and the object-safe face of its store.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::TokenStore;
use super::client::StoreClient;
use super::options::StoreOptions;
use super::value::Codec;
use super::warn::WarnLimiter;
use crate::BoxError;
use crate::identity::Identity;
use crate::key::CacheKey;

/// The shortest store call timeout: 1 millisecond.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// The longest lock TTL and lock wait: one day (and no `Instant` overflow).
const MAX_LOCK: Duration = Duration::from_secs(24 * 3600);

/// The wall clock of the cache: `SystemTime::now`, or a stand-in in tests.
pub(crate) type Wall = Arc<dyn Fn() -> SystemTime + Send + Sync>;

pub(super) type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + 'a>>;

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
        wall: Wall,
        identity: &Identity,
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
        // The cache key is the hash tag: in a Redis Cluster the token, its lock and its
        // failure record hash to one slot.
        let key = format!("{}{{{}}}", options.prefix, key.to_hex());
        let timeout = options.timeout.max(MIN_TIMEOUT).min(MAX_LOCK);
        // The holder's fetch and its store calls under the lock (read the token, read the
        // failure record, write), and 2 s to spare.
        let lock_ttl = options
            .lock_ttl
            .unwrap_or(
                fetch_timeout
                    .saturating_add(timeout.saturating_mul(3))
                    .saturating_add(Duration::from_secs(2)),
            )
            .clamp(Duration::from_millis(1), MAX_LOCK);
        Some(Arc::new(StoreClient {
            store,
            lock_key: format!("{key}:lock"),
            failure_key: format!("{key}:failure"),
            key,
            timeout,
            lock_ttl,
            lock_wait: options
                .lock_wait
                .unwrap_or(lock_ttl.saturating_add(Duration::from_secs(1)))
                .min(MAX_LOCK),
            codec: Codec {
                #[cfg(feature = "encryption")]
                key: options.encryption_key.clone(),
            },
            rejected: Mutex::new(None),
            warn: WarnLimiter::for_identity(identity),
            identity: identity.clone(),
            last_call: std::sync::atomic::AtomicU8::new(super::client::UNKNOWN),
            wall,
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
