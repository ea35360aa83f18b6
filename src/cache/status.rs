//! [`CacheStatus`]: what a health check needs to know of a [`TokenCache`], without the token.

use std::time::SystemTime;

use super::TokenCache;
use crate::error::Error;

/// A snapshot of a [`TokenCache`] for health checks and dashboards, from
/// [`TokenCache::status`]. It holds no token and no secret; its `Debug` shows the times,
/// the counts and the last error (whose `Display` never shows a secret either).
///
/// ```
/// use std::time::Duration;
/// use tower_oauth::{source_fn, OAuthLayer, Token};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = OAuthLayer::new(source_fn(|| async {
///     Ok(Token::new("t", Duration::from_secs(300)))
/// }));
/// assert!(!layer.cache().status().has_valid_token());
/// layer.cache().token().await.unwrap();
/// let status = layer.cache().status();
/// assert!(status.has_valid_token());
/// assert!(status.last_error().is_none());
/// assert_eq!(status.failures_in_a_row(), 0);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CacheStatus {
    pub(super) expires_at: Option<SystemTime>,
    pub(super) refresh_at: Option<SystemTime>,
    pub(super) valid: bool,
    pub(super) last_fetch_at: Option<SystemTime>,
    pub(super) last_error: Option<Error>,
    pub(super) failures_in_a_row: u32,
    pub(super) fetch_in_flight: bool,
    pub(super) store_reachable: Option<bool>,
    pub(super) identity: crate::identity::Identity,
}

impl CacheStatus {
    /// Whether the cache holds a token that has not expired (on the wall clock and the
    /// monotonic one). `false` before the first fetch, after an `invalidate()` and once
    /// the held token expired: a health check's "ready".
    pub fn has_valid_token(&self) -> bool {
        self.valid
    }

    /// Whether the cache holds a token that has expired: the refreshes since it was
    /// fetched failed ([`last_error`](Self::last_error) says why). `false` without a token.
    pub fn holds_expired_token(&self) -> bool {
        self.expires_at.is_some() && !self.valid
    }

    /// When the held token expires (wall clock; `issued_at + expires_in`), if one is held.
    pub fn valid_until(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// When the held token is due for refresh (wall clock; its expiry less the refresh
    /// margin), if one is held. Refresh ahead starts before this.
    pub fn refresh_due_at(&self) -> Option<SystemTime> {
        self.refresh_at
    }

    /// When the last fetch ended (wall clock), successful or not; `None` before the first.
    pub fn last_fetch_at(&self) -> Option<SystemTime> {
        self.last_fetch_at
    }

    /// The error of the last fetch if it failed; `None` if it succeeded or none ended yet.
    pub fn last_error(&self) -> Option<&Error> {
        self.last_error.as_ref()
    }

    /// Failed fetches since the last successful one.
    pub fn failures_in_a_row(&self) -> u32 {
        self.failures_in_a_row
    }

    /// Whether a fetch is in flight now.
    pub fn fetch_in_flight(&self) -> bool {
        self.fetch_in_flight
    }

    /// Whether the shared [store](crate::store) answered its last call: `Some(true)` if
    /// it did, `Some(false)` if that call failed or timed out, `None` without a store or
    /// before its first call.
    pub fn store_reachable(&self) -> Option<bool> {
        self.store_reachable
    }

    /// Which token this is about (see [`identity`](crate::identity)).
    pub fn identity(&self) -> &crate::identity::Identity {
        &self.identity
    }
}

impl TokenCache {
    /// What a health check needs, without the token: cheap (one load of the slot and the
    /// flight lock, held for a few field reads), never waits for a fetch and starts none.
    /// See [`CacheStatus`].
    pub fn status(&self) -> CacheStatus {
        let wall = self.shared.config.wall_clock.now();
        let entry = self.shared.slot.load_full();
        let flight = self.flight();
        CacheStatus {
            expires_at: entry.as_ref().map(|e| e.token.expires_at()),
            refresh_at: entry.as_ref().map(|e| e.usable_until_wall),
            valid: entry.as_ref().is_some_and(|e| e.is_valid(wall)),
            last_fetch_at: flight.last_fetch_at,
            last_error: flight.last_error.clone(),
            failures_in_a_row: flight.failures,
            fetch_in_flight: flight.in_flight(),
            store_reachable: self.shared.store.as_ref().and_then(|s| s.reachable()),
            identity: self.shared.identity.clone(),
        }
    }
}
