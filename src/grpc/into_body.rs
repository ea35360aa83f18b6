//! [`IntoTonicBody`]: the buffer's [`ReplayBody`] back into tonic's body type.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ReplayBody;

/// Turns `Request<ReplayBody>` into `Request<tonic::body::Body>` for a tonic `Channel` (or
/// any service of tonic's body type) below the [`OAuth`](crate::OAuth) service. One boxed
/// body per call; nothing else.
#[derive(Clone, Debug)]
pub struct IntoTonicBody<S> {
    inner: S,
}

impl<S> IntoTonicBody<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> IntoTonicBody<S> {
        IntoTonicBody { inner }
    }

    crate::macros::define_inner_service_accessors!();
}

impl<S> Service<Request<ReplayBody>> for IntoTonicBody<S>
where
    S: Service<Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReplayBody>) -> S::Future {
        self.inner.call(request.map(tonic::body::Body::new))
    }
}

/// Builds [`IntoTonicBody`] services.
#[derive(Clone, Copy, Debug, Default)]
pub struct IntoTonicBodyLayer;

impl<S> Layer<S> for IntoTonicBodyLayer {
    type Service = IntoTonicBody<S>;

    fn layer(&self, inner: S) -> IntoTonicBody<S> {
        IntoTonicBody::new(inner)
    }
}
