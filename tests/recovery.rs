//! 401 recovery: the rejected token is invalidated (only if it is still the cached one), a
//! new one is fetched through the single flight, and the request is sent again once.

#[path = "support/auth_server.rs"]
mod auth_server;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth_server::AuthServer;
use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, Response, StatusCode, header::AUTHORIZATION};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secrecy::ExposeSecret;
use tokio::sync::{Barrier, Notify};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_oauth::body::{BufferBodyLayer, ReplayBody};
use tower_oauth::recover::RecoverOn;
use tower_oauth::{ClientCredentials, OAuthLayer, Token, TokenSource, source_fn};

/// A source that hands out `t1`, `t2`, ... and counts its fetches.
fn counting_source(fetches: Arc<AtomicUsize>) -> impl TokenSource {
    source_fn(move || {
        let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(Token::new(format!("t{n}"), Duration::from_secs(3600))) }
    })
}

fn source_for(server: &AuthServer) -> ClientCredentials {
    ClientCredentials::builder()
        .token_url(server.token_url())
        .client_id(&server.config().client_id)
        .client_secret(&server.config().client_secret)
        .build()
        .expect("valid configuration")
}

fn auth_of<B>(req: &Request<B>) -> String {
    req.headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn status(code: StatusCode) -> Response<String> {
    Response::builder()
        .status(code)
        .body(String::new())
        .unwrap()
}

/// The `Authorization` headers the scripted API has seen, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, auth: String) {
        self.0.lock().unwrap().push(auth);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// An API that rejects `t1` with a 401 and accepts any other token.
fn rejects_t1<B: Send + 'static>(
    seen: Seen,
) -> impl Service<Request<B>, Response = Response<String>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |req: Request<B>| {
        let auth = auth_of(&req);
        seen.push(auth.clone());
        let code = if auth == "Bearer t1" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        async move { Ok::<_, BoxError>(status(code)) }
    })
}

fn token_value(layer: &OAuthLayer) -> String {
    layer
        .cache()
        .current()
        .expect("a cached token")
        .access_token()
        .expose_secret()
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// The numbers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn revoke_then_recover_over_hyper_on_loopback() {
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::new(source_for(&server));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(client);
    let get = || {
        Request::get(server.api_url())
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    let first = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let t1 = token_value(&layer);
    assert_eq!(server.token_requests(), 1);

    assert!(server.revoke(&t1));
    let api_before = server.api_stats();
    let second = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let body = second.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok /api");

    let t2 = token_value(&layer);
    assert_ne!(t1, t2);
    assert_eq!(server.token_requests(), 2);
    let api_after = server.api_stats();
    let attempts =
        (api_after.accepted + api_after.rejected()) - (api_before.accepted + api_before.rejected());
    assert_eq!(attempts, 2, "the second call reached the API exactly twice");
    assert_eq!(api_after.revoked, 1);
    assert_eq!(api_after.accepted, 2);
    assert_eq!(server.api_requests_with(&t1), 2);
    assert_eq!(server.api_requests_with(&t2), 1);
}

/// What the demo does: revoke every token on the server while requests keep going. Here
/// in waves, so that the numbers are exact: each revocation costs exactly 1 token request
/// and no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_all_tokens_between_waves_of_50_over_hyper_fails_no_request() {
    const WAVES: usize = 5;
    const N: usize = 50;
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::new(source_for(&server));
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(client);

    let mut failed = 0;
    for wave in 0..=WAVES {
        if wave > 0 {
            server.revoke_all();
        }
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let req = Request::get(format!("{}/wave/{wave}/{i}", server.api_url()))
                    .body(Empty::new())
                    .unwrap();
                tokio::spawn(svc.clone().oneshot(req))
            })
            .collect();
        for task in tasks {
            match task.await.unwrap() {
                Ok(res) if res.status() == StatusCode::OK => {}
                _ => failed += 1,
            }
        }
        assert_eq!(server.token_requests(), 1 + wave, "wave {wave}");
    }
    assert_eq!(failed, 0);
    let stats = server.api_stats();
    assert_eq!(stats.accepted, (WAVES + 1) * N);
    assert_eq!(stats.invalid_without_revocation(), 0);
}

