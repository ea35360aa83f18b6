//! The token cache: a lock-free slot in front of a single-flight fetch.
//!
//! Every clone of an [`OAuthLayer`](crate::OAuthLayer), and every service it builds, share
//! one [`TokenCache`]. Reach it with [`OAuthLayer::cache`](crate::OAuthLayer::cache) to read
//! the current token, drop it, or force a refresh:
//!
//! ```
//! use std::time::Duration;
//! use tower_oauth::{source_fn, OAuthLayer, Token};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth::Error> {
//! let layer = OAuthLayer::new(source_fn(|| async {
//!     Ok(Token::new("t1", Duration::from_secs(3600)))
//! }));
//! let cache = layer.cache();
//! assert!(cache.current().is_none()); // nothing fetched yet
//! let token = cache.token().await?;   // fetches once
//! assert_eq!(token.expires_in(), Duration::from_secs(3600));
//! cache.invalidate();                 // the next request fetches again
//! assert!(cache.current().is_none());
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! The token sits in an [`arc_swap::ArcSwapOption`] together with its ready-made
//! `Authorization` header value. A request with a usable token does one atomic load and a
//! header clone. A timer task of the cache marks the token as due once less than the
//! refresh margin of its lifetime is left, so requests never read a clock. A request that
//! finds no usable token joins the one fetch in flight, or starts it; the fetch runs on a
//! task of its own, so it completes even if every request waiting for it is dropped.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::source::{DynSource, Erased};
use crate::store::{StoreClient, StoreConfig};
use crate::{Error, Token, TokenSource};

/// The default refresh margin: 60 seconds.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// The default timeout of one token fetch: 10 seconds.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A token in the slot, with what the hot path needs already computed.
pub(crate) struct Entry {
    pub(crate) token: Token,
    /// `<token_type> <access_token>`, marked sensitive; cloning it is a reference count.
    pub(crate) header: HeaderValue,
    /// Monotonic time after which the token is no longer used without a refresh.
    usable_until: Instant,
    /// Set by the cache's timer once `usable_until` has passed.
    due: AtomicBool,
}

impl Entry {
    fn new(token: Token, margin: Duration) -> Result<Entry, Error> {
        let mut header = HeaderValue::from_maybe_shared(bytes::Bytes::from(token.header_string()))
            .map_err(|_| Error::invalid_token())?;
        header.set_sensitive(true);
        // Bytes made from a Vec allocate their shared state on the first clone; do that
        // clone here so that clones on the request path are only a reference count.
        drop(header.clone());
        let usable_for = usable_for(&token, margin, SystemTime::now());
        Ok(Entry {
            token,
            header,
            usable_until: Instant::now() + usable_for,
            due: AtomicBool::new(usable_for.is_zero()),
        })
    }

    /// True while the timer has not marked the token as due. One atomic read, no clock.
    #[inline]
    pub(crate) fn is_fresh(&self) -> bool {
        !self.due.load(Ordering::Acquire)
    }

    /// The full check, with a clock read, for the slow path.
    fn is_usable(&self) -> bool {
        self.is_fresh() && Instant::now() < self.usable_until
    }
}

/// How long from `now` a token may be used before it is refreshed: its remaining lifetime
/// less the refresh margin, where the margin is `min(margin, lifetime / 2)`.
pub(crate) fn usable_for(token: &Token, margin: Duration, now: SystemTime) -> Duration {
    let lifetime = token.expires_in();
    let margin = margin.min(lifetime / 2);
    let remaining = token.expires_at().duration_since(now).unwrap_or_default();
    remaining.saturating_sub(margin)
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) refresh_margin: Duration,
    pub(crate) fetch_timeout: Duration,
    /// A token store shared with other instances, if any (see [`crate::store`]).
    pub(crate) store: StoreConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            store: StoreConfig::default(),
        }
    }
}

type Outcome = Option<Result<Arc<Entry>, Error>>;

struct Shared {
    slot: ArcSwapOption<Entry>,
    source: Box<dyn DynSource>,
    config: Config,
    /// The shared store between the slot and the source, if one is configured.
    store: Option<Arc<StoreClient>>,
    /// The fetch in flight, or the last one. Taken only on the slow path.
    flight: Mutex<Option<watch::Receiver<Outcome>>>,
    /// Wakes the timer task: a new token was stored, or the cache is being dropped.
    wake: Arc<Notify>,
    timer_started: AtomicBool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The timer task holds only a Weak; wake it so it sees the cache is gone and ends.
        self.wake.notify_one();
    }
}

