//! The single flight: check, lock, check again, then join the fetch in flight or start one
//! on a task of its own; record its outcome and what the failures since the last success
//! allow.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::config::{Config, MAX_HOLD, after, backoff};
use super::entry::{Entry, TokenId};
use super::rejection::Rejections;
use super::{TokenCache, timer};
use crate::error::Error;
use crate::store::Holds;
use crate::token::Token;

pub(crate) type Outcome = Option<Result<Arc<Entry>, Error>>;

/// The fetch in flight or the last one, and what the failures since the last success allow.
#[derive(Default)]
pub(crate) struct Flight {
    rx: Option<watch::Receiver<Outcome>>,
    /// Failed fetches since the last success.
    pub(crate) failures: u32,
    /// When the last fetch of the current generation ended (wall clock), and its error.
    pub(crate) last_fetch_at: Option<std::time::SystemTime>,
    pub(crate) last_error: Option<Error>,
    /// After a failure: with a valid token in hand, no new fetch before this (backoff,
    /// `Retry-After`); the valid token is used meanwhile.
    pub(crate) retry_at: Option<Instant>,
    /// After a failure: without a valid token, callers get its error until this (failure
    /// window, `Retry-After`).
    quiet_until: Option<Instant>,
    /// Rejections of young tokens in a row (see `rejection.rs`).
    pub(crate) rejections: Rejections,
    /// The generation of the cache when the fetch in flight started: a fetch started
    /// before an `invalidate()` is neither joined nor stored after it.
    generation: u64,
}

impl Flight {
    pub(crate) fn in_flight(&self) -> bool {
        self.rx.as_ref().is_some_and(is_live)
    }
}

/// A fetch is in flight while its channel has no outcome and its task still holds the
/// sender. (The task's [`Reporter`] always sends one; this is the second line of defence.)
fn is_live(rx: &watch::Receiver<Outcome>) -> bool {
    rx.borrow().is_none() && rx.has_changed().is_ok()
}

/// Delivers a fetch's outcome to its waiters, and records it, even when the fetch task is
/// dropped before it has one (its source panicked, its runtime shut down): the waiters then
/// get [`Error::is_cancelled`] and the next request starts a new fetch, instead of every
/// later request waiting on a channel no one will ever send on.
struct Reporter {
    cache: TokenCache,
    tx: Option<watch::Sender<Outcome>>,
    /// The cache's generation when the fetch began.
    generation: u64,
}

impl Reporter {
    fn report(mut self, outcome: Result<Arc<Entry>, Error>) {
        self.send(outcome);
    }

