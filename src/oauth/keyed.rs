//! [`KeyedLayer`]: many tokens through one layer, one per key that the request selects (a
//! tenant, a caller, an audience), in a bounded map of slots.
//!
//! A *selector* reads the request's head and gives the key of the token it needs, or `None`
//! (the request is sent as it is, without a token). The first request for a key builds that
//! key's [`OAuthLayer`] with the *maker* (its source and options: the key's parameters, a
//! subject token from the request's extensions...); later requests find it in the map. Each
//! key has everything one layer has: a lock-free slot, single flight, refresh ahead,
//! backoff, 401 recovery for exactly its token, and its store key.
//!
//! The map holds at most [`max_slots`](KeyedLayer::max_slots) keys (default
//! [`DEFAULT_MAX_SLOTS`]); beyond that the least recently used are evicted (quick_cache's
//! CLOCK-Pro). An evicted key's token is dropped once its last request ends, and its refresh
//! timer stops with it; its next request builds it again. Looking up a key that is in the
//! map allocates nothing and holds no lock across an await (a short shard read lock).
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, header::AUTHORIZATION};
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_oauth::oauth::keyed::{KeyedLayer, RequestHead};
//! use tower_oauth::{source_fn, OAuthLayer, Token};
//!
//! /// The application puts the tenant in the request's extensions.
//! #[derive(Clone, PartialEq, Eq, Hash)]
//! struct Tenant(&'static str);
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let layer = KeyedLayer::new(
//!     |head: &RequestHead<'_>| head.extensions().get::<Tenant>().cloned(),
//!     |tenant: &Tenant, _: &RequestHead<'_>| {
//!         // In a service: ClientCredentials with this tenant's token URL or audience.
//!         let name = tenant.0;
//!         Ok(OAuthLayer::new(source_fn(move || async move {
//!             Ok(Token::new(format!("token-of-{name}"), Duration::from_secs(3600)))
//!         })))
//!     },
//! );
//! let client = ServiceBuilder::new().layer(layer).service(service_fn(
//!     |req: Request<String>| async move {
//!         Ok::<_, BoxError>(Response::new(req.headers()[AUTHORIZATION].to_str()?.to_owned()))
//!     },
//! ));
//! let mut request = Request::new(String::new());
//! request.extensions_mut().insert(Tenant("acme"));
//! let response = client.oneshot(request).await?;
//! assert_eq!(response.body(), "Bearer token-of-acme");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Extensions, HeaderMap, Method, Request, Response, Uri, header::AUTHORIZATION};
use quick_cache::sync::Cache;
use tower_layer::Layer;
use tower_service::Service;

use super::{OAuthLayer, ResponseFuture};
use crate::BoxError;
use crate::error::Error;
use crate::origin::{AttachPolicy, Decision};
use crate::recover::{Policy, Recover, RecoverRequest, Standard};

/// The most keys a [`KeyedLayer`] holds by default.
pub const DEFAULT_MAX_SLOTS: usize = 1_000;

/// What a selector and a maker see of a request: its method, URI, headers and extensions.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    fn of<B>(request: &'a Request<B>) -> RequestHead<'a> {
        RequestHead {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }

    /// The request's method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request's URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The request's headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request's extensions.
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

/// One key's token: its layer's origin rules and recovery state (which holds its cache).
struct Slot<S, P> {
    attach: AttachPolicy,
    recover: Arc<Recover<S, P>>,
}

type Slots<K, S, P> = Cache<K, Arc<Slot<S, P>>>;

/// Many tokens through one layer, one per key; see the [module docs](self).
///
/// `Sel` gives a request's key (`Fn(&RequestHead) -> Option<K>`); `Make` builds the layer
/// of a key on its first request (`Fn(&K, &RequestHead) -> Result<OAuthLayer<P>, Error>`;
/// an `Err` fails that request with the error, and nothing is sent). Layer clones and the
/// services they make share one map, so one token per key.
pub struct KeyedLayer<K, Sel, Make, S, P = Standard> {
    select: Arc<Sel>,
    make: Arc<Make>,
    slots: Arc<Slots<K, S, P>>,
    /// `Some(what)`: a request without a key fails with [`Error::is_missing_key`].
    refuse: Option<&'static str>,
}

impl<K, Sel, Make, S, P> KeyedLayer<K, Sel, Make, S, P>
where
    K: Eq + Hash + Clone,
{
    /// A layer with at most [`DEFAULT_MAX_SLOTS`] keys.
    pub fn new(select: Sel, make: Make) -> Self {
        KeyedLayer {
            select: Arc::new(select),
            make: Arc::new(make),
            slots: Arc::new(Cache::new(DEFAULT_MAX_SLOTS)),
            refuse: None,
        }
    }

    /// Fails a request whose selector gives no key with [`Error::is_missing_key`] (its
    /// message names `what`, say `"subject token"`) instead of sending it without a
    /// token: for routes where every request must carry its key.
    pub fn refuse_without_key(mut self, what: &'static str) -> Self {
        self.refuse = Some(what);
        self
    }

    /// At most `max` keys (at least 1); the least recently used beyond are evicted. Replaces
    /// the map: set it before the layer makes services.
    pub fn max_slots(mut self, max: usize) -> Self {
        self.slots = Arc::new(Cache::new(max.max(1)));
        self
    }

    /// How many keys the map holds now.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }
}

/// The selector of [`KeyedLayer::by_extension`].
pub type ExtensionSelector<K> = fn(&RequestHead<'_>) -> Option<K>;

impl<K, Make, S, P> KeyedLayer<K, ExtensionSelector<K>, Make, S, P>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    /// The ready-made selector for a key the application puts in the request's extensions
    /// (a tenant id, a user): the request's `K`, cloned; a request without one gets no
    /// token (or, with [`refuse_without_key`](Self::refuse_without_key), an error).
    ///
    /// ```
    /// use http::{Request, Response, header::AUTHORIZATION};
    /// use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
    /// use tower_oauth::oauth::keyed::{KeyedLayer, RequestHead};
    /// use tower_oauth::{source_fn, OAuthLayer, Token};
    ///
    /// #[derive(Clone, PartialEq, Eq, Hash)]
    /// struct Tenant(String);
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let layer = KeyedLayer::by_extension(|tenant: &Tenant, _: &RequestHead<'_>| {
    ///     let token = format!("token-of-{}", tenant.0);
    ///     Ok::<_, tower_oauth::Error>(OAuthLayer::new(source_fn(move || {
    ///         let token = token.clone();
    ///         async move { Ok(Token::new(token, std::time::Duration::from_secs(60))) }
    ///     })))
    /// });
    /// let client = ServiceBuilder::new().layer(layer).service(service_fn(
    ///     |req: Request<()>| async move {
    ///         Ok::<_, BoxError>(Response::new(req.headers()[AUTHORIZATION].to_str()?.to_owned()))
    ///     },
    /// ));
    /// let mut request = Request::new(());
    /// request.extensions_mut().insert(Tenant("acme".into()));
    /// assert_eq!(client.oneshot(request).await?.body(), "Bearer token-of-acme");
    /// # Ok(())
    /// # }
    /// ```
    pub fn by_extension(make: Make) -> Self {
        KeyedLayer::new(|head| head.extensions().get::<K>().cloned(), make)
    }
}

impl<K, Sel, Make, S, P> Clone for KeyedLayer<K, Sel, Make, S, P> {
    fn clone(&self) -> Self {
        KeyedLayer {
            select: self.select.clone(),
            make: self.make.clone(),
            slots: self.slots.clone(),
            refuse: self.refuse,
        }
    }
}

impl<K, Sel, Make, S, P> fmt::Debug for KeyedLayer<K, Sel, Make, S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLayer").finish_non_exhaustive()
    }
}

