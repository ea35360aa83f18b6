//! The fleet during outages, on tokio's paused clock: a failed fetch recorded for the
//! fleet (issue 12, item 7), a lock call that times out after the store applied it (item
//! 8).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::*;
use crate::cache::{Config, WallClock};
use crate::error::TokenEndpointError;
use crate::{BoxError, Error, Token, TokenCache, source_fn};

fn key() -> CacheKey {
    CacheKey::builder("test")
        .field("name", "outage-tests")
        .build()
}

fn secret(token: &Token) -> String {
    token.access_token().expose_secret().to_owned()
}

/// When the token source was called.
type Calls = Arc<Mutex<Vec<Instant>>>;

/// The shortest time between two calls of the source after `from`.
fn shortest_gap(calls: &Calls, from: Instant) -> Duration {
    let calls = calls.lock().unwrap();
    let late: Vec<_> = calls.iter().filter(|t| **t >= from).collect();
    late.windows(2)
        .map(|w| w[1].duration_since(*w[0]))
        .min()
        .unwrap_or(Duration::MAX)
}

/// A cache with default settings on `store` whose source, after a 100 ms round trip, gives
/// `tok-1` (100 s) on its first `ok_first` calls and `error` on the others.
fn instance(store: impl TokenStore, calls: &Calls, ok_first: usize, error: Error) -> TokenCache {
    let calls = calls.clone();
    let source = source_fn(move || {
        let calls = calls.clone();
        let error = error.clone();
        async move {
            let n = {
                let mut calls = calls.lock().unwrap();
                calls.push(Instant::now());
                calls.len()
            };
            tokio::time::sleep(Duration::from_millis(100)).await;
            match n <= ok_first {
                true => Ok(Token::new(format!("tok-{n}"), Duration::from_secs(100))),
                false => Err(error),
            }
        }
    });
    // The wall clock follows tokio's paused clock, as the holds recorded in the store do.
    let (start, base) = (Instant::now(), SystemTime::now());
    let config = Config {
        refresh_ahead: false,
        wall_clock: WallClock::from_fn(move || base + start.elapsed()),
        store: StoreConfig {
            store: Some(Arc::new(store)),
            options: StoreOptions::new().key(key()),
        },
        ..Config::default()
    };
    TokenCache::new(source, config)
}

fn endpoint_error(status: StatusCode, code: &str) -> Error {
    Error::token_endpoint(TokenEndpointError::new(status, code, Some("details"), None))
}

