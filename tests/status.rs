//! `TokenCache::status()`: the health view, on tokio's paused clock.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tower_oauth::{Error, OAuthLayer, Token, source_fn};

/// A source whose first fetch gives a 10 s token and every later one fails.
fn once_then_down(fetches: Arc<AtomicUsize>) -> impl tower_oauth::TokenSource {
    source_fn(move || {
        let n = fetches.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                Ok(Token::new("t1", Duration::from_secs(10)))
            } else {
                Err(Error::other("token endpoint down"))
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn status_follows_the_token_and_the_fetches() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::builder(once_then_down(fetches.clone()))
        .refresh_margin(Duration::from_secs(2))
        .build();
    let cache = layer.cache();

    let cold = cache.status();
    assert!(!cold.has_valid_token());
    assert!(!cold.holds_expired_token());
    assert_eq!(cold.valid_until(), None);
    assert_eq!(cold.last_fetch_at(), None);
    assert_eq!(cold.failures_in_a_row(), 0);
    assert!(!cold.fetch_in_flight());

    let token = cache.token().await.expect("first fetch");
    let fresh = cache.status();
    assert!(fresh.has_valid_token());
    assert_eq!(fresh.valid_until(), Some(token.expires_at()));
    assert_eq!(
        fresh.refresh_due_at(),
        Some(token.expires_at() - Duration::from_secs(2))
    );
    assert!(fresh.last_fetch_at().is_some());
    assert!(fresh.last_error().is_none());
    assert_eq!(fresh.failures_in_a_row(), 0);

    // A refresh now fails; the held token is still valid.
    assert!(cache.refresh().await.is_err());
    let failing = cache.status();
    assert!(failing.has_valid_token());
    assert_eq!(failing.failures_in_a_row(), 1);
    let error = failing.last_error().expect("the failure");
    let cause = std::error::Error::source(error).map(|c| c.to_string());
    assert_eq!(cause.as_deref(), Some("token endpoint down"), "{error}");

    // Past its expiry the token is still held, but not valid.
    tokio::time::advance(Duration::from_secs(11)).await;
    support::settle().await;
    let expired = cache.status();
    assert!(!expired.has_valid_token());
    assert!(expired.holds_expired_token());
    assert!(expired.failures_in_a_row() >= 1);
    assert_eq!(
        cache.current().map(|t| t.expires_at()),
        Some(token.expires_at())
    );
}

#[tokio::test(start_paused = true)]
async fn status_never_starts_a_fetch() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::new(once_then_down(fetches.clone()));
    for _ in 0..3 {
        let _ = layer.cache().status();
    }
    support::settle().await;
    assert_eq!(fetches.load(Ordering::SeqCst), 0);
    let debug = format!("{:?}", layer.cache().status());
    assert!(debug.contains("CacheStatus"), "{debug}");
}

#[tokio::test(start_paused = true)]
async fn status_says_whether_the_store_answered() {
    use tower_oauth::key::CacheKey;
    use tower_oauth::store::{MemoryStore, StoreOptions};

    let fetches = Arc::new(AtomicUsize::new(0));
    let without = OAuthLayer::new(once_then_down(fetches.clone()));
    without.cache().token().await.unwrap();
    assert_eq!(without.cache().status().store_reachable(), None, "no store");

    let with = OAuthLayer::builder(once_then_down(Arc::new(AtomicUsize::new(0))))
        .name("with-store")
        .store(MemoryStore::new())
        .store_options(StoreOptions::new().key(CacheKey::builder("status").build()))
        .build();
    assert_eq!(with.cache().status().store_reachable(), None, "no call yet");
    with.cache().token().await.unwrap();
    let status = with.cache().status();
    assert_eq!(status.store_reachable(), Some(true));
    assert_eq!(status.identity().name(), "with-store");
}