/// The token cache shared by a layer, its clones and its services.
///
/// Cheap to clone (an `Arc`). See the [module docs](crate::cache).
#[derive(Clone)]
pub struct TokenCache {
    shared: Arc<Shared>,
}

enum Step {
    Ready(Arc<Entry>),
    Wait(watch::Receiver<Outcome>),
}

impl TokenCache {
    pub(crate) fn new<T: TokenSource>(source: T, config: Config) -> TokenCache {
        let store = config
            .store
            .client(source.cache_key(), config.fetch_timeout);
        TokenCache {
            shared: Arc::new(Shared {
                slot: ArcSwapOption::empty(),
                source: Box::new(Erased(Arc::new(source))),
                config,
                store,
                flight: Mutex::new(None),
                wake: Arc::new(Notify::new()),
                timer_started: AtomicBool::new(false),
            }),
        }
    }

    /// The hot path: the cached entry if it is fresh. One atomic load, no lock, no clock.
    #[inline]
    pub(crate) fn fresh_header(&self) -> Option<HeaderValue> {
        let guard = self.shared.slot.load();
        match &*guard {
            Some(entry) if entry.is_fresh() => Some(entry.header.clone()),
            _ => None,
        }
    }

    /// The token in the cache, whether or not it is due for refresh; `None` before the
    /// first fetch and after [`invalidate`](TokenCache::invalidate).
    pub fn current(&self) -> Option<Token> {
        self.shared.slot.load().as_ref().map(|e| e.token.clone())
    }

    /// Drops the cached token: the next request fetches a new one.
    pub fn invalidate(&self) {
        self.shared.slot.store(None);
        tracing::debug!(target: "tower_oauth", "token invalidated");
    }

    /// The entry in the slot, kept by a request that must know later which token it used.
    #[allow(dead_code)]
    pub(crate) fn load_full(&self) -> Option<Arc<Entry>> {
        self.shared.slot.load_full()
    }

    /// Drops `seen` from the slot if it is still the cached entry, and only then: a newer
    /// token is never thrown away. True if it was dropped. With a shared store, the store
    /// entry is then deleted too if it still holds that token (in the background).
    pub(crate) fn invalidate_if(&self, seen: &Arc<Entry>) -> bool {
        let previous = self.shared.slot.compare_and_swap(seen, None);
        let dropped = matches!(&*previous, Some(p) if Arc::ptr_eq(p, seen));
        if dropped {
            tracing::debug!(target: "tower_oauth", "rejected token invalidated");
            if let Some(store) = &self.shared.store {
                store.reject(&seen.token);
            }
        }
        dropped
    }

    /// Tells the cache that the API refused `token` (an HTTP 401): it is dropped from the
    /// cache if it is still the cached token, so the next request fetches a new one, and
    /// never used again. With a shared [`store`](crate::store), the store entry is deleted
    /// too if it still holds this very token (compare-and-delete, in the background), so
    /// the whole fleet makes one refresh, not one per instance. A newer token, here or in
    /// the store, is never thrown away.
    pub fn reject(&self, token: &Token) {
        let current = self.shared.slot.load_full();
        if let Some(entry) = current
            && same_token(&entry.token, token)
            && self.invalidate_if(&entry)
        {
            return;
        }
        if let Some(store) = &self.shared.store {
            store.reject(token);
        }
    }

    /// The token the shared [`store`](crate::store) holds for this cache, as it is there
    /// (whether or not it is due for refresh); `Ok(None)` if the store holds none, or if
    /// the layer has no store.
    ///
    /// # Errors
    /// [`Error::is_store`]: the store failed or timed out, or its value cannot be read (not
    /// written by this crate, or sealed with another encryption key).
    pub async fn stored_token(&self) -> Result<Option<Token>, Error> {
        match &self.shared.store {
            Some(store) => store.stored_token().await,
            None => Ok(None),
        }
    }

    /// A usable token: the cached one, or a new one from the single fetch in flight.
    ///
    /// # Errors
    /// The fetch's [`Error`]; every caller waiting on the same fetch gets a clone of it.
    pub async fn token(&self) -> Result<Token, Error> {
        self.entry().await.map(|e| e.token.clone())
    }

    /// Fetches a new token even if the cached one is usable, and stores it. If a fetch is
    /// already in flight, waits for that one instead of starting another. With a shared
    /// [`store`](crate::store), a token there other than the cached one is taken instead,
    /// so a fleet that refreshes at once still makes one token request.
    ///
    /// # Errors
    /// The fetch's [`Error`]; the cached token, if any, stays in place.
    pub async fn refresh(&self) -> Result<Token, Error> {
        let step = self.step(true);
        Self::finish(step).await.map(|e| e.token.clone())
    }

