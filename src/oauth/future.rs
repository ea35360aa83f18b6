//! The response future of [`OAuth`](super::OAuth).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::BoxError;
use crate::cache::{Entry, TokenId};
use crate::error::Error;
use crate::recover::{Policy, Recover, RecoverRequest, Resend};

type EntryFuture = Pin<Box<dyn Future<Output = Result<Arc<Entry>, Error>> + Send>>;

pin_project! {
    /// Response future of [`OAuth`](super::OAuth).
    ///
    /// With a usable token it is the inner service's future, plus what recovery keeps (see
    /// [`recover`](crate::recover)). Without a token it first waits for the token fetch, in
    /// a boxed state on that rare path only, then calls the inner service. After a `401`
    /// it waits for a new token and sends the request again, in the same boxed state.
    pub struct ResponseFuture<S, B, P>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B, P>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateProjReplace]
    enum State<S, B, P>
    where
        S: Service<Request<B>>,
    {
        // Passed through, or sent with recovery off.
        Passed {
            #[pin]
            future: S::Future,
        },
        // Sent with a token, recovery on.
        Sent {
            #[pin]
            future: S::Future,
            recover: RecoverRequest<S, B, P>,
        },
        // Waiting for a token, for the first attempt or the second.
        Waiting {
            // Boxed: the rare path's request and service would otherwise make every
            // future as large as both, and every move of it as slow.
            waiting: Box<Waiting<S, B, P>>,
        },
        // The second attempt, after a 401.
        Resent {
            #[pin]
            future: S::Future,
            recover: Arc<Recover<S, P>>,
            used: TokenId,
        },
        // Refused by the origin policy.
        Refused {
            error: Error,
        },
        Done,
    }
}

/// What a request without a usable token keeps while it waits for one.
struct Waiting<S, B, P> {
    token: EntryFuture,
    request: Request<B>,
    service: S,
    /// False for a second attempt: its service is a clone that was not made ready.
    ready: bool,
    then: Then<S, P>,
}

/// Which attempt a waiting request is.
enum Then<S, P> {
    /// The first; with recovery state if recovery is on.
    First(Option<Arc<Recover<S, P>>>),
    /// The second, after a 401.
    Second(Arc<Recover<S, P>>),
}

impl<S, B, P> ResponseFuture<S, B, P>
where
    S: Service<Request<B>>,
{
    #[inline(always)]
    pub(crate) fn passed(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Passed { future },
        }
    }

    #[inline(always)]
    pub(crate) fn sent(future: S::Future, recover: RecoverRequest<S, B, P>) -> Self {
        ResponseFuture {
            state: State::Sent { future, recover },
        }
    }

    pub(crate) fn refused(error: Error) -> Self {
        ResponseFuture {
            state: State::Refused { error },
        }
    }

    pub(crate) fn waiting(
        token: EntryFuture,
        request: Request<B>,
        service: S,
        recover: Option<Arc<Recover<S, P>>>,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting {
                waiting: Box::new(Waiting {
                    token,
                    request,
                    service,
                    ready: true,
                    then: Then::First(recover),
                }),
            },
        }
    }
}

impl<S, B, P, R> Future for ResponseFuture<S, B, P>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    S::Error: Into<BoxError>,
    P: Policy<B>,
{
    type Output = Result<Response<R>, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The hot path inline: an answer that is not a rejection. The rest out of line.
        match this.state.as_mut().project() {
            StateProj::Passed { future } => return future.poll(cx).map_err(Into::into),
            StateProj::Sent { future, recover } => {
                let response = ready!(future.poll(cx)).map_err(Into::into)?;
                if !recover.is_rejection(&response) {
                    return Poll::Ready(Ok(response));
                }
                return poll_slow(this.state, cx, Some(response));
            }
            _ => {}
        }
        poll_slow(this.state, cx, None)
    }
}

