//! The options of a token cache, their defaults, the wall clock it judges expiry by, and the
//! backoff schedule of failed fetches.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
    step.saturating_sub(step.mul_f64(config.retry_jitter * random))
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
}