#[tokio::test]
async fn always_401_makes_two_attempts_two_token_requests_and_returns_the_401() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let seen = Seen::default();
    let api = {
        let seen = seen.clone();
        service_fn(move |req: Request<String>| {
            seen.push(auth_of(&req));
            async move {
                let mut res = status(StatusCode::UNAUTHORIZED);
                res.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    "Bearer error=\"invalid_token\"".parse().unwrap(),
                );
                *res.body_mut() = "first-or-second".into();
                Ok::<_, BoxError>(res)
            }
        })
    };
    let svc = OAuthLayer::new(counting_source(fetches.clone())).layer(api);

    let res = svc.oneshot(Request::new(String::new())).await.unwrap();

    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[http::header::WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\"",
        "the 401 comes back as it came"
    );
    assert_eq!(seen.count(), 2);
    assert_eq!(seen.all(), ["Bearer t1", "Bearer t2"]);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

// The scripted services that tests spawn requests to are built by functions returning
// `impl Service<.., Error = BoxError>`: with a `service_fn` closure written inline, rustc
// cannot prove the spawned future `Send` ("implementation of `From` is not general
// enough", rust-lang/rust#102211), with or without this crate's layer.

/// Rejects `t1` once all `barrier`'s requests with it are in flight; echoes other tokens.
fn gated_rejects_t1(
    seen: Seen,
    barrier: Arc<Barrier>,
) -> impl Service<Request<String>, Response = Response<String>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |req: Request<String>| {
        let auth = auth_of(&req);
        seen.push(auth.clone());
        let barrier = barrier.clone();
        async move {
            if auth == "Bearer t1" {
                barrier.wait().await;
                return Ok::<_, BoxError>(status(StatusCode::UNAUTHORIZED));
            }
            Ok(Response::new(auth))
        }
    })
}

/// Holds a request with `t1` until `release`, then rejects it; echoes other tokens.
fn held_rejects_t1(
    seen: Seen,
    arrived: Arc<Notify>,
    release: Arc<Notify>,
) -> impl Service<Request<String>, Response = Response<String>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |req: Request<String>| {
        let auth = auth_of(&req);
        seen.push(auth.clone());
        let (arrived, release) = (arrived.clone(), release.clone());
        async move {
            if auth == "Bearer t1" {
                arrived.notify_one();
                release.notified().await;
                return Ok::<_, BoxError>(status(StatusCode::UNAUTHORIZED));
            }
            Ok(Response::new(auth))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_401s_on_one_token_make_exactly_one_token_request() {
    const N: usize = 50;
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::new(counting_source(fetches.clone()));
    layer.cache().token().await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // Every request with t1 waits until all 50 are in flight, then all get their 401.
    let seen = Seen::default();
    let api = gated_rejects_t1(seen.clone(), Arc::new(Barrier::new(N)));
    let svc = layer.layer(api);
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(Request::new(String::new())).await })
        })
        .collect();
    for task in tasks {
        let res = task.await.unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.body(), "Bearer t2");
    }

    assert_eq!(
        fetches.load(Ordering::SeqCst) - 1,
        1,
        "exactly 1 token request for 50 rejections"
    );
    let seen = seen.all();
    assert_eq!(seen.len(), 2 * N);
    assert_eq!(seen.iter().filter(|a| *a == "Bearer t1").count(), N);
    assert_eq!(seen.iter().filter(|a| *a == "Bearer t2").count(), N);
}

