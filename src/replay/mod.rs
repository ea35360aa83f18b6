//! Recovery from a rejected token: invalidate it, fetch a new one, send the request again.
//!
//! A token can stop working before it expires: it was revoked, the server rotated its
//! keys, the clocks disagree. When the inner service answers `401 Unauthorized` to a
//! request that carried token T, the layer
//!
//! 1. drops T from the cache, but only if T is still the cached token: a newer token that
//!    another request already fetched is never thrown away;
//! 2. gets a usable token through the same single fetch that expiry uses, so 50 requests
//!    rejected at once cause one token request, and a 401 for a token that has already been
//!    replaced causes none;
//! 3. sends the request once more with the new token, if its body can be sent again (see
//!    below). The answer to that second attempt goes back to the caller as it is, even if it
//!    is another 401: there is never a loop.
//!
//! A `403 Forbidden` (RFC 6750 section 3.1 `insufficient_scope`) is not a rejected token: it
//! is passed back untouched and invalidates nothing.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode, header::AUTHORIZATION};
//! use http_body_util::Full;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_oauth::{source_fn, OAuthLayer, Token};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let fetches = Arc::new(AtomicUsize::new(0));
//! let counter = fetches.clone();
//! let source = source_fn(move || {
//!     let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
//!     async move { Ok(Token::new(format!("t{n}"), Duration::from_secs(3600))) }
//! });
//!
//! // An API that has revoked t1.
//! let api = service_fn(|req: Request<Full<Bytes>>| async move {
//!     let status = match req.headers()[AUTHORIZATION].to_str()? {
//!         "Bearer t1" => StatusCode::UNAUTHORIZED,
//!         _ => StatusCode::OK,
//!     };
//!     Ok::<_, BoxError>(Response::builder().status(status).body(())?)
//! });
//!
//! let client = ServiceBuilder::new().layer(OAuthLayer::new(source)).service(api);
//! let response = client
//!     .oneshot(Request::post("http://api.test/").body(Full::new(Bytes::from("hi")))?)
//!     .await?;
//! assert_eq!(response.status(), StatusCode::OK); // replayed with t2
//! assert_eq!(fetches.load(Ordering::SeqCst), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Which bodies are sent again
//!
//! The request's body has gone to the inner service by the time the 401 comes back, so
//! the layer keeps a copy of the request before it sends it, when the body can be copied
//! cheaply (as tower-http's `FollowRedirect` does):
//!
//! - `()`, `String`, `&'static str`, `Vec<u8>`, `&'static [u8]`, [`Bytes`], and
//!   http-body-util's `Full<Bytes>` and `Empty<Bytes>`: recognised by their type;
//! - [`ReplayBody`] as made by [`BufferBodyLayer`], when the body was buffered whole;
//! - any body type you give a function for, with
//!   [`OAuthLayerBuilder::clone_body_fn`](crate::OAuthLayerBuilder::clone_body_fn).
//!
//! Any other body (a stream, hyper's `Incoming`, a boxed body) is not sent again: the
//! caller gets the original 401, and the token is still invalidated, so the caller's next
//! attempt goes out with a new token. An empty or partial body is never sent in its place.
//! To have streaming bodies sent again, put a [`BufferBodyLayer`] above the `OAuthLayer`: it
//! reads bodies up to a size limit into memory and passes larger ones through whole.
//!
//! # What it costs
//!
//! With a usable token, a request whose body cannot be sent again (or with replay turned
//! off) costs what it costs without recovery, plus two reference counts: the layer keeps the
//! token it used and a handle to the cache. No allocation, no boxed future, no copy of the
//! request.
//!
//! A request whose body can be sent again also keeps a copy of its head (method, URI,
//! version, headers, extensions), of its body and of the inner service. What the copy of
//! the inner service costs is the service's: a hyper-util client is a few reference counts
//! and no allocation; some services allocate when cloned (tower's `Buffer` boxes a future).
//! Measured in `tests/recovery_alloc.rs`:
//!
//! - the headers are copied into a list: 1 allocation if the request has any, 0 if not;
//! - a header name or value, or a body's [`Bytes`], that was made at run time from a
//!   `String`, `Vec` or `&str` allocates its shared state on its first copy: 1 allocation
//!   each (values made with `from_static`, standard header names, `Bytes::from_static`,
//!   and bytes already shared cost nothing);
//! - the method, the URI and the version cost nothing for the standard methods;
//!   extensions allocate only if the request has some; a `String` or `Vec<u8>` body is
//!   copied (1 allocation).
//!
//! So a `POST` with `content-type` and `x-request-id` headers and a `Full<Bytes>` body made
//! from a `Vec` adds exactly 5 allocations; with `from_static` values and static body bytes
//! it adds 1; a request without headers and with static body bytes adds 0.
//!
//! The second attempt itself (waiting for the token, calling the inner service again) runs in
//! one boxed future, allocated only when a 401 comes back.
//!
//! # Non-idempotent methods
//!
//! A `POST` or `PATCH` is sent again by default: a 401 for a rejected token means the server
//! refused the request before processing it (RFC 6750 section 3.1). If your server may act on
//! a request and still answer 401, turn that off with
//! [`OAuthLayerBuilder::replay_non_idempotent`](crate::OAuthLayerBuilder::replay_non_idempotent).
//!
//! # Tracing
//!
//! Each second attempt is an `INFO` event of target `tower_oauth` with the method and the
//! path of the request (never its query, never the token); a 401 that is not followed by a
//! second attempt is an `INFO` event that says why; a 401 to the second attempt is a `WARN`
//! event.

