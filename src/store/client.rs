//! A cache's use of its shared store: the fleet-wide single flight, the rejection of a
//! refused token, and the fallback to a fetch of its own when the store fails.
//!
//! The lock protocol (see the [module docs](crate::store)): read the store; on a miss take
//! the lock with `set_if_absent(lock key, owner, lock TTL)`, read again, fetch, write the
//! token with a TTL that ends at its refresh point, and release the lock with
//! `delete_if(lock key, owner)`. An instance that finds the lock taken polls the store
//! (and the lock) with backoff until [`StoreOptions::lock_wait`](super::StoreOptions::lock_wait)
//! has passed.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::config::{DynStore, StoreFuture, Wall};
use super::failure::{self, Holds};
use super::value::Codec;
use super::warn::WarnLimiter;
use crate::error::Error;
use crate::identity::Identity;
use crate::metrics::StoreCall;
use crate::token::Token;

/// The first pause of an instance waiting for another one's token: 10 milliseconds.
const FIRST_POLL: Duration = Duration::from_millis(10);
/// The longest pause between two polls of a waiting instance: 250 milliseconds.
pub(super) const MAX_POLL: Duration = Duration::from_millis(250);

type Digest32 = [u8; 32];

fn digest(token: &Token) -> Digest32 {
    Sha256::digest(token.access_token().expose_secret().as_bytes()).into()
}

/// Where the fleet-wide single flight leaves an instance.
enum Turn {
    /// A usable token was in the store.
    Stored(Token),
    /// This instance holds the refresh lock, under this owner value.
    Locked(String),
    /// The lock call failed or timed out, so it may have been applied: carry on as the
    /// holder, under this owner value, and release it (compare-and-delete) at the end.
    Unsure(String, Error),
    /// Another instance's fetch failed and its hold has not ended: its error.
    Failed(Error),
    /// The store failed, or the lock was held too long: fetch without the store.
    Alone(Error),
}

/// A cache's use of its store: the orchestration of the fleet-wide single flight.
pub(crate) struct StoreClient {
    pub(super) store: Arc<dyn DynStore>,
    pub(super) key: String,
    pub(super) lock_key: String,
    pub(super) failure_key: String,
    pub(super) timeout: Duration,
    pub(super) lock_ttl: Duration,
    pub(super) lock_wait: Duration,
    pub(super) codec: Codec,
    /// SHA-256 of the last access token rejected here, never taken from the store again.
    pub(super) rejected: Mutex<Option<Digest32>>,
    pub(super) warn: WarnLimiter,
    pub(super) wall: Wall,
    /// The token's name, for the metrics of store calls.
    pub(super) identity: Identity,
    /// How the last store call ended: [`UNKNOWN`], [`ANSWERED`] or [`FAILED`].
    pub(super) last_call: AtomicU8,
}

pub(super) const UNKNOWN: u8 = 0;
const ANSWERED: u8 = 1;
const FAILED: u8 = 2;

impl StoreClient {
    /// Whether the last store call was answered; `None` before the first.
    pub(crate) fn reachable(&self) -> Option<bool> {
        match self.last_call.load(Ordering::Relaxed) {
            ANSWERED => Some(true),
            FAILED => Some(false),
            _ => None,
        }
    }

