//! [`BufferBody`]: reads request bodies into memory, up to a limit.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, request::Parts};
use http_body::Body;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::replay_body::ReplayBody;
use crate::BoxError;

/// Reads each request body into memory, up to `limit` bytes, so that the
/// [`OAuth`](crate::OAuth) service below it can send the request again after a 401.
///
/// Put it *above* the [`OAuthLayer`](crate::OAuthLayer). The services below it see
/// [`ReplayBody`] instead of the caller's body type:
///
/// - a body of at most `limit` bytes is read whole before the request goes on; it can then
///   be sent again, byte for byte, trailers included;
/// - a larger body (by its size hint, or once more than `limit` bytes have been read) is
///   passed through whole: the bytes already read, then the rest of the stream. It is not
///   sent again after a 401 (the caller gets the 401, and the token is invalidated).
///
/// A request body that fails while it is being read fails the request with the body's
/// error, and nothing is sent.
///
/// Each request with a non-empty body costs one boxed body (to hold the caller's body type),
/// one small queue of chunks, and, if the body came in more than one chunk, one buffer of
/// its size into which the chunks are copied. A body that is empty by its size hint costs
/// nothing.
///
/// ```
/// use bytes::Bytes;
/// use futures_util::stream;
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, StreamBody};
/// use http_body::Frame;
/// use std::time::Duration;
/// use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
/// use tower_oauth::body::{BufferBodyLayer, ReplayBody};
/// use tower_oauth::{source_fn, OAuthLayer, Token};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let source = source_fn(|| async { Ok(Token::new("t", Duration::from_secs(3600))) });
/// let client = ServiceBuilder::new()
///     .layer(BufferBodyLayer::new(64 * 1024))
///     .layer(OAuthLayer::new(source))
///     .service(service_fn(|req: Request<ReplayBody>| async move {
///         assert!(req.body().is_buffered());
///         let body = req.into_body().collect().await?.to_bytes();
///         Ok::<_, BoxError>(Response::new(body))
///     }));
///
/// let chunks = stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from("he"))),
///                            Ok(Frame::data(Bytes::from("llo")))]);
/// let request = Request::post("http://api.test/").body(StreamBody::new(chunks))?;
/// let response = client.oneshot(request).await?;
/// assert_eq!(response.body(), "hello");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct BufferBodyLayer {
    limit: usize,
    wait: bool,
}

impl BufferBodyLayer {
    /// Buffers bodies of up to `limit` bytes.
    pub fn new(limit: usize) -> BufferBodyLayer {
        BufferBodyLayer { limit, wait: true }
    }

    /// Buffers only what the body has ready at once, and never waits for more: at the
    /// first frame that is not there yet, the request goes on with what was read followed
    /// by the rest of the stream (not sent again after a rejection).
    ///
    /// For bodies the caller produces on the fly, such as a tonic client's messages: a
    /// unary call's message is ready at once and is buffered; a client-streaming or
    /// bidirectional call, whose next message may wait for the server's answer, is never
    /// held back. Over HTTP from a remote peer (a gateway forwarding its caller's body) keep
    /// the default, which waits for the body up to the limit: such a body is rarely ready
    /// in full when the request starts.
    pub fn without_waiting(mut self) -> Self {
        self.wait = false;
        self
    }
}

impl<S> Layer<S> for BufferBodyLayer {
    type Service = BufferBody<S>;

    fn layer(&self, inner: S) -> BufferBody<S> {
        BufferBody {
            inner,
            limit: self.limit,
            wait: self.wait,
        }
    }
}

/// Middleware that reads request bodies into memory up to a limit; see [`BufferBodyLayer`].
#[derive(Clone, Debug)]
pub struct BufferBody<S> {
    inner: S,
    limit: usize,
    wait: bool,
}

impl<S> BufferBody<S> {
    /// Wraps `inner`, buffering bodies of up to `limit` bytes.
    pub fn new(inner: S, limit: usize) -> BufferBody<S> {
        BufferBody {
            inner,
            limit,
            wait: true,
        }
    }

    /// The same as [`BufferBodyLayer::new`].
    pub fn layer(limit: usize) -> BufferBodyLayer {
        BufferBodyLayer::new(limit)
    }