    fn send(&mut self, outcome: Result<Arc<Entry>, Error>) {
        if let Some(tx) = self.tx.take() {
            self.cache.record(&outcome, self.generation);
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

/// What a caller on the slow path asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// A valid token, or a wait: a request, which never waits while a valid token is held.
    Valid,
    /// A usable token (not past its refresh point), waiting for the fetch if need be:
    /// [`TokenCache::token`].
    Usable,
    /// A new token: [`TokenCache::refresh`].
    New,
}

/// What a caller on the slow path does next.
pub(crate) enum Step {
    Ready(Arc<Entry>),
    Wait(watch::Receiver<Outcome>),
}

impl Step {
    /// The entry, once the fetch it waits for has ended.
    pub(crate) async fn finish(self) -> Result<Arc<Entry>, Error> {
        match self {
            Step::Ready(entry) => Ok(entry),
            Step::Wait(mut rx) => match rx.wait_for(Option::is_some).await {
                Ok(outcome) => outcome.clone().unwrap_or_else(|| Err(Error::cancelled())),
                Err(_) => Err(Error::cancelled()),
            },
        }
    }
}

impl TokenCache {
    pub(crate) fn flight(&self) -> MutexGuard<'_, Flight> {
        self.shared.flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Check, lock, check again, then join the fetch in flight or start one. Unless forced,
    /// a caller that holds a valid token (past its usable part, not expired) never waits:
    /// it gets that token, and a fetch is started if none is in flight and no failure
    /// holds it back. A recent failure holds back a new fetch: with a valid token that
    /// token is used until the next retry, without one the failure's error is the answer
    /// until its window ends.
    pub(crate) fn step(&self, want: Want) -> Step {
        let force = want == Want::New;
        let shared = &self.shared;
        let flight = self.flight();
        let wall = shared.config.wall_clock.now();
        let current = shared.slot.load_full();
        if !force
            && let Some(entry) = &current
            && entry.is_usable(wall)
        {
            return Step::Ready(entry.clone());
        }
        let valid = current.filter(|e| !force && e.is_valid(wall));
        // Served at once while a fetch runs: only to requests.
        let serve = valid.clone().filter(|_| want == Want::Valid);
        let generation = shared.generation.load(Ordering::Acquire);
        if let Some(rx) = &flight.rx
            && is_live(rx)
            && flight.generation == generation
        {
            return match serve {
                Some(entry) => Step::Ready(entry),
                None => Step::Wait(rx.clone()),
            };
        }
        if !force && let Some(rx) = &flight.rx {
            let now = Instant::now();
            match valid {
                Some(entry) if flight.retry_at.is_some_and(|at| now < at) => {
                    return Step::Ready(entry);
                }
                // The last fetch of this generation failed: its error, until the window ends.
                None if flight.quiet_until.is_some_and(|at| now < at)
                    && flight.generation == generation
                    && rx.borrow().as_ref().is_some_and(Result::is_err) =>
                {
                    return Step::Wait(rx.clone());
                }
                _ => {}
            }
        }
        let rx = self.launch(flight);
        match serve {
            Some(entry) => Step::Ready(entry),
            None => Step::Wait(rx),
        }
    }

    /// Starts the background refresh of the entry `entry_id`, unless something changed
    /// since the timer looked (a fetch started or ended, another token was stored): the
    /// check and the start are under one lock, so a refresh a request just made is never
    /// followed by a second one.
    pub(crate) fn refresh_in_background(
        &self,
        entry_id: TokenId,
        failures: u32,
    ) -> Option<watch::Receiver<Outcome>> {
        let flight = self.flight();
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
    fn launch(&self, mut flight: MutexGuard<'_, Flight>) -> watch::Receiver<Outcome> {
        let (tx, rx) = watch::channel(None);
        let generation = self.shared.generation.load(Ordering::Acquire);
        flight.rx = Some(rx.clone());
        flight.generation = generation;
        drop(flight);
        let reporter = Reporter {
            cache: self.clone(),
            tx: Some(tx),
            generation,
        };
        // One span per fetch: the token's name, and (set by `obtain` when the source
        // answers) the outcome and how long it took.
        let span = tracing::info_span!(
            target: "tower_oauth",
            "token_fetch",
            identity = self.shared.identity.name(),
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        tokio::spawn(
            async move {
                let outcome = reporter.cache.fetch_and_store(generation).await;
                reporter.report(outcome);
            }
            .instrument(span),
        );
        rx
    }

    /// Keeps count of failures and sets when the next fetch may go out.
    fn record(&self, outcome: &Result<Arc<Entry>, Error>, generation: u64) {
        let config = &self.shared.config;
        let mut flight = self.flight();
        // A fetch from before an `invalidate()` says nothing about the current one.
        if flight.generation != generation {
            return;
        }
        flight.last_fetch_at = Some(config.wall_clock.now());
        flight.last_error = outcome.as_ref().err().cloned();
        match outcome {
            Ok(_) => {
                flight.failures = 0;
                flight.retry_at = None;
                flight.quiet_until = None;
            }
            Err(error) => {
                flight.failures = flight.failures.saturating_add(1);
                let holds = holds(config, flight.failures, error);
                let now = Instant::now();
                flight.retry_at = Some(after(now, holds.retry));
                flight.quiet_until = Some(after(now, holds.quiet));
                // The one event of a failed fetch, foreground or background; rate-limited.
                let failures_in_a_row = flight.failures;
                let retry_in_ms = holds.retry.as_millis() as u64;
                match self.shared.fetch_warn.loud() {
                    Some(suppressed) => tracing::warn!(
                        target: "tower_oauth",
                        identity = self.shared.identity.name(),
                        token_endpoint = self.shared.identity.token_endpoint(),
                        %error,
                        failures_in_a_row,
                        retry_in_ms,
                        suppressed,
                        "token fetch failed"
                    ),
                    None => tracing::debug!(
                        target: "tower_oauth",
                        identity = self.shared.identity.name(),
                        %error,
                        failures_in_a_row,
                        retry_in_ms,
                        "token fetch failed"
                    ),
                }
            }
        }
    }

    /// A new token: from the shared store if there is one and it has a token, otherwise
    /// from the source, within the fetch timeout.
    async fn obtain(&self) -> Result<Token, Error> {
        let shared = &self.shared;
        let fetch = || async move {
            tracing::debug!(target: "tower_oauth", source = shared.source.type_name(), "fetching token");
            let started = Instant::now();
            let fetched =
                tokio::time::timeout(shared.config.fetch_timeout, shared.source.fetch_boxed())
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::timeout_of(
                            "OAuthLayerBuilder::fetch_timeout",
                            shared.config.fetch_timeout,
                        ))
                    });
            let outcome = crate::metrics::outcome(&fetched);
            crate::metrics::token_request(&shared.identity, outcome, started.elapsed());
            let span = tracing::Span::current();
            span.record("outcome", outcome);
            span.record("duration_ms", started.elapsed().as_millis() as u64);
            fetched
        };
        match &shared.store {
            None => fetch().await,
            Some(store) => {
                // The token being replaced is not taken back from the store.
                let current = shared.slot.load_full();
                let replacing = current.as_ref().map(|e| &e.token);
                // What this failure holds back, recorded for the fleet if it is the holder's.
                let holds = |error: &Error| {
                    let failures = self.flight().failures.saturating_add(1);
                    holds(&shared.config, failures, error)
                };
                store
                    .obtain(shared.config.refresh_margin, replacing, fetch, holds)
                    .await
            }
        }
    }

    /// Fetches and stores a token, unless the cache was invalidated since the fetch began
    /// (`generation`): then the token goes only to the callers that were waiting for it.
    async fn fetch_and_store(&self, generation: u64) -> Result<Arc<Entry>, Error> {
        let shared = &self.shared;
        let fetched = self.obtain().await;
        let wall = shared.config.wall_clock.now();
        let entry = fetched
            .and_then(|token| Entry::new(token, shared.config.refresh_margin, wall))
            .map_err(|error| error.for_identity(&shared.identity));
        match entry {
            Ok(entry) => {
                let entry = Arc::new(entry);
                {
                    // Under the flight lock, as `invalidate()` moves the generation on: a
                    // token fetched before an invalidate is never stored after it.
                    let _flight = self.flight();
                    if shared.generation.load(Ordering::Acquire) != generation {
                        tracing::debug!(target: "tower_oauth", "token fetched before an invalidate(): not kept");
                        if let Some(store) = &shared.store {
                            store.reject(&entry.token);
                        }
                        return Ok(entry);
                    }
                    shared.slot.store(Some(entry.clone()));
                }
                self.start_timer();
                shared.wake.notify_one();
                let left = entry.valid_until.saturating_duration_since(Instant::now());
                crate::metrics::remaining(&shared.identity, left);
                tracing::debug!(
                    target: "tower_oauth",
                    expires_in_secs = entry.token.expires_in().as_secs(),
                    usable_for_ms = entry.usable_until.saturating_duration_since(Instant::now()).as_millis() as u64,
                    "token stored"
                );
                Ok(entry)
            }
            // Logged once, with what follows, when the failure is recorded (`record`).
            Err(error) => Err(error),
        }
    }

    fn start_timer(&self) {
        if !self.shared.timer_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(timer::run(
                Arc::downgrade(&self.shared),
                self.shared.wake.clone(),
            ));
        }
    }
}

/// How long the `failures`-th failure in a row, `error`, holds back the next fetch: with a
/// valid token the backoff step, without one the failure window, each at least the
/// `Retry-After` (capped at `retry_max`), all at most [`MAX_HOLD`].
fn holds(config: &Config, failures: u32, error: &Error) -> Holds {
    let retry_after = error
        .retry_after()
        .map(|d| d.min(config.retry_max))
        .unwrap_or_default();
    let hold = |d: Duration| d.max(retry_after).min(MAX_HOLD);
    Holds {
        retry: hold(backoff(config, failures, fastrand::f64())),
        quiet: hold(config.failure_window),
    }
}
