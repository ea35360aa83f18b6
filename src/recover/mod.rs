//! Recovering from a rejected token: invalidate it, fetch a new one, send the request again.
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
//! is passed back untouched and invalidates nothing. Neither is a 401 to a request the layer
//! did not authorize, nor (feature `follow-redirect`) a 401 that tower-http's `RequestUri`
//! says came from another origin than the token was sent to.
//!
//! An API that rejects every token must not turn every request into a token request: once
//! a second attempt with a new token is rejected too, a rejected token is dropped at most
//! once per backoff step (1 second, doubling, up to the
//! [`retry_backoff`](crate::OAuthLayerBuilder::retry_backoff) maximum), and inside a step
//! it is kept and the caller gets the 401 without a second attempt. A second attempt that
//! succeeds ends the backoff.
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
//! # Which answers, which requests, which bodies: the policy
//!
//! What recovery does is a typed [`Policy`]: which answers reject the token
//! ([`Policy::is_rejection`]), which requests may be sent again ([`Policy::may_replay`]) and
//! how their bodies are copied ([`Policy::clone_body`]). [`Standard`] is the default: any
//! `401` (or, with [`RecoverOn::InvalidToken`], only a `Bearer error="invalid_token"`
//! challenge), every method, the body types below. The builder adapts it:
//! [`recover_on`](crate::OAuthLayerBuilder::recover_on),
//! [`replay`](crate::OAuthLayerBuilder::replay),
//! [`replay_non_idempotent`](crate::OAuthLayerBuilder::replay_non_idempotent),
//! [`reject_if`](crate::OAuthLayerBuilder::reject_if) ("401 or 419"),
//! [`replay_if`](crate::OAuthLayerBuilder::replay_if) ("never `/payments`"),
//! [`clone_body_fn`](crate::OAuthLayerBuilder::clone_body_fn), or a policy of your own with
//! [`recover_policy`](crate::OAuthLayerBuilder::recover_policy).
//!
//! The request's body has gone to the inner service by the time the 401 comes back, so
//! the service keeps a copy of the request before it sends it, when the body can be copied
//! cheaply (as tower-http's `FollowRedirect` does):
//!
//! - `()`, `String`, `&'static str`, `Vec<u8>`, `&'static [u8]`, [`Bytes`](bytes::Bytes), and
//!   http-body-util's `Full<Bytes>` and `Empty<Bytes>`: recognised by their type;
//! - [`ReplayBody`](crate::body::ReplayBody) as made by
//!   [`BufferBodyLayer`](crate::body::BufferBodyLayer), when the body was buffered whole;
//! - a body type you give a function for, with
//!   [`clone_body_fn`](crate::OAuthLayerBuilder::clone_body_fn).
//!
//! Any other body (a stream, hyper's `Incoming`, a boxed body) is not sent again: the
//! caller gets the original 401, and the token is still invalidated, so the caller's next
//! attempt goes out with a new token. An empty or partial body is never sent in its place.
//! To have streaming bodies sent again, put a
//! [`BufferBodyLayer`](crate::body::BufferBodyLayer) above the `OAuthLayer`: it reads bodies
//! up to a size limit into memory and passes larger ones through whole.
//!
//! # What it costs
//!
//! With a usable token, a request that cannot be sent again costs what it costs without
//! recovery plus one reference count (a handle on the layer's recovery state, which holds
//! the cache, the policy and a spare clone of the inner service) and the id of the token it
//! used. No allocation, no boxed future, no clone of the inner service: the spare is cloned
//! only when a 401 comes back. The layer makes 4 handles per CPU (rounded up to a power of
//! two, at most 64), each on cache lines of its own, and a request takes the handle of the
//! thread that calls the service: requests on different threads do not write the same
//! count, so the reference count does not make the threads wait for each other
//! (`BENCHMARKS.md`, 256 tasks on 2 workers). With [`RecoverOn::Never`] not even that,
//! though the response future keeps its size (recovery is off at run time); with
//! [`OAuthLayer::without_recovery`](crate::OAuthLayer::without_recovery) recovery is off at
//! the type level and the future is the inner service's plus a tag.
//!
//! A request that can be sent again also keeps a copy of its head (method, URI, version,
//! headers, extensions) and of its body. The headers are copied into a list: 1 allocation
//! if the request has any, 0 if not. A header value or a body's `Bytes` made at run time
//! from a `String` or `Vec` allocates its shared state on its first copy (values made with
//! `from_static`, or already shared, cost nothing); a `String` or `Vec<u8>` body is copied
//! (1 allocation). `tests/alloc.rs` counts these.
//!
//! The second attempt (waiting for the token, calling the inner service again) lives in
//! one boxed state, allocated only when a 401 comes back.
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

