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
//!    its holder died, another instance takes over once the lock TTL has passed. A lock
//!    call that fails or times out may have been applied: the instance carries on as the
//!    holder and releases the lock at the end, so it is never left orphaned.
//! 4. When the holder's fetch fails, it records the failure under `<key>:failure` (the
//!    error kind, the RFC 6749 section 5.2 `error` code and the HTTP status: no secret,
//!    no `error_description`), with a TTL equal to how long it holds back the next fetch
//!    (the backoff step, or the failure window, each at least the `Retry-After`). Until it
//!    expires, instances that find it give their callers that error (with
//!    [`Error::retry_after`](crate::Error::retry_after) set to what is left of the hold),
//!    or keep serving their valid token, without a token request: during an outage, the
//!    fleet makes about one token request per backoff step, not one per instance.
//! 5. A stored token issued "in the future" (another instance's clock is ahead) is used at
//!    most for its own lifetime from now; one issued more than a day ahead, or with times
//!    that are not representable, is unreadable.
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
//! A token is stored under `<prefix>{<64 hex digits>}`, the hex being the SHA-256
//! [`CacheKey`] of everything that makes the token what it is (for
//! [`ClientCredentials`](crate::ClientCredentials): token URL, client id, a hash of the
//! secret, sorted scopes, audience, resources and other parameters). Its lock is the same
//! key with `:lock` appended. The braces make the hex a Redis Cluster hash tag: a token and
//! its lock are in one slot. The value is JSON with the token and its absolute expiry,
//! sealed with AES-256-GCM if an `EncryptionKey` is set (feature `encryption`).

use std::future::Future;
use std::time::Duration;

use crate::BoxError;

mod client;
mod config;
mod failure;
mod memory;
mod options;
#[cfg(feature = "redis")]
mod redis;
mod value;
pub(crate) mod warn;

pub use crate::key::{CacheKey, CacheKeyBuilder};
pub(crate) use client::StoreClient;
pub(crate) use config::StoreConfig;
pub(crate) use failure::Holds;
pub use memory::MemoryStore;
pub use options::{DEFAULT_PREFIX, DEFAULT_STORE_TIMEOUT, StoreOptions};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;
#[cfg(feature = "encryption")]
pub use value::EncryptionKey;

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

#[cfg(test)]
mod outage_tests;
#[cfg(test)]
mod tests;
