//! [`AttachLayer`] and [`Attach`]: the token put on requests, without 401 recovery, at the
//! least cost a request can have.
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, header::AUTHORIZATION};
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_oauth::{source_fn, OAuthLayer, Token};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let layer = OAuthLayer::new(source_fn(|| async {
//!     Ok(Token::new("s3cr3t", Duration::from_secs(3600)))
//! }));
//! let client = ServiceBuilder::new()
//!     .layer(layer.without_recovery())
//!     .service(service_fn(|req: Request<String>| async move {
//!         let auth = req.headers()[AUTHORIZATION].to_str()?.to_owned();
//!         Ok::<_, BoxError>(Response::new(auth))
//!     }));
//! let response = client.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.body(), "Bearer s3cr3t");
//! # Ok(())
//! # }
//! ```
//!
//! An [`Attach`] service is an [`OAuth`](super::OAuth) service whose recovery is off at
//! the type level: the same token cache (single flight, refresh ahead, store), the same
//! origin rules, but every answer, a `401` too, goes back to the caller as it came and no
//! token is invalidated. Its response future is the inner service's future plus a tag
//! (the rare waiting state is boxed), so a request with a valid token costs what a
//! hand-set header costs plus the slot read. Use it where a `401` is handled elsewhere, or
//! where the last instructions count; [`OAuthLayer`](super::OAuthLayer) keeps recovery on.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, header::AUTHORIZATION};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::cache::{Entry, SlotReader, TokenCache};
use crate::error::Error;
use crate::origin::{AttachPolicy, Decision};

/// The layer of [`Attach`]: an [`OAuthLayer`](super::OAuthLayer) without 401 recovery.
/// Made by [`OAuthLayer::without_recovery`](super::OAuthLayer::without_recovery); it shares
/// that layer's [`TokenCache`].
#[derive(Clone)]
pub struct AttachLayer {
    cache: TokenCache,
    attach: AttachPolicy,
}

impl AttachLayer {
    pub(crate) fn new(cache: TokenCache, attach: AttachPolicy) -> AttachLayer {
        AttachLayer { cache, attach }
    }

    /// The token cache this layer and its services share.
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }
}

impl<S> Layer<S> for AttachLayer {
    type Service = Attach<S>;

    fn layer(&self, inner: S) -> Attach<S> {
        Attach {
            inner,
            slot: self.cache.reader(),
            cache: self.cache.clone(),
            attach: self.attach.clone(),
        }
    }
}

impl fmt::Debug for AttachLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachLayer")
            .field("cache", &self.cache)
            .field("attach", &self.attach)
            .finish()
    }
}

/// Middleware that puts a valid access token on every request it authorizes, without 401
/// recovery. Built by [`AttachLayer`]; see the [module docs](self).
///
/// Errors: the inner service's, or an [`Error`] when no token can be had
/// (the inner service is then not called) or the origin is refused.
pub struct Attach<S> {
    inner: S,
    slot: SlotReader,
    cache: TokenCache,
    attach: AttachPolicy,
}

impl<S: Clone> Clone for Attach<S> {
    fn clone(&self) -> Self {
        Attach {
            inner: self.inner.clone(),
            slot: self.slot.clone(),
            cache: self.cache.clone(),
            attach: self.attach.clone(),
        }
    }
}

impl<S> Attach<S> {
    /// The token cache this service shares with its layer.
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    crate::macros::define_inner_service_accessors!();
}

impl<S, ReqBody> Service<Request<ReqBody>> for Attach<S>
where
    S: Service<Request<ReqBody>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AttachFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.attach.decide(&req) {
            Decision::Attach => {}
            Decision::PassThrough => return AttachFuture::passed(self.inner.call(req)),
            Decision::Refuse => return AttachFuture::refused(AttachPolicy::refusal(&req)),
        }
        if let Some(entry) = self.slot.fresh() {
            req.headers_mut()
                .insert(AUTHORIZATION, entry.header.clone());
            return AttachFuture::passed(self.inner.call(req));
        }
        // Not fresh: wait with the service that was made ready, leave a clone here.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        AttachFuture {
            state: State::Waiting {
                waiting: Box::new(Waiting {
                    token: Box::pin(self.cache.entry()),
                    request: req,
                    service,
                }),
            },
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Attach<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attach")
            .field("inner", &self.inner)
            .field("cache", &self.cache)
            .field("attach", &self.attach)
            .finish()
    }
}

type EntryFuture = Pin<Box<dyn Future<Output = Result<Arc<Entry>, Error>> + Send>>;

pin_project! {
    /// Response future of [`Attach`]: the inner service's future with a valid token; a
    /// boxed state while a request waits for one.
    pub struct AttachFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateProjReplace]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Passed {
            #[pin]
            future: S::Future,
        },
        Waiting {
            waiting: Box<Waiting<S, B>>,
        },
        Refused {
            error: Error,
        },
        Done,
    }
}

struct Waiting<S, B> {
    token: EntryFuture,
    request: Request<B>,
    service: S,
}

impl<S: Service<Request<B>>, B> AttachFuture<S, B> {
    #[inline(always)]
    fn passed(future: S::Future) -> Self {
        AttachFuture {
            state: State::Passed { future },
        }
    }

    fn refused(error: Error) -> Self {
        AttachFuture {
            state: State::Refused { error },
        }
    }
}

impl<S, B> Future for AttachFuture<S, B>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The hot path inline; waiting and refusals out of line.
        if let StateProj::Passed { future } = this.state.as_mut().project() {
            return future.poll(cx).map_err(Into::into);
        }
        poll_slow(this.state, cx)
    }
}

/// [`AttachFuture::poll`] off the hot path: waiting for a token, a refusal.
#[inline(never)]
fn poll_slow<S, B>(
    mut state: Pin<&mut State<S, B>>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, BoxError>>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    loop {
        match state.as_mut().project() {
            StateProj::Passed { future } => return future.poll(cx).map_err(Into::into),
            StateProj::Waiting { waiting } => {
                let entry = ready!(waiting.token.as_mut().poll(cx));
                let StateProjReplace::Waiting { waiting } =
                    state.as_mut().project_replace(State::Done)
                else {
                    unreachable!("the state was Waiting")
                };
                let entry = entry?;
                let Waiting {
                    request,
                    mut service,
                    ..
                } = *waiting;
                state.set(State::Passed {
                    future: service.call(entry.authorize(request)),
                });
            }
            StateProj::Refused { .. } => {
                let StateProjReplace::Refused { error } =
                    state.as_mut().project_replace(State::Done)
                else {
                    unreachable!("the state was Refused")
                };
                return Poll::Ready(Err(error.into()));
            }
            StateProj::Done => panic!("AttachFuture polled after completion"),
        }
    }
}

impl<S: Service<Request<B>>, B> fmt::Debug for AttachFuture<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Passed { .. } => "called",
            State::Waiting { .. } => "waiting for a token",
            State::Refused { .. } => "refused",
            State::Done => "done",
        };
        f.debug_struct("AttachFuture")
            .field("state", &state)
            .finish()
    }
}
