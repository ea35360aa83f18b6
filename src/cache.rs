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
//!
//! # Refresh ahead, and riding out failures
//!
//! A token of lifetime `L` is *usable* until its refresh margin `M = min(margin, L / 2)` is
//! left; `L - M` is its usable part. By default the timer task starts one background
//! refresh once 75% of the usable part has passed, moved earlier by a random jitter of up
//! to 10% of the usable part, so that a fleet started together does not refresh together.
//! Requests go on using the current token meanwhile: in steady state no request waits for
//! the token endpoint. See [`OAuthLayerBuilder::refresh_ahead`](crate::OAuthLayerBuilder::refresh_ahead).
//!
//! - *Hard expiry* is separate: past the usable part, requests wait for the single fetch in
//!   flight (a background refresh still running, or one they start); before it they never
//!   wait.
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

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::source::{DynSource, Erased};
use crate::store::{StoreClient, StoreConfig};
use crate::{Error, Token, TokenSource};

mod refresh;

/// The default refresh margin: 60 seconds.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// The default timeout of one token fetch: 10 seconds.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The default point of the background refresh: when 75% of a token's usable part has
/// passed.
pub const DEFAULT_REFRESH_AHEAD_FRACTION: f64 = 0.75;
/// The default jitter of the background refresh: it starts up to 10% of the usable part
/// earlier.
pub const DEFAULT_REFRESH_AHEAD_JITTER: f64 = 0.10;
/// The default first retry delay after a failed refresh: 1 second.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
/// The default longest retry delay: 60 seconds.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(60);
/// The default retry jitter: each delay is shortened by a random part of up to 50% of it.
pub const DEFAULT_RETRY_JITTER: f64 = 0.5;
/// The default failure window: 1 second.
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(1);

/// A token in the slot, with what the hot path needs already computed.
/// Where entry ids come from.
static NEXT_ENTRY_ID: AtomicU64 = AtomicU64::new(1);

/// A token in the slot, with what the hot path needs already computed.
pub(crate) struct Entry {
    /// Which token this is, unique in the process: a request keeps it (not the entry, whose
    /// reference count all requests would share) to say later which token a 401 was for.
    pub(crate) id: u64,
    pub(crate) token: Token,
    /// `<token_type> <access_token>`, marked sensitive; cloning it is a reference count.
    pub(crate) header: HeaderValue,
    /// Monotonic time after which the token is no longer used without a refresh.
    usable_until: Instant,
    /// Set by the cache's timer once `usable_until` has passed (on either clock).
    due: AtomicBool,
    /// When the entry was made, on the monotonic clock.
    stored_at: Instant,
    /// `usable_until` on the wall clock: `expires_at` less the margin.
    usable_until_wall: SystemTime,
    /// Monotonic time at which the token expires.
    valid_until: Instant,
}

impl Entry {
    fn new(token: Token, margin: Duration) -> Result<Entry, Error> {
        let header = token.header_value()?;
        // Bytes made from a Vec allocate their shared state on the first clone; do that
        // clone here so that clones on the request path are only a reference count.
        drop(header.clone());
        let wall = SystemTime::now();
        let now = Instant::now();
        let usable_for = token.usable_for(margin, wall);
        let expires_at = token.expires_at();
        let usable_until_wall = expires_at
            .checked_sub(margin.min(token.expires_in() / 2))
            .unwrap_or(expires_at);
        let valid_for = expires_at.duration_since(wall).unwrap_or_default();
        Ok(Entry {
            id: NEXT_ENTRY_ID.fetch_add(1, Ordering::Relaxed),
            token,
            header,
            usable_until: now + usable_for,
            due: AtomicBool::new(usable_for.is_zero()),
            stored_at: now,
            usable_until_wall,
            valid_until: now + valid_for,
        })
    }

    /// True while the timer has not marked the token as due. One atomic read, no clock.
    #[inline]
    pub(crate) fn is_fresh(&self) -> bool {
        !self.due.load(Ordering::Acquire)
    }

    /// The full check, with clock reads, for the slow path.
    fn is_usable(&self, wall: SystemTime) -> bool {
        self.is_fresh() && Instant::now() < self.usable_until && wall < self.usable_until_wall
    }

