//! What the interop suites share: a provider with the introspecting API in front of it,
//! a hyper client behind `OAuthLayer`, one `GET` of the API.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_oauth::{ClientAuth, ClientCredentials, OAuth, OAuthLayer};

use super::introspection_api::IntrospectionApi;
use super::oidc_provider::{API_CLIENT, Provider};

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;
pub type Api = OAuth<HttpClient>;

/// A provider with tokens that live `ttl` seconds and the API in front of it; `None` if
/// the suite is skipped.
pub async fn setup(ttl: u64) -> Option<(Provider, IntrospectionApi)> {
    let provider = Provider::start(ttl).await?;
    let api = IntrospectionApi::start(&provider.introspection_url(), API_CLIENT).await;
    Some((provider, api))
}

pub fn source(
    provider: &Provider,
    client: (&str, &str),
    auth: ClientAuth,
) -> tower_oauth::endpoint::ClientCredentialsBuilder {
    ClientCredentials::builder()
        .token_url(provider.token_url())
        .client_id(client.0)
        .client_secret(client.1)
        .auth_method(auth)
}

pub fn api_client(layer: &OAuthLayer) -> Api {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    ServiceBuilder::new().layer(layer.clone()).service(client)
}

/// One `GET` of the API: its status and JSON body (`null` if not JSON).
pub async fn get(svc: &mut Api, url: &str) -> Result<(StatusCode, serde_json::Value), BoxError> {
    let request = Request::get(url).body(Empty::new())?;
    let response = svc.ready().await?.call(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    ))
}

/// `calls` concurrent `GET`s of `url` through one layer on a cold cache, all entering it
/// together: how many answered `200`; panics on any other answer.
pub async fn cold_calls(layer: &OAuthLayer, url: &str, calls: usize) -> usize {
    let svc = api_client(layer);
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(calls));
    let tasks: Vec<_> = (0..calls)
        .map(|_| {
            let mut svc = svc.clone();
            let start = start.clone();
            let url = url.to_owned();
            tokio::spawn(async move {
                start.wait().await;
                get(&mut svc, &url).await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok((StatusCode::OK, _)) => ok += 1,
            Ok((status, body)) => panic!("HTTP {status}: {body}"),
            Err(e) => panic!("call failed: {e}"),
        }
    }
    ok
}
