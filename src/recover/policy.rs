//! What recovery does, as a typed policy: which answers reject the token, which requests
//! may be sent again, and how their bodies are copied.

use std::any::{Any, TypeId};
use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};

use crate::body::ReplayBody;

/// Decides what the [`OAuth`](crate::OAuth) service does when an answer may say that the
/// token a request carried was rejected (tower-http's `follow_redirect::Policy` and tower's
/// `retry::Policy` are the models).
///
/// [`Standard`] is the default. Adapt it with the combinators [`CloneBodyFn`],
/// [`RejectIf`] and [`ReplayIf`] (through
/// [`OAuthLayerBuilder`](crate::OAuthLayerBuilder)), or write your own. The methods are
/// called through generics on each request, so a policy that says "no" costs nothing.
pub trait Policy<B> {
    /// Whether recovery is on at all. `false`: every answer goes back to the caller as it
    /// came, no token is invalidated, and a request costs what it costs without recovery
    /// (no copy, no reference kept). Default `true`.
    fn is_enabled(&self) -> bool {
        true
    }

    /// Whether an answer with `status` and `headers` says that the token the request
    /// carried was rejected (RFC 6750 section 3.1). The token is then invalidated, and the
    /// request sent again once if [`may_replay`](Policy::may_replay) allowed it.
    fn is_rejection(&self, status: StatusCode, headers: &HeaderMap) -> bool;

    /// Whether `request` may be sent a second time, with a new token, if its token is
    /// rejected. Asked before the first attempt: a copy is kept only when this is `true`
    /// and [`clone_body`](Policy::clone_body) gives one.
    fn may_replay(&self, request: &Request<B>) -> bool;

    /// Whether any request at all may be sent a second time: `false` when
    /// [`may_replay`](Policy::may_replay) says `false` to every request. A caller that must
    /// pay for a copy before it can ask `may_replay` skips the copy when this is `false`
    /// ([`OAuthMiddleware`](crate::OAuthMiddleware) calls `reqwest::Request::try_clone`
    /// only then). Default `true`; [`Standard`] answers its
    /// [`replay`](Standard::replay) setting.
    fn replays(&self) -> bool {
        true
    }

    /// A copy of `body` for the second attempt; `None` when the body cannot be sent again
    /// (the caller then gets the `401`). Never an empty or partial body in its place.
    fn clone_body(&self, body: &B) -> Option<B>;
}

/// Which answers mean that the access token was rejected. Part of [`Standard`]; set with
/// [`OAuthLayerBuilder::recover_on`](crate::OAuthLayerBuilder::recover_on).
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
    /// None: answers are passed back untouched, the token is never invalidated and no
    /// request is sent twice. No reference and no copy is kept; the response future keeps
    /// its size, as recovery is off at run time. For the least a request can cost, use
    /// [`OAuthLayer::without_recovery`](crate::OAuthLayer::without_recovery) (off at the
    /// type level).
    Never,
}

impl RecoverOn {
    /// Whether an answer with `status` and `headers` says the token it carried was rejected.
    #[inline]
    pub fn is_rejection(self, status: StatusCode, headers: &HeaderMap) -> bool {
        if status != StatusCode::UNAUTHORIZED {
            return false;
        }
        match self {
            RecoverOn::Unauthorized => true,
            RecoverOn::InvalidToken => crate::www_authenticate::is_invalid_token(headers),
            RecoverOn::Never => false,
        }
    }
}

/// Whether an answer rejects the token for a gRPC client: an HTTP `401`, or an HTTP `200`
/// whose headers carry `grpc-status: 16` (`UNAUTHENTICATED`, a trailers-only answer; gRPC
/// over HTTP/2, "Responses"). `grpc-status: 7` (`PERMISSION_DENIED`), like a `403`, is not a
/// rejection. A `grpc-status` that only comes in the trailers of a streamed answer is not
/// seen (the answer has gone to the caller by then).
///
/// Set it with [`OAuthLayerBuilder::reject_if`](crate::OAuthLayerBuilder::reject_if) on the
/// layer of a tonic channel. It is a rule of its own, not part of [`Standard`], so an HTTP
/// stack does not read `grpc-status` on its answers:
///
/// ```
/// # use std::time::Duration;
/// # use tower_oauth::{source_fn, OAuthLayer, Token};
/// # let source = source_fn(|| async { Ok(Token::new("t", Duration::from_secs(60))) });
/// let layer = OAuthLayer::builder(source)
///     .reject_if(tower_oauth::recover::is_grpc_rejection)
///     .build();
/// # let _ = layer;
/// ```
#[inline]
pub fn is_grpc_rejection(status: StatusCode, headers: &HeaderMap) -> bool {
    if status == StatusCode::UNAUTHORIZED {
        return true;
    }
    status == StatusCode::OK
        && headers
            .get("grpc-status")
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"16")
}

