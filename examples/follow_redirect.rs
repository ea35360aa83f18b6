//! `OAuthLayer` with tower-http's `FollowRedirectLayer`: the token must never follow a
//! redirect to another origin.
//!
//! ```text
//! cargo run --example follow_redirect
//! ```
//!
//! Two servers on loopback play two origins: `A`, the API the token is for, and `B`,
//! somewhere else. `A` answers `/to-b` with a `302` to `B`, and `/to-a` with a `302` to
//! itself. Each server records whether the requests it got carried the token. The example
//! exits non-zero if a placement that should keep the token on `A` lets it reach `B`.
//!
//! # Which order
//!
//! 1. **`OAuthLayer` outside (above) `FollowRedirectLayer`**: the token is set once, on the
//!    request as the caller addressed it. tower-http's `Standard` policy then removes
//!    `Authorization` (with `Cookie` and `Proxy-Authorization`) from a hop to another origin,
//!    and keeps it on a hop within the origin. Safe, with no extra code.
//! 2. **`OAuthLayer` inside (under) `FollowRedirectLayer`**: each hop goes through the layer,
//!    which sets the token on whatever request it is given; the redirect policy cannot
//!    remove a header that is added after it. So inside, the layer must be told which origin
//!    the token is for: here by a small service that sends only requests for `A` through the
//!    layer and every other request around it.
//! 3. **Inside, with nothing to restrict it**, the token reaches `B`. The example shows
//!    this too, so that nobody builds it.
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::follow_redirect::{FollowRedirectLayer, RequestUri};
use tower_oauth::{OAuthLayer, Token, source_fn};

const TOKEN: &str = "token-for-origin-a";

/// One origin: how many requests it got, and how many of them carried the token.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    with_token: AtomicUsize,
}

async fn landing(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> Response {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
    if authorized {
        seen.with_token.fetch_add(1, Ordering::SeqCst);
    }
    (
        StatusCode::OK,
        if authorized { "token" } else { "no token" },
    )
        .into_response()
}

async fn start(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// `(scheme, host, port)` of a URI, the port defaulted from the scheme.
fn origin(uri: &Uri) -> Option<(String, String, u16)> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some((scheme, uri.host()?.to_ascii_lowercase(), port))
}

/// Sends requests for one origin through `authorized` (the `OAuth` service) and all others
/// through `plain` (the same client without it).
#[derive(Clone)]
struct ForOrigin<A, P> {
    origin: (String, String, u16),
    authorized: A,
    plain: P,
}

impl<A, P, B, R> Service<Request<B>> for ForOrigin<A, P>
where
    A: Service<Request<B>, Response = R, Error = BoxError> + Clone + Send + 'static,
    A::Future: Send,
    P: Service<Request<B>, Response = R> + Clone + Send + 'static,
    P::Error: Into<BoxError>,
    P::Future: Send,
    B: Send + 'static,
{
    type Response = R;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<R, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each call readies the service it picks (oneshot).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if origin(req.uri()).as_ref() == Some(&self.origin) {
            Box::pin(self.authorized.clone().oneshot(req))
        } else {
            let plain = self.plain.clone();
            Box::pin(async move { plain.oneshot(req).await.map_err(Into::into) })
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let seen_a = Arc::new(Seen::default());
    let seen_b = Arc::new(Seen::default());
    let b = start(
        Router::new()
            .route("/landing", get(landing))
            .with_state(seen_b.clone()),
    )
    .await;
    let to_b = format!("http://{b}/landing");
    let a = start(
        Router::new()
            .route("/landing", get(landing))
            .route("/to-a", get(|| async { Redirect::to("/landing") }))
            .route("/to-b", get(move || async move { Redirect::to(&to_b) }))
            .with_state(seen_a.clone()),
    )
    .await;
    println!("origin A (the API) http://{a}, origin B (elsewhere) http://{b}\n");

    let oauth = OAuthLayer::new(source_fn(|| async {
        Ok(Token::new(TOKEN, Duration::from_secs(3600)))
    }));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let origin_a = origin(&format!("http://{a}/").parse().unwrap()).unwrap();

    // 1. OAuthLayer outside FollowRedirectLayer.
    let outside = ServiceBuilder::new()
        .layer(oauth.clone())
        .layer(FollowRedirectLayer::new())
        .service(client.clone());
    // 2. Inside, restricted to origin A.
    let inside_for_a = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .service(ForOrigin {
            origin: origin_a,
            authorized: oauth.layer(client.clone()),
            plain: client.clone(),
        });
    // 3. Inside, unrestricted: what not to build.
    let inside_unrestricted = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(oauth.clone())
        .service(client.clone());

    let mut ok = true;
    ok &= check(
        "OAuthLayer outside FollowRedirectLayer",
        outside,
        a,
        &seen_a,
        &seen_b,
        true,
    )
    .await;
    ok &= check(
        "OAuthLayer inside FollowRedirectLayer, for origin A only",
        inside_for_a,
        a,
        &seen_a,
        &seen_b,
        true,
    )
    .await;
    check(
        "OAuthLayer inside FollowRedirectLayer, unrestricted (do not use)",
        inside_unrestricted,
        a,
        &seen_a,
        &seen_b,
        false,
    )
    .await;

    println!("result: {}", if ok { "OK" } else { "FAILED" });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Follows `/to-a` and `/to-b` with `svc`; prints where the token went. With `must_hold`,
/// returns false if the token reached B or did not reach A.
async fn check<S, E>(
    name: &str,
    svc: S,
    a: SocketAddr,
    seen_a: &Seen,
    seen_b: &Seen,
    must_hold: bool,
) -> bool
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>, Error = E>
        + Clone,
    E: std::fmt::Display,
{
    println!("{name}");
    let mut holds = true;
    for (path, dest, seen) in [("/to-a", "A", seen_a), ("/to-b", "B", seen_b)] {
        let before = seen.with_token.load(Ordering::SeqCst);
        let requests_before = seen.requests.load(Ordering::SeqCst);
        let request = Request::get(format!("http://{a}{path}"))
            .body(Full::default())
            .unwrap();
        let response = match svc.clone().oneshot(request).await {
            Ok(response) => response,
            Err(e) => {
                println!("  GET A{path}: error {e}");
                return false;
            }
        };
        let landed = response
            .extensions()
            .get::<RequestUri>()
            .map(|u| u.0.to_string())
            .unwrap_or_default();
        let reached = seen.requests.load(Ordering::SeqCst) > requests_before;
        let got_token = seen.with_token.load(Ordering::SeqCst) > before;
        println!(
            "  GET A{path} -> {} at {landed}: {dest} {}",
            response.status(),
            if got_token {
                "received the token"
            } else {
                "did not receive the token"
            }
        );
        let expected = dest == "A";
        if !reached || got_token != expected {
            holds = false;
        }
    }
    if must_hold && !holds {
        println!("  FAILED: the token went where it must not, or not where it must");
    } else if !must_hold && !holds {
        println!("  (the token reached origin B)");
    }
    println!();
    holds || !must_hold
}
