//! [`StoreOptions`]: how a layer uses its shared token store, and the defaults.

use std::time::Duration;

use crate::key::CacheKey;
#[cfg(feature = "encryption")]
use crate::store::EncryptionKey;

/// The default key prefix: `tower-oauth:`.
pub const DEFAULT_PREFIX: &str = "tower-oauth:";
/// The default timeout of one call to the store: 250 milliseconds.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(250);

/// How a layer uses its [`TokenStore`](crate::store::TokenStore). Set with
/// [`OAuthLayerBuilder::store_options`](crate::OAuthLayerBuilder::store_options).
///
/// | option | default |
/// | --- | --- |
/// | [`prefix`](StoreOptions::prefix) | `tower-oauth:` |
/// | [`key`](StoreOptions::key) | the source's [`cache_key`](crate::TokenSource::cache_key) |
/// | [`timeout`](StoreOptions::timeout) | 250 ms per call |
/// | [`lock_ttl`](StoreOptions::lock_ttl) | the fetch timeout + 3 store timeouts + 2 s (12.75 s) |
/// | [`lock_wait`](StoreOptions::lock_wait) | the lock TTL + 1 s (13.75 s) |
/// | `encryption_key` | none: tokens are stored in clear |
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub(super) prefix: String,
    pub(super) key: Option<CacheKey>,
    pub(super) timeout: Duration,
    pub(super) lock_ttl: Option<Duration>,
    pub(super) lock_wait: Option<Duration>,
    #[cfg(feature = "encryption")]
    pub(super) encryption_key: Option<EncryptionKey>,
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
    /// store shared with other data. Keys are `<prefix>{<hex>}`: the braces around the
    /// cache key are a Redis Cluster hash tag, so a token and its lock share a slot. A
    /// prefix with a hash tag of its own (`app{orders}:`) puts all its keys in that tag's
    /// slot, which works too; a prefix with an empty `{}` in it does not (Redis then hashes
    /// whole key names, and a token and its lock may land in different slots).
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
    /// died). Default: the layer's fetch timeout, plus three store call
    /// [`timeout`](StoreOptions::timeout)s (the holder's reads and write under the lock),
    /// plus 2 seconds: 12.75 seconds with the defaults. Keep it above the fetch timeout and
    /// those calls, or a slow fetch lets a second instance fetch too. From 1 millisecond to one day (`Duration::MAX` means one
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
