//! What the benchmarks share: the timed loop, and the token-slot layers users write by
//! hand. The no-op inner service, the requests, the static-header layer and `OAuthLayer`
//! over an in-process source come from the tests' support (`tests/support/hot_path.rs`),
//! which `tests/alloc.rs` measures too: the benches include test support, never the other
//! way round.
//!
//! Everything here uses the crate's public API only.
#![allow(dead_code)]

#[path = "../../tests/support/mod.rs"]
pub mod support;

pub mod copy_floor;

#[allow(unused_imports)] // each bench uses a part
pub use support::hot_path::{
    LIFETIME, Noop, Streaming, TOKEN, bare, bearer_value, empty_body, full_body, keyed_layer,
    oauth_layer, oauth_layer_no_replay, oauth_layer_off, per_origin_layer, post, post_to,
    static_header_layer, streaming_body, to_third_origin, token_source, warm,
};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_oauth::{OAuthLayer, Token, source_fn};

/// Sends `iters` requests made by `request` through `svc`, one after the other, and times
/// them. Each request is built, waits for `ready`, is called, and its response awaited and
/// dropped.
pub async fn drive<S, B>(mut svc: S, request: impl Fn() -> Request<B>, iters: u64) -> Duration
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..iters {
        let req = request();
        let ready = svc.ready().await.expect("ready");
        let res = ready.call(req).await.expect("response");
        std::hint::black_box(res);
    }
    start.elapsed()
}

/// An `OAuthLayer` whose source answers with [`TOKEN`] after `delay`, counting its
/// fetches: an in-process token endpoint with a latency.
pub fn oauth_layer_delayed(fetches: Arc<AtomicUsize>, delay: Duration) -> OAuthLayer {
    OAuthLayer::new(source_fn(move || {
        fetches.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(delay).await;
            Ok(Token::new(TOKEN, LIFETIME))
        }
    }))
}

// ---------------------------------------------------------------------------------------
// The token slots users write by hand.
//
// Both keep what they cache as the crate does: a prebuilt `HeaderValue` (cloned per
// request, a reference count) and an expiry, so no request formats `Bearer <token>`.
// Both check the expiry as hand-written code does, with a clock read per request
// (`Instant::now()`, like Go's `Token.Valid` calling `time.Now()`), and both are the
// usual hand-written tower service: an `async move` block boxed as the response future.
// ---------------------------------------------------------------------------------------

/// A token as a hand-written slot keeps it.
#[derive(Clone, Debug)]
pub struct Cached {
    pub header: HeaderValue,
    pub expires_at: Instant,
}

impl Cached {
    pub fn new(access_token: &str, lifetime: Duration) -> Cached {
        Cached {
            header: bearer_value(access_token),
            expires_at: Instant::now() + lifetime,
        }
    }

    /// Valid with at least a minute to spare, read off the clock.
    #[inline]
    fn is_valid(&self) -> bool {
        Instant::now() + Duration::from_secs(60) < self.expires_at
    }
}

/// How a hand-written slot gets a token.
pub type FetchFn = Arc<dyn Fn() -> BoxFuture<'static, Result<Cached, BoxError>> + Send + Sync>;

/// A fetch function that answers at once with [`TOKEN`] and counts its calls.
pub fn instant_fetch(fetches: Arc<AtomicUsize>) -> FetchFn {
    Arc::new(move || {
        fetches.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(Cached::new(TOKEN, LIFETIME)) })
    })
}

/// A fetch function that answers with [`TOKEN`] after `delay` and counts its calls.
pub fn delayed_fetch(fetches: Arc<AtomicUsize>, delay: Duration) -> FetchFn {
    Arc::new(move || {
        fetches.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(Cached::new(TOKEN, LIFETIME))
        })
    })
}

struct MutexShared {
    slot: tokio::sync::Mutex<Option<Cached>>,
    fetch: FetchFn,
}

/// `Arc<tokio::sync::Mutex<Option<Token>>>`, locked for every request and held across the
/// fetch: the pattern of Go's `oauth2.ReuseTokenSource`.
#[derive(Clone)]
pub struct MutexSlotLayer {
    shared: Arc<MutexShared>,
}

impl MutexSlotLayer {
    pub fn new(fetch: FetchFn) -> MutexSlotLayer {
        MutexSlotLayer {
            shared: Arc::new(MutexShared {
                slot: tokio::sync::Mutex::new(None),
                fetch,
            }),
        }
    }

    /// Fills the slot, as [`warm`] does for the crate's cache.
    pub async fn warm(&self) {
        let cached = (self.shared.fetch)().await.expect("token");
        *self.shared.slot.lock().await = Some(cached);
    }
}

impl<S> Layer<S> for MutexSlotLayer {
    type Service = MutexSlot<S>;
    fn layer(&self, inner: S) -> MutexSlot<S> {
        MutexSlot {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub struct MutexSlot<S> {
    inner: S,
    shared: Arc<MutexShared>,
}

impl<S, B, R> Service<Request<B>> for MutexSlot<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<R>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let header = {
                let mut slot = shared.slot.lock().await;
                if !slot.as_ref().is_some_and(Cached::is_valid) {
                    *slot = Some((shared.fetch)().await?);
                }
                slot.as_ref().expect("just filled").header.clone()
            };
            req.headers_mut().insert(AUTHORIZATION, header);
            inner.call(req).await.map_err(Into::into)
        })
    }
}

struct RwLockShared {
    slot: tokio::sync::RwLock<Option<Cached>>,
    fetch: FetchFn,
}

/// `Arc<tokio::sync::RwLock<Option<Token>>>`: a read lock when the token is valid; the
/// write lock, a second check and the fetch when it is not.
#[derive(Clone)]
pub struct RwLockSlotLayer {
    shared: Arc<RwLockShared>,
}

impl RwLockSlotLayer {
    pub fn new(fetch: FetchFn) -> RwLockSlotLayer {
        RwLockSlotLayer {
            shared: Arc::new(RwLockShared {
                slot: tokio::sync::RwLock::new(None),
                fetch,
            }),
        }
    }

    /// Fills the slot, as [`warm`] does for the crate's cache.
    pub async fn warm(&self) {
        let cached = (self.shared.fetch)().await.expect("token");
        *self.shared.slot.write().await = Some(cached);
    }
}

impl<S> Layer<S> for RwLockSlotLayer {
    type Service = RwLockSlot<S>;
    fn layer(&self, inner: S) -> RwLockSlot<S> {
        RwLockSlot {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RwLockSlot<S> {
    inner: S,
    shared: Arc<RwLockShared>,
}

impl<S, B, R> Service<Request<B>> for RwLockSlot<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<R>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let hit = {
                let slot = shared.slot.read().await;
                slot.as_ref()
                    .filter(|c| c.is_valid())
                    .map(|c| c.header.clone())
            };
            let header = match hit {
                Some(header) => header,
                None => {
                    let mut slot = shared.slot.write().await;
                    if !slot.as_ref().is_some_and(Cached::is_valid) {
                        *slot = Some((shared.fetch)().await?);
                    }
                    slot.as_ref().expect("just filled").header.clone()
                }
            };
            req.headers_mut().insert(AUTHORIZATION, header);
            inner.call(req).await.map_err(Into::into)
        })
    }
}
