//! The timer task of a token cache: it marks tokens due, starts the refresh ahead of
//! time, and retries failed refreshes on the backoff schedule.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::config::{Config, MIN_REFRESH_AHEAD, after, share};
use super::entry::Entry;
use super::flight::Outcome;
use super::{Shared, TokenCache};

/// How often the timer looks at the wall clock while a token is fresh, or a background
/// refresh is pending: a suspended machine's monotonic clock does not move.
const WALL_CLOCK_CHECK: Duration = Duration::from_secs(1);

/// When the background refresh of one entry starts.
struct Plan {
    entry: Weak<Entry>,
    refresh_at: Instant,
    /// `refresh_at` on the wall clock.
    refresh_at_wall: SystemTime,
    /// False when refresh ahead is off, or the token had no usable part to begin with.
    enabled: bool,
}

impl Plan {
    /// The refresh starts `refresh_ahead_fraction` into the usable part, less the jitter,
    /// but not sooner than [`MIN_REFRESH_AHEAD`] (or 1% of the usable part) after the token
    /// was stored, nor later than the end of the usable part. Saturating arithmetic: no
    /// setting and no lifetime makes this panic.
    fn new(entry: &Arc<Entry>, config: &Config, random: f64) -> Plan {
        let usable = entry
            .usable_until
            .saturating_duration_since(entry.stored_at);
        let jitter = share(usable, config.refresh_ahead_jitter * random);
        let floor = MIN_REFRESH_AHEAD.max(usable / 100).min(usable);
        let ahead = share(usable, config.refresh_ahead_fraction)
            .saturating_sub(jitter)
            .max(floor)
            .min(usable);
        let early = usable.saturating_sub(ahead);
        Plan {
            entry: Arc::downgrade(entry),
            refresh_at: after(entry.stored_at, ahead),
            refresh_at_wall: entry
                .usable_until_wall
                .checked_sub(early)
                .unwrap_or(entry.usable_until_wall),
            enabled: config.refresh_ahead && !usable.is_zero(),
        }
    }

    fn is_for(&self, entry: &Arc<Entry>) -> bool {
        std::ptr::eq(self.entry.as_ptr(), Arc::as_ptr(entry))
    }
}

