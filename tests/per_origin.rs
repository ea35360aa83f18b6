//! `PerOriginLayer`: one token per destination through one layer. Three origins, three
//! resources (RFC 8707), tokens from the test authorization server.

#![cfg(feature = "reqwest")]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use support::auth_server::AuthServer;
use support::{auth_of, status};
use tower::{BoxError, Layer, ServiceExt, service_fn};
use tower_oauth::{ClientCredentials, OAuthLayer, Origin, PerOriginLayer};

const APIS: [&str; 3] = [
    "https://orders.test",
    "https://billing.test",
    "https://stock.test",
];

fn layer(server: &AuthServer) -> PerOriginLayer {
    let base = ClientCredentials::builder()
        .token_url(server.token_url())
        .client_id(&server.config().client_id)
        .client_secret(&server.config().client_secret);
    APIS.iter().fold(PerOriginLayer::new(), |layer, api| {
        let source = base.clone().resource(*api).build().unwrap();
        layer.route(Origin::parse(api).unwrap(), OAuthLayer::new(source))
    })
}

/// What each API host received, and which tokens it rejects.
#[derive(Clone, Default)]
struct Apis {
    seen: Arc<Mutex<HashMap<String, Vec<String>>>>,
    revoked: Arc<Mutex<HashSet<String>>>,
}

impl Apis {
    fn tokens_at(&self, api: &str) -> HashSet<String> {
        let host = api.trim_start_matches("https://");
        let seen = self.seen.lock().unwrap();
        seen.get(host).into_iter().flatten().cloned().collect()
    }
}

async fn api(apis: Apis, req: Request<String>) -> Result<Response<String>, BoxError> {
    let host = req.uri().host().unwrap_or_default().to_owned();
    let auth = auth_of(&req);
    apis.seen
        .lock()
        .unwrap()
        .entry(host)
        .or_default()
        .push(auth.clone());
    let code = match apis.revoked.lock().unwrap().contains(&auth) {
        true => StatusCode::UNAUTHORIZED,
        false => StatusCode::OK,
    };
    Ok(status(code))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_origins_three_tokens_and_a_401_refreshes_only_its_own() {
    let server = AuthServer::start_default().await;
    let apis = Apis::default();
    let inner = service_fn({
        let apis = apis.clone();
        move |req: Request<String>| api(apis.clone(), req)
    });
    let svc = layer(&server).layer(inner);
    let call = |i: usize| {
        let svc = svc.clone();
        async move {
            let url = format!("{}/items/{i}", APIS[i % 3]);
            svc.oneshot(Request::get(url).body(String::new()).unwrap())
                .await
                .map(|r| r.status())
        }
    };

    // 3,000 concurrent cold calls spread over the three APIs: 3 token requests.
    let calls: Vec<_> = (0..3000).map(|i| tokio::spawn(call(i))).collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), StatusCode::OK);
    }
    assert_eq!(server.token_requests(), 3);
    let mut resources: Vec<String> = server
        .token_request_log()
        .iter()
        .map(|r| r.param("resource").unwrap().to_owned())
        .collect();
    resources.sort();
    let mut expected: Vec<String> = APIS.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(
        resources, expected,
        "each token request has its own resource"
    );
    // Each API received one token, its own: no token reached two APIs.
    let tokens: Vec<HashSet<String>> = APIS.iter().map(|a| apis.tokens_at(a)).collect();
    for (api, t) in APIS.iter().zip(&tokens) {
        assert_eq!(t.len(), 1, "{api}: {t:?}");
    }
    let all: HashSet<&String> = tokens.iter().flatten().collect();
    assert_eq!(all.len(), 3);

    // billing revokes its token: only billing's token is refreshed.
    let billing = tokens[1].iter().next().unwrap().clone();
    apis.revoked.lock().unwrap().insert(billing.clone());
    assert_eq!(call(1).await.unwrap(), StatusCode::OK);
    assert_eq!(server.token_requests(), 4);
    let last = server.last_token_request().unwrap();
    assert_eq!(last.param("resource"), Some("https://billing.test"));
    assert_eq!(call(0).await.unwrap(), StatusCode::OK);
    assert_eq!(call(2).await.unwrap(), StatusCode::OK);
    assert_eq!(
        server.token_requests(),
        4,
        "orders and stock keep their tokens"
    );
    assert_eq!(apis.tokens_at(APIS[0]), tokens[0]);
    assert_eq!(apis.tokens_at(APIS[2]), tokens[2]);
    assert_eq!(apis.tokens_at(APIS[1]).len(), 2);
}

#[tokio::test]
async fn an_origin_without_a_route_gets_no_token_or_is_refused() {
    let server = AuthServer::start_default().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inner = service_fn({
        let seen = seen.clone();
        move |req: Request<String>| {
            seen.lock()
                .unwrap()
                .push(req.headers().contains_key("authorization"));
            async move { Ok::<_, BoxError>(status(StatusCode::OK)) }
        }
    });
    let request = || {
        Request::get("https://elsewhere.test/")
            .body(String::new())
            .unwrap()
    };

    let passing = layer(&server).layer(inner.clone());
    assert_eq!(
        passing.oneshot(request()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(*seen.lock().unwrap(), [false], "sent without a token");

    let refusing = layer(&server).refuse_other_origins().layer(inner);
    let error = refusing.oneshot(request()).await.unwrap_err();
    let error = error.downcast_ref::<tower_oauth::Error>().unwrap();
    assert!(error.is_origin_refused(), "{error}");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the refused request was not sent"
    );
    assert_eq!(server.token_requests(), 0);
}
