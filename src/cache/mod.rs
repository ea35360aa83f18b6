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
//! `Authorization` header value. Each service keeps its own [`arc_swap::Cache`] of the slot, so a
//! request with a usable token compares one pointer, reads one flag and clones the header
//! (a reference count): no lock, no allocation, no clock. A timer task marks the token due once less than the
//! refresh margin of its lifetime is left, so requests never read a clock. A request that
//! finds no usable token joins the one fetch in flight, or starts it; the fetch runs on a
//! task of its own, so it completes even if every request waiting for it is dropped.
//!
//! # Refresh ahead, and riding out failures
//!
//! A token of lifetime `L` is *usable* until its refresh margin `M = min(margin, L / 2)` is
//! left; `L - M` is its usable part. By default the timer task starts one background
//! refresh once 75% of the usable part has passed, moved earlier by a random jitter of up
//! to 10% of the usable part, so that a fleet started together does not refresh together.
//! Whatever the settings, it starts no sooner than 1 second (and 1% of the usable part)
//! after the token was stored, and no later than the end of the usable part
//! ([`MIN_REFRESH_AHEAD`]): one token never causes more than one refresh.
//! Requests go on using the current token meanwhile: in steady state no request waits for
//! the token endpoint. See [`OAuthLayerBuilder::refresh_ahead`](crate::OAuthLayerBuilder::refresh_ahead).
//!
//! - *Hard expiry* is separate: past the usable part, a request that holds a token that
//!   has not expired goes on with it and starts the single fetch of the next (if none is in
//!   flight); only a request without a valid token waits for that fetch.
//! - A failed refresh is retried in the background with exponential backoff and jitter (1
//!   second doubling up to 60 seconds by default), or after the endpoint's `Retry-After`
//!   (on 429 and 503) when that is longer, up to the backoff maximum. The token endpoint
//!   sees one request per backoff step. Meanwhile requests keep the current token as long
//!   as it is *valid* (not expired), even past its usable part: an outage of the token
//!   endpoint does not fail requests while a valid token is in hand.
//! - Without a valid token (a cold cache, an expired token) a failed fetch is remembered
//!   for the failure window (1 second by default, or the `Retry-After`): requests in that
//!   window get its error at once, without a new token request.
//! - Expiry is judged on the wall clock as well as the monotonic one: a machine that was
//!   suspended for hours does not keep using a token that died meanwhile. The timer task
//!   looks at the wall clock at least once a second while a token is fresh.
//! - The timer task holds no reference that keeps the cache alive: it ends when the last
//!   clone of the layer (and of the services it built) is dropped.

mod clock;
mod config;
mod entry;
mod flight;
mod rejection;
mod status;
mod timer;

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use tokio::sync::Notify;

use crate::error::Error;
use crate::identity::Identity;
use crate::source::{DynSource, Erased, TokenSource};
use crate::store::StoreClient;
use crate::token::Token;

pub(crate) use config::Config;
pub(crate) use config::MAX_HOLD;
#[cfg(test)]
pub(crate) use config::WallClock;
pub use config::{
    DEFAULT_FAILURE_WINDOW, DEFAULT_FETCH_TIMEOUT, DEFAULT_REFRESH_AHEAD_FRACTION,
    DEFAULT_REFRESH_AHEAD_JITTER, DEFAULT_REFRESH_MARGIN, DEFAULT_RETRY_BASE, DEFAULT_RETRY_JITTER,
    DEFAULT_RETRY_MAX, MIN_FETCH_TIMEOUT, MIN_REFRESH_AHEAD,
};
pub(crate) use entry::{Entry, TokenId};
use flight::{Flight, Want};
pub(crate) use rejection::Rejected;
pub use status::CacheStatus;

