//! `OAuthLayer::without_recovery`: the `Attach` service puts the layer's token on requests,
//! shares the layer's cache, and passes every answer back as it came.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};
use tower_oauth::{OAuthLayer, Origin};

use support::{auth_of, counting_source, echo_auth};

#[tokio::test]
async fn a_thousand_cold_calls_make_one_token_request() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::new(counting_source(fetches.clone()));
    let svc = layer.without_recovery().layer(echo_auth::<String>());
    let calls: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(svc.clone().oneshot(Request::new(String::new()))))
        .collect();
    for call in calls {
        let response = call.await.expect("task").expect("response");
        assert_eq!(response.body(), "Bearer t1");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_401_goes_back_as_it_came_and_keeps_the_token() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::new(counting_source(fetches.clone()));
    let api_calls = Arc::new(AtomicUsize::new(0));
    let counter = api_calls.clone();
    let api = service_fn(move |req: Request<String>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let auth = auth_of(&req);
        async move {
            Ok::<_, BoxError>(
                Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .body(auth)
                    .unwrap(),
            )
        }
    });
    let mut svc = layer.without_recovery().layer(api);
    for _ in 0..3 {
        let response = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(String::new()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.body(), "Bearer t1");
    }
    assert_eq!(api_calls.load(Ordering::SeqCst), 3, "never sent twice");
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "nothing invalidated");
}

#[tokio::test]
async fn it_shares_the_layers_token_and_origin_rules() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::builder(counting_source(fetches.clone()))
        .allowed_origins([Origin::parse("https://api.example.test").unwrap()])
        .build();
    let with_recovery = layer.layer(echo_auth::<String>());
    let without = layer.without_recovery().layer(echo_auth::<String>());

    let ours = |uri: &str| Request::get(uri).body(String::new()).unwrap();
    let a = with_recovery
        .oneshot(ours("https://api.example.test/a"))
        .await
        .unwrap();
    let b = without
        .clone()
        .oneshot(ours("https://api.example.test/b"))
        .await
        .unwrap();
    assert_eq!(
        (a.body().as_str(), b.body().as_str()),
        ("Bearer t1", "Bearer t1")
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "one cache");

    // Another origin: no token.
    let other = without
        .clone()
        .oneshot(ours("https://other.example.test/"))
        .await
        .unwrap();
    assert_eq!(other.body(), "");
    // The caller's own Authorization is left alone.
    let mut own = ours("https://api.example.test/");
    own.headers_mut()
        .insert(AUTHORIZATION, "Bearer mine".parse().unwrap());
    let own = without.oneshot(own).await.unwrap();
    assert_eq!(own.body(), "Bearer mine");
}

#[tokio::test]
async fn a_refused_origin_is_a_typed_error_and_no_call() {
    let layer = OAuthLayer::builder(counting_source(Arc::default()))
        .allowed_origins([Origin::parse("https://api.example.test").unwrap()])
        .refuse_other_origins()
        .build();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer
        .without_recovery()
        .layer(support::echo_auth_counting::<String>(calls.clone()));
    let error = svc
        .oneshot(
            Request::get("https://other.example.test/")
                .body(String::new())
                .unwrap(),
        )
        .await
        .unwrap_err();
    let error = error.downcast::<tower_oauth::Error>().expect("crate error");
    assert!(error.is_origin_refused());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn without_a_token_the_request_is_not_sent() {
    let layer = OAuthLayer::new(tower_oauth::source_fn(|| async {
        Err(tower_oauth::Error::other("no token here"))
    }));
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer
        .without_recovery()
        .layer(support::echo_auth_counting::<String>(calls.clone()));
    assert!(svc.oneshot(Request::new(String::new())).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
