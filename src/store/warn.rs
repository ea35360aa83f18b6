//! Rate-limited `warn` events for store failures: a store that is down does not flood the
//! logs with one event per refresh.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::identity::Identity;

/// At most one `warn` event every this long per cache; the others are `debug`.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// At most one `warn` event per [`WARN_EVERY`]; the others go to `debug`, and the next
/// `warn` says how many there were (`suppressed`).
pub(crate) struct WarnLimiter {
    start: Instant,
    /// Milliseconds since `start` before which no `warn` is emitted.
    next_ms: AtomicU64,
    /// Events sent to `debug` since the last `warn`.
    suppressed: AtomicU64,
    /// The token the events are about, named in each.
    identity: Option<Identity>,
}

impl WarnLimiter {
    pub(crate) fn new() -> WarnLimiter {
        WarnLimiter {
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            identity: None,
        }
    }

    /// A limiter whose events name `identity`.
    pub(crate) fn for_identity(identity: &Identity) -> WarnLimiter {
        WarnLimiter {
            identity: Some(identity.clone()),
            ..WarnLimiter::new()
        }
    }

    /// Whether a `warn` event may go out now (none in the last [`WARN_EVERY`]): then how
    /// many were sent to `debug` since the last one. `None`: send this one to `debug`; it
    /// is counted.
    pub(crate) fn loud(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        let loud = now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + WARN_EVERY.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if loud {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Reports `error` with the message `what`: as a `warn` event if none went out in the
    /// last [`WARN_EVERY`], otherwise as a `debug` event.
    pub(super) fn warn(&self, error: &Error, what: &'static str) {
        let error = match &self.identity {
            Some(identity) => error.clone().for_identity(identity),
            None => error.clone(),
        };
        let identity = self.identity.as_ref().map(Identity::name);
        match self.loud() {
            Some(suppressed) => {
                tracing::warn!(target: "tower_oauth", identity, %error, suppressed, "{what}")
            }
            None => tracing::debug!(target: "tower_oauth", identity, %error, "{what}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_rate_limited() {
        let limiter = WarnLimiter::new();
        let error = Error::store("call timed out", None);
        let suppressed = || limiter.suppressed.load(Ordering::Relaxed);
        limiter.warn(&error, "first");
        assert_eq!(suppressed(), 0, "the first one is a warn");
        limiter.warn(&error, "second");
        assert_eq!(suppressed(), 1, "the second one is a debug");
        limiter.warn(&error, "third");
        assert_eq!(suppressed(), 2);
    }
}
