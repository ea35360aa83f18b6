//! The response future of [`OAuth`](crate::OAuth).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, header::AUTHORIZATION};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::BoxError;
use crate::Error;
use crate::cache::Entry;

type EntryFuture = Pin<Box<dyn Future<Output = Result<Arc<Entry>, Error>> + Send>>;

pin_project! {
    /// Response future of [`OAuth`](crate::OAuth).
    ///
    /// With a usable token it is the inner service's future and nothing more. Without one it
    /// first waits for the token fetch (a boxed future, on this rare path only), then calls
    /// the inner service.
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
        Waiting {
            token: EntryFuture,
            request: Option<Request<B>>,
            inner: S,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn called(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Called { future },
        }
    }

    pub(crate) fn waiting(token: EntryFuture, request: Request<B>, inner: S) -> Self {
        ResponseFuture {
            state: State::Waiting {
                token,
                request: Some(request),
                inner,
            },
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Waiting {
                    token,
                    request,
                    inner,
                } => {
                    let entry = match ready!(token.as_mut().poll(cx)) {
                        Ok(entry) => entry,
                        Err(error) => return Poll::Ready(Err(error.into())),
                    };
                    let Some(mut request) = request.take() else {
                        // Polled after the request was sent: only if polled after completion.
                        return Poll::Ready(Err(Error::cancelled().into()));
                    };
                    request
                        .headers_mut()
                        .insert(AUTHORIZATION, entry.header.clone());
                    let future = inner.call(request);
                    this.state.set(State::Called { future });
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
            State::Called { .. } => "called",
            State::Waiting { .. } => "waiting for token",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
