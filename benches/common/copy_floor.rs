//! A floor under the defaults of `OAuth<S>`: what a middleware pays that sets a header
//! itself (with `HeaderMap::insert`, as `OAuth<S>` does, not through tower-http's
//! `SetRequestHeader`) and keeps a copy of the request beside the inner future until that
//! future is done, to be able to send the request a second time, with no token at all. The
//! copy is what `OAuth<S>` keeps with its defaults (method, URI, version, extensions, the
//! header fields as a boxed slice, a clone of the body), built the same way, without the
//! slot read, the policy and the recovery state. The bench's figure is a floor for this
//! layout of the copy, with no allocation for a bare request; other layouts were not
//! measured.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Extensions, HeaderName, HeaderValue, Method, Request, Uri, Version};
use tower::{Layer, Service};

/// Layer of [`CopyFloor`]: sets `value` as `Authorization` and keeps a copy of the request.
#[derive(Clone)]
pub struct CopyFloorLayer {
    value: HeaderValue,
}

impl CopyFloorLayer {
    /// A layer that sets `value` (a ready `Bearer ...` value) on every request.
    pub fn new(value: HeaderValue) -> CopyFloorLayer {
        CopyFloorLayer { value }
    }
}

impl<S> Layer<S> for CopyFloorLayer {
    type Service = CopyFloor<S>;
    fn layer(&self, inner: S) -> CopyFloor<S> {
        CopyFloor {
            inner,
            value: self.value.clone(),
        }
    }
}

/// The service of [`CopyFloorLayer`]: `inner`, with `value` set as `Authorization` and a
/// copy of each request kept until its answer.
#[derive(Clone)]
pub struct CopyFloor<S> {
    inner: S,
    value: HeaderValue,
}

/// The copy: the fields `OAuth<S>`'s copy has, no more (never read: the bench measures
/// keeping it).
#[allow(dead_code)]
pub struct RequestCopy<B> {
    method: Method,
    uri: Uri,
    version: Version,
    headers: Box<[(HeaderName, HeaderValue)]>,
    extensions: Extensions,
    body: B,
}

impl<S, B> Service<Request<B>> for CopyFloor<S>
where
    S: Service<Request<B>>,
    S::Future: Unpin,
    B: Clone + Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CopyFloorFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline(always)]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let headers: Box<[(HeaderName, HeaderValue)]> = if req.headers().is_empty() {
            Box::new([])
        } else {
            let mut headers = Vec::with_capacity(req.headers().len());
            headers.extend(
                req.headers()
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone())),
            );
            headers.into_boxed_slice()
        };
        let copy = RequestCopy {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers,
            extensions: req.extensions().clone(),
            body: req.body().clone(),
        };
        req.headers_mut().insert(AUTHORIZATION, self.value.clone());
        CopyFloorFuture {
            future: self.inner.call(req),
            copy,
        }
    }
}

/// The inner future, and the copy, dropped with it.
pub struct CopyFloorFuture<F, B> {
    future: F,
    #[allow(dead_code)] // kept, never read: the bench measures keeping it
    copy: RequestCopy<B>,
}

impl<F: Future + Unpin, B: Unpin> Future for CopyFloorFuture<F, B> {
    type Output = F::Output;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.future).poll(cx)
    }
}
