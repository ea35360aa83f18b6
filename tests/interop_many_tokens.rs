//! Many tokens through one layer against the pinned `oidc-provider`: a resource indicator
//! (RFC 8707) per destination through `PerOriginLayer`, and tokens on behalf of callers
//! (RFC 8693 token exchange, a grant registered in `tests/interop/provider.mjs`) through
//! `SubjectTokenLayer` and `on_behalf_of`, both end to end to APIs that introspect every
//! token at the provider.
//!
//! Needs Node, so every test is `#[ignore]`d (see `tests/interop.rs`).

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode, header::AUTHORIZATION};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_oauth::oauth::on_behalf_of::{SubjectTokenLayer, on_behalf_of};
use tower_oauth::{ClientAuth, ExposeSecret, OAuthLayer, Origin, PerOriginLayer, TokenSource};

use support::interop::{setup, source};
use support::introspection_api::IntrospectionApi;
use support::oidc_provider::{
    API_CLIENT, BASIC_CLIENT, BILLING_RESOURCE, GATEWAY_CLIENT, POST_CLIENT, RESOURCE,
};

/// One `GET` through `svc`: status and JSON body.
async fn get<S>(
    svc: S,
    request: Request<Empty<Bytes>>,
) -> Result<(StatusCode, serde_json::Value), BoxError>
where
    S: tower::Service<Request<Empty<Bytes>>, Response = http::Response<hyper::body::Incoming>>,
    S::Error: Into<BoxError>,
{
    let response = svc.oneshot(request).await.map_err(Into::into)?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
}

fn origin_of(url: &str) -> Origin {
    let uri: http::Uri = url.parse().unwrap();
    Origin::parse(&format!("http://{}", uri.authority().unwrap())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and npm ci in tests/interop"]
async fn a_resource_indicator_per_destination_1000_calls_two_tokens() {
    let Some((provider, orders)) = setup(300).await else {
        return;
    };
    let billing = IntrospectionApi::start(&provider.introspection_url(), API_CLIENT).await;
    let layer = |resource: &str| {
        OAuthLayer::new(
            source(&provider, BASIC_CLIENT, ClientAuth::ClientSecretBasic)
                .scope("api.read")
                .resource(resource)
                .build()
                .unwrap(),
        )
    };
    let routes = PerOriginLayer::new()
        .route(origin_of(&orders.url()), layer(RESOURCE))
        .route(origin_of(&billing.url()), layer(BILLING_RESOURCE))
        .refuse_other_origins();
    let client = ServiceBuilder::new()
        .layer(routes)
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let start = Arc::new(tokio::sync::Barrier::new(1_000));
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let client = client.clone();
            let start = start.clone();
            let (url, resource) = if i % 2 == 0 {
                (orders.url(), RESOURCE)
            } else {
                (billing.url(), BILLING_RESOURCE)
            };
            tokio::spawn(async move {
                start.wait().await;
                let request = Request::get(url).body(Empty::new()).unwrap();
                let (status, body) = get(client, request).await.unwrap();
                assert_eq!(status, StatusCode::OK, "{body}");
                assert_eq!(body["aud"], resource, "each API only its own token");
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(orders.accepted() + billing.accepted(), 1_000);
    let stats = provider.stats().await;
    assert_eq!(
        stats.issued_to(BASIC_CLIENT.0),
        2,
        "one token per destination"
    );
    assert_eq!(stats.token_requests.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and npm ci in tests/interop"]
async fn token_exchange_on_behalf_of_each_caller() {
    let Some((provider, api)) = setup(300).await else {
        return;
    };
    // Two callers' own tokens: the subject tokens that come in to the gateway.
    let mut callers = Vec::new();
    for (client, auth) in [
        (BASIC_CLIENT, ClientAuth::ClientSecretBasic),
        (POST_CLIENT, ClientAuth::ClientSecretPost),
    ] {
        let token = source(&provider, client, auth)
            .build()
            .unwrap()
            .fetch()
            .await
            .unwrap();
        callers.push((client.0, token.access_token().expose_secret().to_owned()));
    }
    let gateway = source(&provider, GATEWAY_CLIENT, ClientAuth::ClientSecretBasic)
        .build()
        .unwrap();
    let exchange = on_behalf_of(gateway);
    let slots = exchange.clone();
    let client = ServiceBuilder::new()
        .layer(SubjectTokenLayer::new())
        .layer(exchange)
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let client = client.clone();
            let (caller, token) = callers[i % 2].clone();
            let url = api.url();
            tokio::spawn(async move {
                let request = Request::get(url)
                    .header(AUTHORIZATION, format!("Bearer {token}"))
                    .body(Empty::new())
                    .unwrap();
                let (status, body) = get(client, request).await.unwrap();
                assert_eq!(status, StatusCode::OK, "{body}");
                assert_eq!(body["client_id"], GATEWAY_CLIENT.0, "the gateway's token");
                assert_eq!(body["subject"], caller, "exchanged for this caller");
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(api.accepted(), 200);
    assert_eq!(slots.slots(), 2);
    let stats = provider.stats().await;
    assert_eq!(
        stats.issued_to(GATEWAY_CLIENT.0),
        2,
        "one exchange per caller"
    );

    // A subject token the provider does not know: invalid_grant, nothing reaches the API.
    let request = Request::get(api.url())
        .header(AUTHORIZATION, "Bearer not-a-token-of-this-provider")
        .body(Empty::new())
        .unwrap();
    let err = get(client.clone(), request).await.unwrap_err();
    let err = err
        .downcast_ref::<tower_oauth::Error>()
        .expect("a tower_oauth::Error");
    assert_eq!(err.token_endpoint_error().unwrap().error(), "invalid_grant");
    assert_eq!(api.requests(), 200);
}
