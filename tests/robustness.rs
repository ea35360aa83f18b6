//! A cache that survives what its surroundings do to it: a source that panics, the runtime
//! of a fetch or of the timer going away, extreme settings and lifetimes. On tokio's paused
//! clock. (Found in review; each test failed before its fix.)

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use secrecy::ExposeSecret;
use support::echo_auth;
use tower::{Layer, ServiceExt};
use tower_oauth::store::{CacheKey, MemoryStore, StoreOptions};
use tower_oauth::{Error, OAuthLayer, Token, TokenSource, source_fn};

/// Hands out `t1`, `t2`, ... after `delay`; panics instead on the first call if asked to.
fn source(
    fetches: Arc<AtomicUsize>,
    panic_first: bool,
    lifetime: Duration,
    delay: Duration,
) -> impl TokenSource {
    source_fn(move || {
        let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(delay).await;
            if panic_first && n == 1 {
                panic!("a bug in the token source");
            }
            Ok(Token::new(format!("t{n}"), lifetime))
        }
    })
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// The `Authorization` header a request through `layer` carries.
async fn header_sent(layer: &OAuthLayer) -> Option<String> {
    let auth = layer
        .layer(echo_auth::<()>())
        .oneshot(Request::get("http://api.test/").body(()).unwrap())
        .await
        .unwrap()
        .into_body();
    Some(auth).filter(|auth| !auth.is_empty())
}

#[tokio::test(start_paused = true)]
async fn a_source_that_panics_fails_that_fetch_only() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::new(source(
        fetches.clone(),
        true,
        Duration::from_secs(3600),
        Duration::ZERO,
    ));
    let err = layer.cache().token().await.unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    // After the failure window, the next request fetches again, and gets a token.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(header_sent(&layer).await.as_deref(), Some("Bearer t2"));
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[test]
fn a_fetch_whose_runtime_shuts_down_does_not_hold_up_the_next_runtime() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::new(source(
        fetches.clone(),
        false,
        Duration::from_secs(3600),
        Duration::from_millis(500),
    ));
    let cache = layer.cache().clone();
    paused_runtime().block_on(async {
        let waited = tokio::time::timeout(Duration::from_millis(50), cache.token()).await;
        assert!(waited.is_err(), "the fetch is still running");
    }); // the runtime goes, and the fetch task with it
    paused_runtime().block_on(async {
        tokio::time::advance(Duration::from_secs(2)).await;
        let token = cache.token().await.expect("a new fetch on this runtime");
        assert_eq!(token.access_token().expose_secret(), "t2");
    });
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[test]
fn a_timer_whose_runtime_shuts_down_does_not_leave_an_expired_token_in_use() {
    let fetches = Arc::new(AtomicUsize::new(0));
    // A 2 s token: usable for 1 s, expired after 2 s.
    let layer = OAuthLayer::new(source(
        fetches.clone(),
        false,
        Duration::from_secs(2),
        Duration::ZERO,
    ));
    paused_runtime().block_on(async {
        assert_eq!(header_sent(&layer).await.as_deref(), Some("Bearer t1"));
    }); // the cache's timer task goes with this runtime
    paused_runtime().block_on(async {
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(header_sent(&layer).await.as_deref(), Some("Bearer t2"));
        // And the new runtime has a timer again: t2 is refreshed when due.
        tokio::time::advance(Duration::from_secs(3)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(header_sent(&layer).await.as_deref(), Some("Bearer t3"));
    });
}

#[tokio::test(start_paused = true)]
async fn an_unbounded_failure_window_is_capped_not_a_panic() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let layer = OAuthLayer::builder(source_fn(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Err::<Token, _>(Error::other("down")) }
    }))
    .failure_window(Duration::MAX)
    .retry_backoff(Duration::from_secs(1), Duration::MAX)
    .build();
    let err = layer.cache().token().await.unwrap_err();
    assert!(
        err.is_other(),
        "the source's own error, not a cancelled fetch: {err}"
    );
    // Held back for at most a day.
    tokio::time::advance(Duration::from_secs(23 * 3600)).await;
    assert!(layer.cache().token().await.unwrap_err().is_other());
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(3600)).await;
    layer.cache().token().await.unwrap_err();
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[test]
fn a_runtime_without_timers_gets_an_error_not_a_hang() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let layer = OAuthLayer::new(source_fn(|| async {
        Ok(Token::new("t", Duration::from_secs(60)))
    }));
    let err = rt.block_on(layer.cache().token()).unwrap_err();
    assert!(err.is_cancelled(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn invalidate_with_a_store_fetches_a_new_token() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::builder(source(
        fetches.clone(),
        false,
        Duration::from_secs(3600),
        Duration::ZERO,
    ))
    .store(MemoryStore::new())
    .store_options(StoreOptions::new().key(CacheKey::builder("robustness").build()))
    .build();
    let cache = layer.cache();
    assert_eq!(
        cache.token().await.unwrap().access_token().expose_secret(),
        "t1"
    );
    cache.invalidate();
    assert_eq!(
        cache.token().await.unwrap().access_token().expose_secret(),
        "t2"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_token_that_never_expires_is_fetched_once() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let layer = OAuthLayer::new(source_fn(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok(Token::new("forever", Duration::MAX)) }
    }));
    for _ in 0..5 {
        assert_eq!(header_sent(&layer).await.as_deref(), Some("Bearer forever"));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

/// Issue: a current-thread runtime used through `block_on`, idle between calls, must not
/// send an expired token: the timer task cannot run while nothing drives the runtime.
/// Real clock (an idle runtime is the point): a 2 s token, usable for 1 s; 2.5 s of idling.
#[test]
fn an_idle_runtime_does_not_send_an_expired_token() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fetches = Arc::new(AtomicUsize::new(0));
    let source = {
        let fetches = fetches.clone();
        tower_oauth::source_fn(move || {
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok(Token::new(format!("t{n}"), Duration::from_secs(2))) }
        })
    };
    let layer = OAuthLayer::new(source);
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(|req: Request<String>| async move {
            let auth = req.headers()[http::header::AUTHORIZATION]
                .to_str()
                .unwrap()
                .to_owned();
            Ok::<_, tower::BoxError>(http::Response::new(auth))
        }));
    let call = |svc| rt.block_on(tower::ServiceExt::oneshot(svc, Request::new(String::new())));
    assert_eq!(call(svc.clone()).unwrap().into_body(), "Bearer t1");
    // Nothing drives the runtime now.
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        call(svc.clone()).unwrap().into_body(),
        "Bearer t2",
        "t1 expired while the runtime idled"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}
