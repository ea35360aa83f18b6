//! Interop with an authorization server that others wrote and certified: the pinned
//! `oidc-provider` of `tests/interop/` (see its README), driven through `OAuthLayer` over a
//! hyper client, against a protected API that checks every token by introspection at the
//! provider.
//!
//! Needs Node, so every test is `#[ignore]`d: `cargo test` reports them as ignored, and
//! `cargo test -- --include-ignored` (what `.ci/run` runs) runs them. Run so without Node,
//! each test prints why it skips and passes; with `CI` set it panics instead. Each test
//! starts its own provider on a free loopback port (running `npm ci` in `tests/interop`
//! first if `node_modules` is missing).

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use secrecy::ExposeSecret;
use tower_oauth::endpoint::AuthorizationServerMetadata;
use tower_oauth::{ClientAuth, ClientCredentials, Error, OAuthLayer};

use support::interop::{api_client, get, setup, source};
use support::oidc_provider::{BASIC_CLIENT, POST_CLIENT, RESOURCE, WEIRD_CLIENT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and npm ci in tests/interop"]
async fn client_secret_basic_and_client_secret_post() {
    let Some((provider, api)) = setup(300).await else {
        return;
    };
    let cases = [
        (BASIC_CLIENT, ClientAuth::ClientSecretBasic, "basic"),
        (POST_CLIENT, ClientAuth::ClientSecretPost, "post"),
        // `:`, space, `%`, `+`, `/`, `=` in id and secret: form-urlencoded before Basic.
        (WEIRD_CLIENT, ClientAuth::ClientSecretBasic, "basic"),
    ];
    for (i, (client, auth, wire)) in cases.into_iter().enumerate() {
        let layer = OAuthLayer::new(source(&provider, client, auth).build().unwrap());
        let mut svc = api_client(&layer);
        for _ in 0..3 {
            let (status, body) = get(&mut svc, &api.url()).await.unwrap();
            assert_eq!(status, StatusCode::OK, "{}: {body}", client.0);
            assert_eq!(body["client_id"], client.0);
        }
        let stats = provider.stats().await;
        assert_eq!(stats.issued_to(client.0), 1, "{}", client.0);
        assert_eq!(stats.token_requests.len(), i + 1);
        let last = stats.token_requests.last().unwrap();
        assert_eq!(
            (last.auth.as_str(), last.client_id.as_deref(), last.status),
            (wire, Some(client.0), 200)
        );
    }
    assert_eq!(api.accepted(), 9);
    assert_eq!(api.requests(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and npm ci in tests/interop"]
async fn discovery_finds_the_token_endpoint_and_method() {
    let Some((provider, api)) = setup(300).await else {
        return;
    };
    let metadata = AuthorizationServerMetadata::fetch(&reqwest::Client::new(), provider.issuer())
        .await
        .unwrap();
    // oidc-provider serves RFC 8414's document too, so that one is read.
    assert_eq!(
        metadata.url().unwrap().path(),
        "/.well-known/oauth-authorization-server"
    );
    assert_eq!(
        metadata.get_str("introspection_endpoint"),
        Some(provider.introspection_url().as_str())
    );

    let source = ClientCredentials::builder()
        .issuer(provider.issuer())
        .client_id(POST_CLIENT.0)
        .client_secret(POST_CLIENT.1)
        .scope("api.read")
        .discover()
        .await
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(source.token_url().as_str(), provider.token_url());
    // It lists client_secret_basic and client_secret_post: basic is preferred.
    assert_eq!(source.auth_method(), ClientAuth::ClientSecretBasic);
    let layer = OAuthLayer::new(source);
    let (status, body) = get(&mut api_client(&layer), &api.url()).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["client_id"], POST_CLIENT.0);
    assert_eq!(body["scope"], "api.read");
    let stats = provider.stats().await;
    assert_eq!(stats.issued_to(POST_CLIENT.0), 1);
    assert_eq!(stats.token_requests[0].auth, "basic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and npm ci in tests/interop"]
async fn scope_and_resource_reach_the_token() {
    let Some((provider, api)) = setup(300).await else {
        return;
    };
    // A resource-bound token: introspection shows the audience and the scope.
    let layer = OAuthLayer::new(
        source(&provider, BASIC_CLIENT, ClientAuth::ClientSecretBasic)
            .scope("api.read")
            .resource(RESOURCE)
            .build()
            .unwrap(),
    );
    let (status, body) = get(&mut api_client(&layer), &api.url()).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "api.read");
    assert_eq!(body["aud"], RESOURCE);
    assert_eq!(layer.cache().current().unwrap().scope(), Some("api.read"));

    // Two scopes, no resource, post auth: both scopes, no audience.
    let layer = OAuthLayer::new(
        source(&provider, POST_CLIENT, ClientAuth::ClientSecretPost)
            .scope("api.read api.write")
            .build()
            .unwrap(),
    );
    let (status, body) = get(&mut api_client(&layer), &api.url()).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "api.read api.write");
    assert_eq!(body["aud"], serde_json::Value::Null);

    // An unknown resource is the provider's `invalid_target`, typed.
    let layer = OAuthLayer::new(
        source(&provider, BASIC_CLIENT, ClientAuth::ClientSecretBasic)
            .resource("https://other.example.test")
            .build()
            .unwrap(),
    );
    let err = get(&mut api_client(&layer), &api.url()).await.unwrap_err();
    let err = err.downcast_ref::<Error>().expect("a tower_oauth::Error");
    assert_eq!(
        err.token_endpoint_error().unwrap().error(),
        "invalid_target"
    );
    assert_eq!(api.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and npm ci in tests/interop"]
async fn wrong_secret_is_invalid_client_and_nothing_reaches_the_api() {
    let Some((provider, api)) = setup(300).await else {
        return;
    };
    for (client, auth, wire) in [
        (BASIC_CLIENT.0, ClientAuth::ClientSecretBasic, "basic"),
        (POST_CLIENT.0, ClientAuth::ClientSecretPost, "post"),
    ] {
        let layer = OAuthLayer::new(
            source(&provider, (client, "not-the-secret"), auth)
                .build()
                .unwrap(),
        );
        let err = get(&mut api_client(&layer), &api.url()).await.unwrap_err();
        let err = err.downcast_ref::<Error>().expect("a tower_oauth::Error");
        assert!(err.is_token_endpoint(), "{err:?}");
        let rfc = err.token_endpoint_error().unwrap();
        assert_eq!(rfc.error(), "invalid_client");
        assert_eq!(rfc.status(), StatusCode::UNAUTHORIZED);
        assert!(!format!("{err:?} {err}").contains("not-the-secret"));
        let last = provider.stats().await.token_requests.pop().unwrap();
        assert_eq!((last.auth.as_str(), last.status), (wire, 401));
    }
    assert_eq!(api.requests(), 0);
    assert_eq!(provider.stats().await.issued_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and npm ci in tests/interop"]
async fn revoked_token_mid_run_is_recovered_without_a_failure() {
    let Some((provider, api)) = setup(300).await else {
        return;
    };
    let layer = OAuthLayer::new(
        source(&provider, BASIC_CLIENT, ClientAuth::ClientSecretBasic)
            .build()
            .unwrap(),
    );
    let mut svc = api_client(&layer);
    for _ in 0..10 {
        let (status, _) = get(&mut svc, &api.url()).await.unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    let token = layer.cache().current().unwrap();
    provider
        .revoke(BASIC_CLIENT, token.access_token().expose_secret())
        .await;
    // The API now answers 401 to the cached token; the layer must get a new one and
    // replay, so that no caller sees the 401.
    for i in 0..10 {
        let (status, body) = get(&mut svc, &api.url()).await.unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "call {i} after the revocation: {body}"
        );
    }
    assert_eq!(api.accepted(), 20);
    assert_eq!(
        api.rejected(),
        1,
        "exactly one request carried the revoked token"
    );
    let stats = provider.stats().await;
    assert_eq!(stats.revoked, 1);
    assert_eq!(stats.issued_to(BASIC_CLIENT.0), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and npm ci in tests/interop"]
async fn thousand_concurrent_calls_on_a_cold_cache_issue_one_token() {
    const CALLS: usize = 1_000;
    let Some((provider, api)) = setup(300).await else {
        return;
    };
    let layer = OAuthLayer::new(
        source(&provider, BASIC_CLIENT, ClientAuth::ClientSecretBasic)
            .scope("api.read")
            .build()
            .unwrap(),
    );
    let svc = api_client(&layer);
    // All calls enter the layer together, before any token exists.
    let start = Arc::new(tokio::sync::Barrier::new(CALLS));
    let tasks: Vec<_> = (0..CALLS)
        .map(|_| {
            let mut svc = svc.clone();
            let start = start.clone();
            let url = api.url();
            tokio::spawn(async move {
                start.wait().await;
                get(&mut svc, &url).await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok((StatusCode::OK, _)) => ok += 1,
            Ok((status, body)) => panic!("HTTP {status}: {body}"),
            Err(e) => panic!("call failed: {e}"),
        }
    }
    assert_eq!(ok, CALLS);
    assert_eq!(api.accepted(), CALLS);
    let stats = provider.stats().await;
    assert_eq!(stats.issued_to(BASIC_CLIENT.0), 1);
    assert_eq!(stats.token_requests.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and npm ci in tests/interop"]
async fn short_lived_tokens_are_replaced_before_the_provider_expires_them() {
    // Tokens live 3 s at the provider, less the fraction of a second it was issued in
    // (oidc-provider sets `exp` to the issuing second plus TOKEN_TTL), so between 2 and
    // 3 s. The layer refreshes them with half their `expires_in` left, after 1.5 s. Call
    // until the provider has issued 3 tokens: no call may carry an expired one.
    let Some((provider, api)) = setup(3).await else {
        return;
    };
    let layer = OAuthLayer::new(
        source(&provider, POST_CLIENT, ClientAuth::ClientSecretPost)
            .build()
            .unwrap(),
    );
    let mut svc = api_client(&layer);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut calls = 0;
    while provider.stats().await.issued_to(POST_CLIENT.0) < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no refresh in 30 s");
        let (status, body) = get(&mut svc, &api.url()).await.unwrap();
        assert_eq!(status, StatusCode::OK, "call {calls}: {body}");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(api.rejected(), 0);
    assert_eq!(api.accepted(), calls);
}
