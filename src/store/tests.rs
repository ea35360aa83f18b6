//! The fleet-wide single flight on tokio's paused clock, with in-memory and failing stores.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::client::MAX_POLL;
use super::*;
use crate::{BoxError, OAuthLayer, Token, TokenSource, source_fn};

const LIFETIME: Duration = Duration::from_secs(600);

fn key() -> CacheKey {
    CacheKey::builder("test")
        .field("name", "store-tests")
        .build()
}

/// Issues `tok-1`, `tok-2`... after `delay`, counting its fetches.
fn counting_source(count: Arc<AtomicUsize>, delay: Duration) -> impl TokenSource {
    source_fn(move || {
        let count = count.clone();
        async move {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(delay).await;
            Ok(Token::new(format!("tok-{n}"), LIFETIME))
        }
    })
}

/// A layer on `store`, refreshing on demand: these tests are about the store's own timing.
fn layer(store: impl TokenStore, count: &Arc<AtomicUsize>, options: StoreOptions) -> OAuthLayer {
    OAuthLayer::builder(counting_source(count.clone(), Duration::from_millis(100)))
        .refresh_ahead(false)
        .store(store)
        .store_options(options.key(key()))
        .build()
}

fn secret(token: &Token) -> String {
    token.access_token().expose_secret().to_owned()
}

fn store_key() -> String {
    format!("{DEFAULT_PREFIX}{{{}}}", key().to_hex())
}