mod copy;
mod policy;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use http::Request;
#[cfg(feature = "follow-redirect")]
use http::Uri;

use crate::cache::{Rejected, TokenCache, TokenId};
use crate::identity::Identity;
use crate::metrics::Rejection;
#[cfg(feature = "follow-redirect")]
use crate::origin::Origin;
use copy::RequestCopy;

pub use policy::is_grpc_rejection;
pub use policy::{CloneBodyFn, Policy, RecoverOn, RejectIf, ReplayIf, Standard};

/// A handle on what a layer keeps for recovery ([`RecoverState`]). Each request with a
/// usable token keeps a reference to its service's handle while it is in flight, so the
/// reference count is written twice per request. The services of one layer use
/// [`Shards`] of handles on one state, one per thread: each handle's count sits on cache
/// lines of its own (the alignment), so requests on different threads do not write the
/// same line.
#[repr(align(128))]
pub(crate) struct Recover<S, P> {
    state: Arc<RecoverState<S, P>>,
}

/// What a layer keeps for recovery, shared by its services: the cache, the policy, and a
/// spare clone of the inner service for second attempts (taken on the first request, then
/// cloned again only when a 401 comes back, never per request). The spare is the inner
/// service as it was at the first request: one replaced later through `get_mut` is not
/// used for second attempts.
pub(crate) struct RecoverState<S, P> {
    pub(crate) cache: TokenCache,
    pub(crate) policy: P,
    spare: OnceLock<Mutex<S>>,
}

impl<S, P> Recover<S, P> {
    pub(crate) fn new(cache: TokenCache, policy: P) -> Recover<S, P> {
        Recover {
            state: Arc::new(RecoverState {
                cache,
                policy,
                spare: OnceLock::new(),
            }),
        }
    }
}

impl<S, P> std::ops::Deref for Recover<S, P> {
    type Target = RecoverState<S, P>;

    #[inline(always)]
    fn deref(&self) -> &RecoverState<S, P> {
        &self.state
    }
}

impl<S, P> RecoverState<S, P> {
    /// Keeps a clone of `inner` for second attempts, the first time only: after that, one
    /// atomic read.
    #[inline]
    pub(crate) fn keep_spare(&self, inner: &S)
    where
        S: Clone,
    {
        self.spare.get_or_init(|| Mutex::new(inner.clone()));
    }

    /// A clone of the spare service, for a second attempt (not yet ready).
    fn service(&self) -> Option<S>
    where
        S: Clone,
    {
        let spare = self.spare.get()?;
        Some(spare.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The handles of one layer's services on its recovery state, one taken per thread: a
/// request takes the handle of the thread that calls the service, so requests on different
/// threads write different reference counts, whichever service clone they go through.
/// Threads are numbered in the order they first call a service of any layer, so two
/// threads share a handle only once more threads than handles have called.
pub(crate) struct Shards<S, P> {
    /// A power of two of them.
    handles: Box<[Arc<Recover<S, P>>]>,
}

impl<S, P> Shards<S, P> {
    /// About `count` handles on a state of `cache` and `policy`: `count` rounded up to a
    /// power of two, at least 1, at most 64.
    pub(crate) fn new(cache: TokenCache, policy: P, count: usize) -> Shards<S, P> {
        let count = count.clamp(1, 64).next_power_of_two();
        let first = Recover::new(cache, policy);
        let mut handles = Vec::with_capacity(count);
        for _ in 1..count {
            handles.push(Arc::new(Recover {
                state: first.state.clone(),
            }));
        }
        handles.insert(0, Arc::new(first));
        Shards {
            handles: handles.into_boxed_slice(),
        }
    }

    /// The number of handles for a layer on this machine: 4 per CPU (capped at 64 by
    /// [`Shards::new`]). Asked of the system once per process: on Linux, std reads the
    /// cgroup files for it.
    pub(crate) fn count() -> usize {
        static COUNT: OnceLock<usize> = OnceLock::new();
        *COUNT.get_or_init(|| {
            std::thread::available_parallelism().map_or(8, |n| n.get().saturating_mul(4))
        })
    }

    /// The handle of the calling thread.
    #[inline]
    pub(crate) fn local(&self) -> &Arc<Recover<S, P>> {
        // A power of two: the mask is the remainder.
        &self.handles[thread_index() & (self.handles.len() - 1)]
    }

    /// The first handle, for what does not depend on the thread.
    pub(crate) fn first(&self) -> &Arc<Recover<S, P>> {
        &self.handles[0]
    }
}

/// This thread's number, given on its first call: 0, 1, 2, … in the order threads ask.
#[inline]
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    INDEX.with(|index| match index.get() {
        usize::MAX => {
            let next = NEXT.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
            index.set(next);
            next
        }
        known => known,
    })
}

impl<S, P: fmt::Debug> fmt::Debug for Recover<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recover")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Why a rejected request is not sent again.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NoReplay {
    /// The policy does not send this request again (replay off, its method, its path).
    Policy,
    /// The body cannot be copied.
    Body,
}

impl NoReplay {
    fn reason(self) -> &'static str {
        match self {
            NoReplay::Policy => "the recovery policy does not send it again",
            NoReplay::Body => "the body cannot be sent again",
        }
    }