    /// Not expired, on either clock (it may be past its usable part).
    fn is_valid(&self, wall: SystemTime) -> bool {
        Instant::now() < self.valid_until && wall < self.token.expires_at()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) refresh_margin: Duration,
    pub(crate) fetch_timeout: Duration,
    /// Background refresh before the usable part ends.
    pub(crate) refresh_ahead: bool,
    /// Share of the usable part after which the background refresh starts, 0..=1.
    pub(crate) refresh_ahead_fraction: f64,
    /// Largest share of the usable part by which that start is moved earlier, 0..=1.
    pub(crate) refresh_ahead_jitter: f64,
    /// Retry delays after failed fetches: `retry_base` doubling up to `retry_max`.
    pub(crate) retry_base: Duration,
    pub(crate) retry_max: Duration,
    /// Largest share of a retry delay taken off at random, 0..=1.
    pub(crate) retry_jitter: f64,
    /// How long a failed fetch is remembered for callers without a valid token.
    pub(crate) failure_window: Duration,
    pub(crate) wall_clock: refresh::WallClock,
    /// A token store shared with other instances, if any (see [`crate::store`]).
    pub(crate) store: StoreConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            refresh_ahead: true,
            refresh_ahead_fraction: DEFAULT_REFRESH_AHEAD_FRACTION,
            refresh_ahead_jitter: DEFAULT_REFRESH_AHEAD_JITTER,
            retry_base: DEFAULT_RETRY_BASE,
            retry_max: DEFAULT_RETRY_MAX,
            retry_jitter: DEFAULT_RETRY_JITTER,
            failure_window: DEFAULT_FAILURE_WINDOW,
            wall_clock: refresh::WallClock::default(),
            store: StoreConfig::default(),
        }
    }
}

type Outcome = Option<Result<Arc<Entry>, Error>>;

/// The fetch in flight or the last one, and what the failures since the last success allow.
#[derive(Default)]
struct Flight {
    rx: Option<watch::Receiver<Outcome>>,
    /// Failed fetches since the last success.
    failures: u32,
    /// After a failure: with a valid token in hand, no new fetch before this (backoff,
    /// `Retry-After`); the valid token is used meanwhile.
    retry_at: Option<Instant>,
    /// After a failure: without a valid token, callers get its error until this (failure
    /// window, `Retry-After`).
    quiet_until: Option<Instant>,
}

impl Flight {
    fn in_flight(&self) -> bool {
        self.rx.as_ref().is_some_and(is_live)
    }
}

/// A fetch is in flight while its channel has no outcome and its task still holds the
/// sender. (The task's [`Reporter`] always sends one; this is the second line of defence.)
fn is_live(rx: &watch::Receiver<Outcome>) -> bool {
    rx.borrow().is_none() && rx.has_changed().is_ok()
}

/// The longest delay a failure can put off the next fetch: one day, whatever the
/// configuration or a `Retry-After` say (and no `Instant` overflow).
const MAX_HOLD: Duration = Duration::from_secs(24 * 3600);

/// Delivers a fetch's outcome to its waiters, and records it, even when the fetch task is
/// dropped before it has one (its source panicked, its runtime shut down): the waiters then
/// get [`Error::is_cancelled`] and the next request starts a new fetch, instead of every
/// later request waiting on a channel no one will ever send on.
struct Reporter {
    cache: TokenCache,
    tx: Option<watch::Sender<Outcome>>,
}

impl Reporter {
    fn report(mut self, outcome: Result<Arc<Entry>, Error>) {
        self.send(outcome);
    }

