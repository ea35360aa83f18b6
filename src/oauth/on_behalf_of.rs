//! On behalf of the caller (gateways): the caller's bearer token in, an exchanged token
//! (RFC 8693) out to the upstream, one per caller, never another caller's.
//!
//! [`SubjectTokenLayer`] takes the `Authorization: Bearer` of a request a gateway forwards
//! and moves it into the request's extensions as a [`SubjectToken`] (the header is
//! removed, so the caller's token never goes upstream). [`on_behalf_of`] is a
//! [`KeyedLayer`] keyed by the subject token's SHA-256 ([`SubjectKey`]): the first
//! request of a caller builds a [`TokenExchange`](crate::TokenExchange) source for it, its
//! token is kept until it expires (refreshed ahead like any other), and at most
//! [`max_slots`](KeyedLayer::max_slots) callers are held (default 1,000, least recently
//! used evicted). A request without a subject token fails with
//! [`Error::is_missing_key`](crate::Error::is_missing_key) and nothing is sent.
//!
//! ```
//! use http::{Request, Response, header::AUTHORIZATION};
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_oauth::oauth::on_behalf_of::{on_behalf_of, SubjectTokenLayer};
//! use tower_oauth::ClientCredentials;
//!
//! # fn main() -> Result<(), tower_oauth::Error> {
//! let gateway = ClientCredentials::builder()
//!     .token_url("https://idp.example.com/oauth2/token")
//!     .client_id("gateway")
//!     .client_secret("s3cr3t")
//!     .audience("https://orders.internal")
//!     .build()?;
//! let upstream = ServiceBuilder::new()
//!     .layer(SubjectTokenLayer::new())       // the caller's Bearer -> SubjectToken
//!     .layer(on_behalf_of(gateway).max_slots(10_000))
//!     .service(service_fn(|req: Request<String>| async move {
//!         Ok::<_, BoxError>(Response::new(String::new()))
//!     }));
//! # let _ = upstream;
//! # Ok(())
//! # }
//! ```

use std::task::{Context, Poll};

use http::Request;
use http::header::AUTHORIZATION;
use tower_layer::Layer;
use tower_service::Service;

#[cfg(feature = "reqwest")]
use super::OAuthLayer;
#[cfg(feature = "reqwest")]
use super::keyed::{KeyedLayer, RequestHead};
#[cfg(feature = "reqwest")]
use crate::error::Error;
pub use crate::subject::{SubjectKey, SubjectToken};

/// Moves a request's `Authorization: Bearer <token>` into its extensions as a
/// [`SubjectToken`] and removes the header. A request without one (or with another
/// scheme) keeps its headers and gets no subject token.
#[derive(Clone, Copy, Debug, Default)]
pub struct SubjectTokenLayer {
    _private: (),
}

impl SubjectTokenLayer {
    /// The layer.
    pub fn new() -> Self {
        SubjectTokenLayer::default()
    }
}

impl<S> Layer<S> for SubjectTokenLayer {
    type Service = SubjectTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SubjectTokenService { inner }
    }
}

/// The service of a [`SubjectTokenLayer`].
#[derive(Clone, Debug)]
pub struct SubjectTokenService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for SubjectTokenService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(subject) = SubjectToken::from_bearer(req.headers()) {
            req.headers_mut().remove(AUTHORIZATION);
            req.extensions_mut().insert(subject);
        }
        self.inner.call(req)
    }
}

/// The selector of [`on_behalf_of`]: the subject token's key.
#[cfg(feature = "reqwest")]
type SelectSubject = fn(&RequestHead<'_>) -> Option<SubjectKey>;

/// A [`KeyedLayer`] that keeps one exchanged token per caller (RFC 8693): keyed by the
/// [`SubjectToken`] a [`SubjectTokenLayer`] (or your code) put in the request's extensions,
/// each caller's token from `client.token_exchange(subject)` with the client's
/// authentication, `audience`, `resource` and `scope`; requests without a subject token
/// refused ([`Error::is_missing_key`]). At most [`DEFAULT_MAX_SLOTS`](super::keyed::DEFAULT_MAX_SLOTS)
/// callers (1,000) unless [`max_slots`](KeyedLayer::max_slots) says otherwise.
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
#[allow(clippy::type_complexity)]
pub fn on_behalf_of<S>(
    client: crate::ClientCredentials,
) -> KeyedLayer<
    SubjectKey,
    SelectSubject,
    impl Fn(&SubjectKey, &RequestHead<'_>) -> Result<OAuthLayer, Error> + Send + Sync + 'static,
    S,
> {
    let select: SelectSubject = |head| {
        head.extensions()
            .get::<SubjectToken>()
            .map(SubjectToken::key)
    };
    KeyedLayer::new(select, move |_key: &SubjectKey, head: &RequestHead<'_>| {
        let subject = head
            .extensions()
            .get::<SubjectToken>()
            .ok_or_else(|| Error::missing_key(MISSING))?;
        Ok(OAuthLayer::new(client.token_exchange(subject.clone())))
    })
    .refuse_without_key(MISSING)
}

/// What an on-behalf-of request lacks without a caller's token.
#[cfg(feature = "reqwest")]
const MISSING: &str = "subject token (the caller's `Authorization: Bearer`, which SubjectTokenLayer moves into the extensions)";
