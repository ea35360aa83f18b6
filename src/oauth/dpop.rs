//! [`DpopLayer`]: a DPoP proof (RFC 9449 section 7) on every request that carries a
//! DPoP-bound token, below [`OAuthLayer`](crate::OAuthLayer).
//!
//! The `OAuthLayer` puts `Authorization: DPoP <token>` on the request (the token's type is
//! `DPoP` when its source asked for a DPoP-bound one, see
//! [`ClientCredentialsBuilder::dpop`](crate::endpoint::ClientCredentialsBuilder::dpop));
//! the `DpopLayer` below it adds the `DPoP` header: a proof with `htm` the request's
//! method, `htu` its URI without query and fragment, `iat`, a new `jti`, `ath` (computed
//! once per token) and the latest nonce the request's origin sent. Every `DPoP-Nonce`
//! response header is remembered per origin. A `401` with
//! `WWW-Authenticate: DPoP error="use_dpop_nonce"` is sent again once by the
//! `OAuthLayer`'s recovery with the same token and a proof carrying the new nonce: the
//! token is not dropped. Requests without a DPoP token (other origins, bearer tokens) pass
//! untouched, and layers without a `DpopLayer` pay nothing.
//!
//! ```
//! use http::{Request, Response};
//! use tower::{service_fn, BoxError, ServiceBuilder};
//! use tower_oauth::endpoint::dpop::{Dpop, DpopKey};
//! use tower_oauth::oauth::dpop::DpopLayer;
//! use tower_oauth::{ClientCredentials, OAuthLayer};
//!
//! # fn main() -> Result<(), tower_oauth::Error> {
//! let dpop = Dpop::new(DpopKey::generate_es256()?);
//! let source = ClientCredentials::builder()
//!     .token_url("https://idp.example.com/oauth2/token")
//!     .client_id("orders")
//!     .client_secret("s3cr3t")
//!     .dpop(dpop.clone()) // proofs on token requests, DPoP-bound tokens
//!     .build()?;
//! let client = ServiceBuilder::new()
//!     .layer(OAuthLayer::new(source))
//!     .layer(DpopLayer::new(dpop)) // a proof on each API request
//!     .service(service_fn(|_: Request<String>| async {
//!         Ok::<_, BoxError>(Response::new(String::new()))
//!     }));
//! # let _ = client;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use arc_swap::ArcSwapOption;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::endpoint::dpop::{Dpop, access_token_hash, htu, origin_of};
use crate::error::Error;

/// Adds a DPoP proof to each request with a DPoP token; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct DpopLayer {
    dpop: Dpop,
}

impl DpopLayer {
    /// Proofs of `dpop`'s key, with its nonces: the same [`Dpop`] the token source has.
    pub fn new(dpop: Dpop) -> Self {
        DpopLayer { dpop }
    }
}

impl<S> Layer<S> for DpopLayer {
    type Service = DpopService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DpopService {
            inner,
            dpop: self.dpop.clone(),
            ath: Arc::new(ArcSwapOption::empty()),
        }
    }
}

/// The service of a [`DpopLayer`].
#[derive(Clone)]
pub struct DpopService<S> {
    inner: S,
    dpop: Dpop,
    /// The last token seen and its `ath`: computed once per token.
    ath: Arc<ArcSwapOption<(Box<str>, String)>>,
}

impl<S: fmt::Debug> fmt::Debug for DpopService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopService")
            .field("inner", &self.inner)
            .field("dpop", &self.dpop)
            .finish_non_exhaustive()
    }
}

impl<S> DpopService<S> {
    fn ath_of(&self, token: &str) -> String {
        if let Some(held) = &*self.ath.load()
            && &*held.0 == token
        {
            return held.1.clone();
        }
        let ath = access_token_hash(token);
        self.ath.store(Some(Arc::new((token.into(), ath.clone()))));
        ath
    }

    /// The proof for `req`, or why there is none.
    fn proof<B>(&self, req: &Request<B>, token: &str) -> Result<(HeaderValue, String), Error> {
        let (Some(target), Some(origin)) = (htu(req.uri()), origin_of(req.uri())) else {
            return Err(Error::config(
                "a request with a DPoP token needs an absolute URI (scheme and authority) for its proof",
            ));
        };
        let nonce = self.dpop.nonce(&origin);
        let proof = self.dpop.key().proof_with_ath(
            req.method(),
            &target,
            Some(self.ath_of(token)),
            nonce.as_deref(),
        )?;
        let mut value = HeaderValue::from_str(&proof)
            .map_err(|_| Error::config("a DPoP proof that is not a header value"))?;
        value.set_sensitive(true);
        Ok((value, origin))
    }
}

/// The token of an `Authorization: DPoP <token>` header.
fn dpop_token<B>(req: &Request<B>) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("DPoP").then_some(token)
}

impl<S, B, R> Service<Request<B>> for DpopService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = DpopFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(token) = dpop_token(&req) else {
            return DpopFuture::passed(self.inner.call(req));
        };
        match self.proof(&req, token) {
            Ok((proof, origin)) => {
                req.headers_mut().insert("dpop", proof);
                DpopFuture::sent(self.inner.call(req), self.dpop.clone(), origin)
            }
            // Nothing is sent without a proof.
            Err(error) => DpopFuture::failed(error),
        }
    }
}

pin_project! {
    /// The future of a [`DpopService`]: the inner one, and the nonce of its answer
    /// remembered.
    pub struct DpopFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // No DPoP token: the inner future as it is.
        Passed { #[pin] future: F },
        // Sent with a proof.
        Sent { #[pin] future: F, dpop: Dpop, origin: String },
        // No proof could be made.
        Failed { error: Option<Error> },
    }
}

impl<F> DpopFuture<F> {
    fn passed(future: F) -> Self {
        DpopFuture {
            state: State::Passed { future },
        }
    }

    fn sent(future: F, dpop: Dpop, origin: String) -> Self {
        DpopFuture {
            state: State::Sent {
                future,
                dpop,
                origin,
            },
        }
    }

    fn failed(error: Error) -> Self {
        DpopFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, R, E> Future for DpopFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<R>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Passed { future } => future.poll(cx).map_err(Into::into),
            StateProj::Sent {
                future,
                dpop,
                origin,
            } => {
                let response = ready!(future.poll(cx)).map_err(Into::into)?;
                dpop.record_nonce(origin, response.headers());
                Poll::Ready(Ok(response))
            }
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .map_or_else(|| "DpopFuture polled after completion".into(), Into::into))),
        }
    }
}