/// The default [`Policy`]: a `401` rejects the token ([`RecoverOn`]); the request is sent
/// again once if its body is of a type that is copied cheaply, whatever its method.
///
/// Bodies copied by type: `()`, `String`, `&'static str`, `Vec<u8>`, `&'static [u8]`,
/// [`Bytes`], http-body-util's `Full<Bytes>` and `Empty<Bytes>`, and a [`ReplayBody`] that
/// was buffered whole. The type test is decided when the policy is compiled for a body
/// type, not on each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standard {
    on: RecoverOn,
    replay: bool,
    replay_non_idempotent: bool,
}

impl Default for Standard {
    fn default() -> Self {
        Standard {
            on: RecoverOn::Unauthorized,
            replay: true,
            replay_non_idempotent: true,
        }
    }
}

impl Standard {
    /// Which answers reject the token. Default [`RecoverOn::Unauthorized`].
    pub fn on(mut self, on: RecoverOn) -> Self {
        self.on = on;
        self
    }

    /// Whether a request whose token was rejected is sent again, once. Default `true`.
    /// With `false` the token is still invalidated and the caller gets the `401`.
    pub fn replay(mut self, replay: bool) -> Self {
        self.replay = replay;
        self
    }

    /// Whether requests with a method that is not idempotent (`POST`, `PATCH`, `CONNECT`;
    /// RFC 9110 section 9.2.2) are sent again. Default `true`.
    pub fn replay_non_idempotent(mut self, replay: bool) -> Self {
        self.replay_non_idempotent = replay;
        self
    }
}

impl AsMut<Standard> for Standard {
    fn as_mut(&mut self) -> &mut Standard {
        self
    }
}

impl<B: 'static> Policy<B> for Standard {
    #[inline]
    fn is_enabled(&self) -> bool {
        self.on != RecoverOn::Never
    }

    #[inline]
    fn is_rejection(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        self.on.is_rejection(status, headers)
    }

    #[inline]
    fn may_replay(&self, request: &Request<B>) -> bool {
        self.replay && (self.replay_non_idempotent || request.method().is_idempotent())
    }

    #[inline]
    fn replays(&self) -> bool {
        self.replay
    }

    #[inline]
    fn clone_body(&self, body: &B) -> Option<B> {
        clone_known(body).flatten()
    }
}