    /// A token for the cache: from the store, or fetched with `fetch` under the fleet-wide
    /// lock and stored, or (when the store fails) fetched without it. `fetch` is called at
    /// most once. `replacing` is the token the cache has now, which is not taken back from
    /// the store. While the failure of another instance's fetch holds (see `failure.rs`),
    /// its error, without a fetch; when this instance's fetch fails under the lock, the
    /// failure is recorded for the fleet with the holds `holds` gives.
    pub(crate) async fn obtain<F, Fut, H>(
        &self,
        margin: Duration,
        replacing: Option<&Token>,
        fetch: F,
        holds: H,
    ) -> Result<Token, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, Error>>,
        H: FnOnce(&Error) -> Holds,
    {
        let valid = replacing.is_some_and(|t| t.expires_at() > (self.wall)());
        let replacing = replacing.map(digest);
        let replacing = replacing.as_ref();
        let (owner, read_again) = match self.take_turn(margin, replacing, valid).await {
            Turn::Stored(token) => return Ok(token),
            Turn::Failed(error) => return Err(error),
            Turn::Locked(owner) => (owner, true),
            Turn::Unsure(owner, error) => {
                self.warn.warn(
                    &error,
                    "refresh lock call failed; fetching as its holder and releasing it",
                );
                (owner, false)
            }
            Turn::Alone(error) => {
                self.warn.warn(
                    &error,
                    "token store unavailable; fetching a token without it",
                );
                return fetch().await;
            }
        };
        // Another instance may have stored a token, or recorded a failure, between our
        // read and our lock.
        let found = match read_again {
            true => self.read(margin, replacing).await.ok().flatten(),
            false => None,
        };
        let recorded = match (&found, read_again) {
            (None, true) => self.failure(valid).await,
            _ => None,
        };
        let result = match (found, recorded) {
            (Some(token), _) => Ok(token),
            (None, Some(error)) => Err(error),
            (None, None) => {
                let fetched = fetch().await;
                match &fetched {
                    Ok(token) => {
                        if let Err(error) = self.write(token, margin).await {
                            self.warn.warn(&error, "token not written to the store");
                        }
                    }
                    Err(error) => self.record_failure(error, holds(error)).await,
                }
                fetched
            }
        };
        let unlock = self.store.delete_if(&self.lock_key, owner.as_bytes());
        if let Err(error) = self.call("unlock failed", unlock).await {
            tracing::debug!(target: "tower_oauth", %error, "refresh lock not released; it expires by itself");
        }
        result
    }

    /// The failure another instance recorded, if its hold for this instance (with a
    /// `valid` token or not) has not ended. A store that fails here counts as no record.
    async fn failure(&self, valid: bool) -> Option<Error> {
        let raw = self
            .call("read failed", self.store.get(&self.failure_key))
            .await
            .ok()??;
        let error = failure::decode(&raw, valid, (self.wall)())?;
        tracing::debug!(target: "tower_oauth", %error, "another instance's token fetch failed; not fetching until its hold ends");
        Some(error)
    }

    /// Records the failure of this instance's fetch for the fleet, for as long as it holds.
    async fn record_failure(&self, error: &Error, holds: Holds) {
        let Some((value, ttl)) = failure::encode(error, holds, (self.wall)()) else {
            return;
        };
        let set = self.store.set(&self.failure_key, &value, ttl);
        match self.call("write failed", set).await {
            Ok(()) => {
                tracing::debug!(target: "tower_oauth", ttl_ms = ttl.as_millis() as u64, "token fetch failure recorded in the store");
            }
            Err(e) => self
                .warn
                .warn(&e, "token fetch failure not recorded in the store"),
        }
    }

    /// Reads the store, and on a miss takes the refresh lock or waits, polling with
    /// backoff, for the token of the instance that holds it.
    async fn take_turn(&self, margin: Duration, replacing: Option<&Digest32>, valid: bool) -> Turn {
        match self.read(margin, replacing).await {
            Ok(Some(token)) => {
                crate::metrics::store_call(&self.identity, StoreCall::Hit);
                tracing::debug!(target: "tower_oauth", "token taken from the store");
                return Turn::Stored(token);
            }
            Ok(None) => crate::metrics::store_call(&self.identity, StoreCall::Miss),
            Err(error) => return Turn::Alone(error),
        }
        if let Some(error) = self.failure(valid).await {
            return Turn::Failed(error);
        }
        let mut owner = [0u8; 16];
        if getrandom::fill(&mut owner).is_err() {
            return Turn::Alone(Error::store("no randomness for a lock owner", None));
        }
        let owner = hex::encode(owner);
        let now = Instant::now();
        let deadline = now.checked_add(self.lock_wait).unwrap_or(now);
        let mut pause = FIRST_POLL;
        let mut waited = false;
        loop {
            let lock = self
                .store
                .set_if_absent(&self.lock_key, owner.as_bytes(), self.lock_ttl);
            match self.call("lock failed", lock).await {
                Ok(true) => {
                    crate::metrics::store_call(&self.identity, StoreCall::LockTaken);
                    return Turn::Locked(owner);
                }
                Ok(false) if !waited => {
                    waited = true;
                    crate::metrics::store_call(&self.identity, StoreCall::LockWaited);
                }
                Ok(false) => {}
                // Timed out or failed after the store may have applied it: ours, maybe.
                Err(error) => return Turn::Unsure(owner, error),
            }
            let now = Instant::now();
            if now >= deadline {
                let error = Error::store("another instance held the refresh lock too long", None);
                return Turn::Alone(error);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
            match self.read(margin, replacing).await {
                Ok(Some(token)) => {
                    crate::metrics::store_call(&self.identity, StoreCall::Hit);
                    tracing::debug!(target: "tower_oauth", "token taken from the store after waiting");
                    return Turn::Stored(token);
                }
                Ok(None) => {}
                Err(error) => return Turn::Alone(error),
            }
            if let Some(error) = self.failure(valid).await {
                return Turn::Failed(error);
            }
        }
    }

    /// A call to the store, bounded by the timeout.
    async fn call<T>(&self, what: &'static str, call: StoreFuture<'_, T>) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => {
                self.last_call.store(ANSWERED, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(error)) => {
                self.last_call.store(FAILED, Ordering::Relaxed);
                crate::metrics::store_call(&self.identity, StoreCall::Failed);
                Err(Error::store(what, Some(error)))
            }
            Err(_) => {
                self.last_call.store(FAILED, Ordering::Relaxed);
                crate::metrics::store_call(&self.identity, StoreCall::TimedOut);
                Err(Error::store("call timed out", None))
            }
        }
    }

