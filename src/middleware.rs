//! [`OAuthMiddleware`]: the token cache of an [`OAuthLayer`] behind reqwest-middleware, for
//! code that calls its APIs with `client.get(url).send()` (feature `reqwest-middleware`).
//!
//! ```no_run
//! use std::time::Duration;
//! use reqwest_middleware::ClientBuilder;
//! use tower_oauth::{source_fn, OAuthLayer, OAuthMiddleware, Origin, Token};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = OAuthLayer::builder(source_fn(|| async {
//!     Ok(Token::new("s3cr3t", Duration::from_secs(3600)))
//! }))
//! .allowed_origins([Origin::parse("https://api.example.com")?])
//! .build();
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(OAuthMiddleware::new(&layer))
//!     .build();
//! let response = client.get("https://api.example.com/v1/things").send().await?;
//! # let _ = response;
//! # Ok(())
//! # }
//! ```
//!
//! # The same token as the layer
//!
//! A middleware built from a layer (with [`OAuthMiddleware::new`] or
//! [`OAuthLayer::middleware`]) uses the layer's [`TokenCache`]: its options, its single
//! flight, its refresh ahead, its [store](crate::store). A tower stack built from that layer
//! and a reqwest client with that middleware share one token, and make one token request
//! between them.
//!
//! # Which requests get the token
//!
//! The layer's origin options apply to each request's URL:
//! [`allowed_origins`](crate::OAuthLayerBuilder::allowed_origins),
//! [`refuse_other_origins`](crate::OAuthLayerBuilder::refuse_other_origins) (the caller then
//! gets a [`reqwest_middleware::Error::Middleware`] holding an [`Error`] with
//! [`is_origin_refused`](Error::is_origin_refused)) and
//! [`overwrite_authorization`](crate::OAuthLayerBuilder::overwrite_authorization).
//!
//! *Redirects.* reqwest follows redirects inside `Client::execute`, below every middleware,
//! so the origin check sees the first URL only. reqwest's own redirect policy (the default,
//! up to 10 hops) removes `Authorization` when a hop goes to another scheme, host or port
//! (`tests/reqwest_middleware.rs` checks that a `302` to another origin never carries the
//! token). A redirect to another path of the same origin keeps it, as it should. A client
//! built with a custom `redirect::Policy` keeps that behaviour; one that follows no redirect
//! (`Policy::none()`) gives the `302` back to the caller.
//!
//! # 401 recovery
//!
//! The rules of the [`recover`](crate::recover) module, with the layer's
//! [policy](crate::recover::Policy) deciding which answers reject the token and which requests
//! may be sent again: the rejected token is dropped (exactly that one, by id, so a newer
//! token is never thrown away), a new one comes from the single fetch (one however many
//! requests were rejected at once), and the request is sent again once with it if
//! [`reqwest::Request::try_clone`] gave a copy before the first attempt. A streamed body
//! (`Body::wrap_stream`) has no copy: the caller gets the original `401`, the body is never
//! sent twice, and the next request goes out with a new token. The policy's `clone_body` is
//! not asked: reqwest's `try_clone` decides which bodies can be sent again.
//!
//! The copy is taken whenever recovery is on and the policy may send some request again
//! ([`Policy::replays`](crate::recover::Policy::replays)): the URL, the headers and the
//! body's `Bytes`, a few allocations a request. The policy's
//! [`may_replay`](crate::recover::Policy::may_replay) is asked after a 401, on the copy.
//! `replay(false)` and [`RecoverOn::Never`](crate::recover::RecoverOn::Never) take none
//! (`tests/alloc.rs` counts them).
//!
//! # Errors
//!
//! When no token can be had, the request is not sent: the caller gets
//! `reqwest_middleware::Error::Middleware` with the crate's [`Error`] inside (downcast the
//! `anyhow::Error` to read it). Errors of the request itself are reqwest's, as they came.

use std::fmt;

use async_trait::async_trait;
use http::{Extensions, header::AUTHORIZATION};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::cache::{Rejected, TokenCache, TokenId};
use crate::error::Error;
use crate::metrics::Rejection;
use crate::oauth::OAuthLayer;
use crate::origin::{AttachPolicy, Decision};
use crate::recover::{NoReplay, Policy, Standard};

/// A [`reqwest_middleware::Middleware`] that puts a valid access token on every request,
/// from the token cache of an [`OAuthLayer`]. See the [module docs](self).
///
/// Cheap to clone (a reference count, the origin list's and the policy's clone).
#[derive(Clone)]
pub struct OAuthMiddleware<P = Standard> {
    cache: TokenCache,
    attach: AttachPolicy,
    policy: P,
}

impl<P: Clone> OAuthMiddleware<P> {
    /// A middleware on `layer`'s token cache, with its origin options and its recovery
    /// policy.
    pub fn new(layer: &OAuthLayer<P>) -> Self {
        OAuthMiddleware {
            cache: layer.cache().clone(),
            attach: layer.attach_policy().clone(),
            policy: layer.recover_policy().clone(),
        }
    }
}