    /// The metric and the `INFO` event of a rejected token whose request is not sent again
    /// (`invalidated`: the rejection dropped it from the cache).
    pub(crate) fn report(self, identity: &Identity, invalidated: bool) {
        crate::metrics::rejection(identity, Rejection::NotReplayable);
        tracing::info!(
            target: "tower_oauth",
            invalidated,
            reason = self.reason(),
            "token rejected (401); request not sent again"
        );
    }
}

/// What one request in flight keeps for recovery: the copy to send again, or why there is
/// none and where the request went (to tell a 401 from another origin).
pub(crate) struct RecoverRequest<S, B, P> {
    recover: Arc<Recover<S, P>>,
    used: TokenId,
    copy: Result<RequestCopy<B>, (NoReplay, SentTo)>,
}

/// Where a request without a copy went: its URI with the `follow-redirect` feature (to
/// compare with the last hop's), nothing without it.
#[cfg(feature = "follow-redirect")]
type SentTo = Uri;
#[cfg(not(feature = "follow-redirect"))]
type SentTo = ();

#[cfg(feature = "follow-redirect")]
fn sent_to<B>(request: &Request<B>) -> SentTo {
    request.uri().clone()
}

#[cfg(not(feature = "follow-redirect"))]
fn sent_to<B>(_: &Request<B>) -> SentTo {}

/// A request to send again, with the service to send it and the recovery state.
pub(crate) struct Resend<S, B, P> {
    pub(crate) request: Request<B>,
    pub(crate) service: S,
    pub(crate) recover: Arc<Recover<S, P>>,
}

impl<S, B, P: Policy<B>> RecoverRequest<S, B, P> {
    /// What `request`, about to be sent with token `used`, keeps for recovery: a copy of
    /// it if the policy may send it again and its body can be copied.
    #[inline(always)]
    pub(crate) fn new(recover: &Arc<Recover<S, P>>, used: TokenId, request: &Request<B>) -> Self {
        let copy = if !recover.policy.may_replay(request) {
            Err((NoReplay::Policy, sent_to(request)))
        } else {
            match recover.policy.clone_body(request.body()) {
                Some(body) => Ok(RequestCopy::new(request, body)),
                None => Err((NoReplay::Body, sent_to(request))),
            }
        };
        RecoverRequest {
            recover: recover.clone(),
            used,
            copy,
        }
    }

    /// Whether the answer says the token was rejected: the policy says so, and the answer
    /// came from the origin the token was sent to. A redirect follower below the layer
    /// leaves the URI of the last hop in tower-http's `RequestUri` response extension; a
    /// 401 from another origin is not about this token.
    #[inline]
    pub(crate) fn is_rejection<R>(&self, response: &http::Response<R>) -> bool {
        if !self
            .recover
            .policy
            .is_rejection(response.status(), response.headers())
        {
            return false;
        }
        #[cfg(feature = "follow-redirect")]
        if let Some(tower_http::follow_redirect::RequestUri(last)) = response.extensions().get() {
            let sent_to = match &self.copy {
                Ok(copy) => copy.uri(),
                Err((_, uri)) => uri,
            };
            // A relative URI (its origin set by a layer below) cannot be compared: ours.
            let same = Origin::from_uri(sent_to).is_none_or(|origin| origin.matches(last));
            if !same {
                crate::metrics::rejection(self.recover.cache.identity(), Rejection::NotOurs);
                tracing::info!(
                    target: "tower_oauth",
                    "401 from another origin than the token was sent to; token kept"
                );
                return false;
            }
        }
        true
    }