struct Shared {
    slot: ArcSwapOption<Entry>,
    source: Box<dyn DynSource>,
    config: Config,
    /// The shared store between the slot and the source, if one is configured.
    store: Option<Arc<StoreClient>>,
    /// The fetch in flight, or the last one. Taken only on the slow path.
    flight: Mutex<Flight>,
    /// Wakes the timer task: a new token was stored, or the cache is being dropped.
    wake: Arc<Notify>,
    timer_started: AtomicBool,
    /// Moved on by each `invalidate()`: a fetch that began before it is not joined, and
    /// its token not stored.
    generation: AtomicU64,
    /// Keeps the coarse clock moving while this cache lives.
    _clock: clock::ClockUser,
    /// At most one `warn` event for failed fetches every 10 s; the others go to `debug`.
    fetch_warn: crate::store::warn::WarnLimiter,
    /// What the token is called in errors, logs and metrics.
    identity: Identity,
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

impl TokenCache {
    pub(crate) fn new<T: TokenSource>(source: T, config: Config) -> TokenCache {
        let identity = match (source.identity(), config.name.as_deref()) {
            (Some(identity), Some(name)) => identity.renamed(name),
            (Some(identity), None) => identity,
            (None, Some(name)) => Identity::new(name),
            (None, None) => Identity::default(),
        };
        let store = config.store.client(
            source.cache_key(),
            config.fetch_timeout,
            {
                let wall = config.wall_clock.clone();
                Arc::new(move || wall.now())
            },
            &identity,
        );
        TokenCache {
            shared: Arc::new(Shared {
                identity,
                slot: ArcSwapOption::empty(),
                source: Box::new(Erased(Arc::new(source))),
                config,
                store,
                flight: Mutex::new(Flight::default()),
                wake: Arc::new(Notify::new()),
                timer_started: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                _clock: clock::ClockUser::new(),
                fetch_warn: crate::store::warn::WarnLimiter::new(),
            }),
        }
    }

    /// What this cache's token is called in errors, log lines and metric labels: the
    /// layer's [`name`](crate::OAuthLayerBuilder::name) or the source's
    /// [`identity`](crate::TokenSource::identity).
    pub fn identity(&self) -> &Identity {
        &self.shared.identity
    }

    /// A reader of the slot for one service: see [`SlotReader`].
    pub(crate) fn reader(&self) -> SlotReader {
        SlotReader {
            cache: arc_swap::Cache::new(Slot(self.shared.clone())),
        }
    }

    /// The header and id of the cached entry if it is fresh, from one load of the slot: for
    /// callers that have no [`SlotReader`] of their own (a `&self` middleware). No lock, no
    /// clock, no allocation.
    #[cfg_attr(not(feature = "reqwest-middleware"), allow(dead_code))]
    #[inline]
    pub(crate) fn fresh_header(&self) -> Option<(http::HeaderValue, TokenId)> {
        let guard = self.shared.slot.load();
        match &*guard {
            Some(entry) if entry.is_fresh() => Some((entry.header.clone(), entry.id)),
            _ => None,
        }
    }

    /// The token in the cache, whether or not it is due for refresh, and **even if it has
    /// expired** (check [`Token::expires_at`](crate::Token::expires_at), or use
    /// [`status`](TokenCache::status) for a health check) (a failed refresh leaves the last token in place while it is valid, and the
    /// timer drops nothing); `None` before the first fetch and after
    /// [`invalidate`](TokenCache::invalidate).
    pub fn current(&self) -> Option<Token> {
        self.shared.slot.load().as_ref().map(|e| e.token.clone())
    }

    /// Drops the cached token: the next request fetches a new one. A fetch that is in
    /// flight is not joined, and its token not kept: it was asked for before. With a shared
    /// [`store`](crate::store), that token is not taken back from the store either, and the
    /// store entry is deleted (in the background) if it still holds it.
    pub fn invalidate(&self) {
        let previous = {
            let _flight = self.flight();
            self.shared.generation.fetch_add(1, Ordering::AcqRel);
            self.shared.slot.swap(None)
        };
        if let (Some(entry), Some(store)) = (previous, &self.shared.store) {
            store.reject(&entry.token);
        }
        tracing::debug!(target: "tower_oauth", "token invalidated");
    }

    /// Drops the entry `seen` from the slot if it is still the cached entry, and only then
    /// (compare-and-swap): a newer token is never thrown away. True if it was dropped. With
    /// a shared store, the store entry is then deleted too if it still holds that token (in
    /// the background).
    pub(crate) fn invalidate_if(&self, seen: TokenId) -> bool {
        let Some(seen) = self.shared.slot.load_full().filter(|e| e.id == seen) else {
            return false;
        };
        let previous = self.shared.slot.compare_and_swap(&seen, None);
        let dropped = matches!(&*previous, Some(p) if Arc::ptr_eq(p, &seen));
        if dropped {
            tracing::debug!(target: "tower_oauth", "rejected token invalidated");
            if let Some(store) = &self.shared.store {
                store.reject(&seen.token);
            }
        }
        dropped
    }