#[tokio::test(start_paused = true)]
async fn eight_caches_on_a_cold_store_make_one_fetch() {
    let store = MemoryStore::new();
    let count = Arc::new(AtomicUsize::new(0));
    let layers: Vec<_> = (0..8)
        .map(|_| layer(store.clone(), &count, StoreOptions::new()))
        .collect();
    let mut tasks = Vec::new();
    for layer in &layers {
        for _ in 0..50 {
            let cache = layer.cache().clone();
            tasks.push(tokio::spawn(async move { cache.token().await }));
        }
    }
    for task in tasks {
        assert_eq!(secret(&task.await.unwrap().unwrap()), "tok-1");
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert_eq!(store.len(), 1, "the token, and no lock left behind");
}

#[tokio::test(start_paused = true)]
async fn a_second_cache_takes_the_stored_token_without_fetching() {
    let store = MemoryStore::new();
    let count = Arc::new(AtomicUsize::new(0));
    let a = layer(store.clone(), &count, StoreOptions::new());
    let b = layer(store.clone(), &count, StoreOptions::new());
    let first = a.cache().token().await.unwrap();
    let second = b.cache().token().await.unwrap();
    assert_eq!(secret(&first), secret(&second));
    // The absolute expiry is kept, to the millisecond (rounded down).
    let lost = first
        .expires_at()
        .duration_since(second.expires_at())
        .unwrap();
    assert!(lost < Duration::from_millis(1), "{lost:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
    let stored = b.cache().stored_token().await.unwrap().unwrap();
    assert_eq!(secret(&stored), "tok-1");
}

#[tokio::test(start_paused = true)]
async fn the_stored_token_expires_at_its_refresh_point_and_the_fleet_refetches_once() {
    let store = MemoryStore::new();
    let count = Arc::new(AtomicUsize::new(0));
    let layers: Vec<_> = (0..4)
        .map(|_| layer(store.clone(), &count, StoreOptions::new()))
        .collect();
    for layer in &layers {
        layer.cache().token().await.unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Refresh point: 600 s lifetime less the default 60 s margin.
    tokio::time::advance(Duration::from_secs(539)).await;
    assert_eq!(store.len(), 1, "still stored just before the refresh point");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(store.len(), 0, "TTL ends the entry at the refresh point");
    let mut tasks = Vec::new();
    for layer in &layers {
        let cache = layer.cache().clone();
        tasks.push(tokio::spawn(async move { cache.token().await }));
    }
    for task in tasks {
        assert_eq!(secret(&task.await.unwrap().unwrap()), "tok-2");
    }
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_dead_lock_holder_is_taken_over_when_its_lock_expires() {
    let store = MemoryStore::new();
    let lock_ttl = Duration::from_secs(2);
    // What a holder that died mid-fetch leaves: a lock, and no token.
    let lock_key = format!("{}:lock", store_key());
    TokenStore::set(&store, &lock_key, b"dead-owner", lock_ttl)
        .await
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let a = layer(
        store.clone(),
        &count,
        StoreOptions::new().lock_ttl(lock_ttl),
    );
    let started = Instant::now();
    let token = a.cache().token().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(secret(&token), "tok-1");
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert!(waited >= lock_ttl, "waited for the lock: {waited:?}");
    // One poll interval (at most 250 ms) after the lock expired, plus the 100 ms fetch.
    assert!(
        waited <= lock_ttl + MAX_POLL + Duration::from_millis(100),
        "{waited:?}"
    );
    assert_eq!(store.len(), 1, "the token; the dead lock is gone");
}

#[tokio::test(start_paused = true)]
async fn a_waiter_falls_back_to_its_own_fetch_after_lock_wait() {
    let store = MemoryStore::new();
    let lock_key = format!("{}:lock", store_key());
    // A lock that outlives the wait (someone holding it far too long).
    TokenStore::set(&store, &lock_key, b"other", Duration::from_secs(3600))
        .await
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let a = layer(
        store.clone(),
        &count,
        StoreOptions::new().lock_wait(Duration::from_secs(1)),
    );
    let started = Instant::now();
    let token = a.cache().token().await.unwrap();
    assert_eq!(secret(&token), "tok-1");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// A store that fails every call.
struct FailingStore;

impl TokenStore for FailingStore {
    async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, BoxError> {
        Err("connection refused".into())
    }
    async fn set(&self, _: &str, _: &[u8], _: Duration) -> Result<(), BoxError> {
        Err("connection refused".into())
    }
    async fn set_if_absent(&self, _: &str, _: &[u8], _: Duration) -> Result<bool, BoxError> {
        Err("connection refused".into())
    }
    async fn delete_if(&self, _: &str, _: &[u8]) -> Result<bool, BoxError> {
        Err("connection refused".into())
    }
}

/// A store that never answers.
struct HangingStore;

impl TokenStore for HangingStore {
    async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, BoxError> {
        std::future::pending().await
    }
    async fn set(&self, _: &str, _: &[u8], _: Duration) -> Result<(), BoxError> {
        std::future::pending().await
    }
    async fn set_if_absent(&self, _: &str, _: &[u8], _: Duration) -> Result<bool, BoxError> {
        std::future::pending().await
    }
    async fn delete_if(&self, _: &str, _: &[u8]) -> Result<bool, BoxError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_falls_back_to_one_fetch_per_process() {
    let count = Arc::new(AtomicUsize::new(0));
    let a = layer(FailingStore, &count, StoreOptions::new());
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = a.cache().clone();
            tokio::spawn(async move { cache.token().await })
        })
        .collect();
    for task in tasks {
        assert_eq!(secret(&task.await.unwrap().unwrap()), "tok-1");
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
    let err = a.cache().stored_token().await.unwrap_err();
    assert!(err.is_store(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_store_that_never_answers_costs_one_timeout() {
    let count = Arc::new(AtomicUsize::new(0));
    let a = layer(
        HangingStore,
        &count,
        StoreOptions::new().timeout(Duration::from_millis(250)),
    );
    let started = Instant::now();
    let token = a.cache().token().await.unwrap();
    assert_eq!(secret(&token), "tok-1");
    // 250 ms for the read that never answers, then the 100 ms fetch of our own.
    assert_eq!(started.elapsed(), Duration::from_millis(350));
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn garbage_in_the_store_is_a_typed_error_then_replaced() {
    let store = MemoryStore::new();
    TokenStore::set(&store, &store_key(), b"\x00garbage", LIFETIME)
        .await
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let a = layer(store.clone(), &count, StoreOptions::new());
    let err = a.cache().stored_token().await.unwrap_err();
    assert!(err.is_store(), "{err}");
    assert_eq!(secret(&a.cache().token().await.unwrap()), "tok-1");
    assert_eq!(count.load(Ordering::SeqCst), 1);
    let stored = a.cache().stored_token().await.unwrap().unwrap();
    assert_eq!(secret(&stored), "tok-1", "overwritten with a good value");
}

#[tokio::test(start_paused = true)]
async fn reject_deletes_the_shared_token_only_while_it_is_still_there() {
    let store = MemoryStore::new();
    let count = Arc::new(AtomicUsize::new(0));
    let layers: Vec<_> = (0..4)
        .map(|_| layer(store.clone(), &count, StoreOptions::new()))
        .collect();
    let t1 = layers[0].cache().token().await.unwrap();
    for layer in &layers {
        assert_eq!(secret(&layer.cache().token().await.unwrap()), "tok-1");
    }
    // Every instance got a 401 with tok-1.
    for layer in &layers {
        layer.cache().reject(&t1);
        assert!(layer.cache().current().is_none());
    }
    let mut tasks = Vec::new();
    for layer in &layers {
        let cache = layer.cache().clone();
        tasks.push(tokio::spawn(async move { cache.token().await }));
    }
    for task in tasks {
        assert_eq!(secret(&task.await.unwrap().unwrap()), "tok-2");
    }
    assert_eq!(count.load(Ordering::SeqCst), 2, "one refresh for the fleet");
    // A late 401 with tok-1 leaves tok-2 alone, here and in the store.
    layers[3].cache().reject(&t1);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(secret(&layers[3].cache().current().unwrap()), "tok-2");
    let stored = layers[3].cache().stored_token().await.unwrap().unwrap();
    assert_eq!(secret(&stored), "tok-2");
}

#[tokio::test(start_paused = true)]
async fn a_rejected_token_is_not_taken_back_before_its_delete_lands() {
    let store = MemoryStore::new();
    let count = Arc::new(AtomicUsize::new(0));
    let a = layer(store.clone(), &count, StoreOptions::new());
    let t1 = a.cache().token().await.unwrap();
    // No await between the 401 and the next request: the background delete has not run.
    a.cache().reject(&t1);
    let t2 = a.cache().token().await.unwrap();
    assert_eq!(secret(&t2), "tok-2");
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn refresh_replaces_the_shared_token_once() {
    let store = MemoryStore::new();
    let count = Arc::new(AtomicUsize::new(0));
    let a = layer(store.clone(), &count, StoreOptions::new());
    let b = layer(store.clone(), &count, StoreOptions::new());
    a.cache().token().await.unwrap();
    b.cache().token().await.unwrap();
    let fresh = a.cache().refresh().await.unwrap();
    assert_eq!(
        secret(&fresh),
        "tok-2",
        "refresh does not take back the same token"
    );
    // b's refresh finds a newer token than its own in the store.
    assert_eq!(secret(&b.cache().refresh().await.unwrap()), "tok-2");
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_source_without_a_key_does_not_use_the_store() {
    let store = MemoryStore::new();
    let count = Arc::new(AtomicUsize::new(0));
    let a = OAuthLayer::builder(counting_source(count.clone(), Duration::ZERO))
        .store(store.clone())
        .build();
    assert_eq!(secret(&a.cache().token().await.unwrap()), "tok-1");
    assert!(store.is_empty());
    assert!(a.cache().stored_token().await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn prefixes_separate_layers() {
    let store = MemoryStore::new();
    let count = Arc::new(AtomicUsize::new(0));
    let a = layer(store.clone(), &count, StoreOptions::new().prefix("a:"));
    let b = layer(store.clone(), &count, StoreOptions::new().prefix("b:"));
    assert_eq!(secret(&a.cache().token().await.unwrap()), "tok-1");
    assert_eq!(secret(&b.cache().token().await.unwrap()), "tok-2");
    assert_eq!(store.len(), 2);
}

#[cfg(feature = "encryption")]
#[tokio::test(start_paused = true)]
async fn a_wrong_encryption_key_is_a_typed_error_then_a_refetch() {
    let store = MemoryStore::new();
    let count = Arc::new(AtomicUsize::new(0));
    let k1 = StoreOptions::new().encryption_key(EncryptionKey::from_bytes([1; 32]));
    let k2 = StoreOptions::new().encryption_key(EncryptionKey::from_bytes([2; 32]));
    let a = layer(store.clone(), &count, k1);
    let b = layer(store.clone(), &count, k2);
    assert_eq!(secret(&a.cache().token().await.unwrap()), "tok-1");
    let raw = TokenStore::get(&store, &store_key())
        .await
        .unwrap()
        .unwrap();
    assert!(!raw.windows(5).any(|w| w == b"tok-1"), "sealed at rest");
    let err = b.cache().stored_token().await.unwrap_err();
    assert!(err.is_store(), "{err}");
    assert_eq!(secret(&b.cache().token().await.unwrap()), "tok-2");
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[test]
fn debug_shows_no_secret() {
    let options = StoreOptions::new().prefix("p:");
    let text = format!("{options:?}");
    assert!(text.contains("p:"));
    let config = StoreConfig {
        store: Some(Arc::new(MemoryStore::new())),
        options,
    };
    assert!(format!("{config:?}").contains("MemoryStore"));
}
