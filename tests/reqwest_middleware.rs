//! `OAuthMiddleware` behind reqwest-middleware, against the in-process authorization server
//! and API on loopback (issue 17): the stampede, revocation between two waves, a streamed
//! body after a 401, and a redirect to another origin.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use support::auth_server::{AuthServer, AuthServerConfig};
use support::two_origins::TwoOrigins;
use support::{client_for, token_value};
use tower_oauth::{OAuthLayer, OAuthMiddleware, Origin, Token, source_fn};

fn client(layer: &OAuthLayer) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(OAuthMiddleware::new(layer))
        .build()
}

/// `n` GETs of the API at once; the statuses, in order.
async fn wave(client: &ClientWithMiddleware, server: &AuthServer, n: usize) -> Vec<u16> {
    let sends = (0..n).map(|_| {
        let client = client.clone();
        let url = server.api_url();
        tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
    });
    join_all(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_sends_on_a_cold_cache_make_one_token_request() {
    // The token endpoint answers after 200 ms, so every send finds the cache cold.
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
    // Each rejected request was sent again once, with t2.
    assert_eq!(stats.revoked, server.api_requests_with(&t1) - 100);
    assert_eq!(server.api_requests_with(&t2), 100);
}

#[tokio::test]
async fn a_streamed_body_gets_the_original_401_and_is_not_sent_again() {
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::new(client_for(&server));
    let client = client(&layer);
    let warm = client.get(server.api_url()).send().await.unwrap();
    assert_eq!(warm.status(), 200);
    let t1 = token_value(&layer);
    assert!(server.revoke(&t1));

    let chunks = futures_util::stream::iter([
        Ok::<_, std::io::Error>(Bytes::from("streamed ")),
        Ok(Bytes::from("body")),
    ]);
    let response = client
        .post(server.api_url())
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401, "the original 401");
    assert_eq!(server.api_requests_with(&t1), 2, "sent once with t1");
    let stats = server.api_stats();
    assert_eq!((stats.accepted, stats.rejected()), (1, 1), "not sent again");
    // The rejected token was dropped: the next request fetches a new one.
    assert_eq!(server.token_requests(), 1);
    let next = client
        .post(server.api_url())
        .body("bytes are sent again")
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 200);
    assert_eq!(next.text().await.unwrap(), "bytes are sent again");
    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.api_stats().accepted, 2);
}

#[tokio::test]
async fn bytes_body_after_a_401_is_sent_again_with_the_new_token() {
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::new(client_for(&server));
    let client = client(&layer);
    assert_eq!(
        client.get(server.api_url()).send().await.unwrap().status(),
        200
    );
    let t1 = token_value(&layer);
    assert!(server.revoke(&t1));

    let response = client
        .post(server.api_url())
        .body("again")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "again");
    assert_eq!(server.token_requests(), 2);
    let stats = server.api_stats();
    assert_eq!((stats.accepted, stats.revoked), (2, 1));
}

#[tokio::test]
async fn a_layer_and_its_middleware_share_one_token() {
    let server = AuthServer::start_default().await;
    let layer = OAuthLayer::new(client_for(&server));
    let from_layer = layer.cache().token().await.unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build();

    let response = client.get(server.api_url()).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(server.token_requests(), 1);
    assert_eq!(token_value(&layer), {
        use secrecy::ExposeSecret;
        from_layer.access_token().expose_secret().to_owned()
    });
}