/// A clone of the body types that are known to be cheap to copy; `None` if `B` is none of
/// them. Generic, so that the type tests are decided when it is compiled for `B`.
#[inline]
fn clone_known<B: 'static>(body: &B) -> Option<Option<B>> {
    #[inline]
    fn as_type<T: 'static, B: 'static>(body: &B, clone: fn(&T) -> Option<T>) -> Option<Option<B>> {
        if TypeId::of::<T>() != TypeId::of::<B>() {
            return None;
        }
        let copy = clone((body as &dyn Any).downcast_ref::<T>()?);
        let mut copy = Some(copy);
        (&mut copy as &mut dyn Any)
            .downcast_mut::<Option<Option<B>>>()?
            .take()
    }
    fn cloned<T: Clone>(body: &T) -> Option<T> {
        Some(body.clone())
    }
    as_type::<http_body_util::Full<Bytes>, B>(body, cloned)
        .or_else(|| as_type::<http_body_util::Empty<Bytes>, B>(body, cloned))
        .or_else(|| as_type::<ReplayBody, B>(body, ReplayBody::try_clone))
        .or_else(|| as_type::<Bytes, B>(body, cloned))
        .or_else(|| as_type::<String, B>(body, cloned))
        .or_else(|| as_type::<(), B>(body, cloned))
        .or_else(|| as_type::<&'static str, B>(body, cloned))
        .or_else(|| as_type::<Vec<u8>, B>(body, cloned))
        .or_else(|| as_type::<&'static [u8], B>(body, cloned))
}

/// A policy whose bodies are copied by a function of yours (tower-http's `clone_body_fn`);
/// everything else as the policy it wraps. Made by
/// [`OAuthLayerBuilder::clone_body_fn`](crate::OAuthLayerBuilder::clone_body_fn).
#[derive(Clone)]
pub struct CloneBodyFn<P, F> {
    inner: P,
    f: F,
}

/// A policy that rejects the token on the answers your function says; everything else as
/// the policy it wraps. Made by
/// [`OAuthLayerBuilder::reject_if`](crate::OAuthLayerBuilder::reject_if).
#[derive(Clone)]
pub struct RejectIf<P, F> {
    inner: P,
    f: F,
}

/// A policy that sends a request again only if your function allows it (and the policy
/// it wraps does). Made by [`OAuthLayerBuilder::replay_if`](crate::OAuthLayerBuilder::replay_if).
#[derive(Clone)]
pub struct ReplayIf<P, F> {
    inner: P,
    f: F,
}

impl<P, F> CloneBodyFn<P, F> {
    pub(crate) fn new(inner: P, f: F) -> Self {
        CloneBodyFn { inner, f }
    }
}

impl<P, F> RejectIf<P, F> {
    pub(crate) fn new(inner: P, f: F) -> Self {
        RejectIf { inner, f }
    }
}

impl<P, F> ReplayIf<P, F> {
    pub(crate) fn new(inner: P, f: F) -> Self {
        ReplayIf { inner, f }
    }
}

impl<B, P, F> Policy<B> for CloneBodyFn<P, F>
where
    P: Policy<B>,
    F: Fn(&B) -> Option<B>,
{
    fn is_enabled(&self) -> bool {
        self.inner.is_enabled()
    }
    fn is_rejection(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        self.inner.is_rejection(status, headers)
    }
    fn may_replay(&self, request: &Request<B>) -> bool {
        self.inner.may_replay(request)
    }
    fn replays(&self) -> bool {
        self.inner.replays()
    }
    fn clone_body(&self, body: &B) -> Option<B> {
        (self.f)(body)
    }
}

impl<B, P, F> Policy<B> for RejectIf<P, F>
where
    P: Policy<B>,
    F: Fn(StatusCode, &HeaderMap) -> bool,
{
    fn is_enabled(&self) -> bool {
        self.inner.is_enabled()
    }
    fn is_rejection(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        (self.f)(status, headers)
    }
    fn may_replay(&self, request: &Request<B>) -> bool {
        self.inner.may_replay(request)
    }
    fn replays(&self) -> bool {
        self.inner.replays()
    }
    fn clone_body(&self, body: &B) -> Option<B> {
        self.inner.clone_body(body)
    }
}

impl<B, P, F> Policy<B> for ReplayIf<P, F>
where
    P: Policy<B>,
    F: Fn(&Method, &Uri) -> bool,
{
    fn is_enabled(&self) -> bool {
        self.inner.is_enabled()
    }
    fn is_rejection(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        self.inner.is_rejection(status, headers)
    }
    fn may_replay(&self, request: &Request<B>) -> bool {
        self.inner.may_replay(request) && (self.f)(request.method(), request.uri())
    }
    fn replays(&self) -> bool {
        self.inner.replays()
    }
    fn clone_body(&self, body: &B) -> Option<B> {
        self.inner.clone_body(body)
    }
}

macro_rules! combinator_impls {
    ($($name:ident),*) => {$(
        impl<P: AsMut<Standard>, F> AsMut<Standard> for $name<P, F> {
            fn as_mut(&mut self) -> &mut Standard {
                self.inner.as_mut()
            }
        }

        impl<P: fmt::Debug, F> fmt::Debug for $name<P, F> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("inner", &self.inner)
                    .finish_non_exhaustive()
            }
        }
    )*};
}

