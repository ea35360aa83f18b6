//! What the integration tests share, written once (as tower's `tests/support.rs`): the
//! in-process authorization server, the interop provider and its API, two loopback origins
//! for redirects, the inner services and token sources the tests put the layer around, the
//! capture of tracing output, the counting allocator, and the requests and layers of the
//! hot-path measurements.
//!
//! Every test binary starts with `mod support;`. The benches use it too, one way only
//! (`benches/common/mod.rs` includes this file with `#[path]`); nothing here includes a
//! bench. Examples that need the token server include `support/auth_server.rs` alone, so
//! that file and `introspection_api.rs` stand on their own.
//!
//! Not every binary uses every part, hence `dead_code` is allowed here.
#![allow(dead_code)]

pub mod alloc;
pub mod auth_server;
#[cfg(feature = "tonic")]
pub mod grpc_echo;
pub mod hot_path;
#[cfg(feature = "reqwest")]
pub mod interop;
#[cfg(feature = "reqwest")]
pub mod introspection_api;
#[cfg(feature = "reqwest")]
pub mod oidc_provider;
pub mod two_origins;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use secrecy::ExposeSecret;
use tower::{BoxError, Service, service_fn};
use tower_oauth::{OAuthLayer, Token, TokenSource, source_fn};

/// The `Authorization` header of `req` as text (`<non-ascii>` if it is not ASCII), or an
/// empty string without one.
pub fn auth_of<B>(req: &Request<B>) -> String {
    auth_in(req.headers())
}

/// The `Authorization` header in `headers` as text (`<non-ascii>` if it is not ASCII), or
/// an empty string without one.
pub fn auth_in(headers: &HeaderMap) -> String {
    headers
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("<non-ascii>").to_owned())
        .unwrap_or_default()
}

/// A response with `code` and an empty body.
pub fn status(code: StatusCode) -> Response<String> {
    Response::builder()
        .status(code)
        .body(String::new())
        .unwrap()
}

/// What a scripted API that rejects `t1` answers to `auth`: 401 to `Bearer t1`, 200 to
/// anything else.
pub fn unauthorized_if_t1(auth: &str) -> StatusCode {
    if auth == "Bearer t1" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    }
}

/// The `Authorization` headers a scripted API has seen, in order; clones share the list.
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    pub fn push(&self, auth: String) {
        self.0.lock().unwrap().push(auth);
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// The access token in `layer`'s cache.
///
/// # Panics
/// If the cache holds none.
pub fn token_value(layer: &OAuthLayer) -> String {
    layer
        .cache()
        .current()
        .expect("a cached token")
        .access_token()
        .expose_secret()
        .to_owned()
}

/// A one-shot streaming body: not `Clone`, of unknown length.
pub type BoxedStream = UnsyncBoxBody<Bytes, BoxError>;

/// A [`BoxedStream`] of `chunks`, one data frame each.
pub fn streaming(chunks: &[&'static [u8]]) -> BoxedStream {
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from_static(c))))
        .collect();
    StreamBody::new(stream::iter(frames)).boxed_unsync()
}

/// An inner service that answers at once with the `Authorization` header it was given as
/// the response body (empty without one).
///
/// A function returning `impl Service`, not a `service_fn` closure written inline: with the
/// closure inline, rustc cannot prove a spawned request future `Send` ("implementation of
/// `From` is not general enough", rust-lang/rust#102211).
pub fn echo_auth<B: Send + 'static>()
-> impl Service<Request<B>, Response = Response<String>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    echo_auth_counting(Arc::default())
}

/// [`echo_auth`] that also counts its calls in `calls`.
pub fn echo_auth_counting<B: Send + 'static>(
    calls: Arc<AtomicUsize>,
) -> impl Service<Request<B>, Response = Response<String>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |req: Request<B>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let auth = auth_of(&req);
        async move { Ok::<_, BoxError>(Response::new(auth)) }
    })
}

/// A source that hands out `t1`, `t2`, ..., each valid for an hour, and counts its fetches
/// in `fetches`.
pub fn counting_source(fetches: Arc<AtomicUsize>) -> impl TokenSource + use<> {
    counting_source_lasting(Duration::from_secs(3600), fetches)
}

/// A source that hands out `t1`, `t2`, ... valid for `lifetime`, and counts its fetches in
/// `fetches`.
pub fn counting_source_lasting(
    lifetime: Duration,
    fetches: Arc<AtomicUsize>,
) -> impl TokenSource + use<> {
    source_fn(move || {
        let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(Token::new(format!("t{n}"), lifetime)) }
    })
}

/// A client-credentials source for the test server's one client.
#[cfg(feature = "reqwest")]
pub fn client_for(server: &auth_server::AuthServer) -> tower_oauth::ClientCredentials {
    tower_oauth::ClientCredentials::builder()
        .token_url(server.token_url())
        .client_id(&server.config().client_id)
        .client_secret(&server.config().client_secret)
        .build()
        .expect("valid configuration")
}

/// Lets the tasks that are due run (the cache's timer task after the paused clock moved,
/// a background fetch that was just spawned): ten yields.
pub async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Collects what a `tracing_subscriber::fmt` subscriber writes; clones share the buffer.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// A `fmt` subscriber that writes every event up to `level`, with its target and
    /// without colours, into this buffer.
    pub fn subscriber(
        &self,
        level: tracing::Level,
    ) -> impl tracing::Subscriber + Send + Sync + use<> {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_target(true)
            .with_writer(move || writer.clone())
            .finish()
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    /// The buffer, also after a test panicked while holding it (a failing test on another
    /// thread must not hide what this one captured).
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
