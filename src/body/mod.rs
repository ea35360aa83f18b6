//! Request bodies that can be sent twice.
//!
//! After a `401`, the [`OAuth`](crate::OAuth) service sends a request again with a new
//! token, which needs a second copy of its body. Bodies of a few types are copied cheaply
//! (see [`recover`](crate::recover)); a streaming body is not. Put a [`BufferBodyLayer`]
//! above the `OAuthLayer` and bodies up to its size limit are read into memory first, as a
//! [`ReplayBody`] that can be sent again. Nothing here is about OAuth: the same layer makes
//! requests replayable for tower's `Retry` or tower-http's `FollowRedirect`.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_oauth::body::{BufferBodyLayer, ReplayBody};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let client = ServiceBuilder::new()
//!     .layer(BufferBodyLayer::new(64 * 1024)) // bodies up to 64 KiB
//!     .service(service_fn(|req: Request<ReplayBody>| async move {
//!         assert!(req.body().try_clone().is_some()); // can be sent again
//!         let body = req.into_body().collect().await?.to_bytes();
//!         Ok::<_, BoxError>(Response::new(body))
//!     }));
//!
//! let request = Request::post("http://api.test/").body(Full::new(Bytes::from("hi")))?;
//! assert_eq!(client.oneshot(request).await?.body(), "hi");
//! # Ok(())
//! # }
//! ```

mod buffer;
mod replay_body;

pub use buffer::{BufferBody, BufferBodyLayer, BufferFuture};
pub use replay_body::ReplayBody;
