//! The response future of [`OAuth`](crate::OAuth).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::BoxError;
use crate::Error;
use crate::cache::Entry;
use crate::replay::{Next, Recover, ReplayFuture};

type EntryFuture = Pin<Box<dyn Future<Output = Result<Arc<Entry>, Error>> + Send>>;

pin_project! {
    /// Response future of [`OAuth`](crate::OAuth).
    ///
    /// With a usable token it is the inner service's future, plus the token it used and, if
    /// the request can be sent again, a copy of it (see [`replay`](crate::replay)). Without
    /// a token it first waits for the token fetch (a boxed future, on this rare path only),
    /// then calls the inner service. After a 401 it sends the request again in one boxed
    /// future (again, on that rare path only).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Called {
            #[pin]
            future: S::Future,
        },
        Sent {
            #[pin]
            future: S::Future,
            used: u64,
            recover: Option<Recover<S, B>>,
        },
        Waiting {
            // Boxed: the rare path's request, service and copy would otherwise make every
            // future as large as all of them, and every move of it as slow.
            waiting: Box<Waiting<S, B>>,
        },
        Replaying {
            future: ReplayFuture<S::Response>,
        },
    }
}

/// What a request without a usable token keeps while it waits for one.
struct Waiting<S, B> {
    token: EntryFuture,
    request: Option<Request<B>>,
    inner: S,
    recover: Option<Recover<S, B>>,
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    #[inline]
    pub(crate) fn called(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Called { future },
        }
    }

    #[inline]
    pub(crate) fn sent(future: S::Future, used: u64, recover: Recover<S, B>) -> Self {
        ResponseFuture {
            state: State::Sent {
                future,
                used,
                recover: Some(recover),
            },
        }
    }

    pub(crate) fn waiting(
        token: EntryFuture,
        request: Request<B>,
        inner: S,
        recover: Option<Recover<S, B>>,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting {
                waiting: Box::new(Waiting {
                    token,
                    request: Some(request),
                    inner,
                    recover,
                }),
            },
        }
    }
}

impl<S, B, R> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<R>> + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    R: 'static,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Sent {
                    future,
                    used,
                    recover,
                } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    if response.status() != StatusCode::UNAUTHORIZED {
                        return Poll::Ready(Ok(response));
                    }
                    let Some(recover) = recover.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    match recover.on_response(*used, response) {
                        Next::Done(response) => return Poll::Ready(Ok(response)),
                        Next::Replay(future) => this.state.set(State::Replaying { future }),
                    }
                }
                StateProj::Replaying { future } => return future.as_mut().poll(cx),
                StateProj::Waiting { waiting } => {
                    let Waiting {
                        token,
                        request,
                        inner,
                        recover,
                    } = &mut **waiting;
                    let entry = match ready!(token.as_mut().poll(cx)) {
                        Ok(entry) => entry,
                        Err(error) => return Poll::Ready(Err(error.into())),
                    };
                    let Some(mut request) = request.take() else {
                        // Not reachable: the request is taken once, and the state then changes.
                        return Poll::Ready(Err(Error::cancelled().into()));
                    };
                    request
                        .headers_mut()
                        .insert(AUTHORIZATION, entry.header.clone());
                    let future = inner.call(request);
                    let state = match recover.take() {
                        Some(recover) => State::Sent {
                            future,
                            used: entry.id,
                            recover: Some(recover),
                        },
                        None => State::Called { future },
                    };
                    this.state.set(state);
                }
            }
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } | State::Sent { .. } => "called",
            State::Waiting { .. } => "waiting for token",
            State::Replaying { .. } => "sending again after 401",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
