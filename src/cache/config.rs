//! The options of a token cache, their defaults, the wall clock it judges expiry by, and the
//! backoff schedule of failed fetches.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::store::StoreConfig;

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

/// The longest delay a failure can put off the next fetch: one day, whatever the
/// configuration or a `Retry-After` say (and no `Instant` overflow).
pub(crate) const MAX_HOLD: Duration = Duration::from_secs(24 * 3600);

/// The shortest fetch timeout: 1 millisecond. (A zero timeout would fail every fetch that
/// is not ready on its first poll.)
pub const MIN_FETCH_TIMEOUT: Duration = Duration::from_millis(1);

/// The earliest a background refresh starts after its token was stored: 1 second, and at
/// least 1% of the token's usable part (or at the end of the usable part, if that comes
/// sooner). Whatever `refresh_ahead_fraction` and `refresh_ahead_jitter` say, one token
/// never causes more than one refresh, and a fleet of short-lived tokens no more than one
/// token request a second each.
pub const MIN_REFRESH_AHEAD: Duration = Duration::from_secs(1);

/// How far ahead [`after`] puts a time that would overflow `Instant`: 30 years, as tokio's
/// own "far future".
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + d`, never a panic: a sum that overflows `Instant` is [`FAR_FUTURE`] from `now`.
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// `fraction` of `d`, never a panic: a fraction that is NaN or not above 0 gives zero, one
/// of 1 or more gives `d`.
pub(crate) fn share(d: Duration, fraction: f64) -> Duration {
    if fraction.is_nan() || fraction <= 0.0 {
        Duration::ZERO
    } else if fraction >= 1.0 {
        d
    } else {
        d.mul_f64(fraction).min(d)
    }
}

/// What a [`TokenCache`](super::TokenCache) is built with; set through
/// [`OAuthLayerBuilder`](crate::OAuthLayerBuilder).
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
    pub(crate) wall_clock: WallClock,
    /// A token store shared with other instances, if any (see [`crate::store`]).
    pub(crate) store: StoreConfig,
    /// The name of the token in errors, logs and metrics, over the source's.
    pub(crate) name: Option<String>,
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
            name: None,
            retry_jitter: DEFAULT_RETRY_JITTER,
            failure_window: DEFAULT_FAILURE_WINDOW,
            wall_clock: WallClock::default(),
            store: StoreConfig::default(),
        }
    }
}

/// The delay before the next try after `failures` failed fetches in a row: `retry_base`
/// doubled per failure, at most `retry_max`, less up to `retry_jitter` of it (`random` is
/// in `0..1`).
pub(crate) fn backoff(config: &Config, failures: u32, random: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    let step = config
        .retry_base
        .saturating_mul(1 << doublings)
        .min(config.retry_max);
    step.saturating_sub(share(step, config.retry_jitter * random))
}

/// The wall clock the cache judges expiry by: `SystemTime::now`, or a stand-in in tests.
#[derive(Clone, Default)]
pub(crate) struct WallClock(Option<Arc<dyn Fn() -> SystemTime + Send + Sync>>);

impl WallClock {
    pub(crate) fn now(&self) -> SystemTime {
        match &self.0 {
            None => SystemTime::now(),
            Some(now) => now(),
        }
    }

    #[cfg(test)]
    pub(crate) fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> WallClock {
        WallClock(Some(Arc::new(now)))
    }
}

impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            None => "SystemTime::now",
            Some(_) => "custom",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_less_the_jitter() {
        let config = Config {
            retry_jitter: 0.0,
            ..Config::default()
        };
        let delays: Vec<u64> = (1..=9)
            .map(|n| backoff(&config, n, 0.7).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(&config, u32::MAX, 0.7), secs(60));
        assert_eq!(backoff(&config, 0, 0.7), secs(1));

        let config = Config::default(); // jitter 0.5
        assert_eq!(backoff(&config, 3, 0.0), secs(4));
        assert_eq!(backoff(&config, 3, 0.5), secs(3));
        assert_eq!(backoff(&config, 3, 1.0), secs(2));
        assert_eq!(backoff(&config, 10, 1.0), secs(30));
    }

    #[test]
    fn share_and_after_never_panic() {
        // 200 days less a minute, with nanoseconds that round up in an f64: the
        // `usable.mul_f64(1.0)` the timer used to take was larger than `usable`.
        let usable = Duration::new(200 * 24 * 3600 - 60, 999_999_999);
        assert!(usable.mul_f64(1.0) > usable);
        assert_eq!(share(usable, 1.0), usable);
        assert!(share(usable, 1.0 - f64::EPSILON) <= usable);
        for f in [f64::NAN, -1.0, 0.0, f64::NEG_INFINITY] {
            assert_eq!(share(usable, f), Duration::ZERO);
        }
        assert_eq!(share(usable, f64::INFINITY), usable);
        assert_eq!(share(Duration::MAX, 0.5), Duration::MAX.mul_f64(0.5));

        let now = Instant::now();
        assert!(after(now, Duration::MAX) > now + secs(365 * 24 * 3600));
        assert_eq!(after(now, secs(5)), now + secs(5));
    }
}