    /// Tells the cache that the API refused `token` (an HTTP 401): it is dropped from the
    /// cache if it is still the cached token, so the next request fetches a new one. With a
    /// shared [`store`](crate::store), the store entry is deleted too if it still holds this
    /// very token (compare-and-delete, in the background), and this instance never takes
    /// that token from the store again, so the whole fleet makes one refresh, not one per
    /// instance. A newer token, here or in the store, is never thrown away.
    pub fn reject(&self, token: &Token) {
        let current = self.shared.slot.load_full();
        if let Some(entry) = current
            && same_token(&entry.token, token)
            && self.invalidate_if(entry.id)
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

    /// A usable token: the cached one, or a new one from the single fetch in flight. If
    /// that fetch fails while the cached token has not expired yet (it is only past its
    /// refresh point), that token is returned, as requests would use it.
    ///
    /// # Errors
    /// The fetch's [`Error`] when there is no unexpired token; every caller waiting on the
    /// same fetch gets a clone of it.
    pub async fn token(&self) -> Result<Token, Error> {
        self.entry_for(Want::Usable).await.map(|e| e.token.clone())
    }

    /// Fetches a new token even if the cached one is usable, and stores it. If a fetch is
    /// already in flight, waits for that one instead of starting another. With a shared
    /// [`store`](crate::store), a token there other than the cached one is taken instead,
    /// so a fleet that refreshes at once still makes one token request.
    ///
    /// # Errors
    /// The fetch's [`Error`]; the cached token, if any, stays in place.
    pub async fn refresh(&self) -> Result<Token, Error> {
        self.step(Want::New).finish().await.map(|e| e.token.clone())
    }

    /// The slow path of a request: a valid entry (a usable one, or one past its usable part
    /// while the fetch of the next runs), or the fetch's outcome. If the fetch fails while
    /// the cached token is still valid, that token.
    ///
    /// A request that waits for a fetch is counted, with how long it waited (feature
    /// `metrics`).
    pub(crate) fn entry(&self) -> impl Future<Output = Result<Arc<Entry>, Error>> + Send + 'static {
        let cache = self.clone();
        async move {
            let step = cache.step(Want::Valid);
            let waits = matches!(step, flight::Step::Wait(_));
            let started = tokio::time::Instant::now();
            let entry = match step.finish().await {
                Err(error) => cache.valid_entry().ok_or(error),
                ready => ready,
            };
            if waits {
                crate::metrics::waited(&cache.shared.identity, started.elapsed());
            }
            entry
        }
    }

    fn entry_for(
        &self,
        want: Want,
    ) -> impl Future<Output = Result<Arc<Entry>, Error>> + Send + 'static {
        let cache = self.clone();
        async move {
            match cache.step(want).finish().await {
                Err(error) => cache.valid_entry().ok_or(error),
                ready => ready,
            }
        }
    }

    /// The cached entry if it has not expired, on either clock.
    fn valid_entry(&self) -> Option<Arc<Entry>> {
        let wall = self.shared.config.wall_clock.now();
        self.shared.slot.load_full().filter(|e| e.is_valid(wall))
    }
}

/// The slot as [`arc_swap::Cache`] wants it: something that dereferences to the `ArcSwap`.
#[derive(Clone)]
struct Slot(Arc<Shared>);

impl Deref for Slot {
    type Target = ArcSwapOption<Entry>;

    fn deref(&self) -> &ArcSwapOption<Entry> {
        &self.0.slot
    }
}

/// One service's view of the slot: an [`arc_swap::Cache`] that keeps the entry it saw last,
/// so that reading an unchanged slot is one pointer comparison, with no reference count
/// written (arc-swap `Cache`). Each clone has its own.
#[derive(Clone)]
pub(crate) struct SlotReader {
    cache: arc_swap::Cache<Slot, Option<Arc<Entry>>>,
}

impl SlotReader {
    /// The cached entry if it is fresh: no lock, no clock, no allocation.
    #[inline]
    pub(crate) fn fresh(&mut self) -> Option<&Entry> {
        match self.cache.load() {
            Some(entry) if entry.is_fresh() => Some(entry),
            _ => None,
        }
    }
}

impl fmt::Debug for SlotReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotReader").finish_non_exhaustive()
    }
}

fn same_token(a: &Token, b: &Token) -> bool {
    use secrecy::ExposeSecret;
    a.access_token().expose_secret() == b.access_token().expose_secret()
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
