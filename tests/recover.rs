//! 401 recovery: the rejected token is invalidated (only if it is still the cached one), a
//! new one is fetched through the single flight, and the request is sent again once.
//! (Buffering streaming bodies so that they can be sent again: `tests/body.rs`; the
//! tracing event of a replay: `tests/events.rs`.)

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::auth_server::AuthServer;
use support::{
    BoxedStream, Seen, auth_of, client_for, counting_source, status, streaming, token_value,
    unauthorized_if_t1,
};
use tokio::sync::{Barrier, Notify};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_oauth::recover::RecoverOn;
use tower_oauth::{OAuthLayer, Token, source_fn};

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
        let code = unauthorized_if_t1(&auth);
        async move { Ok::<_, BoxError>(status(code)) }
    })
}

// ---------------------------------------------------------------------------------------
// The numbers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn revoke_then_recover_over_hyper_on_loopback() {
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::new(client_for(&server));
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
    let layer = OAuthLayer::new(client_for(&server));
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
    let layer = OAuthLayer::new(client_for(&server));
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

#[tokio::test]
async fn post_with_a_streaming_body_is_not_replayed_and_the_next_call_uses_a_new_token() {
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::new(client_for(&server));
    let client = Client::builder(TokioExecutor::new()).build_http::<BoxedStream>();
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
            let code = unauthorized_if_t1(&auth);
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
            let code = unauthorized_if_t1(&auth);
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

/// Issue: a 401 that is not about our token never drops it. A redirect follower below the
/// layer leaves the last hop's URI in tower-http's `RequestUri`: a 401 from another origin
/// keeps the token and sends nothing again; one from the same origin is recovered.
#[tokio::test]
async fn a_401_from_another_origin_after_a_redirect_keeps_the_token() {
    use tower_http::follow_redirect::RequestUri;
    for (last_hop, replayed) in [
        ("https://elsewhere.example/login", false),
        ("https://api.example/v1/next", true),
    ] {
        let fetches = Arc::new(AtomicUsize::new(0));
        let seen = Seen::default();
        let api = {
            let seen = seen.clone();
            service_fn(move |req: Request<String>| {
                seen.push(auth_of(&req));
                async move {
                    let mut res = status(StatusCode::UNAUTHORIZED);
                    res.extensions_mut()
                        .insert(RequestUri(last_hop.parse().unwrap()));
                    Ok::<_, BoxError>(res)
                }
            })
        };
        let layer = OAuthLayer::new(counting_source(fetches.clone()));
        let svc = layer.layer(api);
        let req = Request::get("https://api.example/v1/start")
            .body(String::new())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        if replayed {
            assert_eq!(seen.all(), ["Bearer t1", "Bearer t2"], "{last_hop}");
            assert_eq!(fetches.load(Ordering::SeqCst), 2);
        } else {
            assert_eq!(seen.all(), ["Bearer t1"], "{last_hop}: not sent again");
            assert_eq!(fetches.load(Ordering::SeqCst), 1);
            assert!(layer.cache().current().is_some(), "the token is kept");
        }
    }
}

/// Issue: a 401 to a request the layer did not authorize (it carried the caller's own
/// `Authorization`) never drops the layer's token.
#[tokio::test]
async fn a_401_to_a_request_with_its_own_authorization_keeps_the_token() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::new(counting_source(fetches.clone()));
    layer.cache().token().await.unwrap();
    let svc = layer.layer(service_fn(|_req: Request<String>| async move {
        Ok::<_, BoxError>(status(StatusCode::UNAUTHORIZED))
    }));
    let req = Request::get("https://api.example/")
        .header(http::header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
        .body(String::new())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert!(layer.cache().current().is_some(), "the token is kept");
}

#[tokio::test]
async fn the_policy_is_asked_once_per_answer_a_401_then_its_second_attempt_makes_2() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let layer = OAuthLayer::builder(counting_source(fetches.clone()))
        .reject_if(move |status: StatusCode, _: &http::HeaderMap| {
            counter.fetch_add(1, Ordering::SeqCst);
            status == StatusCode::UNAUTHORIZED
        })
        .build();
    // t1 cached first, so the request goes out on the valid-token path.
    layer.cache().token().await.unwrap();
    let seen = Seen::default();
    let svc = layer.layer(rejects_t1::<String>(seen.clone()));
    let res = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.all(), ["Bearer t1", "Bearer t2"]);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    // The 401 to the first attempt, the 200 to the second: one question each.
    assert_eq!(asked.load(Ordering::SeqCst), 2);
}