#[tokio::test]
async fn a_302_to_another_origin_never_carries_the_token() {
    let origins = TwoOrigins::start().await;
    let layer = OAuthLayer::builder(source_fn(|| async {
        Ok(Token::new("t-redirect", Duration::from_secs(3600)))
    }))
    .allowed_origins([origins.api_origin()])
    .build();
    // reqwest's default redirect policy: follows up to 10 hops.
    let client = client(&layer);

    let response = client
        .get(origins.redirect_to("landing"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "landed");
    assert_eq!(origins.api_seen.all(), ["Bearer t-redirect"]);
    assert_eq!(
        origins.other_seen.all(),
        [""],
        "the other origin never sees the token"
    );

    // A request straight to the other origin gets no token either (allowed_origins).
    let direct = client
        .get(origins.other_url("landing"))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(origins.other_seen.all(), ["", ""]);
}

#[tokio::test]
async fn refused_origin_is_a_middleware_error_and_nothing_is_sent() {
    let origins = TwoOrigins::start().await;
    let layer = OAuthLayer::builder(source_fn(|| async {
        Ok(Token::new("t", Duration::from_secs(3600)))
    }))
    .allowed_origins([Origin::parse("https://api.example.com").unwrap()])
    .refuse_other_origins()
    .build();

    let err = client(&layer)
        .get(origins.other_url("landing"))
        .send()
        .await
        .unwrap_err();

    let reqwest_middleware::Error::Middleware(err) = err else {
        panic!("a middleware error: {err:?}")
    };
    let err = err.downcast_ref::<tower_oauth::Error>().unwrap();
    assert!(err.is_origin_refused());
    assert!(
        err.to_string()
            .contains(&format!("http://{}", origins.other))
    );
    assert!(origins.other_seen.all().is_empty());
}

// ---------------------------------------------------------------------------------------
// Interop: the pinned oidc-provider of tests/interop and the API that introspects every
// token there (as tests/interop.rs does over hyper). Skipped without Node unless CI is set.
// ---------------------------------------------------------------------------------------

mod interop {
    use super::*;
    use support::introspection_api::IntrospectionApi;
    use support::oidc_provider::{API_CLIENT, BASIC_CLIENT, Provider};
    use tower_oauth::{ClientAuth, ClientCredentials};

    async fn setup() -> Option<(Provider, IntrospectionApi, OAuthLayer)> {
        let provider = Provider::start(300).await?;
        let api = IntrospectionApi::start(&provider.introspection_url(), API_CLIENT).await;
        let layer = OAuthLayer::new(source(&provider, BASIC_CLIENT.1));
        Some((provider, api, layer))
    }

    fn source(provider: &Provider, secret: &str) -> ClientCredentials {
        ClientCredentials::builder()
            .token_url(provider.token_url())
            .client_id(BASIC_CLIENT.0)
            .client_secret(secret)
            .auth_method(ClientAuth::ClientSecretBasic)
            .build()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Node and npm ci in tests/interop"]
    async fn thousand_concurrent_sends_issue_one_token() {
        let Some((provider, api, layer)) = setup().await else {
            return;
        };
        let client = client(&layer);
        let sends = (0..1_000).map(|_| {
            let client = client.clone();
            let url = api.url();
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        });
        let ok = join_all(sends)
            .await
            .into_iter()
            .filter(|s| *s.as_ref().unwrap() == 200)
            .count();
        assert_eq!(ok, 1_000);
        assert_eq!(api.accepted(), 1_000);
        let stats = provider.stats().await;
        assert_eq!(stats.issued_to(BASIC_CLIENT.0), 1);
        assert_eq!(stats.token_requests.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Node and npm ci in tests/interop"]
    async fn revoked_token_mid_run_is_recovered_without_a_failure() {
        let Some((provider, api, layer)) = setup().await else {
            return;
        };
        let client = client(&layer);
        for _ in 0..10 {
            assert_eq!(client.get(api.url()).send().await.unwrap().status(), 200);
        }
        let t1 = token_value(&layer);
        provider.revoke(BASIC_CLIENT, &t1).await;
        for i in 0..10 {
            let status = client.get(api.url()).send().await.unwrap().status();
            assert_eq!(status, 200, "call {i} after the revocation");
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
    async fn wrong_secret_is_invalid_client_and_nothing_reaches_the_api() {
        let Some((provider, api, _)) = setup().await else {
            return;
        };
        let layer = OAuthLayer::new(source(&provider, "not-the-secret"));
        let err = client(&layer).get(api.url()).send().await.unwrap_err();
        let reqwest_middleware::Error::Middleware(err) = err else {
            panic!("a middleware error: {err:?}")
        };
        let err = err.downcast_ref::<tower_oauth::Error>().unwrap();
        let rfc = err
            .token_endpoint_error()
            .expect("the token endpoint's error");
        assert_eq!(rfc.error(), "invalid_client");
        assert!(!format!("{err:?} {err}").contains("not-the-secret"));
        assert_eq!(api.requests(), 0);
        assert_eq!(provider.stats().await.issued_total(), 0);
    }
}