#[tokio::test]
async fn late_401_for_t1_after_t2_is_cached_makes_no_token_request_and_replays_with_t2() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::new(counting_source(fetches.clone()));
    layer.cache().token().await.unwrap();

    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let seen = Seen::default();
    let api = held_rejects_t1(seen.clone(), arrived.clone(), release.clone());
    let svc = layer.layer(api);
    let pending = tokio::spawn(svc.oneshot(Request::new(String::new())));
    arrived.notified().await;

    // Meanwhile t1 is replaced by t2.
    layer.cache().refresh().await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    release.notify_one();

    let res = pending.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "Bearer t2", "the replay carries t2");
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "0 token requests for the late 401"
    );
    assert_eq!(token_value(&layer), "t2", "t2 was not thrown away");
    assert_eq!(seen.all(), ["Bearer t1", "Bearer t2"]);
}

#[tokio::test]
async fn post_with_full_bytes_is_replayed_byte_identical_over_hyper() {
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::new(source_for(&server));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(client);
    layer.cache().token().await.unwrap();
    let t1 = token_value(&layer);
    assert!(server.revoke(&t1));

    // Every byte value, several times over, and not valid UTF-8.
    let payload: Bytes = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect::<Vec<u8>>()
        .into();
    let req = Request::post(server.api_url())
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(Full::new(payload.clone()))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();

    assert_eq!(res.status(), StatusCode::OK);
    let echoed = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "the replayed body is byte-identical");
    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.api_requests_with(&t1), 1);
    assert_eq!(server.api_stats().accepted, 1);
}

type Streaming = UnsyncBoxBody<Bytes, BoxError>;

fn streaming(chunks: &[&'static [u8]]) -> Streaming {
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from_static(c))))
        .collect();
    StreamBody::new(stream::iter(frames)).boxed_unsync()
}

#[tokio::test]
async fn post_with_a_streaming_body_is_not_replayed_and_the_next_call_uses_a_new_token() {
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::new(source_for(&server));
    let client = Client::builder(TokioExecutor::new()).build_http::<Streaming>();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(client);
    layer.cache().token().await.unwrap();
    let t1 = token_value(&layer);
    assert!(server.revoke(&t1));

    let post = |chunks| {
        Request::post(server.api_url())
            .body(streaming(chunks))
            .unwrap()
    };
    let res = svc
        .clone()
        .oneshot(post(&[b"part one, ", b"part two"]))
        .await
        .unwrap();

    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "the caller gets the 401"
    );
    let stats = server.api_stats();
    assert_eq!(
        stats.accepted + stats.rejected(),
        1,
        "1 attempt reached the API"
    );
    assert_eq!(server.api_requests_with(&t1), 1);
    assert_eq!(
        server.token_requests(),
        1,
        "no token request before the next call"
    );
    assert!(layer.cache().current().is_none(), "t1 was invalidated");

    let res = svc.oneshot(post(&[b"again"])).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "again");
    assert_eq!(server.token_requests(), 2);
    let t2 = token_value(&layer);
    assert_ne!(t1, t2);
    assert_eq!(
        server.api_requests_with(&t2),
        1,
        "the next call used the new token"
    );
}

#[tokio::test]
async fn forbidden_403_is_not_retried_and_invalidates_nothing() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::new(counting_source(fetches.clone()));
    let seen = Seen::default();
    let api = {
        let seen = seen.clone();
        service_fn(move |req: Request<String>| {
            seen.push(auth_of(&req));
            async move {
                let mut res = status(StatusCode::FORBIDDEN);
                res.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    "Bearer error=\"insufficient_scope\", scope=\"admin\""
                        .parse()
                        .unwrap(),
                );
                Ok::<_, BoxError>(res)
            }
        })
    };
    let res = layer
        .layer(api)
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();

    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(seen.count(), 1, "1 attempt");
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "0 extra token requests");
    assert_eq!(token_value(&layer), "t1", "nothing invalidated");
}

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

/// An API that answers `t1` with a 401 carrying `challenge` (if any) and accepts others.
fn rejects_t1_with(
    seen: Seen,
    challenge: Option<&'static str>,
) -> impl Service<Request<String>, Response = Response<String>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |req: Request<String>| {
        let auth = auth_of(&req);
        seen.push(auth.clone());
        let mut res = Response::new(auth.clone());
        if auth == "Bearer t1" {
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            if let Some(c) = challenge {
                res.headers_mut()
                    .insert(http::header::WWW_AUTHENTICATE, c.parse().unwrap());
            }
        }
        async move { Ok::<_, BoxError>(res) }
    })
}

