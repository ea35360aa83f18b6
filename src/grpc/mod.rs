//! gRPC (feature `tonic`): tokens on tonic channels, and recovery from `UNAUTHENTICATED`.
//!
//! A tonic `Channel` is a tower `Service<http::Request<tonic::body::Body>>`, so the
//! [`OAuthLayer`] sits in front of it; [`GrpcLayer`] adds what gRPC needs around it:
//!
//! - a rejected token is `grpc-status: 16` (`UNAUTHENTICATED`) in the headers of an HTTP
//!   `200` (a trailers-only answer) as well as an HTTP `401` ([`Grpc`], the policy);
//!   `grpc-status: 7` (`PERMISSION_DENIED`) is passed back untouched;
//! - a unary call's message is buffered (up to [`DEFAULT_BUFFER_LIMIT`] bytes, without
//!   ever waiting for a frame that is not there: see
//!   [`BufferBodyLayer::without_waiting`]), so a rejected call is sent again once with the
//!   new token; streaming calls are not (see [`Grpc`]);
//! - the buffered body goes back into tonic's body type for the channel
//!   ([`IntoTonicBody`]).
//!
//! The stack is `BufferBody` → `OAuth` → `IntoTonicBody` → channel, and takes and gives
//! tonic's types, so a generated client takes it as it takes a channel:
//! `EchoClient::new(ServiceBuilder::new().layer(grpc).service(channel))`. TLS channels
//! (tonic's `tls-*` features, `Endpoint::tls_config`) are channels like any other.
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response};
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_oauth::grpc::{Grpc, GrpcLayer};
//! use tower_oauth::{source_fn, OAuthLayer, Token};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let source = source_fn(|| async { Ok(Token::new("t", Duration::from_secs(3600))) });
//! let oauth = OAuthLayer::builder(source)
//!     .recover_policy(Grpc::new().streaming_method("/echo.Echo/Watch"))
//!     .build();
//! // In a service: `Channel::from_static("http://[::1]:50051").connect().await?`.
//! let channel = service_fn(|req: Request<tonic::body::Body>| async move {
//!     assert_eq!(req.headers()["authorization"], "Bearer t");
//!     Ok::<_, BoxError>(Response::new(tonic::body::Body::empty()))
//! });
//! let client = ServiceBuilder::new().layer(GrpcLayer::new(oauth)).service(channel);
//! let request = Request::post("http://[::1]:50051/echo.Echo/Say")
//!     .body(tonic::body::Body::empty())?;
//! client.oneshot(request).await?;
//! # Ok(())
//! # }
//! ```

mod into_body;
mod policy;

use tower_layer::Layer;

use crate::OAuthLayer;
use crate::body::{BufferBody, BufferBodyLayer};
use crate::oauth::OAuth;

pub use into_body::{IntoTonicBody, IntoTonicBodyLayer};
pub use policy::Grpc;

/// The largest request message [`GrpcLayer`] buffers by default for a second attempt:
/// 64 KiB, which holds typical unary messages. Larger calls go through unbuffered and are
/// not sent again.
pub const DEFAULT_BUFFER_LIMIT: usize = 64 * 1024;

/// The [`OAuthLayer`] for tonic channels: body buffering, the layer, and tonic's body type
/// again. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct GrpcLayer<P = Grpc> {
    oauth: OAuthLayer<P>,
    buffer: BufferBodyLayer,
}

impl<P> GrpcLayer<P> {
    /// Wraps `oauth`, whose [recovery policy](crate::OAuthLayerBuilder::recover_policy) is
    /// usually [`Grpc`]; calls of up to [`DEFAULT_BUFFER_LIMIT`] bytes are buffered.
    pub fn new(oauth: OAuthLayer<P>) -> GrpcLayer<P> {
        GrpcLayer {
            oauth,
            buffer: BufferBodyLayer::new(DEFAULT_BUFFER_LIMIT).without_waiting(),
        }
    }

    /// Buffers request messages of up to `limit` bytes (0: none, so no call is sent
    /// again).
    pub fn buffer_limit(mut self, limit: usize) -> GrpcLayer<P> {
        self.buffer = BufferBodyLayer::new(limit).without_waiting();
        self
    }

    /// The layer's token cache.
    pub fn cache(&self) -> &crate::TokenCache {
        self.oauth.cache()
    }
}

impl<S, P: Clone> Layer<S> for GrpcLayer<P> {
    type Service = BufferBody<OAuth<IntoTonicBody<S>, P>>;

    fn layer(&self, inner: S) -> Self::Service {
        self.buffer
            .layer(self.oauth.layer(IntoTonicBody::new(inner)))
    }
}
