//! [`ReqwestService`]: a [`reqwest::Client`] as a tower `Service<http::Request<B>>`, so that
//! an [`OAuthLayer`](crate::OAuthLayer) (or any tower layer) goes on top of it (feature
//! `reqwest`).
//!
//! ```
//! use std::time::Duration;
//! use http_body_util::BodyExt;
//! use tower::{BoxError, ServiceBuilder, ServiceExt};
//! use tower_oauth::{source_fn, OAuthLayer, ReqwestService, Token};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! # // An API on loopback that answers with the `Authorization` header it was sent.
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let url = format!("http://{}/v1/things", listener.local_addr()?);
//! # let api = axum::Router::new().route(
//! #     "/v1/things",
//! #     axum::routing::get(|headers: http::HeaderMap| async move {
//! #         headers[http::header::AUTHORIZATION].to_str().unwrap().to_owned()
//! #     }),
//! # );
//! # tokio::spawn(async move { axum::serve(listener, api).await });
//! let layer = OAuthLayer::new(source_fn(|| async {
//!     Ok(Token::new("s3cr3t", Duration::from_secs(3600)))
//! }));
//! let client = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(ReqwestService::new(reqwest::Client::new()));
//!
//! let request = http::Request::get(&url).body(String::new())?;
//! let response = client.oneshot(request).await?;
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "Bearer s3cr3t");
//! # Ok(())
//! # }
//! ```
//!
//! # What it does
//!
//! Each call turns the `http::Request<B>` into a [`reqwest::Request`] (`TryFrom`, which
//! parses the URI as a URL: a relative URI is an error), sends it with the client's
//! `Service` implementation (`Client::execute`) and turns the answer into an
//! `http::Response<reqwest::Body>` (`From<reqwest::Response>`): status, version, headers and
//! extensions as reqwest gives them, the body streamed. Nothing is buffered, nothing is
//! retried, no future is boxed: the response future is the client's own plus a state for
//! a request that could not be converted.
//!
//! # Errors
//!
//! The error type is [`reqwest::Error`]: a request whose URI is not an absolute URL gives
//! one with [`is_builder`](reqwest::Error::is_builder) (and nothing is sent); everything
//! else is reqwest's own (connect, timeout, redirect, body). Under an `OAuthLayer` the
//! error is the layer's `BoxError`: downcast it to `reqwest::Error`, or to
//! [`tower_oauth::Error`](crate::Error) when no token could be had.
//!
//! # 401 recovery and bodies
//!
//! The layer sees the request as `http::Request<B>`, so its [policy](crate::recover::Policy)
//! copies `B` before the first attempt: `String`, `Bytes`, `Vec<u8>`, `&'static str` and
//! `&'static [u8]` are copied by [`Standard`](crate::recover::Standard) and sent again after
//! a `401`. A [`reqwest::Body`] is not: the caller gets the `401` and the next request goes
//! out with a new token (a body of yours is made replayable with
//! [`clone_body_fn`](crate::OAuthLayerBuilder::clone_body_fn)).
//!
//! # Redirects
//!
//! reqwest follows redirects inside `Client::execute`, below the layer, so the layer's
//! origin check sees the first URL only. reqwest's redirect policy (the default follows up
//! to 10 hops) removes `Authorization` (with `Cookie` and `Proxy-Authorization`) from a
//! hop to another scheme, host or port, so a redirect to another origin never carries the
//! token; a redirect to another path of the same origin keeps it. A client built with
//! `redirect::Policy::none()` gives the `3xx` back to the caller. With the
//! `follow-redirect` feature (default) the response carries the URL of the last hop as
//! tower-http's [`RequestUri`](tower_http::follow_redirect::RequestUri) extension, as
//! tower-http's own `FollowRedirect` does: the layer then keeps its token when a `401` comes
//! from another origin than the one it was sent to.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_service::Service;

/// A [`reqwest::Client`] as a tower `Service<http::Request<B>>` for any body `B` that
/// converts `Into<reqwest::Body>`, answering `http::Response<reqwest::Body>`. See the
/// [module docs](self).
///
/// Cheap to clone (the client is a reference count).
#[derive(Clone, Debug, Default)]
pub struct ReqwestService {
    inner: reqwest::Client,
}

impl ReqwestService {
    /// A service that sends its requests with `client` (its redirect policy, timeouts,
    /// proxies and connection pool).
    pub fn new(client: reqwest::Client) -> ReqwestService {
        ReqwestService { inner: client }
    }

    /// The client.
    pub fn get_ref(&self) -> &reqwest::Client {
        &self.inner
    }

    /// The client, to replace it.
    pub fn get_mut(&mut self) -> &mut reqwest::Client {
        &mut self.inner
    }

    /// The client.
    pub fn into_inner(self) -> reqwest::Client {
        self.inner
    }
}

impl From<reqwest::Client> for ReqwestService {
    fn from(client: reqwest::Client) -> ReqwestService {
        ReqwestService::new(client)
    }
}

impl<B: Into<reqwest::Body>> Service<http::Request<B>> for ReqwestService {
    type Response = http::Response<reqwest::Body>;
    type Error = reqwest::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<reqwest::Request>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: http::Request<B>) -> ResponseFuture {
        let state = match reqwest::Request::try_from(req) {
            Ok(req) => State::Sent {
                future: self.inner.call(req),
            },
            Err(error) => State::Invalid { error: Some(error) },
        };
        ResponseFuture { state }
    }
}

/// The client's own future (reqwest's `Pending`), which cannot be named otherwise.
type Pending = <reqwest::Client as Service<reqwest::Request>>::Future;

pin_project! {
    /// Response future of [`ReqwestService`]: reqwest's own future, or the error of a
    /// request that could not be converted.
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Sent {
            #[pin]
            future: Pending,
        },
        Invalid {
            error: Option<reqwest::Error>,
        },
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<reqwest::Body>, reqwest::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sent { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(into_http(response)))
            }
            StateProj::Invalid { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                None => panic!("ResponseFuture polled after completion"),
            },
        }
    }
}

/// The answer as an `http::Response`, with the last hop's URL as tower-http's
/// `RequestUri` (feature `follow-redirect`).
fn into_http(response: reqwest::Response) -> http::Response<reqwest::Body> {
    #[cfg(feature = "follow-redirect")]
    let last = response.url().as_str().parse::<http::Uri>().ok();
    #[allow(unused_mut)]
    let mut response = http::Response::from(response);
    #[cfg(feature = "follow-redirect")]
    if let Some(last) = last {
        response
            .extensions_mut()
            .insert(tower_http::follow_redirect::RequestUri(last));
    }
    response
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Sent { .. } => "Sent",
            State::Invalid { .. } => "Invalid",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_relative_uri_is_a_builder_error_and_nothing_is_sent() {
        let mut service = ReqwestService::default();
        let error = service
            .call(
                http::Request::get("/no/origin")
                    .body(String::new())
                    .unwrap(),
            )
            .await
            .unwrap_err();
        assert!(error.is_builder(), "{error:?}");
    }

    #[test]
    fn the_service_and_its_future_can_go_to_another_task() {
        fn send<T: Send + 'static>() {}
        send::<ResponseFuture>();
        send::<ReqwestService>();
    }
}