/// The timer task. Holds the cache only by a `Weak` between rounds, and ends when the
/// cache is dropped (its `Drop` wakes this task).
pub(super) async fn run(cache: Weak<Shared>, wake: Arc<Notify>) {
    let _guard = TimerGuard(cache.clone());
    let mut plan = None;
    let mut background = None;
    loop {
        let next = {
            let Some(shared) = cache.upgrade() else {
                return;
            };
            TokenCache { shared }.tick(&mut plan, &mut background)
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// Runs when the timer task ends. If the cache is still alive, the task was dropped with
/// its runtime: mark the token due, so requests take the slow path (which reads the clocks)
/// and the next fetch starts a new timer, instead of using the token past its time with
/// nothing left to mark it.
struct TimerGuard(Weak<Shared>);

impl Drop for TimerGuard {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            if let Some(entry) = shared.slot.load_full() {
                entry.mark_due();
            }
            shared
                .timer_started
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

impl TokenCache {
    /// One round of the timer: reports a finished background refresh, marks the token due,
    /// starts a background refresh when its time has come. Returns when to look again,
    /// besides wake-ups (a token stored, a fetch ended, the cache dropped).
    fn tick(
        &self,
        plan: &mut Option<Plan>,
        background: &mut Option<watch::Receiver<Outcome>>,
    ) -> Option<Instant> {
        let shared = &self.shared;
        let config = &shared.config;
        if let Some(rx) = background.take() {
            self.report(rx, background);
        }

        let Some(entry) = shared.slot.load_full() else {
            *plan = None;
            return None;
        };
        let left = entry.valid_until.saturating_duration_since(Instant::now());
        crate::metrics::remaining(&shared.identity, left);
        let now = Instant::now();
        let wall = config.wall_clock.now();
        if entry.is_fresh() && (now >= entry.usable_until || wall >= entry.usable_until_wall) {
            entry.mark_due();
            tracing::debug!(target: "tower_oauth", "token due for refresh");
        }
        let plan = match plan {
            Some(plan) if plan.is_for(&entry) => plan,
            _ => plan.insert(Plan::new(&entry, config, fastrand::f64())),
        };

        let mut next = entry.is_fresh().then_some(entry.usable_until);
        let mut watch_wall = entry.is_fresh();
        if plan.enabled && entry.is_valid(wall) {
            let flight = self.flight();
            if !flight.in_flight() {
                let retry_at = flight.retry_at;
                let failures = flight.failures;
                drop(flight);
                let time_come = now >= plan.refresh_at || wall >= plan.refresh_at_wall;
                let backoff_over = retry_at.is_none_or(|at| now >= at);
                if time_come && backoff_over {
                    tracing::debug!(target: "tower_oauth", failures, "background token refresh started");
                    *background = self.refresh_in_background(entry.id, failures);
                } else {
                    let at = plan.refresh_at.max(retry_at.unwrap_or(plan.refresh_at));
                    next = Some(next.map_or(at, |n| n.min(at)));
                    watch_wall = true;
                }
            }
        }
        if watch_wall {
            let check = after(now, WALL_CLOCK_CHECK);
            next = Some(next.map_or(check, |n| n.min(check)));
        }
        next
    }

    /// Logs how a background refresh ended; puts `rx` back while it runs.
    fn report(
        &self,
        rx: watch::Receiver<Outcome>,
        background: &mut Option<watch::Receiver<Outcome>>,
    ) {
        let outcome = rx.borrow().clone();
        match outcome {
            Some(Ok(entry)) => tracing::debug!(
                target: "tower_oauth",
                expires_in_secs = entry.token.expires_in().as_secs(),
                "background token refresh succeeded"
            ),
            // The failure itself is the one `warn` event "token fetch failed" (flight.rs).
            Some(Err(error)) => tracing::debug!(
                target: "tower_oauth",
                %error,
                "background token refresh failed"
            ),
            None if rx.has_changed().is_ok() => *background = Some(rx),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use secrecy::ExposeSecret;

    use super::*;
    use crate::cache::WallClock;
    use crate::{Token, source_fn};

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A cache whose wall clock runs `offset` ahead of the real one; its source issues
    /// `t1`, `t2`... of 100 seconds on that clock.
    fn cache_with_wall_clock(
        refresh_ahead: bool,
    ) -> (TokenCache, Arc<Mutex<Duration>>, Arc<AtomicUsize>) {
        let offset = Arc::new(Mutex::new(Duration::ZERO));
        let now = {
            let offset = offset.clone();
            move || SystemTime::now() + *offset.lock().unwrap()
        };
        let fetches = Arc::new(AtomicUsize::new(0));
        let source = {
            let now = now.clone();
            let fetches = fetches.clone();
            source_fn(move || {
                let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
                let token = Token::new(format!("t{n}"), secs(100)).with_issued_at(now());
                async move { Ok(token) }
            })
        };
        let config = Config {
            refresh_ahead,
            refresh_ahead_jitter: 0.0,
            wall_clock: WallClock::from_fn(now),
            ..Config::default()
        };
        (TokenCache::new(source, config), offset, fetches)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn header(cache: &TokenCache) -> Option<String> {
        cache
            .reader()
            .fresh()
            .map(|e| e.header.to_str().unwrap().to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_that_expired_during_a_suspend_is_not_used() {
        let (cache, offset, fetches) = cache_with_wall_clock(false);
        cache.token().await.unwrap();
        tokio::time::advance(secs(10)).await;
        settle().await;
        assert_eq!(header(&cache).as_deref(), Some("Bearer t1"));

        // Suspended for 3 hours: the wall clock jumped, the monotonic one did not move.
        *offset.lock().unwrap() = secs(3 * 3600);
        assert_eq!(
            header(&cache).as_deref(),
            Some("Bearer t1"),
            "the hot path reads no clock"
        );
        tokio::time::advance(WALL_CLOCK_CHECK).await;
        settle().await;
        assert_eq!(header(&cache), None, "the timer saw the wall clock");
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        // Expired, so not served while the new one is fetched.
        let entry = cache.entry().await.unwrap();
        assert_eq!(entry.header.to_str().unwrap(), "Bearer t2");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert_eq!(header(&cache).as_deref(), Some("Bearer t2"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_slow_path_judges_the_wall_clock_too() {
        let (cache, offset, fetches) = cache_with_wall_clock(false);
        cache.token().await.unwrap();
        *offset.lock().unwrap() = secs(3 * 3600);
        // Before the timer looks: a request on the slow path does not take the dead token.
        let token = cache.token().await.unwrap();
        assert_eq!(token.access_token().expose_secret(), "t2");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wall_clock_past_the_refresh_point_starts_the_background_refresh() {
        let (cache, offset, fetches) = cache_with_wall_clock(true);
        cache.token().await.unwrap();
        settle().await;
        // 100 s token: usable part 50 s, background refresh at 37.5 s. The wall clock is
        // 40 s on, the monotonic one 1 s.
        *offset.lock().unwrap() = secs(40);
        tokio::time::advance(WALL_CLOCK_CHECK).await;
        settle().await;
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert_eq!(header(&cache).as_deref(), Some("Bearer t2"));
    }
}