#[tokio::test]
async fn invalid_token_mode_recovers_only_on_the_bearer_invalid_token_challenge() {
    for (challenge, recovered) in [
        (None, false),
        (Some("Bearer realm=\"api\""), false),
        (
            Some("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"revoked\""),
            true,
        ),
    ] {
        let fetches = Arc::new(AtomicUsize::new(0));
        let layer = OAuthLayer::builder(counting_source(fetches.clone()))
            .recover_on(RecoverOn::InvalidToken)
            .build();
        let seen = Seen::default();
        let res = layer
            .layer(rejects_t1_with(seen.clone(), challenge))
            .oneshot(Request::new(String::new()))
            .await
            .unwrap();
        if recovered {
            assert_eq!(res.status(), StatusCode::OK, "{challenge:?}");
            assert_eq!(seen.all(), ["Bearer t1", "Bearer t2"]);
            assert_eq!(fetches.load(Ordering::SeqCst), 2);
        } else {
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{challenge:?}");
            assert_eq!(seen.all(), ["Bearer t1"]);
            assert_eq!(fetches.load(Ordering::SeqCst), 1);
            assert_eq!(token_value(&layer), "t1", "not invalidated");
        }
    }
}

#[tokio::test]
async fn recover_on_never_passes_the_401_back_and_keeps_the_token() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::builder(counting_source(fetches.clone()))
        .recover_on(RecoverOn::Never)
        .build();
    let seen = Seen::default();
    let mut svc = layer.layer(rejects_t1::<String>(seen.clone()));
    for _ in 0..3 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(String::new()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(seen.all(), ["Bearer t1"; 3]);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn replay_off_invalidates_the_token_but_sends_nothing_again() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::builder(counting_source(fetches.clone()))
        .replay(false)
        .build();
    let seen = Seen::default();
    let mut svc = layer.layer(rejects_t1::<String>(seen.clone()));

    let res = svc.ready().await.unwrap().call(Request::new(String::new()));
    assert_eq!(res.await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(seen.count(), 1);
    assert!(layer.cache().current().is_none(), "t1 invalidated");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    let res = svc.ready().await.unwrap().call(Request::new(String::new()));
    assert_eq!(res.await.unwrap().status(), StatusCode::OK);
    assert_eq!(seen.all(), ["Bearer t1", "Bearer t2"]);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn replaying_non_idempotent_methods_can_be_turned_off() {
    for (method, replayed) in [
        (Method::POST, false),
        (Method::PATCH, false),
        (Method::PUT, true),
        (Method::DELETE, true),
        (Method::GET, true),
    ] {
        let fetches = Arc::new(AtomicUsize::new(0));
        let layer = OAuthLayer::builder(counting_source(fetches.clone()))
            .replay_non_idempotent(false)
            .build();
        let seen = Seen::default();
        let req = Request::builder()
            .method(method.clone())
            .body(String::from("body"))
            .unwrap();
        let res = layer
            .layer(rejects_t1::<String>(seen.clone()))
            .oneshot(req)
            .await
            .unwrap();
        let expected = if replayed {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(res.status(), expected, "{method}");
        assert_eq!(seen.count(), if replayed { 2 } else { 1 }, "{method}");
        assert!(
            replayed || layer.cache().current().is_none(),
            "{method}: t1 invalidated all the same"
        );
    }
}

#[tokio::test]
async fn non_idempotent_methods_are_replayed_by_default() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::new(counting_source(fetches.clone()));
    let seen = Seen::default();
    let req = Request::post("/orders").body(String::from("{}")).unwrap();
    let res = layer
        .layer(rejects_t1::<String>(seen.clone()))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.all(), ["Bearer t1", "Bearer t2"]);
}

/// A body type the crate does not know.
struct Custom(Vec<u8>);

#[tokio::test]
async fn a_clone_body_fn_makes_a_custom_body_replayable() {
    let replayed_bodies = Arc::new(Mutex::new(Vec::new()));
    let api = |bodies: Arc<Mutex<Vec<Vec<u8>>>>, seen: Seen| {
        service_fn(move |req: Request<Custom>| {
            let auth = auth_of(&req);
            seen.push(auth.clone());
            bodies.lock().unwrap().push(req.body().0.clone());
            let code = if auth == "Bearer t1" {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::OK
            };
            async move { Ok::<_, BoxError>(status(code)) }
        })
    };

    // Without a function: not replayed.
    let seen = Seen::default();
    let layer = OAuthLayer::new(counting_source(Arc::new(AtomicUsize::new(0))));
    let res = layer
        .layer(api(replayed_bodies.clone(), seen.clone()))
        .oneshot(Request::new(Custom(b"abc".to_vec())))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(seen.count(), 1);

    // With one: replayed with the copy.
    replayed_bodies.lock().unwrap().clear();
    let seen = Seen::default();
    let layer = OAuthLayer::builder(counting_source(Arc::new(AtomicUsize::new(0))))
        .clone_body_fn(|b: &Custom| Some(Custom(b.0.clone())))
        .build();
    let res = layer
        .layer(api(replayed_bodies.clone(), seen.clone()))
        .oneshot(Request::new(Custom(b"abc".to_vec())))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.all(), ["Bearer t1", "Bearer t2"]);
    assert_eq!(
        *replayed_bodies.lock().unwrap(),
        [b"abc".to_vec(), b"abc".to_vec()]
    );
}

