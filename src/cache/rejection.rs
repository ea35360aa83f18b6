//! Rejections backed off: an API that rejects every token (a wrong audience, a
//! misconfiguration, clock skew at the API) must not turn every request into a token
//! request.
//!
//! A rejected token is dropped and the request sent again with a new one. When that second
//! attempt is rejected too, the new token is not the cure: from then on a rejected token is
//! dropped at most once per backoff step (the fetch backoff: 1 second, doubling, up to its
//! maximum); a rejection inside a step leaves the token in place and the caller gets the
//! `401`. A second attempt that is accepted ends the backoff: a revoked token is replaced
//! at once, however often tokens are revoked.

use std::time::Duration;

use tokio::time::Instant;

use super::TokenCache;
use super::config::{MAX_HOLD, after, backoff};
use super::entry::TokenId;

/// What became of a rejected token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// It was the cached token, and it was dropped.
    Dropped,
    /// It was no longer the cached token: a newer one is there already.
    Replaced,
    /// It is still the cached token, kept: young tokens were rejected in a row and the
    /// backoff step has not ended. The caller gets the `401`, no new token is fetched.
    Held,
}

/// Second attempts rejected in a row, and until when a rejected token is kept.
#[derive(Debug, Default)]
pub(crate) struct Rejections {
    streak: u32,
    hold_until: Option<Instant>,
    /// The token of the last rejected second attempt: many requests rejected with one
    /// token count once.
    last: Option<TokenId>,
}

impl TokenCache {
    /// The API rejected the token `seen`: drops it if it is still the cached token (by
    /// compare-and-swap, so a newer token is never thrown away), unless second attempts
    /// were rejected too and the backoff step has not ended.
    pub(crate) fn reject_id(&self, seen: TokenId) -> Rejected {
        let current = self.shared.slot.load().as_ref().map(|e| e.id);
        if current != Some(seen) {
            return Rejected::Replaced;
        }
        let held = self
            .flight()
            .rejections
            .hold_until
            .is_some_and(|until| Instant::now() < until);
        if held {
            return Rejected::Held;
        }
        if self.invalidate_if(seen) {
            Rejected::Dropped
        } else {
            Rejected::Replaced
        }
    }

    /// The answer to a second attempt sent with the new token `used`: `rejected` (as the
    /// recovery policy judged it) holds the next rejections for one more backoff step; a
    /// success ends the backoff; anything else (a 5xx, a 403) changes nothing. One rule for
    /// the tower layer and the reqwest middleware.
    pub(crate) fn second_attempt_answered(
        &self,
        used: TokenId,
        rejected: bool,
        status: http::StatusCode,
    ) {
        if rejected {
            // Passed back as it came: no second invalidation, no third attempt.
            tracing::warn!(
                target: "tower_oauth",
                "new token rejected too (401); passing the response back"
            );
            self.second_attempt_rejected(used);
        } else if status.is_success() {
            self.second_attempt_accepted();
        }
    }

    /// A second attempt, sent with the new token `used`, was rejected too: the next
    /// rejections are held for one more backoff step.
    fn second_attempt_rejected(&self, used: TokenId) {
        let config = &self.shared.config;
        let mut flight = self.flight();
        let rejections = &mut flight.rejections;
        if rejections.last == Some(used) {
            return;
        }
        rejections.last = Some(used);
        rejections.streak = rejections.streak.saturating_add(1);
        let step = backoff(config, rejections.streak, 0.0).min(MAX_HOLD);
        rejections.hold_until = Some(after(Instant::now(), step.max(Duration::from_millis(1))));
        tracing::warn!(
            target: "tower_oauth",
            in_a_row = rejections.streak,
            hold_ms = step.as_millis() as u64,
            "a new token was rejected too (401): rejected tokens are kept for the backoff step"
        );
    }

    /// A second attempt was accepted: rejected tokens are replaced at once again.
    fn second_attempt_accepted(&self) {
        let mut flight = self.flight();
        flight.rejections = Rejections::default();
    }
}