/// Requests (the request path: a valid token is served while a fetch runs) from each of
/// `layers`, one every 50 ms, from now for `load`. Successes and the errors seen.
async fn load(layers: &[TokenCache], load: Duration) -> (usize, Vec<Error>) {
    let end = Instant::now() + load;
    let tasks: Vec<_> = layers
        .iter()
        .map(|layer| {
            let cache = layer.clone();
            tokio::spawn(async move {
                let (mut ok, mut errors) = (0, Vec::new());
                while Instant::now() < end {
                    match cache.entry().await {
                        Ok(_) => ok += 1,
                        Err(error) => errors.push(error),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (ok, errors)
            })
        })
        .collect();
    let (mut ok, mut errors) = (0, Vec::new());
    for task in tasks {
        let (o, e) = task.await.unwrap();
        ok += o;
        errors.extend(e);
    }
    (ok, errors)
}

#[tokio::test(start_paused = true)]
async fn invalid_client_for_10_s_on_8_instances_without_a_token_costs_one_request_per_window() {
    let store = MemoryStore::new();
    let calls = Calls::default();
    let error = endpoint_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let layers: Vec<_> = (0..8)
        .map(|_| instance(store.clone(), &calls, 0, error.clone()))
        .collect();
    let start = Instant::now();
    let (ok, errors) = load(&layers, Duration::from_secs(10)).await;
    assert_eq!(ok, 0);
    assert!(errors.len() >= 8 * 100, "{}", errors.len());
    for error in &errors {
        let e = error.token_endpoint_error().unwrap();
        assert_eq!(e.error(), "invalid_client");
    }
    let requests = calls.lock().unwrap().len();
    // At most one per 1 s failure window for the fleet (about 80 without the record).
    assert!((5..=11).contains(&requests), "{requests} token requests");
    let gap = shortest_gap(&calls, start);
    assert!(gap >= Duration::from_secs(1), "{gap:?}");
}

#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_5_while_a_token_is_held_costs_one_request_per_5_s() {
    let store = MemoryStore::new();
    let calls = Calls::default();
    let error = endpoint_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        .with_retry_after(Duration::from_secs(5));
    let layers: Vec<_> = (0..8)
        .map(|_| instance(store.clone(), &calls, 1, error.clone()))
        .collect();
    for layer in &layers {
        assert_eq!(secret(&layer.token().await.unwrap()), "tok-1");
    }
    assert_eq!(calls.lock().unwrap().len(), 1);
    // The 100 s token is usable for 50 s (the margin is at most half the lifetime); from
    // then on every fetch fails, and requests keep the valid token for 40 s.
    tokio::time::advance(Duration::from_secs(50)).await;
    let start = Instant::now();
    let (ok, errors) = load(&layers, Duration::from_secs(40)).await;
    assert!(errors.is_empty(), "{:?}", errors.first());
    assert!(ok >= 8 * 700, "{ok}");
    let failed = calls.lock().unwrap().len() - 1;
    // At most one per 5 s for the fleet (fewer as each instance's backoff grows past 5 s).
    assert!((3..=9).contains(&failed), "{failed} token requests in 40 s");
    let gap = shortest_gap(&calls, start);
    assert!(gap >= Duration::from_secs(5), "{gap:?}");
}

/// A store whose first `set_if_absent` is applied, then never answers (the lock call
/// times out after the store applied it).
struct LockTimesOut {
    inner: MemoryStore,
    hung: AtomicBool,
}

impl TokenStore for LockTimesOut {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BoxError> {
        TokenStore::get(&self.inner, key).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), BoxError> {
        TokenStore::set(&self.inner, key, value, ttl).await
    }
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, BoxError> {
        let applied = TokenStore::set_if_absent(&self.inner, key, value, ttl).await;
        if !self.hung.swap(true, Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        applied
    }
    async fn delete_if(&self, key: &str, expected: &[u8]) -> Result<bool, BoxError> {
        TokenStore::delete_if(&self.inner, key, expected).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_lock_call_timing_out_after_it_was_applied_leaves_no_orphan_lock() {
    let store = MemoryStore::new();
    let calls = Calls::default();
    let never = Error::other("unused");
    let a = instance(
        LockTimesOut {
            inner: store.clone(),
            hung: AtomicBool::new(false),
        },
        &calls,
        usize::MAX,
        never.clone(),
    );
    let b = instance(store.clone(), &calls, usize::MAX, never);
    let started = Instant::now();
    let (ta, tb) = tokio::join!(a.token(), async {
        // b comes once a's lock is in the store.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let token = b.token().await;
        (token, started.elapsed())
    });
    let (tb, waited) = tb;
    assert_eq!(secret(&ta.unwrap()), "tok-1");
    assert_eq!(secret(&tb.unwrap()), "tok-1", "b took a's token");
    assert_eq!(calls.lock().unwrap().len(), 1);
    // a: 250 ms lock timeout, 100 ms fetch, then write and release; b polls it up. Not the
    // 12.75 s lock TTL.
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    assert_eq!(store.len(), 1, "the token; the lock was released");
}

#[test]
fn the_default_lock_ttl_leaves_room_for_the_holders_store_calls() {
    let config = StoreConfig {
        store: Some(Arc::new(MemoryStore::new())),
        options: StoreOptions::new().key(key()),
    };
    let client = config
        .client(
            None,
            Duration::from_secs(10),
            Arc::new(SystemTime::now),
            &crate::identity::Identity::default(),
        )
        .unwrap();
    let text = format!("{client:?}");
    // 10 s fetch + 3 x 250 ms store calls + 2 s.
    assert!(text.contains("lock_ttl: 12.75s"), "{text}");
    assert!(text.contains("lock_wait: 13.75s"), "{text}");
}