mod body;
mod buffer;

use std::any::{Any, TypeId};
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{
    Extensions, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use tower_service::Service;

use crate::BoxError;
use crate::cache::TokenCache;

pub use body::ReplayBody;
pub use buffer::{BufferBody, BufferBodyLayer, BufferFuture};

/// Which responses of the inner service mean that the access token was rejected.
///
/// Set with [`OAuthLayerBuilder::recover_on`](crate::OAuthLayerBuilder::recover_on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoverOn {
    /// Any `401 Unauthorized`. The default.
    #[default]
    Unauthorized,
    /// A `401 Unauthorized` with a `WWW-Authenticate` challenge of scheme `Bearer` (or
    /// `DPoP`) that has `error="invalid_token"` (RFC 6750 section 3.1, RFC 9449 section 7.1).
    /// Other 401s are passed back untouched.
    InvalidToken,
    /// None: responses are passed back untouched, the token is never invalidated and no
    /// request is sent twice. The request path is then exactly that of a layer without
    /// recovery (no reference counts kept).
    Never,
}

impl RecoverOn {
    /// Whether `response` says the token it carried was rejected.
    pub(crate) fn is_rejection<R>(self, response: &Response<R>) -> bool {
        if response.status() != StatusCode::UNAUTHORIZED {
            return false;
        }
        match self {
            RecoverOn::Unauthorized => true,
            RecoverOn::InvalidToken => {
                crate::www_authenticate::is_invalid_token(response.headers())
            }
            RecoverOn::Never => false,
        }
    }
}

/// Writes a clone of the body in `body` into `slot` (an `&mut Option<B>`) if it knows the
/// type; true if it did.
type CloneFn = Arc<dyn Fn(&dyn Any, &mut dyn Any) -> bool + Send + Sync>;

/// The recovery options of a layer.
#[derive(Clone)]
pub(crate) struct Recovery {
    pub(crate) on: RecoverOn,
    pub(crate) replay: bool,
    pub(crate) replay_non_idempotent: bool,
    clone_fns: Vec<CloneFn>,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            on: RecoverOn::default(),
            replay: true,
            replay_non_idempotent: true,
            clone_fns: Vec::new(),
        }
    }
}

impl fmt::Debug for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovery")
            .field("on", &self.on)
            .field("replay", &self.replay)
            .field("replay_non_idempotent", &self.replay_non_idempotent)
            .field("clone_body_fns", &self.clone_fns.len())
            .finish()
    }
}

impl Recovery {
    pub(crate) fn add_clone_fn<B, F>(&mut self, f: F)
    where
        B: 'static,
        F: Fn(&B) -> Option<B> + Send + Sync + 'static,
    {
        self.clone_fns
            .push(Arc::new(move |body: &dyn Any, slot: &mut dyn Any| {
                match (body.downcast_ref::<B>(), slot.downcast_mut::<Option<B>>()) {
                    (Some(body), Some(slot)) => {
                        *slot = f(body);
                        slot.is_some()
                    }
                    _ => false,
                }
            }));
    }

