use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, header::AUTHORIZATION};
use tower_service::Service;

use crate::cache::TokenCache;
use crate::future::ResponseFuture;
use crate::origin::{AttachPolicy, Decision};
use crate::replay::Recovery;
use crate::{BoxError, OAuthLayer, TokenSource};

/// Middleware that puts a valid access token on every request. Built by [`OAuthLayer`].
///
/// A request the layer authorizes is sent only with a token: if none can be had, the
/// caller gets the [`Error`](crate::Error) (boxed in the service's `BoxError`) and the inner
/// service is not called. Requests for origins outside the
/// [allowed origins](crate::OAuthLayerBuilder::allowed_origins), and requests that carry
/// their own `Authorization`, are sent as they are; see the [`origin`](crate::origin)
/// module.
#[derive(Clone, Debug)]
pub struct OAuth<S> {
    inner: S,
    cache: TokenCache,
    recovery: Arc<Recovery>,
    attach: AttachPolicy,
}

impl<S> OAuth<S> {
    pub(crate) fn from_parts(inner: S, cache: TokenCache, recovery: Arc<Recovery>) -> OAuth<S> {
        OAuth {
            inner,
            cache,
            recovery,
            attach: AttachPolicy::default(),
        }
    }

    pub(crate) fn with_attach(mut self, attach: AttachPolicy) -> OAuth<S> {
        self.attach = attach;
        self
    }

    /// A layer with the default options; the same as [`OAuthLayer::new`].
    pub fn layer(source: impl TokenSource) -> OAuthLayer {
        OAuthLayer::new(source)
    }

    /// The token cache this service shares with its layer.
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for OAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.attach.decide(&req) {
            Decision::Attach => {}
            // Not for us to authorize: sent as it is, no token, no fetch.
            Decision::PassThrough => return ResponseFuture::called(self.inner.call(req)),
            Decision::Refuse => {
                // The "token" future fails at once; the ready service stays here, unused.
                let error = AttachPolicy::refusal(&req);
                let fail = Box::pin(std::future::ready(Err(error)));
                return ResponseFuture::waiting(fail, req, self.inner.clone(), None);
            }
        }
        if let Some((header, used)) = self.cache.fresh_header() {
            // Keep which token was used, to invalidate exactly that one on a 401, and a copy
            // of the request if it can be sent again.
            let recover = self.recovery.prepare(&self.cache, &req, &self.inner);
            req.headers_mut().insert(AUTHORIZATION, header);
            let future = self.inner.call(req);
            return match recover {
                Some(recover) => ResponseFuture::sent(future, used, recover),
                None => ResponseFuture::called(future),
            };
        }
        // No usable token: wait for one with the service that was made ready, and leave a
        // clone here for the next request.
        let recover = self.recovery.prepare(&self.cache, &req, &self.inner);
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::waiting(Box::pin(self.cache.entry()), req, inner, recover)
    }
}
