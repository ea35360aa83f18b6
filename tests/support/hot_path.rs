//! The hot path as the measurements see it (`tests/alloc.rs` and the benches through
//! `benches/common`): the no-op inner service, the requests, the static-header layer
//! `OAuthLayer` is compared with, and `OAuthLayer` over an in-process source.
//!
//! Everything here uses the crate's public API only.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Empty, Full};
use tower::Service;
use tower_http::set_header::SetRequestHeaderLayer;
use tower_oauth::{OAuthLayer, Token, TokenSource, source_fn};

/// The access token every layer sends. As long as a typical opaque token.
pub const TOKEN: &str = "2YotnFZFEjr1zCsicMWpAA.bench-token-0123456789abcdef";

/// The lifetime of the measured tokens: long enough never to be refreshed in a run.
pub const LIFETIME: Duration = Duration::from_secs(3600);

/// The inner service: answers at once (a ready future), is `Copy`, allocates nothing.
///
/// It looks at the request (through `black_box`) so the header insertion cannot be
/// optimised away, then drops it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Noop;

impl<B> Service<Request<B>> for Noop {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        std::hint::black_box(&req);
        ready(Ok(Response::new(())))
    }
}

/// A request body that cannot be replayed: a one-shot stream of unknown length, not
/// `Clone` (like a body streamed from a file or a channel). Making one does not allocate.
#[derive(Debug)]
pub struct Streaming {
    chunk: Option<Bytes>,
}

impl Streaming {
    pub fn new() -> Streaming {
        Streaming {
            chunk: Some(Bytes::from_static(b"{\"streamed\":true}")),
        }
    }
}

impl Default for Streaming {
    fn default() -> Self {
        Streaming::new()
    }
}

impl Body for Streaming {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunk.take().map(|c| Ok(Frame::data(c))))
    }

    fn size_hint(&self) -> SizeHint {
        // Unknown length, as for a stream.
        SizeHint::default()
    }
}

/// The request bodies the hot path is measured with. None of them allocates.
pub fn empty_body() -> Empty<Bytes> {
    Empty::new()
}

/// A small JSON body in static bytes: replayable.
pub fn full_body() -> Full<Bytes> {
    Full::new(Bytes::from_static(b"{\"name\":\"value\",\"n\":42}"))
}

pub fn streaming_body() -> Streaming {
    Streaming::new()
}

/// The bare request: `GET /` with `body()`, no headers (`Request::new`).
pub fn bare<B: 'static>(
    body: fn() -> B,
) -> impl Fn() -> Request<B> + Clone + Send + Sync + 'static {
    move || Request::new(body())
}

/// The origins of the per-origin stack; requests with [`to_third_origin`] go to the last.
pub const ORIGINS: [&str; 3] = [
    "https://orders.example.com",
    "https://billing.example.com",
    "https://stock.example.com",
];

/// A bare `GET https://stock.example.com/v1/items` with an `Empty<Bytes>` body: the third
/// of [`ORIGINS`], so a per-origin layer looks at every route.
pub fn to_third_origin() -> impl Fn() -> Request<http_body_util::Empty<bytes::Bytes>> + Clone {
    || {
        let mut request = Request::new(http_body_util::Empty::new());
        *request.uri_mut() = http::Uri::from_static("https://stock.example.com/v1/items");
        request
    }
}

/// A [`PerOriginLayer`](tower_oauth::PerOriginLayer) with a warm token for each of
/// [`ORIGINS`].
pub async fn per_origin_layer() -> tower_oauth::PerOriginLayer {
    let mut layer = tower_oauth::PerOriginLayer::new();
    for origin in ORIGINS {
        let route = oauth_layer(Arc::new(AtomicUsize::new(0)));
        warm(&route).await;
        layer = layer.route(tower_oauth::Origin::parse(origin).expect("origin"), route);
    }
    layer
}