    /// A copy of `body` if its type is one that is copied cheaply, or one a clone function
    /// was given for. No allocation of its own: a few type-id comparisons.
    pub(crate) fn clone_body<B: 'static>(&self, body: &B) -> Option<B> {
        if let Some(known) = clone_known(body) {
            return known;
        }
        let mut out: Option<B> = None;
        let slot: &mut dyn Any = &mut out;
        let cloned = self.clone_fns.iter().any(|f| f(body, slot));
        if cloned { out } else { None }
    }

    /// What a request that is about to be sent needs for recovery; `None` if recovery is
    /// off. Copies the request only if it can be sent again.
    #[inline]
    pub(crate) fn prepare<S, B>(
        &self,
        cache: &TokenCache,
        request: &Request<B>,
        inner: &S,
    ) -> Option<Recover<S, B>>
    where
        S: Service<Request<B>> + Clone,
        B: 'static,
    {
        if self.on == RecoverOn::Never {
            return None;
        }
        let replay = if !self.replay {
            Err(NoReplay::Off)
        } else if !self.replay_non_idempotent && !request.method().is_idempotent() {
            Err(NoReplay::Method)
        } else {
            match self.clone_body(request.body()) {
                Some(body) => Ok(Replay {
                    head: Head::copy(request),
                    body,
                    service: inner.clone(),
                }),
                None => Err(NoReplay::Body),
            }
        };
        Some(Recover {
            cache: cache.clone(),
            on: self.on,
            replay,
        })
    }
}

/// A clone of the body types that are known to be cheap to copy; `None` if `B` is none of
/// them. Generic, so that the type tests are decided when it is compiled for `B`, not on
/// every request.
#[inline]
fn clone_known<B: 'static>(body: &B) -> Option<Option<B>> {
    #[inline]
    fn as_type<T: Clone + 'static, B: 'static>(body: &B) -> Option<Option<B>> {
        if TypeId::of::<T>() != TypeId::of::<B>() {
            return None;
        }
        let body = (body as &dyn Any).downcast_ref::<T>()?;
        let mut copy = Some(body.clone());
        Some(
            (&mut copy as &mut dyn Any)
                .downcast_mut::<Option<B>>()?
                .take(),
        )
    }
    if TypeId::of::<B>() == TypeId::of::<ReplayBody>() {
        let body = (body as &dyn Any).downcast_ref::<ReplayBody>()?;
        let mut copy = body.try_clone();
        return Some(
            (&mut copy as &mut dyn Any)
                .downcast_mut::<Option<B>>()?
                .take(),
        );
    }
    as_type::<http_body_util::Full<Bytes>, B>(body)
        .or_else(|| as_type::<http_body_util::Empty<Bytes>, B>(body))
        .or_else(|| as_type::<Bytes, B>(body))
        .or_else(|| as_type::<String, B>(body))
        .or_else(|| as_type::<(), B>(body))
        .or_else(|| as_type::<&'static str, B>(body))
        .or_else(|| as_type::<Vec<u8>, B>(body))
        .or_else(|| as_type::<&'static [u8], B>(body))
}

/// A copy of a request's head. The headers are kept as a list, which costs one allocation
/// where a `HeaderMap` costs two; the map is rebuilt only if the request is sent again.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: Vec<(HeaderName, HeaderValue)>,
    extensions: Extensions,
}

impl Head {
    #[inline]
    fn copy<B>(request: &Request<B>) -> Head {
        let mut headers = Vec::new();
        if !request.headers().is_empty() {
            headers.reserve_exact(request.headers().len());
        }
        headers.extend(
            request
                .headers()
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        Head {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers,
            extensions: request.extensions().clone(),
        }
    }

    fn into_request<B>(self, body: B) -> Request<B> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.extensions_mut() = self.extensions;
        let headers = request.headers_mut();
        headers.reserve(self.headers.len() + 1);
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        request
    }
}

/// Why a rejected request is not sent again.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NoReplay {
    /// Replay is turned off.
    Off,
    /// The method is not idempotent and replaying those is turned off.
    Method,
    /// The body cannot be copied.
    Body,
}

impl NoReplay {
    fn reason(self) -> &'static str {
        match self {
            NoReplay::Off => "replay is turned off",
            NoReplay::Method => "the method is not idempotent",
            NoReplay::Body => "the body cannot be sent again",
        }
    }
}

/// The copy of a request kept for a second attempt, with a service to send it.
pub(crate) struct Replay<S, B> {
    head: Head,
    body: B,
    service: S,
}

/// What a request in flight keeps for recovery.
pub(crate) struct Recover<S, B> {
    cache: TokenCache,
    on: RecoverOn,
    replay: Result<Replay<S, B>, NoReplay>,
}

/// The boxed second attempt.
pub(crate) type ReplayFuture<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

/// What to do with the answer to the first attempt.
pub(crate) enum Next<R> {
    /// Give it to the caller.
    Done(R),
    /// Send the request again.
    Replay(ReplayFuture<R>),
}