    fn send(&mut self, outcome: Result<Arc<Entry>, Error>) {
        if let Some(tx) = self.tx.take() {
            self.cache.record(&outcome);
            let _ = tx.send(Some(outcome));
            // The timer schedules the next background try, or logs the success.
            self.cache.shared.wake.notify_one();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if self.tx.is_some() {
            tracing::warn!(target: "tower_oauth", "token fetch ended without a result (panic or runtime shutdown)");
            self.send(Err(Error::cancelled()));
        }
    }
}

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
                flight: Mutex::new(Flight::default()),
                wake: Arc::new(Notify::new()),
                timer_started: AtomicBool::new(false),
            }),
        }
    }

    /// The hot path: the cached entry if it is fresh. One atomic load, no lock, no clock.
    #[inline]
    pub(crate) fn fresh_header(&self) -> Option<(HeaderValue, u64)> {
        let guard = self.shared.slot.load();
        match &*guard {
            Some(entry) if entry.is_fresh() => Some((entry.header.clone(), entry.id)),
            _ => None,
        }
    }

    /// The token in the cache, whether or not it is due for refresh; `None` before the
    /// first fetch and after [`invalidate`](TokenCache::invalidate).
    pub fn current(&self) -> Option<Token> {
        self.shared.slot.load().as_ref().map(|e| e.token.clone())
    }

    /// Drops the cached token: the next request fetches a new one. With a shared
    /// [`store`](crate::store), that token is not taken back from the store either, and the
    /// store entry is deleted (in the background) if it still holds it.
    pub fn invalidate(&self) {
        let previous = self.shared.slot.swap(None);
        if let (Some(entry), Some(store)) = (previous, &self.shared.store) {
            store.reject(&entry.token);
        }
        tracing::debug!(target: "tower_oauth", "token invalidated");
    }

    /// Drops the entry with id `seen` from the slot if it is still the cached entry, and
    /// only then (compare-and-swap): a newer token is never thrown away. True if it was
    /// dropped. With a shared store, the store entry is then deleted too if it still holds
    /// that token (in the background).
    pub(crate) fn invalidate_if(&self, seen: u64) -> bool {
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

    /// The slow path: a usable entry, fetched if need be. If the fetch fails while the
    /// cached token is still valid (past its usable part, not expired), that token.
    pub(crate) fn entry(&self) -> impl Future<Output = Result<Arc<Entry>, Error>> + Send + 'static {
        let cache = self.clone();
        async move {
            match Self::finish(cache.step(false)).await {
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

    async fn finish(step: Step) -> Result<Arc<Entry>, Error> {
        match step {
            Step::Ready(entry) => Ok(entry),
            Step::Wait(mut rx) => match rx.wait_for(Option::is_some).await {
                Ok(outcome) => outcome.clone().unwrap_or_else(|| Err(Error::cancelled())),
                Err(_) => Err(Error::cancelled()),
            },
        }
    }

    /// Check, lock, check again, then join the fetch in flight or start one. Unless forced,
    /// a recent failure holds back a new fetch: with a valid token that token is used until
    /// the next retry, without one the failure's error is the answer until its window ends.
    fn step(&self, force: bool) -> Step {
        let shared = &self.shared;
        let flight = shared.flight.lock().unwrap_or_else(|e| e.into_inner());
        let wall = shared.config.wall_clock.now();
        if !force
            && let Some(entry) = shared.slot.load_full()
            && entry.is_usable(wall)
        {
            return Step::Ready(entry);
        }
        if let Some(rx) = &flight.rx
            && is_live(rx)
        {
            return Step::Wait(rx.clone());
        }
        if !force && let Some(rx) = &flight.rx {
            let now = Instant::now();
            let valid = shared.slot.load_full().filter(|e| e.is_valid(wall));
            match valid {
                Some(entry) if flight.retry_at.is_some_and(|at| now < at) => {
                    return Step::Ready(entry);
                }
                None if flight.quiet_until.is_some_and(|at| now < at) => {
                    return Step::Wait(rx.clone());
                }
                _ => {}
            }
        }
        Step::Wait(self.launch(flight))
    }

    /// Starts the background refresh of the entry `entry_id`, unless something changed
    /// since the timer looked (a fetch started or ended, another token was stored): the
    /// check and the start are under one lock, so a refresh a request just made is never
    /// followed by a second one.
    pub(crate) fn refresh_in_background(
        &self,
        entry_id: u64,
        failures: u32,
    ) -> Option<watch::Receiver<Outcome>> {
        let flight = self.shared.flight.lock().unwrap_or_else(|e| e.into_inner());
        let same_entry = self
            .shared
            .slot
            .load()
            .as_ref()
            .is_some_and(|e| e.id == entry_id);
        if flight.in_flight() || flight.failures != failures || !same_entry {
            return None;
        }
        Some(self.launch(flight))
    }

    /// Starts a fetch on a task of its own; its outcome goes to the returned channel.
    fn launch(&self, mut flight: std::sync::MutexGuard<'_, Flight>) -> watch::Receiver<Outcome> {
        let (tx, rx) = watch::channel(None);
        flight.rx = Some(rx.clone());
        drop(flight);
        let reporter = Reporter {
            cache: self.clone(),
            tx: Some(tx),
        };
        tokio::spawn(async move {
            let outcome = reporter.cache.fetch_and_store().await;
            reporter.report(outcome);
        });
        rx
    }

    /// Keeps count of failures and sets when the next fetch may go out.
    fn record(&self, outcome: &Result<Arc<Entry>, Error>) {
        let config = &self.shared.config;
        let mut flight = self.shared.flight.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(_) => {
                flight.failures = 0;
                flight.retry_at = None;
                flight.quiet_until = None;
            }
            Err(error) => {
                flight.failures = flight.failures.saturating_add(1);
                let retry_after = error.retry_after().map(|d| d.min(config.retry_max));
                let backoff = refresh::backoff(config, flight.failures, fastrand::f64());
                let now = Instant::now();
                let hold = |d: Duration| now + d.max(retry_after.unwrap_or_default()).min(MAX_HOLD);
                flight.retry_at = Some(hold(backoff));
                flight.quiet_until = Some(hold(config.failure_window));
            }
        }
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
            tokio::spawn(refresh::timer(
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
