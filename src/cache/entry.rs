//! A token in the slot, with what the hot path needs already computed.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Request, header::AUTHORIZATION};
use tokio::time::Instant;

use super::config::after;
use crate::error::Error;
use crate::token::Token;

/// Which token a request carried: unique in the process, never reused. A request keeps it
/// (not the entry, whose reference count all requests would share) to say later which token
/// a `401` was for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenId(NonZeroU64);

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({})", self.0)
    }
}

/// Where token ids come from.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl TokenId {
    fn next() -> TokenId {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // 2^64 tokens is more than a process makes; wrap to 1 rather than panic.
        TokenId(NonZeroU64::new(id).unwrap_or(NonZeroU64::MIN))
    }
}

/// A token in the slot, with what the hot path needs already computed.
pub(crate) struct Entry {
    pub(crate) id: TokenId,
    pub(crate) token: Token,
    /// `<token_type> <access_token>`, marked sensitive; cloning it is a reference count.
    pub(crate) header: HeaderValue,
    /// Monotonic time after which the token is no longer used without a refresh.
    pub(crate) usable_until: Instant,
    /// Set by the cache's timer once `usable_until` has passed (on either clock).
    pub(crate) due: AtomicBool,
    /// When the entry was made, on the monotonic clock.
    pub(crate) stored_at: Instant,
    /// `usable_until` on the wall clock: `expires_at` less the margin.
    pub(crate) usable_until_wall: SystemTime,
    /// Monotonic time at which the token expires.
    pub(crate) valid_until: Instant,
    /// `usable_until` on the coarse clock (`clock.rs`), in milliseconds: the hot path's
    /// guard when the timer task cannot run.
    usable_until_coarse: u64,
}

impl Entry {
    /// `request` with this entry's `Authorization` field (RFC 6750 section 2.1), in place
    /// of any it had: for the requests that waited for the entry.
    pub(crate) fn authorize<B>(&self, mut request: Request<B>) -> Request<B> {
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.header.clone());
        request
    }

    /// An entry for `token`, usable until `margin` (at most half its lifetime) is left.
    ///
    /// # Errors
    /// [`Error::is_invalid_response`]: the token cannot be an HTTP header value.
    pub(crate) fn new(token: Token, margin: Duration, wall: SystemTime) -> Result<Entry, Error> {
        let header = token.header_value()?;
        // Bytes made from a Vec allocate their shared state on the first clone; do that
        // clone here so that clones on the request path are only a reference count.
        drop(header.clone());
        let now = Instant::now();
        let usable_for = token.usable_for(margin, wall);
        let expires_at = token.expires_at();
        let usable_until_wall = expires_at
            .checked_sub(margin.min(token.expires_in() / 2))
            .unwrap_or(expires_at);
        let valid_for = expires_at.duration_since(wall).unwrap_or_default();
        Ok(Entry {
            id: TokenId::next(),
            token,
            header,
            usable_until: after(now, usable_for),
            due: AtomicBool::new(usable_for.is_zero()),
            stored_at: now,
            usable_until_wall,
            valid_until: after(now, valid_for),
            usable_until_coarse: super::clock::read_ms()
                .saturating_add(u64::try_from(usable_for.as_millis()).unwrap_or(u64::MAX)),
        })
    }

    /// True while the timer has not marked the token as due and the coarse clock has not
    /// passed its usable part. Two atomic reads, no clock.
    #[inline]
    pub(crate) fn is_fresh(&self) -> bool {
        !self.due.load(Ordering::Acquire) && super::clock::coarse_ms() < self.usable_until_coarse
    }

    /// Marks the token due: requests take the slow path, which reads the clocks.
    pub(crate) fn mark_due(&self) {
        self.due.store(true, Ordering::Release);
    }

    /// The full check, with clock reads, for the slow path.
    pub(crate) fn is_usable(&self, wall: SystemTime) -> bool {
        self.is_fresh() && Instant::now() < self.usable_until && wall < self.usable_until_wall
    }

    /// Not expired, on either clock (it may be past its usable part).
    pub(crate) fn is_valid(&self, wall: SystemTime) -> bool {
        Instant::now() < self.valid_until && wall < self.token.expires_at()
    }
}
