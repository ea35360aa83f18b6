//! Body buffering (`BufferBodyLayer`, `ReplayBody`): a streaming body within the limit is
//! read into memory and becomes replayable, so a 401 can be recovered by sending it again; a
//! larger one passes through whole without a replay; a failing body fails the request;
//! trailers are kept.

mod support;

use std::io;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::auth_server::AuthServer;
use support::{
    Seen, auth_of, client_for, counting_source, status, streaming, token_value, unauthorized_if_t1,
};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_oauth::OAuthLayer;
use tower_oauth::body::{BufferBodyLayer, ReplayBody};

#[tokio::test]
async fn buffer_layer_replays_a_streaming_body_under_the_limit_byte_identical_over_hyper() {
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::new(client_for(&server));
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
            let code = unauthorized_if_t1(&auth);
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

/// A body that says it has 1 MiB and must not be read: the buffer layer has to decide by
/// its size hint alone (as for an upload with a `content-length` whose next chunk the
/// sender holds back until the upstream has the first).
struct KnownLarge;

impl http_body::Body for KnownLarge {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        panic!("a body known to be too large was read by the buffer layer");
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(1024 * 1024)
    }
}

#[tokio::test]
async fn buffer_layer_decides_by_the_size_hint_before_reading_anything() {
    let seen = Seen::default();
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::new(64 * 1024))
        .layer(OAuthLayer::new(counting_source(Arc::new(
            AtomicUsize::new(0),
        ))))
        .service(service_fn({
            let seen = seen.clone();
            move |req: Request<ReplayBody>| {
                seen.push(auth_of(&req));
                let buffered = req.body().is_buffered();
                async move {
                    assert!(!buffered);
                    Ok::<_, BoxError>(status(StatusCode::OK))
                }
            }
        }));
    let res = svc
        .oneshot(Request::post("/").body(KnownLarge).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.count(), 1);
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
                let code = unauthorized_if_t1(&auth);
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

/// A body whose second frame comes only once the receiver has the first (a
/// client-streaming call waiting for the server): a buffer that waits would never send it.
#[tokio::test]
async fn without_waiting_the_buffer_passes_on_a_body_that_is_not_ready() {
    let first_arrived = Arc::new(tokio::sync::Notify::new());
    let gate = first_arrived.clone();
    let chunks = stream::unfold(0, move |i| {
        let gate = gate.clone();
        async move {
            match i {
                0 => Some((Ok::<_, BoxError>(Frame::data(Bytes::from("one"))), 1)),
                1 => {
                    gate.notified().await;
                    Some((Ok(Frame::data(Bytes::from("two"))), 2))
                }
                _ => None,
            }
        }
    });
    let fetches = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::new(64 * 1024).without_waiting())
        .layer(OAuthLayer::new(counting_source(fetches.clone())))
        .service(service_fn(move |req: Request<ReplayBody>| {
            let first_arrived = first_arrived.clone();
            async move {
                assert!(!req.body().is_buffered(), "a body that was not complete");
                let mut body = req.into_body();
                let mut got = Vec::new();
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame?.into_data() {
                        got.extend_from_slice(&data);
                        first_arrived.notify_one();
                    }
                }
                Ok::<_, BoxError>(Response::new(Full::new(Bytes::from(got))))
            }
        }));
    let request = Request::post("http://api.test/")
        .body(StreamBody::new(chunks))
        .unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), svc.oneshot(request))
        .await
        .expect("the buffer did not hold the request back")
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "onetwo");
}

#[tokio::test]
async fn without_waiting_a_body_that_is_ready_is_buffered_and_replayed() {
    let seen = Seen::default();
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::new(64 * 1024).without_waiting())
        .layer(OAuthLayer::new(counting_source(Arc::new(
            AtomicUsize::new(0),
        ))))
        .service(service_fn({
            let seen = seen.clone();
            move |req: Request<ReplayBody>| {
                let auth = auth_of(&req);
                seen.push(auth.clone());
                async move {
                    assert!(req.body().is_buffered());
                    Ok::<_, BoxError>(status(unauthorized_if_t1(&auth)))
                }
            }
        }));
    let request = Request::post("http://api.test/")
        .body(streaming(&[b"he", b"llo"]))
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.all(), ["Bearer t1", "Bearer t2"]);
}