/// The selector of [`keyed_layer`]: the index of the request's host in [`ORIGINS`].
pub type KeyedSelect = fn(&tower_oauth::oauth::keyed::RequestHead<'_>) -> Option<u8>;
/// The maker of [`keyed_layer`]: a layer over an in-process source.
pub type KeyedMake =
    fn(&u8, &tower_oauth::oauth::keyed::RequestHead<'_>) -> Result<OAuthLayer, tower_oauth::Error>;
/// A [`KeyedLayer`](tower_oauth::oauth::keyed::KeyedLayer) over [`Noop`] keyed by origin.
pub type KeyedOrigins = tower_oauth::oauth::keyed::KeyedLayer<u8, KeyedSelect, KeyedMake, Noop>;

/// A [`KeyedLayer`](tower_oauth::oauth::keyed::KeyedLayer) with one key per origin of
/// [`ORIGINS`] (the host's index, no allocation), each key's token warm.
pub async fn keyed_layer() -> KeyedOrigins {
    use tower::{Layer, ServiceExt};
    // The authority as it is (no port, no userinfo in these URIs): no parsing of the host.
    let select: KeyedSelect = |head| {
        let authority = head.uri().authority()?.as_str();
        ORIGINS
            .iter()
            .position(|o| o.as_bytes().get(8..) == Some(authority.as_bytes()))
            .map(|i| i as u8)
    };
    let make: KeyedMake = |_, _| Ok(oauth_layer(Arc::new(AtomicUsize::new(0))));
    let layer = tower_oauth::oauth::keyed::KeyedLayer::new(select, make);
    for origin in ORIGINS {
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.uri_mut() = format!("{origin}/warm").parse().expect("uri");
        layer.layer(Noop).oneshot(request).await.expect("warm");
    }
    layer
}

/// The realistic request: `POST /v1/orders` with `content-type: application/json`,
/// `accept: application/json` and `user-agent: bench/1.0`, and the JSON [`full_body`].
pub fn post() -> impl Fn() -> Request<Full<Bytes>> + Clone + Send + Sync + 'static {
    post_to(Uri::from_static("/v1/orders"))
}

/// [`post`] to `uri` (an absolute one for a real client).
///
/// How the request is built, the same for every stack measured: the three header values
/// are made once, at run time, from `String`s (as an application makes them from its
/// configuration), outside the measured loop; each request clones them. A `HeaderValue`
/// made from a `String` shares its bytes only from its first clone on (that clone
/// allocates the shared state), so each is cloned once here, and a clone per request is a
/// reference count. The header names are the standard ones (no allocation), the body is
/// static bytes, and `uri` is cloned per request.
pub fn post_to(uri: Uri) -> impl Fn() -> Request<Full<Bytes>> + Clone + Send + Sync + 'static {
    let json = shared_value(String::from("application/json"));
    let user_agent = shared_value(String::from("bench/1.0"));
    move || {
        Request::post(uri.clone())
            .header(CONTENT_TYPE, json.clone())
            .header(ACCEPT, json.clone())
            .header(USER_AGENT, user_agent.clone())
            .body(full_body())
            .expect("valid request")
    }
}

/// A header value made from `text` at run time, cloned once so that its later clones are
/// reference counts (see [`post_to`]).
fn shared_value(text: String) -> HeaderValue {
    let value = HeaderValue::try_from(text).expect("valid header value");
    drop(value.clone());
    value
}

/// `Bearer <TOKEN>` built at run time, as a user builds it from a token they hold, marked
/// sensitive like the crate's. It is cloned once here: a `HeaderValue` made from a string
/// shares its bytes only from its first clone on (that clone allocates the shared
/// state), so from here on every clone is a reference count, as with the crate's value.
pub fn bearer_value(token: &str) -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).expect("valid header");
    value.set_sensitive(true);
    drop(value.clone());
    value
}

/// tower-http's `SetRequestHeader` with a fixed `Authorization` value: what a hand-set
/// header costs.
pub fn static_header_layer() -> SetRequestHeaderLayer<HeaderValue> {
    SetRequestHeaderLayer::overriding(AUTHORIZATION, bearer_value(TOKEN))
}

/// An in-process source that hands out [`TOKEN`] for [`LIFETIME`] at once, and counts its
/// fetches.
pub fn token_source(fetches: Arc<AtomicUsize>) -> impl TokenSource + use<> {
    source_fn(move || {
        fetches.fetch_add(1, Ordering::SeqCst);
        async { Ok(Token::new(TOKEN, LIFETIME)) }
    })
}

/// `OAuthLayer` with its defaults over [`token_source`]. The cache is cold; see [`warm`].
pub fn oauth_layer(fetches: Arc<AtomicUsize>) -> OAuthLayer {
    OAuthLayer::new(token_source(fetches))
}

/// The same as [`oauth_layer`] with `replay(false)`: a 401 still invalidates the token,
/// but no copy of the request is kept to send it again. What the replay copy costs is the
/// difference between the two.
pub fn oauth_layer_no_replay(fetches: Arc<AtomicUsize>) -> OAuthLayer {
    OAuthLayer::builder(token_source(fetches))
        .replay(false)
        .build()
}

/// The same as [`oauth_layer`] with recovery off (`recover_on(RecoverOn::Never)`): no
/// reference and no copy kept, answers passed back as they come.
pub fn oauth_layer_off(fetches: Arc<AtomicUsize>) -> OAuthLayer {
    OAuthLayer::builder(token_source(fetches))
        .recover_on(tower_oauth::recover::RecoverOn::Never)
        .build()
}

/// Fills the layer's cache. Must run inside the runtime the measurement uses (the cache
/// spawns its timer task there).
pub async fn warm(layer: &OAuthLayer) {
    layer.cache().token().await.expect("token");
}

/// The end of a reqwest-middleware chain that answers `200` with an empty body and sends
/// nothing: the chain is measured, not the network.
#[cfg(feature = "reqwest-middleware")]
pub struct Answer;

#[cfg(feature = "reqwest-middleware")]
#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Answer {
    async fn handle(
        &self,
        _req: reqwest::Request,
        _extensions: &mut http::Extensions,
        _next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        Ok(reqwest::Response::from(http::Response::new("")))
    }
}
