//! `OAuthLayer` over a `reqwest::Client` through the tower adapter `ReqwestService`,
//! against the in-process authorization server and API on loopback (issue 17): the
//! stampede, revocation between two waves, bodies after a 401, and redirects to another
//! origin (which reqwest follows below the layer).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use support::auth_server::{AuthServer, AuthServerConfig};
use support::two_origins::TwoOrigins;
use support::{client_for, token_value};
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_oauth::{OAuth, OAuthLayer, Origin, ReqwestService, Token, source_fn};

type Client = OAuth<ReqwestService>;

fn client(layer: &OAuthLayer) -> Client {
    ServiceBuilder::new()
        .layer(layer.clone())
        .service(ReqwestService::new(reqwest::Client::new()))
}

/// Sends `request`; the status and the body.
async fn send<B>(client: &Client, request: Request<B>) -> Result<(StatusCode, Bytes), BoxError>
where
    B: Into<reqwest::Body> + Send + 'static,
{
    let response = client.clone().oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

async fn get(client: &Client, url: String) -> Result<(StatusCode, Bytes), BoxError> {
    send(client, Request::get(url).body(String::new())?).await
}

/// `n` GETs of the API at once; the statuses, in order.
async fn wave(client: &Client, server: &AuthServer, n: usize) -> Vec<u16> {
    let calls = (0..n).map(|_| {
        let client = client.clone();
        let url = server.api_url();
        tokio::spawn(async move { get(&client, url).await.unwrap().0.as_u16() })
    });
    join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_calls_on_a_cold_cache_make_one_token_request() {
    // The token endpoint answers after 200 ms, so every call finds the cache cold.
    let server = AuthServer::start(AuthServerConfig {
        token_delay: Duration::from_millis(200),
        ..AuthServerConfig::default()
    })
    .await;
    let layer = OAuthLayer::new(client_for(&server));
    let client = client(&layer);

    let statuses = wave(&client, &server, 1_000).await;

    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1_000);
    assert_eq!(server.token_requests(), 1);
    assert_eq!(server.api_stats().accepted, 1_000);
    assert_eq!(server.api_stats().rejected(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_between_two_waves_makes_one_refresh() {
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::new(client_for(&server));
    let client = client(&layer);

    let first = wave(&client, &server, 100).await;
    let t1 = token_value(&layer);
    assert_eq!(server.token_requests(), 1);
    assert!(server.revoke(&t1));

    let second = wave(&client, &server, 100).await;

    let ok = first.iter().chain(&second).filter(|s| **s == 200).count();
    assert_eq!(ok, 200);
    assert_eq!(server.token_requests(), 2, "exactly one refresh");
    let t2 = token_value(&layer);
    assert_ne!(t1, t2);
    let stats = server.api_stats();
    assert_eq!(stats.accepted, 200);
    // Each rejected request (its `String` body copied) was sent again once, with t2.
    assert_eq!(stats.revoked, server.api_requests_with(&t1) - 100);
    assert_eq!(server.api_requests_with(&t2), 100);
}

#[tokio::test]
async fn a_bytes_body_is_sent_again_and_a_reqwest_body_is_not() {
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::new(client_for(&server));
    let client = client(&layer);
    assert_eq!(get(&client, server.api_url()).await.unwrap().0, 200);
    let t1 = token_value(&layer);
    assert!(server.revoke(&t1));

    // A reqwest::Body is not copied by the standard policy: the original 401.
    let chunks = futures_util::stream::iter([
        Ok::<_, std::io::Error>(Bytes::from("streamed ")),
        Ok(Bytes::from("body")),
    ]);
    let streamed = Request::post(server.api_url()).body(reqwest::Body::wrap_stream(chunks));
    let (status, _) = send(&client, streamed.unwrap()).await.unwrap();
    assert_eq!(status, 401, "the original 401");
    assert_eq!(server.api_requests_with(&t1), 2, "sent once with t1");
    assert_eq!(server.token_requests(), 1, "t1 dropped, none fetched yet");

    // Bytes are copied: the next POST goes out with t2 at once.
    let bytes = Request::post(server.api_url()).body(Bytes::from_static(b"bytes"));
    let (status, body) = send(&client, bytes.unwrap()).await.unwrap();
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"bytes"[..]));
    assert_eq!(server.token_requests(), 2);
    let stats = server.api_stats();
    assert_eq!((stats.accepted, stats.revoked), (2, 1));
    assert_eq!(server.api_requests_with(&t1), 2);
}

#[tokio::test]
async fn a_302_to_another_origin_never_carries_the_token() {
    let origins = TwoOrigins::start().await;
    let layer = OAuthLayer::builder(source_fn(|| async {
        Ok(Token::new("t-redirect", Duration::from_secs(3600)))
    }))
    .allowed_origins([origins.api_origin()])
    .build();
    // reqwest's default redirect policy: follows up to 10 hops, and removes
    // `Authorization` on a hop to another scheme, host or port.
    let client = client(&layer);

    let (status, body) = get(&client, origins.redirect_to("landing")).await.unwrap();

    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"landed"[..]));
    assert_eq!(origins.api_seen.all(), ["Bearer t-redirect"]);
    assert_eq!(
        origins.other_seen.all(),
        [""],
        "the other origin never sees the token"
    );

    // A request straight to the other origin gets no token either (allowed_origins).
    let (status, _) = get(&client, origins.other_url("landing")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(origins.other_seen.all(), ["", ""]);
}

/// With `follow-redirect`, the adapter gives the last hop's URL as tower-http's
/// `RequestUri`: a 401 from the other origin, which never got the token, does not drop it.
#[cfg(feature = "follow-redirect")]
#[tokio::test]
async fn a_401_from_the_other_origin_after_a_redirect_keeps_the_token() {
    let origins = TwoOrigins::start().await;
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::builder(support::counting_source(fetches.clone()))
        .allowed_origins([origins.api_origin()])
        .build();
    let client = client(&layer);

    let response = client
        .clone()
        .oneshot(
            Request::get(origins.redirect_to("denied"))
                .body(String::new())
                .unwrap(),
        )
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(token_value(&layer), "t1", "the token is kept");
    assert_eq!(origins.api_seen.all(), ["Bearer t1"], "not sent again");
    assert_eq!(origins.other_seen.all(), [""]);
    let tower_http::follow_redirect::RequestUri(last) = response.extensions().get().unwrap();
    assert_eq!(last.to_string(), origins.other_url("denied"));
}

#[tokio::test]
async fn refused_origin_and_a_relative_uri_are_typed_errors() {
    let origins = TwoOrigins::start().await;
    let layer = OAuthLayer::builder(source_fn(|| async {
        Ok(Token::new("t", Duration::from_secs(3600)))
    }))
    .allowed_origins([Origin::parse("https://api.example.com").unwrap()])
    .refuse_other_origins()
    .build();

    let err = get(&client(&layer), origins.other_url("landing"))
        .await
        .unwrap_err();
    let err = err.downcast_ref::<tower_oauth::Error>().unwrap();
    assert!(err.is_origin_refused());
    assert!(origins.other_seen.all().is_empty());

    // Without allowed origins the layer authorizes it; reqwest cannot send it.
    let layer = OAuthLayer::new(source_fn(|| async {
        Ok(Token::new("t", Duration::from_secs(3600)))
    }));
    let err = get(&client(&layer), "/relative".into()).await.unwrap_err();
    let err = err.downcast_ref::<reqwest::Error>().unwrap();
    assert!(err.is_builder(), "{err:?}");
}