    /// The token was rejected: invalidates it (if it is still the cached one), and gives
    /// the request to send again, or `None` if it cannot be. With `nonce_only` (a DPoP
    /// `use_dpop_nonce` challenge, RFC 9449 section 9) the token is kept: the request goes
    /// again with the same token and a proof with the server's new nonce.
    pub(crate) fn rejected(self, nonce_only: bool) -> Option<Resend<S, B, P>>
    where
        S: Clone,
    {
        if nonce_only {
            let Ok(copy) = self.copy else {
                tracing::info!(
                    target: "tower_oauth",
                    "DPoP nonce required (401 use_dpop_nonce); request not sent again, token kept"
                );
                return None;
            };
            let service = self.recover.service()?;
            tracing::debug!(
                target: "tower_oauth",
                "DPoP nonce required (401 use_dpop_nonce): sending again with the new nonce, token kept"
            );
            return Some(Resend {
                request: copy.into_request(),
                service,
                recover: self.recover,
            });
        }
        let rejected = self.recover.cache.reject_id(self.used);
        let invalidated = rejected == Rejected::Dropped;
        let identity = self.recover.cache.identity();
        if rejected == Rejected::Held {
            crate::metrics::rejection(identity, Rejection::BackedOff);
            tracing::info!(
                target: "tower_oauth",
                "token rejected (401) again soon after a new one was fetched; kept until the backoff step ends, request not sent again"
            );
            return None;
        }
        match self.copy {
            Err((why, _)) => {
                why.report(identity, invalidated);
                None
            }
            Ok(copy) => {
                // Kept by the service before the first attempt; never missing here.
                let service = self.recover.service()?;
                crate::metrics::rejection(identity, Rejection::Replayed);
                tracing::info!(
                    target: "tower_oauth",
                    method = %copy.method(),
                    path = copy.uri().path(),
                    invalidated,
                    "token rejected (401); sending the request again with a new token"
                );
                Some(Resend {
                    request: copy.into_request(),
                    service,
                    recover: self.recover,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{OAuthLayer, Token, source_fn};

    fn cache() -> TokenCache {
        let source = source_fn(|| async { Ok(Token::new("t", Duration::from_secs(60))) });
        OAuthLayer::new(source).cache().clone()
    }

    #[test]
    fn each_handle_has_cache_lines_of_its_own() {
        assert_eq!(std::mem::align_of::<Recover<(), Standard>>(), 128);
    }

    #[tokio::test]
    async fn a_thread_keeps_its_handle_and_two_threads_take_two() {
        let shards = Arc::new(Shards::<(), Standard>::new(cache(), Standard::default(), 3));
        assert_eq!(shards.handles.len(), 4, "rounded up to a power of two");
        let of_thread = |shards: &Shards<(), Standard>| {
            let ptr = Arc::as_ptr(shards.local()) as usize;
            (thread_index(), ptr)
        };
        let (here, handle) = of_thread(&shards);
        assert_eq!(
            of_thread(&shards),
            (here, handle),
            "the same thread, the same handle"
        );
        let (there, other) = {
            let shards = shards.clone();
            std::thread::spawn(move || of_thread(&shards))
                .join()
                .unwrap()
        };
        assert_ne!(here, there, "each thread its number");
        for (index, ptr) in [(here, handle), (there, other)] {
            assert_eq!(ptr, Arc::as_ptr(&shards.handles[index % 4]) as usize);
        }
        for handle in shards.handles.iter() {
            assert!(Arc::ptr_eq(&handle.state, &shards.first().state));
        }
    }

    #[tokio::test]
    async fn handle_counts_at_the_extremes() {
        for (asked, made) in [(0, 1), (1, 1), (5, 8), (64, 64), (usize::MAX, 64)] {
            let shards = Shards::<(), Standard>::new(cache(), Standard::default(), asked);
            assert_eq!(shards.handles.len(), made, "{asked} asked");
            assert!(Arc::ptr_eq(shards.local(), shards.local()));
        }
        assert!(Shards::<(), Standard>::count() >= 4);
    }
}
