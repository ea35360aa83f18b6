//! The middleware: [`OAuthLayer`] and the [`OAuth`] service it builds.
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, header::AUTHORIZATION};
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_oauth::{source_fn, OAuthLayer, Token};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let source = source_fn(|| async { Ok(Token::new("s3cr3t", Duration::from_secs(3600))) });
//! let client = ServiceBuilder::new()
//!     .layer(OAuthLayer::new(source))
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
//! # Where a request goes
//!
//! - *Valid token* (almost every request): the [origin policy](crate::origin) decides in a
//!   branch or two, the service's reader of the [cache](crate::cache) compares one pointer
//!   and reads one flag, the header is cloned (a reference count) and set, and the inner
//!   service is called. With recovery on, the future also keeps the token's id, one
//!   reference to the layer's recovery state and, if the request can be sent again, a copy
//!   of it ([`recover`](crate::recover)).
//! - *Not fresh* (a cold cache, a token due or expired, after an `invalidate`): the request
//!   goes through a boxed state with the service that was made ready for it. It gets a token
//!   that is still valid at once (and starts the one fetch of the next if none is in
//!   flight); without one it waits for that fetch.
//! - *401*: the [recovery policy](crate::recover::Policy) decides; the rejected token is
//!   invalidated by id (compare-and-swap) and the request sent again once, unless second
//!   attempts were rejected too and the backoff holds the token (the caller gets the 401).

pub mod attach;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod dpop;
mod future;
pub mod keyed;
mod layer;
pub mod on_behalf_of;
pub mod per_origin;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, header::AUTHORIZATION};
use tower_service::Service;

use crate::BoxError;
use crate::cache::{SlotReader, TokenCache};
use crate::origin::{AttachPolicy, Decision};
use crate::recover::{Policy, RecoverRequest, Shards, Standard};
use crate::source::TokenSource;

pub use attach::{Attach, AttachFuture, AttachLayer};
pub use future::ResponseFuture;
pub use layer::{OAuthLayer, OAuthLayerBuilder};
pub use per_origin::{PerOrigin, PerOriginLayer};

/// Middleware that puts a valid access token on every request. Built by [`OAuthLayer`].
///
/// A request the layer authorizes is sent only with a token: if none can be had, the
/// caller gets the [`Error`](crate::Error) (boxed in the service's `BoxError`) and the inner
/// service is not called. Requests for origins outside the
/// [allowed origins](crate::OAuthLayerBuilder::allowed_origins), and requests that carry
/// their own `Authorization`, are sent as they are; see the [`origin`](crate::origin)
/// module.
///
/// The inner service must be `Clone` (a hyper-util client, a tonic channel and a
/// `ServiceBuilder` stack of tower's layers are): a request that waits for a token takes
/// the service that was made ready for it, and a request sent again after a `401` goes
/// through a clone. Without it, the compiler says that ``the trait bound `S: Clone` is not
/// satisfied`` for `OAuth<S>: Service<..>`.
pub struct OAuth<S, P = Standard> {
    inner: S,
    slot: SlotReader,
    attach: AttachPolicy,
    /// Handles on the layer's recovery state, one per thread.
    recover: Arc<Shards<S, P>>,
}

impl<S: Clone, P> Clone for OAuth<S, P> {
    fn clone(&self) -> Self {
        OAuth {
            inner: self.inner.clone(),
            slot: self.slot.clone(),
            attach: self.attach.clone(),
            recover: self.recover.clone(),
        }
    }
}

impl<S> OAuth<S> {
    /// A layer with the default options; the same as [`OAuthLayer::new`].
    pub fn layer(source: impl TokenSource) -> OAuthLayer {
        OAuthLayer::new(source)
    }
}

impl<S, P> OAuth<S, P> {
    pub(crate) fn new(inner: S, cache: &TokenCache, attach: AttachPolicy, policy: P) -> Self {
        let shards = Shards::new(cache.clone(), policy, Shards::<S, P>::count());
        OAuth {
            inner,
            slot: cache.reader(),
            attach,
            recover: Arc::new(shards),
        }
    }

    /// The token cache this service shares with its layer.
    pub fn cache(&self) -> &TokenCache {
        &self.recover.first().cache
    }

    crate::macros::define_inner_service_accessors!();
}

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for OAuth<S, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    P: Policy<ReqBody>,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqBody, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.attach.decide(&req) {
            Decision::Attach => {}
            // Not for us to authorize: sent as it is, no token, no fetch.
            Decision::PassThrough => return ResponseFuture::passed(self.inner.call(req)),
            Decision::Refuse => return ResponseFuture::refused(AttachPolicy::refusal(&req)),
        }
        let fresh = self
            .slot
            .fresh()
            .map(|entry| (entry.header.clone(), entry.id));
        let Some((header, used)) = fresh else {
            // Not fresh: wait for one with the service that was made ready, and leave
            // a clone here for the next request.
            let recover = self.recover.local();
            let token = Box::pin(recover.cache.entry());
            let recover = recover.policy.is_enabled().then(|| {
                recover.keep_spare(&self.inner);
                recover.clone()
            });
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture::waiting(token, req, inner, recover);
        };
        let recover = self.recover.local();
        if !recover.policy.is_enabled() {
            req.headers_mut().insert(AUTHORIZATION, header);
            return ResponseFuture::passed(self.inner.call(req));
        }
        recover.keep_spare(&self.inner);
        let recover = RecoverRequest::new(recover, used, &req);
        req.headers_mut().insert(AUTHORIZATION, header);
        ResponseFuture::sent(self.inner.call(req), recover)
    }
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for OAuth<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth")
            .field("inner", &self.inner)
            .field("cache", &self.recover.first().cache)
            .field("attach", &self.attach)
            .field("recover", self.recover.first())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower_layer::Layer;

    use super::*;
    use crate::{Token, source_fn};

    #[tokio::test]
    async fn clones_share_the_handles() {
        let source = source_fn(|| async { Ok(Token::new("t", Duration::from_secs(60))) });
        let service = OAuthLayer::new(source).layer(());
        let clone = service.clone();
        assert!(Arc::ptr_eq(&service.recover, &clone.recover));
        assert!(Arc::ptr_eq(service.recover.local(), clone.recover.local()));
    }
}