    /// The slow path: a usable entry, fetched if need be.
    pub(crate) fn entry(&self) -> impl Future<Output = Result<Arc<Entry>, Error>> + Send + 'static {
        let cache = self.clone();
        async move { Self::finish(cache.step(false)).await }
    }

    async fn finish(step: Step) -> Result<Arc<Entry>, Error> {
        match step {
            Step::Ready(entry) => Ok(entry),
            Step::Wait(mut rx) => match rx.wait_for(Option::is_some).await {
                Ok(outcome) => outcome.clone().unwrap_or_else(|| Err(Error::cancelled())),
                Err(_) => Err(Error::cancelled()),
            },
        }
    }

    /// Check, lock, check again, then join the fetch in flight or start one.
    fn step(&self, force: bool) -> Step {
        let shared = &self.shared;
        let mut flight = shared.flight.lock().unwrap_or_else(|e| e.into_inner());
        if !force
            && let Some(entry) = shared.slot.load_full()
            && entry.is_usable()
        {
            return Step::Ready(entry);
        }
        if let Some(rx) = &*flight
            && rx.borrow().is_none()
        {
            return Step::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        *flight = Some(rx.clone());
        drop(flight);
        let cache = self.clone();
        tokio::spawn(async move {
            let outcome = cache.fetch_and_store().await;
            let _ = tx.send(Some(outcome));
        });
        Step::Wait(rx)
    }

    /// A new token: from the shared store if there is one and it has a token, otherwise
    /// from the source, within the fetch timeout.
    async fn obtain(&self) -> Result<Token, Error> {
        let shared = &self.shared;
        let fetch = || async move {
            tracing::debug!(target: "tower_oauth", source = shared.source.type_name(), "fetching token");
            tokio::time::timeout(shared.config.fetch_timeout, shared.source.fetch_boxed())
                .await
                .unwrap_or_else(|_| Err(Error::timeout()))
        };
        match &shared.store {
            None => fetch().await,
            Some(store) => {
                // The token being replaced is not taken back from the store.
                let current = shared.slot.load_full();
                let replacing = current.as_ref().map(|e| &e.token);
                store
                    .obtain(shared.config.refresh_margin, replacing, fetch)
                    .await
            }
        }
    }

    async fn fetch_and_store(&self) -> Result<Arc<Entry>, Error> {
        let shared = &self.shared;
        let fetched = self.obtain().await;
        let entry = fetched.and_then(|token| Entry::new(token, shared.config.refresh_margin));
        match entry {
            Ok(entry) => {
                let entry = Arc::new(entry);
                shared.slot.store(Some(entry.clone()));
                self.start_timer();
                shared.wake.notify_one();
                tracing::debug!(
                    target: "tower_oauth",
                    expires_in_secs = entry.token.expires_in().as_secs(),
                    usable_for_ms = entry.usable_until.saturating_duration_since(Instant::now()).as_millis() as u64,
                    "token stored"
                );
                Ok(entry)
            }
            Err(error) => {
                tracing::warn!(target: "tower_oauth", %error, "token fetch failed");
                Err(error)
            }
        }
    }

    fn start_timer(&self) {
        if !self.shared.timer_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(timer(
                Arc::downgrade(&self.shared),
                self.shared.wake.clone(),
            ));
        }
    }
}

fn same_token(a: &Token, b: &Token) -> bool {
    use secrecy::ExposeSecret;
    a.access_token().expose_secret() == b.access_token().expose_secret()
}

/// Marks each stored token as due when its usable time has passed. Ends when the cache
/// is dropped.
async fn timer(cache: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(shared) = cache.upgrade() else {
                return;
            };
            let guard = shared.slot.load();
            guard
                .as_ref()
                .filter(|e| e.is_fresh())
                .map(|e| (e.usable_until, Arc::downgrade(e)))
        };
        match next {
            None => wake.notified().await,
            Some((at, entry)) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {
                        if let Some(entry) = entry.upgrade() {
                            entry.due.store(true, Ordering::Release);
                            tracing::debug!(target: "tower_oauth", "token due for refresh");
                        }
                    }
                    _ = wake.notified() => {}
                }
            }
        }
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let guard = self.shared.slot.load();
        f.debug_struct("TokenCache")
            .field("source", &self.shared.source.type_name())
            .field("token", &guard.as_ref().map(|e| &e.token))
            .field("config", &self.shared.config)
            .finish()
    }
}