impl<S, B> Recover<S, B> {
    /// Looks at the answer to a request sent with `used`.
    pub(crate) fn on_response<R>(self, used: u64, response: Response<R>) -> Next<Response<R>>
    where
        S: Service<Request<B>, Response = Response<R>> + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        B: Send + 'static,
        R: 'static,
    {
        if !self.on.is_rejection(&response) {
            return Next::Done(response);
        }
        let cache = self.cache;
        let invalidated = cache.invalidate_if(used);
        match self.replay {
            Err(why) => {
                tracing::info!(
                    target: "tower_oauth",
                    invalidated,
                    reason = why.reason(),
                    "token rejected (401); request not sent again"
                );
                Next::Done(response)
            }
            Ok(replay) => {
                tracing::info!(
                    target: "tower_oauth",
                    method = %replay.head.method,
                    path = replay.head.uri.path(),
                    invalidated,
                    "token rejected (401); sending the request again with a new token"
                );
                // Let the inner client release the connection of the first attempt now.
                drop(response);
                Next::Replay(Box::pin(replay.send(cache, self.on)))
            }
        }
    }
}

impl<S, B> Replay<S, B> {
    async fn send<R>(self, cache: TokenCache, on: RecoverOn) -> Result<Response<R>, BoxError>
    where
        S: Service<Request<B>, Response = Response<R>>,
        S::Error: Into<BoxError>,
    {
        let Replay {
            head,
            body,
            mut service,
        } = self;
        let mut request = head.into_request(body);
        let entry = cache.entry().await?;
        request
            .headers_mut()
            .insert(AUTHORIZATION, entry.header.clone());
        drop(entry);
        poll_fn(|cx| service.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        let response = service.call(request).await.map_err(Into::into)?;
        if on.is_rejection(&response) {
            // Passed back as it came: no second invalidation, no third attempt. If the new
            // token is bad, the next request that uses it invalidates it.
            tracing::warn!(
                target: "tower_oauth",
                "new token rejected too (401); passing the response back"
            );
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bodies_are_cloned_others_are_not() {
        let recovery = Recovery::default();
        let full = http_body_util::Full::new(Bytes::from_static(b"abc"));
        assert!(recovery.clone_body(&full).is_some());
        assert_eq!(
            recovery.clone_body(&String::from("x")).as_deref(),
            Some("x")
        );
        assert_eq!(recovery.clone_body(&Bytes::from_static(b"y")).unwrap(), "y");
        assert!(recovery.clone_body(&()).is_some());
        let empty = http_body_util::Empty::<Bytes>::new();
        assert!(recovery.clone_body(&empty).is_some());

        struct Stream;
        assert!(recovery.clone_body(&Stream).is_none());
        let boxed = http_body_util::combinators::UnsyncBoxBody::new(full);
        assert!(recovery.clone_body(&boxed).is_none());
    }

    #[test]
    fn a_clone_fn_makes_a_body_type_replayable() {
        #[derive(Debug, PartialEq)]
        struct Mine(u32);
        let mut recovery = Recovery::default();
        recovery.add_clone_fn(|b: &Mine| Some(Mine(b.0)));
        recovery.add_clone_fn(|_: &u8| None);
        assert_eq!(recovery.clone_body(&Mine(7)), Some(Mine(7)));
        assert_eq!(recovery.clone_body(&3u8), None, "the function may refuse");
        assert_eq!(recovery.clone_body(&3u16), None);
    }

    #[test]
    fn only_401_is_a_rejection() {
        let with = |status: u16, challenge: Option<&'static str>| {
            let mut r = Response::builder().status(status);
            if let Some(c) = challenge {
                r = r.header(http::header::WWW_AUTHENTICATE, c);
            }
            r.body(()).unwrap()
        };
        let invalid = Some(r#"Bearer error="invalid_token""#);
        assert!(RecoverOn::Unauthorized.is_rejection(&with(401, None)));
        assert!(!RecoverOn::Unauthorized.is_rejection(&with(403, invalid)));
        assert!(!RecoverOn::Unauthorized.is_rejection(&with(200, None)));
        assert!(RecoverOn::InvalidToken.is_rejection(&with(401, invalid)));
        assert!(!RecoverOn::InvalidToken.is_rejection(&with(401, None)));
        assert!(!RecoverOn::InvalidToken.is_rejection(&with(401, Some("Bearer realm=\"x\""))));
        assert!(!RecoverOn::Never.is_rejection(&with(401, invalid)));
    }
}
