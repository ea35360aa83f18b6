//! A token store in this process's memory.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::TokenStore;
use crate::BoxError;

/// A [`TokenStore`] in the memory of this process: for tests and examples, to share one
/// token between layers of one process, and as a model for a store of your own.
///
/// Clones share the same entries. Entries expire after their TTL on tokio's clock, so
/// tests on a paused clock see them expire with `tokio::time::advance`. It never fails.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
/// use secrecy::ExposeSecret;
/// use tower_oauth::store::{CacheKey, MemoryStore, StoreOptions};
/// use tower_oauth::{source_fn, OAuthLayer, Token};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_oauth::Error> {
/// let store = MemoryStore::new();
/// let fetches = Arc::new(AtomicUsize::new(0));
/// let instance = || {
///     let fetches = fetches.clone();
///     OAuthLayer::builder(source_fn(move || {
///         let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
///         async move { Ok(Token::new(format!("t{n}"), Duration::from_secs(600))) }
///     }))
///     .store(store.clone())
///     .store_options(StoreOptions::new().key(CacheKey::builder("example").build()))
///     .build()
/// };
/// let (a, b) = (instance(), instance());
/// let first = a.cache().token().await?; // fetched and stored
/// let second = b.cache().token().await?; // read from the store
/// assert_eq!(first.access_token().expose_secret(), "t1");
/// assert_eq!(second.access_token().expose_secret(), "t1");
/// assert_eq!(fetches.load(Ordering::SeqCst), 1);
/// assert_eq!(store.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    entries: Arc<Mutex<Entries>>,
}

/// Values and when they expire, by key.
type Entries = HashMap<String, (Vec<u8>, Instant)>;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The number of entries that have not expired (tokens and locks).
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .values()
            .filter(|(_, until)| *until > now)
            .count()
    }

    /// True if no entry is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every entry.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self, key: &str) -> Option<Vec<u8>> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }
}

impl TokenStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(self.live(key))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), BoxError> {
        let until = expiry(Instant::now(), ttl);
        self.lock().insert(key.to_owned(), (value.to_vec(), until));
        Ok(())
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, BoxError> {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.get(key).is_some_and(|(_, until)| *until > now) {
            return Ok(false);
        }
        entries.insert(key.to_owned(), (value.to_vec(), expiry(now, ttl)));
        Ok(true)
    }

    async fn delete_if(&self, key: &str, expected: &[u8]) -> Result<bool, BoxError> {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.get(key) {
            Some((value, until)) if *until > now && value == expected => {
                entries.remove(key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.len())
            .finish()
    }
}

/// When an entry set at `now` with `ttl` expires; a TTL past what `Instant` can hold never
/// does (in practice).
fn expiry(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .or_else(|| now.checked_add(Duration::from_secs(30 * 365 * 24 * 3600)))
        .unwrap_or(now)
}
