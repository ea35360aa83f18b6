//! `OAuthMiddleware` behind reqwest-middleware, against the in-process authorization server
//! and API on loopback (issue 17): the stampede, revocation between two waves, a streamed
//! body after a 401, and a redirect to another origin; then, in `interop`, the checks of
//! `tests/interop.rs` against the pinned oidc-provider.

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
// token there, with the checks tests/interop.rs makes over hyper, through the middleware.
// Skipped without Node unless CI is set.
// ---------------------------------------------------------------------------------------

mod interop {
    use super::*;
    use std::sync::Arc;

    use http::StatusCode;
    use support::introspection_api::IntrospectionApi;
    use support::oidc_provider::{
        API_CLIENT, BASIC_CLIENT, POST_CLIENT, Provider, RESOURCE, WEIRD_CLIENT,
    };
    use tower_oauth::endpoint::ClientCredentialsBuilder;
    use tower_oauth::{ClientAuth, ClientCredentials};

    /// A provider with tokens that live `ttl` seconds and the API in front of it; `None`
    /// if the suite is skipped.
    async fn setup(ttl: u64) -> Option<(Provider, IntrospectionApi)> {
        let provider = Provider::start(ttl).await?;
        let api = IntrospectionApi::start(&provider.introspection_url(), API_CLIENT).await;
        Some((provider, api))
    }

    fn source(
        provider: &Provider,
        client: (&str, &str),
        auth: ClientAuth,
    ) -> ClientCredentialsBuilder {
        ClientCredentials::builder()
            .token_url(provider.token_url())
            .client_id(client.0)
            .client_secret(client.1)
            .auth_method(auth)
    }

    fn basic_layer(provider: &Provider) -> OAuthLayer {
        OAuthLayer::new(
            source(provider, BASIC_CLIENT, ClientAuth::ClientSecretBasic)
                .build()
                .unwrap(),
        )
    }

    /// One `GET` of the API: its status and JSON body (`null` if not JSON).
    async fn get(
        client: &ClientWithMiddleware,
        url: &str,
    ) -> reqwest_middleware::Result<(StatusCode, serde_json::Value)> {
        let response = client.get(url).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        ))
    }

    /// The crate's error inside a middleware error.
    fn crate_error(err: &reqwest_middleware::Error) -> &tower_oauth::Error {
        let reqwest_middleware::Error::Middleware(err) = err else {
            panic!("a middleware error: {err:?}")
        };
        err.downcast_ref().expect("a tower_oauth::Error")
    }

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
        for (i, (id_secret, auth, wire)) in cases.into_iter().enumerate() {
            let layer = OAuthLayer::new(source(&provider, id_secret, auth).build().unwrap());
            let client = client(&layer);
            for _ in 0..3 {
                let (status, body) = get(&client, &api.url()).await.unwrap();
                assert_eq!(status, StatusCode::OK, "{}: {body}", id_secret.0);
                assert_eq!(body["client_id"], id_secret.0);
            }
            let stats = provider.stats().await;
            assert_eq!(stats.issued_to(id_secret.0), 1, "{}", id_secret.0);
            assert_eq!(stats.token_requests.len(), i + 1);
            let last = stats.token_requests.last().unwrap();
            assert_eq!(
                (last.auth.as_str(), last.client_id.as_deref(), last.status),
                (wire, Some(id_secret.0), 200)
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
        // The metadata document itself is read in tests/interop.rs; it does not go through
        // the middleware. Here: the source it gives, and its token on the API.
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
        let (status, body) = get(&client(&layer), &api.url()).await.unwrap();
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
        let (status, body) = get(&client(&layer), &api.url()).await.unwrap();
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
        let (status, body) = get(&client(&layer), &api.url()).await.unwrap();
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
        let err = get(&client(&layer), &api.url()).await.unwrap_err();
        assert_eq!(
            crate_error(&err).token_endpoint_error().unwrap().error(),
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
        for (id, auth, wire) in [
            (BASIC_CLIENT.0, ClientAuth::ClientSecretBasic, "basic"),
            (POST_CLIENT.0, ClientAuth::ClientSecretPost, "post"),
        ] {
            let layer = OAuthLayer::new(
                source(&provider, (id, "not-the-secret"), auth)
                    .build()
                    .unwrap(),
            );
            let err = get(&client(&layer), &api.url()).await.unwrap_err();
            let err = crate_error(&err);
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
        let layer = basic_layer(&provider);
        let client = client(&layer);
        for _ in 0..10 {
            assert_eq!(get(&client, &api.url()).await.unwrap().0, StatusCode::OK);
        }
        let t1 = token_value(&layer);
        provider.revoke(BASIC_CLIENT, &t1).await;
        // The API now answers 401 to the cached token; the middleware must get a new one
        // and send again, so that no caller sees the 401.
        for i in 0..10 {
            let (status, body) = get(&client, &api.url()).await.unwrap();
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
    async fn thousand_concurrent_sends_on_a_cold_cache_issue_one_token() {
        const SENDS: usize = 1_000;
        let Some((provider, api)) = setup(300).await else {
            return;
        };
        let layer = OAuthLayer::new(
            source(&provider, BASIC_CLIENT, ClientAuth::ClientSecretBasic)
                .scope("api.read")
                .build()
                .unwrap(),
        );
        let client = client(&layer);
        // All sends enter the middleware together, before any token exists.
        let start = Arc::new(tokio::sync::Barrier::new(SENDS));
        let tasks: Vec<_> = (0..SENDS)
            .map(|_| {
                let client = client.clone();
                let start = start.clone();
                let url = api.url();
                tokio::spawn(async move {
                    start.wait().await;
                    get(&client, &url).await
                })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok((StatusCode::OK, _)) => ok += 1,
                Ok((status, body)) => panic!("HTTP {status}: {body}"),
                Err(e) => panic!("send failed: {e}"),
            }
        }
        assert_eq!(ok, SENDS);
        assert_eq!(api.accepted(), SENDS);
        let stats = provider.stats().await;
        assert_eq!(stats.issued_to(BASIC_CLIENT.0), 1);
        assert_eq!(stats.token_requests.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Node and npm ci in tests/interop"]
    async fn short_lived_tokens_are_replaced_before_the_provider_expires_them() {
        // As in tests/interop.rs: tokens live 2 to 3 s at the provider, the cache refreshes
        // them with half their `expires_in` left. Send until the provider has issued 3
        // tokens: no send may carry an expired one.
        let Some((provider, api)) = setup(3).await else {
            return;
        };
        let layer = OAuthLayer::new(
            source(&provider, POST_CLIENT, ClientAuth::ClientSecretPost)
                .build()
                .unwrap(),
        );
        let client = client(&layer);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut sends = 0;
        while provider.stats().await.issued_to(POST_CLIENT.0) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "no refresh in 30 s");
            let (status, body) = get(&client, &api.url()).await.unwrap();
            assert_eq!(status, StatusCode::OK, "send {sends}: {body}");
            sends += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(api.rejected(), 0);
        assert_eq!(api.accepted(), sends);
    }
}