#[tokio::test]
async fn empty_bodies_are_replayed() {
    let seen = Seen::default();
    let layer = OAuthLayer::new(counting_source(Arc::new(AtomicUsize::new(0))));
    let res = layer
        .layer(rejects_t1::<Empty<Bytes>>(seen.clone()))
        .oneshot(Request::new(Empty::new()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.count(), 2);
}

#[tokio::test]
async fn the_replay_keeps_method_uri_headers_and_extensions() {
    #[derive(Clone, Debug, PartialEq)]
    struct Tag(u32);
    let heads = Arc::new(Mutex::new(Vec::new()));
    let api = {
        let heads = heads.clone();
        service_fn(move |req: Request<Bytes>| {
            let auth = auth_of(&req);
            heads.lock().unwrap().push((
                req.method().clone(),
                req.uri().clone(),
                req.headers().get("x-request-id").cloned(),
                req.extensions().get::<Tag>().cloned(),
                req.body().clone(),
            ));
            let code = if auth == "Bearer t1" {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::OK
            };
            async move { Ok::<_, BoxError>(status(code)) }
        })
    };
    let layer = OAuthLayer::new(counting_source(Arc::new(AtomicUsize::new(0))));
    let req = Request::put("https://api.test/items/7?x=1")
        .header("x-request-id", "abc-123")
        .extension(Tag(9))
        .body(Bytes::from_static(b"payload"))
        .unwrap();
    let res = layer.layer(api).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 2);
    assert_eq!(heads[0], heads[1]);
    assert_eq!(heads[1].0, Method::PUT);
    assert_eq!(heads[1].1, "https://api.test/items/7?x=1");
    assert_eq!(heads[1].3, Some(Tag(9)));
    assert_eq!(heads[1].4, "payload");
}

#[tokio::test]
async fn a_401_to_a_request_that_waited_for_its_token_is_recovered_too() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::new(counting_source(fetches.clone()));
    assert!(layer.cache().current().is_none(), "cold cache");
    let seen = Seen::default();
    let res = layer
        .layer(rejects_t1::<String>(seen.clone()))
        .oneshot(Request::new(String::from("x")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.all(), ["Bearer t1", "Bearer t2"]);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_token_fetch_for_the_replay_is_the_typed_error() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let source = source_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            match n {
                1 => Ok(Token::new("t1", Duration::from_secs(3600))),
                _ => Err(tower_oauth::Error::other("vault sealed")),
            }
        }
    });
    let seen = Seen::default();
    let err = OAuthLayer::new(source)
        .layer(rejects_t1::<String>(seen.clone()))
        .oneshot(Request::new(String::new()))
        .await
        .unwrap_err();
    let err = err.downcast_ref::<tower_oauth::Error>().expect("typed");
    assert!(err.is_other());
    assert_eq!(seen.count(), 1, "nothing sent without a token");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------