    crate::macros::define_inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for BufferBody<S>
where
    S: Service<Request<ReplayBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BufferFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        if body.is_end_stream() {
            let request = Request::from_parts(parts, ReplayBody::empty());
            return BufferFuture::called(self.inner.call(request));
        }
        // Read before the frames are mapped: `MapFrame` does not pass the size hint on.
        let known = body.size_hint().lower();
        let body = body
            .map_frame(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
            .map_err(Into::into)
            .boxed_unsync();
        let limit = self.limit as u64;
        if known > limit {
            let request = Request::from_parts(parts, ReplayBody::chained(VecDeque::new(), body));
            return BufferFuture::called(self.inner.call(request));
        }
        // Read the body with the service that was made ready; leave a clone for the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        BufferFuture {
            state: State::Reading {
                head: Some(parts),
                body: Some(body),
                chunks: VecDeque::new(),
                len: 0,
                trailers: None,
                limit,
                wait: self.wait,
                inner,
            },
        }
    }
}

pin_project! {
    /// Response future of [`BufferBody`]: reads the body, then calls the inner service.
    pub struct BufferFuture<S>
    where
        S: Service<Request<ReplayBody>>,
    {
        #[pin]
        state: State<S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S>
    where
        S: Service<Request<ReplayBody>>,
    {
        Reading {
            head: Option<Parts>,
            body: Option<UnsyncBoxBody<Bytes, BoxError>>,
            chunks: VecDeque<Bytes>,
            len: u64,
            trailers: Option<HeaderMap>,
            limit: u64,
            wait: bool,
            inner: S,
        },
        Called {
            #[pin]
            future: S::Future,
        },
    }
}

impl<S> BufferFuture<S>
where
    S: Service<Request<ReplayBody>>,
{
    fn called(future: S::Future) -> Self {
        BufferFuture {
            state: State::Called { future },
        }
    }
}

impl<S> Future for BufferFuture<S>
where
    S: Service<Request<ReplayBody>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Reading {
                    head,
                    body,
                    chunks,
                    len,
                    trailers,
                    limit,
                    wait,
                    inner,
                } => {
                    let Some(reading) = body.as_mut() else {
                        panic!("BufferFuture polled after completion");
                    };
                    let too_large = match Pin::new(reading).poll_frame(cx) {
                        // Not there yet: without waiting, what was read goes on first.
                        Poll::Pending if !*wait => true,
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                            Ok(data) => {
                                *len += data.len() as u64;
                                if !data.is_empty() {
                                    chunks.push_back(data);
                                }
                                if *len <= *limit {
                                    continue;
                                }
                                true
                            }
                            Err(frame) => {
                                if let Ok(more) = frame.into_trailers() {
                                    match trailers {
                                        Some(t) => t.extend(more),
                                        None => *trailers = Some(more),
                                    }
                                }
                                continue;
                            }
                        },
                        Poll::Ready(None) => false,
                    };
                    let (Some(head), Some(rest)) = (head.take(), body.take()) else {
                        panic!("BufferFuture polled after completion");
                    };
                    let body = if too_large {
                        // Send what was read, then the rest of the stream.
                        ReplayBody::chained(std::mem::take(chunks), rest)
                    } else {
                        ReplayBody::buffered(concat(chunks, *len), trailers.take())
                    };
                    let future = inner.call(Request::from_parts(head, body));
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}

/// The chunks as one `Bytes`; copied only if there is more than one.
fn concat(chunks: &mut VecDeque<Bytes>, len: u64) -> Bytes {
    if chunks.len() <= 1 {
        return chunks.pop_front().unwrap_or_default();
    }
    let mut buf = BytesMut::with_capacity(len as usize);
    for chunk in chunks.drain(..) {
        buf.extend_from_slice(&chunk);
    }
    buf.freeze()
}

impl<S> fmt::Debug for BufferFuture<S>
where
    S: Service<Request<ReplayBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Reading { .. } => "reading body",
            State::Called { .. } => "called",
        };
        f.debug_struct("BufferFuture")
            .field("state", &state)
            .finish()
    }
}