combinator_impls!(CloneBodyFn, RejectIf, ReplayIf);

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc(status: StatusCode, grpc_status: Option<&'static str>) -> bool {
        let mut headers = HeaderMap::new();
        if let Some(v) = grpc_status {
            headers.insert("grpc-status", http::HeaderValue::from_static(v));
        }
        is_grpc_rejection(status, &headers)
    }

    #[test]
    fn grpc_unauthenticated_rejects_permission_denied_does_not() {
        assert!(grpc(StatusCode::OK, Some("16")));
        assert!(grpc(StatusCode::UNAUTHORIZED, None));
        assert!(!grpc(StatusCode::OK, Some("7")));
        assert!(!grpc(StatusCode::OK, Some("0")));
        assert!(!grpc(StatusCode::OK, Some("160")));
        assert!(!grpc(StatusCode::OK, None));
        assert!(!grpc(StatusCode::FORBIDDEN, Some("16")));
        assert!(!grpc(StatusCode::OK, Some("")));
    }

    fn clone<B: 'static>(body: &B) -> Option<B> {
        Policy::<B>::clone_body(&Standard::default(), body)
    }

    #[test]
    fn known_bodies_are_cloned_others_are_not() {
        let full = http_body_util::Full::new(Bytes::from_static(b"abc"));
        assert!(clone(&full).is_some());
        assert_eq!(clone(&String::from("x")).as_deref(), Some("x"));
        assert_eq!(clone(&Bytes::from_static(b"y")).unwrap(), "y");
        assert!(clone(&()).is_some());
        assert!(clone(&http_body_util::Empty::<Bytes>::new()).is_some());
        assert!(clone(&ReplayBody::from(Bytes::from_static(b"z"))).is_some());

        struct Stream;
        assert!(clone(&Stream).is_none());
        let boxed = http_body_util::combinators::UnsyncBoxBody::new(full);
        assert!(clone(&boxed).is_none());
    }

    #[test]
    fn a_clone_fn_makes_a_body_type_replayable() {
        #[derive(Debug, PartialEq)]
        struct Mine(u32);
        let policy = CloneBodyFn::new(Standard::default(), |b: &Mine| Some(Mine(b.0)));
        assert_eq!(policy.clone_body(&Mine(7)), Some(Mine(7)));
        let refuses = CloneBodyFn::new(Standard::default(), |_: &u8| None);
        assert_eq!(refuses.clone_body(&3u8), None, "the function may refuse");
    }

    #[test]
    fn only_401_is_a_rejection() {
        let headers = |challenge: Option<&'static str>| {
            let mut h = HeaderMap::new();
            if let Some(c) = challenge {
                h.insert(http::header::WWW_AUTHENTICATE, c.parse().unwrap());
            }
            h
        };
        let status = |s: u16| StatusCode::from_u16(s).unwrap();
        let invalid = headers(Some(r#"Bearer error="invalid_token""#));
        let none = headers(None);
        assert!(RecoverOn::Unauthorized.is_rejection(status(401), &none));
        assert!(!RecoverOn::Unauthorized.is_rejection(status(403), &invalid));
        assert!(!RecoverOn::Unauthorized.is_rejection(status(200), &none));
        assert!(RecoverOn::InvalidToken.is_rejection(status(401), &invalid));
        assert!(!RecoverOn::InvalidToken.is_rejection(status(401), &none));
        let realm = headers(Some("Bearer realm=\"x\""));
        assert!(!RecoverOn::InvalidToken.is_rejection(status(401), &realm));
        assert!(!RecoverOn::Never.is_rejection(status(401), &invalid));
    }

    #[test]
    fn combinators_change_one_decision_each() {
        let post = Request::post("http://api.test/payments").body(()).unwrap();
        let get = Request::get("http://api.test/items").body(()).unwrap();
        let no_payments = ReplayIf::new(Standard::default(), |_: &Method, uri: &Uri| {
            !uri.path().starts_with("/payments")
        });
        assert!(!no_payments.may_replay(&post));
        assert!(no_payments.may_replay(&get));

        let or_419 = RejectIf::new(Standard::default(), |s: StatusCode, _: &HeaderMap| {
            s == StatusCode::UNAUTHORIZED || s.as_u16() == 419
        });
        let h = HeaderMap::new();
        assert!(Policy::<()>::is_rejection(
            &or_419,
            StatusCode::from_u16(419).unwrap(),
            &h
        ));
        assert!(!Policy::<()>::is_rejection(
            &or_419,
            StatusCode::FORBIDDEN,
            &h
        ));

        let strict = Standard::default().replay_non_idempotent(false);
        assert!(!strict.may_replay(&post));
        assert!(strict.may_replay(&get));
        assert!(!Policy::<()>::is_enabled(
            &Standard::default().on(RecoverOn::Never)
        ));
    }
}