// Buffering streaming bodies
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn buffer_layer_replays_a_streaming_body_under_the_limit_byte_identical_over_hyper() {
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::new(source_for(&server));
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody>();
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::new(1024))
        .layer(layer.clone())
        .service(client);
    layer.cache().token().await.unwrap();
    let t1 = token_value(&layer);
    assert!(server.revoke(&t1));

    let req = Request::post(server.api_url())
        .body(streaming(&[b"\x00\x01binary", b"", b" and \xff\xfe more"]))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();

    assert_eq!(res.status(), StatusCode::OK);
    let echoed = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&echoed[..], b"\x00\x01binary and \xff\xfe more");
    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.api_requests_with(&t1), 1);
}

/// An API that reads the whole body, rejects `t1` and echoes the body otherwise.
fn reading_api(
    seen: Seen,
    bodies: Arc<Mutex<Vec<Bytes>>>,
) -> impl Service<Request<ReplayBody>, Response = Response<String>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |req: Request<ReplayBody>| {
        let auth = auth_of(&req);
        seen.push(auth.clone());
        let bodies = bodies.clone();
        async move {
            let body = req.into_body().collect().await?.to_bytes();
            bodies.lock().unwrap().push(body);
            let code = if auth == "Bearer t1" {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::OK
            };
            Ok::<_, BoxError>(status(code))
        }
    })
}

#[tokio::test]
async fn buffer_layer_passes_a_larger_body_through_whole_and_does_not_replay_it() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::new(counting_source(fetches.clone()));
    let seen = Seen::default();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::new(8))
        .layer(layer.clone())
        .service(reading_api(seen.clone(), bodies.clone()));

    // 5 + 5 bytes: over the limit of 8 only after the second chunk has been read.
    let res = svc
        .clone()
        .oneshot(
            Request::post("/")
                .body(streaming(&[b"12345", b"67890", b"abc"]))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(seen.count(), 1, "not sent again");
    assert_eq!(
        *bodies.lock().unwrap(),
        [Bytes::from_static(b"1234567890abc")],
        "read prefix, then the rest: the whole body"
    );
    assert!(layer.cache().current().is_none(), "t1 invalidated");

    // Within the limit: buffered and sent again.
    bodies.lock().unwrap().clear();
    let res = svc
        .clone()
        .oneshot(
            Request::post("/")
                .body(streaming(&[b"1234", b"5678"]))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.all(), ["Bearer t1", "Bearer t2"]);
    assert_eq!(*bodies.lock().unwrap(), [Bytes::from_static(b"12345678")]);
}