impl<K, Sel, Make, S, P> Layer<S> for KeyedLayer<K, Sel, Make, S, P> {
    type Service = Keyed<K, Sel, Make, S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Keyed {
            inner,
            select: self.select.clone(),
            make: self.make.clone(),
            slots: self.slots.clone(),
            refuse: self.refuse,
        }
    }
}

/// The service of a [`KeyedLayer`].
pub struct Keyed<K, Sel, Make, S, P = Standard> {
    inner: S,
    select: Arc<Sel>,
    make: Arc<Make>,
    slots: Arc<Slots<K, S, P>>,
    refuse: Option<&'static str>,
}

impl<K, Sel, Make, S: Clone, P> Clone for Keyed<K, Sel, Make, S, P> {
    fn clone(&self) -> Self {
        Keyed {
            inner: self.inner.clone(),
            select: self.select.clone(),
            make: self.make.clone(),
            slots: self.slots.clone(),
            refuse: self.refuse,
        }
    }
}

impl<K, Sel, Make, S: fmt::Debug, P> fmt::Debug for Keyed<K, Sel, Make, S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyed")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<K, Sel, Make, S, P> Keyed<K, Sel, Make, S, P>
where
    K: Eq + Hash + Clone,
    Make: Fn(&K, &RequestHead<'_>) -> Result<OAuthLayer<P>, Error>,
    P: Clone,
{
    /// The slot of `key`, built on its first request.
    fn slot(&self, key: K, head: &RequestHead<'_>) -> Result<Arc<Slot<S, P>>, Error> {
        if let Some(slot) = self.slots.get(&key) {
            return Ok(slot);
        }
        self.slots.get_or_insert_with(&key, || {
            let layer = (self.make)(&key, head)?;
            Ok(Arc::new(Slot {
                attach: layer.attach.clone(),
                recover: Arc::new(Recover::new(layer.cache.clone(), layer.policy.clone())),
            }))
        })
    }
}

impl<K, Sel, Make, S, P, ReqBody, ResBody> Service<Request<ReqBody>> for Keyed<K, Sel, Make, S, P>
where
    K: Eq + Hash + Clone,
    Sel: Fn(&RequestHead<'_>) -> Option<K>,
    Make: Fn(&K, &RequestHead<'_>) -> Result<OAuthLayer<P>, Error>,
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    P: Policy<ReqBody> + Clone,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqBody, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let head = RequestHead::of(&req);
        let Some(key) = (self.select)(&head) else {
            return match self.refuse {
                Some(what) => ResponseFuture::refused(Error::missing_key(what)),
                None => ResponseFuture::passed(self.inner.call(req)),
            };
        };
        let slot = match self.slot(key, &head) {
            Ok(slot) => slot,
            Err(error) => return ResponseFuture::refused(error),
        };
        match slot.attach.decide(&req) {
            Decision::Attach => {}
            Decision::PassThrough => return ResponseFuture::passed(self.inner.call(req)),
            Decision::Refuse => return ResponseFuture::refused(AttachPolicy::refusal(&req)),
        }
        let recover = &slot.recover;
        let recovers = recover.policy.is_enabled();
        if recovers {
            recover.keep_spare(&self.inner);
        }
        let Some((header, used)) = recover.cache.fresh_header() else {
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            let token = Box::pin(recover.cache.entry());
            return ResponseFuture::waiting(token, req, inner, recovers.then(|| recover.clone()));
        };
        if !recovers {
            req.headers_mut().insert(AUTHORIZATION, header);
            return ResponseFuture::passed(self.inner.call(req));
        }
        let recover = RecoverRequest::new(recover, used, &req);
        req.headers_mut().insert(AUTHORIZATION, header);
        ResponseFuture::sent(self.inner.call(req), recover)
    }
}