impl<P> OAuthMiddleware<P> {
    /// The token cache this middleware shares with its layer.
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }
}

impl<P: Clone> OAuthLayer<P> {
    /// A [`reqwest_middleware::Middleware`] on this layer's token cache; the same as
    /// [`OAuthMiddleware::new`].
    pub fn middleware(&self) -> OAuthMiddleware<P> {
        OAuthMiddleware::new(self)
    }
}

type Outcome = reqwest_middleware::Result<Response>;

#[async_trait]
impl<P> Middleware for OAuthMiddleware<P>
where
    P: Policy<reqwest::Body> + Send + Sync + 'static,
{
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Outcome {
        match self.attach.decide_url(req.url(), req.headers()) {
            Decision::Attach => {}
            Decision::PassThrough => return next.run(req, extensions).await,
            Decision::Refuse => {
                let error = AttachPolicy::refusal_url(req.url());
                return Err(reqwest_middleware::Error::middleware(error));
            }
        }
        let (header, used) = match self.cache.fresh_header() {
            Some(fresh) => fresh,
            None => {
                let entry = self.cache.entry().await.map_err(middleware_error)?;
                (entry.header.clone(), entry.id)
            }
        };
        let recover = self.policy.is_enabled();
        // Taken before the token is set: the copy goes out with the next token.
        // Not taken when the policy sends nothing again (`replay(false)`).
        let copy = if recover && self.policy.replays() {
            req.try_clone()
        } else {
            None
        };
        req.headers_mut().insert(AUTHORIZATION, header);
        let response = next.clone().run(req, extensions).await?;
        if !recover
            || !self
                .policy
                .is_rejection(response.status(), response.headers())
        {
            return Ok(response);
        }
        match self.rejected(used, copy) {
            Some(copy) => {
                // Let the client release the connection of the first attempt now.
                drop(response);
                self.resend(copy, extensions, next).await
            }
            None => Ok(response),
        }
    }
}

impl<P: Policy<reqwest::Body>> OAuthMiddleware<P> {
    /// The token `used` was rejected: drops it (if it is still the cached one) and gives
    /// the request to send again, or `None` if it cannot be.
    fn rejected(&self, used: TokenId, copy: Option<Request>) -> Option<Request> {
        let rejected = self.cache.reject_id(used);
        let identity = self.cache.identity();
        if rejected == Rejected::Held {
            crate::metrics::rejection(identity, Rejection::BackedOff);
            tracing::info!(
                target: "tower_oauth",
                "token rejected (401) again soon after a new one was fetched; kept until the backoff step ends, request not sent again"
            );
            return None;
        }
        let invalidated = rejected == Rejected::Dropped;
        let copy = match copy {
            Some(copy) => self.may_replay(copy).ok_or(NoReplay::Policy),
            None if self.policy.replays() => Err(NoReplay::Body),
            None => Err(NoReplay::Policy),
        };
        let copy = match copy {
            Ok(copy) => copy,
            Err(why) => {
                why.report(identity, invalidated);
                return None;
            }
        };
        crate::metrics::rejection(identity, Rejection::Replayed);
        tracing::info!(
            target: "tower_oauth",
            method = %copy.method(),
            path = copy.url().path(),
            invalidated,
            "token rejected (401); sending the request again with a new token"
        );
        Some(copy)
    }

    /// The copy, if the policy may send it again. The policy sees it as an
    /// `http::Request` (method, URI, version, headers, extensions and body as they are);
    /// this conversion happens after a 401 only.
    fn may_replay(&self, copy: Request) -> Option<Request> {
        let request = http::Request::<reqwest::Body>::try_from(copy).ok()?;
        if !self.policy.may_replay(&request) {
            return None;
        }
        Request::try_from(request).ok()
    }

    /// The second attempt, with the token of the single fetch; its answer goes back to the
    /// caller as it comes.
    async fn resend(
        &self,
        mut copy: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Outcome {
        let entry = self.cache.entry().await.map_err(middleware_error)?;
        copy.headers_mut()
            .insert(AUTHORIZATION, entry.header.clone());
        let response = next.run(copy, extensions).await?;
        let rejected = self
            .policy
            .is_rejection(response.status(), response.headers());
        self.cache
            .second_attempt_answered(entry.id, rejected, response.status());
        Ok(response)
    }
}

fn middleware_error(error: Error) -> reqwest_middleware::Error {
    reqwest_middleware::Error::middleware(error)
}

impl<P: fmt::Debug> fmt::Debug for OAuthMiddleware<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthMiddleware")
            .field("cache", &self.cache)
            .field("attach", &self.attach)
            .field("recover", &self.policy)
            .finish()
    }
}