#[tokio::test]
async fn buffer_layer_passes_a_body_known_to_be_too_large_through_without_reading_it() {
    let seen = Seen::default();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::new(4))
        .layer(OAuthLayer::new(counting_source(Arc::new(
            AtomicUsize::new(0),
        ))))
        .service(service_fn({
            let (seen, bodies) = (seen.clone(), bodies.clone());
            move |req: Request<ReplayBody>| {
                seen.push(auth_of(&req));
                let buffered = req.body().is_buffered();
                let bodies = bodies.clone();
                async move {
                    assert!(!buffered);
                    let body = req.into_body().collect().await?.to_bytes();
                    bodies.lock().unwrap().push(body);
                    Ok::<_, BoxError>(status(StatusCode::UNAUTHORIZED))
                }
            }
        }));
    let res = svc
        .oneshot(
            Request::post("/")
                .body(Full::new(Bytes::from_static(b"too long")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(seen.count(), 1);
    assert_eq!(*bodies.lock().unwrap(), [Bytes::from_static(b"too long")]);
}

#[tokio::test]
async fn buffer_layer_fails_the_request_when_the_body_fails_and_sends_nothing() {
    let seen = Seen::default();
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::new(1024))
        .layer(OAuthLayer::new(counting_source(Arc::new(
            AtomicUsize::new(0),
        ))))
        .service(reading_api(seen.clone(), Arc::default()));
    let frames: Vec<Result<Frame<Bytes>, io::Error>> = vec![
        Ok(Frame::data(Bytes::from_static(b"abc"))),
        Err(io::Error::other("disk on fire")),
    ];
    let req = Request::post("/")
        .body(StreamBody::new(stream::iter(frames)))
        .unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(err.to_string(), "disk on fire");
    assert!(err.downcast_ref::<io::Error>().is_some());
    assert_eq!(seen.count(), 0);
}

#[tokio::test]
async fn buffer_layer_keeps_trailers() {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "42".parse().unwrap());
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"ab"))),
        Ok(Frame::trailers(trailers)),
    ];
    let seen_trailers = Arc::new(Mutex::new(Vec::new()));
    let api = {
        let seen_trailers = seen_trailers.clone();
        service_fn(move |req: Request<ReplayBody>| {
            let auth = auth_of(&req);
            let seen_trailers = seen_trailers.clone();
            async move {
                let collected = req.into_body().collect().await?;
                let trailers = collected.trailers().cloned();
                seen_trailers.lock().unwrap().push((
                    collected.to_bytes(),
                    trailers.and_then(|t| t.get("x-checksum").cloned()),
                ));
                let code = if auth == "Bearer t1" {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::OK
                };
                Ok::<_, BoxError>(status(code))
            }
        })
    };
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::new(1024))
        .layer(OAuthLayer::new(counting_source(Arc::new(
            AtomicUsize::new(0),
        ))))
        .service(api);
    let res = svc
        .oneshot(
            Request::post("/")
                .body(StreamBody::new(stream::iter(frames)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = seen_trailers.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for (body, checksum) in seen.iter() {
        assert_eq!(body, "ab");
        assert_eq!(checksum.as_ref().unwrap(), "42");
    }
}

// ---------------------------------------------------------------------------------------
// Tracing
// ---------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn each_replay_is_traced_without_the_token() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_target(true)
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let counter = Arc::new(AtomicUsize::new(0));
    let source = source_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            Ok(Token::new(
                format!("SECRET-TOKEN-VALUE-{n}"),
                Duration::from_secs(3600),
            ))
        }
    });
    let api = service_fn(|req: Request<String>| {
        let code = if auth_of(&req).ends_with("-1") {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        async move { Ok::<_, BoxError>(status(code)) }
    });
    let svc = OAuthLayer::new(source).layer(api);
    let req = Request::post("https://api.test/orders?api_key=QUERY-SECRET")
        .body(String::from("{}"))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let replay = log
        .lines()
        .find(|l| l.contains("sending the request again"))
        .unwrap_or_else(|| panic!("no replay event in:\n{log}"));
    assert!(replay.contains("INFO"), "{replay}");
    assert!(replay.contains("tower_oauth:"), "{replay}");
    assert!(replay.contains("method=POST"), "{replay}");
    assert!(replay.contains("path=\"/orders\""), "{replay}");
    assert!(replay.contains("invalidated=true"), "{replay}");
    assert!(!log.contains("SECRET-TOKEN-VALUE"), "{log}");
    assert!(!log.contains("QUERY-SECRET"), "{log}");
}