/// [`ResponseFuture::poll`] off the hot path: a rejected answer (`rejected`, the answer
/// the `Sent` state got), waiting for a token, the second attempt, a refusal.
#[inline(never)]
fn poll_slow<S, B, P, R>(
    mut state: Pin<&mut State<S, B, P>>,
    cx: &mut Context<'_>,
    mut rejected: Option<Response<R>>,
) -> Poll<Result<Response<R>, BoxError>>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    S::Error: Into<BoxError>,
    P: Policy<B>,
{
    loop {
        match state.as_mut().project() {
            StateProj::Passed { future } => return future.poll(cx).map_err(Into::into),
            StateProj::Sent { future, recover } => {
                let response = match rejected.take() {
                    // `poll` found it a rejection already: the policy is asked once.
                    Some(response) => response,
                    None => {
                        let response = ready!(future.poll(cx)).map_err(Into::into)?;
                        if !recover.is_rejection(&response) {
                            return Poll::Ready(Ok(response));
                        }
                        response
                    }
                };
                let StateProjReplace::Sent { recover, .. } =
                    state.as_mut().project_replace(State::Done)
                else {
                    unreachable!("the state was Sent")
                };
                let Some(Resend {
                    request,
                    service,
                    recover,
                }) = recover.rejected(crate::www_authenticate::is_dpop_nonce_challenge(
                    response.headers(),
                ))
                else {
                    return Poll::Ready(Ok(response));
                };
                // Let the inner client release the connection of the first attempt now.
                drop(response);
                state.set(State::Waiting {
                    waiting: Box::new(Waiting {
                        token: Box::pin(recover.cache.entry()),
                        request,
                        service,
                        ready: false,
                        then: Then::Second(recover),
                    }),
                });
            }
            StateProj::Waiting { waiting } => {
                if !waiting.ready {
                    ready!(waiting.service.poll_ready(cx)).map_err(Into::into)?;
                    waiting.ready = true;
                }
                let entry = ready!(waiting.token.as_mut().poll(cx));
                let StateProjReplace::Waiting { waiting } =
                    state.as_mut().project_replace(State::Done)
                else {
                    unreachable!("the state was Waiting")
                };
                let entry = entry?;
                let Waiting {
                    request,
                    mut service,
                    then,
                    ..
                } = *waiting;
                let next = match then {
                    Then::First(None) => State::Passed {
                        future: service.call(entry.authorize(request)),
                    },
                    Then::First(Some(recover)) => {
                        // The copy is taken before the token is set.
                        let recover = RecoverRequest::new(&recover, entry.id, &request);
                        State::Sent {
                            future: service.call(entry.authorize(request)),
                            recover,
                        }
                    }
                    Then::Second(recover) => State::Resent {
                        future: service.call(entry.authorize(request)),
                        recover,
                        used: entry.id,
                    },
                };
                state.set(next);
            }
            StateProj::Resent {
                future,
                recover,
                used,
            } => {
                let response = ready!(future.poll(cx)).map_err(Into::into)?;
                let rejected = recover
                    .policy
                    .is_rejection(response.status(), response.headers());
                // The next rejections back off (see `cache/rejection.rs`).
                recover
                    .cache
                    .second_attempt_answered(*used, rejected, response.status());
                return Poll::Ready(Ok(response));
            }
            StateProj::Refused { .. } => {
                let StateProjReplace::Refused { error } =
                    state.as_mut().project_replace(State::Done)
                else {
                    unreachable!("the state was Refused")
                };
                return Poll::Ready(Err(error.into()));
            }
            StateProj::Done => panic!("ResponseFuture polled after completion"),
        }
    }
}

impl<S, B, P> fmt::Debug for ResponseFuture<S, B, P>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Passed { .. } | State::Sent { .. } => "called",
            State::Waiting { .. } => "waiting for a token",
            State::Resent { .. } => "sending again after a 401",
            State::Refused { .. } => "refused",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