    /// The token in the store if there is one this cache can use now: readable, not
    /// rejected here, not `replacing`, and not past its refresh point.
    async fn read(
        &self,
        margin: Duration,
        replacing: Option<&Digest32>,
    ) -> Result<Option<Token>, Error> {
        let Some(raw) = self.call("read failed", self.store.get(&self.key)).await? else {
            return Ok(None);
        };
        let token = match self.codec.decode(&raw, &self.key) {
            Ok(token) => token,
            Err(error) => {
                self.warn
                    .warn(&error, "stored token unreadable; fetching a new one");
                return Ok(None);
            }
        };
        let seen = digest(&token);
        if Some(&seen) == replacing || Some(seen) == *self.rejected_lock() {
            return Ok(None);
        }
        if token.usable_for(margin, (self.wall)()).is_zero() {
            return Ok(None);
        }
        Ok(Some(token))
    }

    fn rejected_lock(&self) -> MutexGuard<'_, Option<Digest32>> {
        self.rejected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `token` with a TTL that ends at its refresh point; nothing if that is past.
    async fn write(&self, token: &Token, margin: Duration) -> Result<(), Error> {
        let ttl = token.usable_for(margin, (self.wall)());
        if ttl < Duration::from_millis(1) {
            return Ok(());
        }
        let value = self.codec.encode(token, &self.key)?;
        self.call("write failed", self.store.set(&self.key, &value, ttl))
            .await?;
        tracing::debug!(target: "tower_oauth", ttl_ms = ttl.as_millis() as u64, "token written to the store");
        Ok(())
    }

    /// `token` was refused by the API: never take it from the store again, and delete it
    /// from the store, in the background, if the store still holds it.
    pub(crate) fn reject(self: &Arc<Self>, token: &Token) {
        let rejected = digest(token);
        *self.rejected_lock() = Some(rejected);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            match this.delete_if_holds(&rejected).await {
                Ok(true) => {
                    tracing::debug!(target: "tower_oauth", "rejected token deleted from the store");
                }
                Ok(false) => {}
                Err(error) => {
                    this.warn
                        .warn(&error, "rejected token not deleted from the store");
                }
            }
        });
    }

    async fn delete_if_holds(&self, rejected: &Digest32) -> Result<bool, Error> {
        let Some(raw) = self.call("read failed", self.store.get(&self.key)).await? else {
            return Ok(false);
        };
        match self.codec.decode(&raw, &self.key) {
            Ok(token) if digest(&token) == *rejected => {
                self.call("delete failed", self.store.delete_if(&self.key, &raw))
                    .await
            }
            _ => Ok(false),
        }
    }

    /// What the store holds for this cache, as is.
    pub(crate) async fn stored_token(&self) -> Result<Option<Token>, Error> {
        match self.call("read failed", self.store.get(&self.key)).await? {
            Some(raw) => self.codec.decode(&raw, &self.key).map(Some),
            None => Ok(None),
        }
    }
}

impl fmt::Debug for StoreClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreClient")
            .field("store", &self.store.type_name())
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .field("lock_ttl", &self.lock_ttl)
            .field("lock_wait", &self.lock_wait)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}
