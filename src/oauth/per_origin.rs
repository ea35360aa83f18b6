//! [`PerOriginLayer`]: one token per destination through one layer (RFC 8707 resource
//! indicators, `audience`, scopes: whatever makes each API's token its own).
//!
//! Each origin (`scheme://host:port`) gets an [`OAuthLayer`] of its own, with its own token
//! source and options: its own slot (lock-free read), single flight, refresh ahead,
//! backoff, 401 recovery for exactly that token, and store key. A request goes to the route
//! whose origin its URI has; a request for any other origin gets no token (it is sent as it
//! is, or refused with [`refuse_other_origins`](PerOriginLayer::refuse_other_origins)).
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, header::AUTHORIZATION};
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_oauth::{source_fn, OAuthLayer, Origin, PerOriginLayer, Token};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // In a service: one `ClientCredentials` per API, e.g. from one cloned builder with
//! // `.resource("https://orders.example.com")` and `.resource("https://billing.example.com")`.
//! let token = |value: &'static str| {
//!     OAuthLayer::new(source_fn(move || async move {
//!         Ok(Token::new(value, Duration::from_secs(3600)))
//!     }))
//! };
//! let layer = PerOriginLayer::new()
//!     .route(Origin::parse("https://orders.example.com")?, token("for-orders"))
//!     .route(Origin::parse("https://billing.example.com")?, token("for-billing"));
//! let client = ServiceBuilder::new().layer(layer).service(service_fn(
//!     |req: Request<String>| async move {
//!         let auth = req.headers().get(AUTHORIZATION).map(|v| v.to_str().unwrap().to_owned());
//!         Ok::<_, BoxError>(Response::new(auth))
//!     },
//! ));
//!
//! let to = |url: &str| Request::get(url).body(String::new()).unwrap();
//! let orders = client.clone().oneshot(to("https://orders.example.com/o/1")).await?;
//! assert_eq!(orders.body().as_deref(), Some("Bearer for-orders"));
//! let billing = client.clone().oneshot(to("https://billing.example.com/b/1")).await?;
//! assert_eq!(billing.body().as_deref(), Some("Bearer for-billing"));
//! let other = client.oneshot(to("https://elsewhere.example.com/")).await?;
//! assert_eq!(other.body().as_deref(), None); // no token for an origin without a route
//! # Ok(())
//! # }
//! ```
//!
//! # Readiness
//!
//! As tower's `Steer`, the service holds a clone of the inner service per route (each
//! route's [`OAuth`] service) and one for requests without a route; `poll_ready` readies all
//! of them, `call` uses the one the request needs. A hyper-util client or a tonic channel
//! is always ready, so this costs a few branches.

use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{OAuth, OAuthLayer, ResponseFuture};
use crate::BoxError;
use crate::origin::{AttachPolicy, Origin, target_of};
use crate::recover::{Policy, Standard};

/// One token per destination origin; see the [module docs](self).
#[derive(Clone)]
pub struct PerOriginLayer<P = Standard> {
    routes: Vec<(Origin, OAuthLayer<P>)>,
    refuse_others: bool,
}

impl<P> PerOriginLayer<P> {
    /// No routes yet: every request is sent as it is.
    pub fn new() -> PerOriginLayer<P> {
        PerOriginLayer {
            routes: Vec::new(),
            refuse_others: false,
        }
    }

    /// Requests for `origin` get the token of `layer` (its source, its options). An origin
    /// given twice keeps its first route.
    pub fn route(mut self, origin: Origin, layer: OAuthLayer<P>) -> PerOriginLayer<P> {
        if !self.routes.iter().any(|(o, _)| *o == origin) {
            self.routes.push((origin, layer));
        }
        self
    }

    /// Fails requests for an origin without a route with
    /// [`Error::is_origin_refused`](crate::Error::is_origin_refused), instead of sending them
    /// without a token; the inner service is not called.
    pub fn refuse_other_origins(mut self) -> PerOriginLayer<P> {
        self.refuse_others = true;
        self
    }

    /// The layer of the route for `origin`, if there is one (for its
    /// [`cache`](OAuthLayer::cache), to read its status).
    pub fn layer_for(&self, origin: &Origin) -> Option<&OAuthLayer<P>> {
        self.routes
            .iter()
            .find(|(o, _)| o == origin)
            .map(|(_, l)| l)
    }
}

impl<P> Default for PerOriginLayer<P> {
    fn default() -> Self {
        PerOriginLayer::new()
    }
}

impl<P: fmt::Debug> fmt::Debug for PerOriginLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origins: Vec<&Origin> = self.routes.iter().map(|(o, _)| o).collect();
        f.debug_struct("PerOriginLayer")
            .field("origins", &origins)
            .field("refuse_others", &self.refuse_others)
            .finish()
    }
}

impl<S: Clone, P: Clone> Layer<S> for PerOriginLayer<P> {
    type Service = PerOrigin<S, P>;

    fn layer(&self, inner: S) -> PerOrigin<S, P> {
        PerOrigin {
            routes: self
                .routes
                .iter()
                .map(|(origin, layer)| (origin.clone(), layer.layer(inner.clone())))
                .collect(),
            other: inner,
            refuse_others: self.refuse_others,
        }
    }
}

/// The service of a [`PerOriginLayer`]: routes each request to the [`OAuth`] service of
/// its origin.
#[derive(Clone)]
pub struct PerOrigin<S, P = Standard> {
    routes: Vec<(Origin, OAuth<S, P>)>,
    /// For requests without a route.
    other: S,
    refuse_others: bool,
}

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for PerOrigin<S, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    P: Policy<ReqBody>,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqBody, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let mut pending = false;
        for (_, route) in &mut self.routes {
            pending |= Service::<Request<ReqBody>>::poll_ready(route, cx)?.is_pending();
        }
        pending |= self.other.poll_ready(cx).map_err(Into::into)?.is_pending();
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The URI's parts once, then one comparison per route.
        let route = target_of(req.uri()).and_then(|target| {
            self.routes
                .iter_mut()
                .find(|(origin, _)| origin.matches_target(target))
        });
        match route {
            Some((_, route)) => route.call(req),
            None if self.refuse_others => ResponseFuture::refused(AttachPolicy::refusal(&req)),
            None => ResponseFuture::passed(self.other.call(req)),
        }
    }
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for PerOrigin<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origins: Vec<&Origin> = self.routes.iter().map(|(o, _)| o).collect();
        f.debug_struct("PerOrigin")
            .field("origins", &origins)
            .field("inner", &self.other)
            .finish()
    }
}