/// Issue: an API that rejects every token (wrong audience, clock skew at the API) must not
/// turn every request into a token request. 1,000 requests over 10 s (paused clock):
/// at most 8 token requests; the first rejected request is still sent again once.
#[tokio::test(start_paused = true)]
async fn an_api_that_rejects_every_token_costs_at_most_8_token_requests_in_10_s() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let seen = Seen::default();
    let api = {
        let seen = seen.clone();
        service_fn(move |req: Request<String>| {
            seen.push(auth_of(&req));
            async move { Ok::<_, BoxError>(status(StatusCode::UNAUTHORIZED)) }
        })
    };
    let mut svc = OAuthLayer::new(counting_source(fetches.clone())).layer(api);

    let start = tokio::time::Instant::now();
    for i in 0..1_000u32 {
        tokio::time::sleep_until(start + Duration::from_millis(10) * i).await;
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(String::new()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "request {i}");
        if i == 0 {
            assert_eq!(
                seen.all(),
                ["Bearer t1", "Bearer t2"],
                "the first is replayed once"
            );
        }
    }
    let fetched = fetches.load(Ordering::SeqCst);
    assert!(fetched <= 8, "{fetched} token requests");
    // 1 s, 2 s, 4 s steps after the first replay failed: t1, t2, then at 1 s, 3 s, 7 s.
    assert_eq!(fetched, 5);
    // Each step's request is sent twice (first and second attempt), the rest once.
    assert_eq!(seen.count(), 1_000 + 4);
}

/// After an always-401 spell, an API that accepts tokens again gets a replaced token at
/// once on its next revocation: an accepted second attempt ends the backoff.
#[tokio::test(start_paused = true)]
async fn an_accepted_second_attempt_ends_the_rejection_backoff() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let reject: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(vec!["Bearer t1".into(), "Bearer t2".into()]));
    let api = {
        let reject = reject.clone();
        service_fn(move |req: Request<String>| {
            let auth = auth_of(&req);
            let rejected = reject.lock().unwrap().contains(&auth);
            async move {
                Ok::<_, BoxError>(if rejected {
                    status(StatusCode::UNAUTHORIZED)
                } else {
                    Response::new(auth)
                })
            }
        })
    };
    let mut svc = OAuthLayer::new(counting_source(fetches.clone())).layer(api);
    let mut call = async || {
        svc.ready()
            .await
            .unwrap()
            .call(Request::new(String::new()))
            .await
            .unwrap()
    };
    // t1 rejected, replay with t2 rejected too: the backoff starts (1 s).
    assert_eq!(call().await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(call().await.status(), StatusCode::UNAUTHORIZED, "t2 held");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    tokio::time::advance(Duration::from_millis(1_100)).await;
    // The step is over: t2 dropped, t3 accepted on the second attempt.
    assert_eq!(call().await.into_body(), "Bearer t3");
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
    // t3 revoked right away: replaced at once, no hold.
    reject.lock().unwrap().push("Bearer t3".into());
    assert_eq!(call().await.into_body(), "Bearer t4");
    assert_eq!(fetches.load(Ordering::SeqCst), 4);
}

/// Issue: `invalidate()` during a fetch in flight: the next request does not get the token
/// that was asked for before the `invalidate()`.
#[tokio::test(start_paused = true)]
async fn invalidate_during_a_fetch_is_not_undone_by_that_fetch() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let source = {
        let fetches = fetches.clone();
        tower_oauth::source_fn(move || {
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(Token::new(format!("t{n}"), Duration::from_secs(3600)))
            }
        })
    };
    let layer = OAuthLayer::new(source);
    let cache = layer.cache().clone();
    let early = tokio::spawn({
        let cache = cache.clone();
        async move { cache.token().await }
    });
    tokio::time::advance(Duration::from_millis(100)).await;
    cache.invalidate();
    let svc = layer.layer(service_fn(|req: Request<String>| async move {
        Ok::<_, BoxError>(Response::new(auth_of(&req)))
    }));
    let res = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(
        res.into_body(),
        "Bearer t2",
        "not the token asked for before"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    early.await.unwrap().unwrap();
    assert_eq!(
        cache
            .current()
            .map(|t| secrecy::ExposeSecret::expose_secret(t.access_token()).to_owned()),
        Some("t2".to_owned()),
        "the early fetch did not overwrite the later token"
    );
}
