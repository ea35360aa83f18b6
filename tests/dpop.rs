//! DPoP (RFC 9449) through `ClientCredentials::dpop` and `DpopLayer` below `OAuthLayer`,
//! against a test authorization server and API that verify every proof fully: `typ`, the
//! signature with the header's `jwk`, `htm`, `htu`, `iat`, a `jti` never seen before,
//! `ath`, the token bound to the key's thumbprint, and the nonce, which both require and the
//! API rotates.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::{DecodingKey, Validation};
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_oauth::endpoint::dpop::{Dpop, DpopKey, access_token_hash};
use tower_oauth::oauth::dpop::DpopLayer;
use tower_oauth::store::MemoryStore;
use tower_oauth::{ClientCredentials, Error, OAuthLayer, Origin};

#[derive(Default)]
struct St {
    addr: String,
    /// The nonce each side requires; `None`: none required.
    token_nonce: Option<String>,
    api_nonce: Option<String>,
    /// Rotate the API nonce after this many accepted requests.
    rotate_every: Option<usize>,
    /// A new API nonce with every `use_dpop_nonce` answer: the client can never catch up.
    always_new_nonce: bool,
    /// Send this `DPoP-Nonce` value instead of the real one (a malformed one).
    token_nonce_header: Option<String>,
    /// Answer `token_type=Bearer`.
    bearer: bool,
    rotations: usize,
    accepted_since_rotation: usize,
    token_requests: usize,
    issued: usize,
    tokens: HashMap<String, String>,
    jtis: HashSet<String>,
    accepted_jtis: HashSet<String>,
    api_requests: usize,
    api_ok: usize,
    nonce_401s: usize,
    /// Requests that carried an `Authorization` or a `DPoP` header.
    saw_credentials: usize,
}

type Shared = Arc<Mutex<St>>;

#[derive(serde::Deserialize)]
struct Claims {
    jti: String,
    htm: String,
    htu: String,
    iat: u64,
    ath: Option<String>,
    nonce: Option<String>,
}

/// Verifies a proof; the key's thumbprint and the claims.
fn verify(headers: &HeaderMap, htm: &str, htu: &str) -> Result<(String, Claims), &'static str> {
    let proof = headers
        .get("dpop")
        .and_then(|v| v.to_str().ok())
        .ok_or("no DPoP header")?;
    let header = jsonwebtoken::decode_header(proof).map_err(|_| "bad proof header")?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err("typ");
    }
    let jwk = header.jwk.ok_or("no jwk")?;
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(
        proof,
        &DecodingKey::from_jwk(&jwk).map_err(|_| "jwk")?,
        &validation,
    )
    .map_err(|_| "signature")?
    .claims;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if claims.htm != htm || claims.htu != htu || claims.iat.abs_diff(now) > 60 {
        return Err("htm, htu or iat");
    }
    Ok((jwk.thumbprint(ThumbprintHash::SHA256).unwrap(), claims))
}

fn oauth_error(status: StatusCode, error: &str, nonce: Option<&str>) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"error":"{error}"}}"#),
    )
        .into_response();
    if let Some(nonce) = nonce {
        response
            .headers_mut()
            .insert("dpop-nonce", nonce.parse().unwrap());
    }
    response
}

async fn token(State(st): State<Shared>, headers: HeaderMap) -> Response {
    let mut st = st.lock().unwrap();
    st.token_requests += 1;
    let htu = format!("http://{}/token", st.addr);
    let (jkt, claims) = match verify(&headers, "POST", &htu) {
        Ok(v) => v,
        Err(why) => return oauth_error(StatusCode::BAD_REQUEST, why, None),
    };
    if claims.ath.is_some() || !st.jtis.insert(claims.jti.clone()) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof", None);
    }
    if st.token_nonce.is_some() && claims.nonce != st.token_nonce {
        let sent = st.token_nonce_header.clone().or(st.token_nonce.clone());
        return oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce", sent.as_deref());
    }
    st.issued += 1;
    let token = format!("dpop-token-{}", st.issued);
    st.tokens.insert(token.clone(), jkt);
    let token_type = if st.bearer { "Bearer" } else { "DPoP" };
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"access_token":"{token}","token_type":"{token_type}","expires_in":3600}}"#),
    )
        .into_response()
}

async fn api(State(st): State<Shared>, headers: HeaderMap) -> Response {
    let mut st = st.lock().unwrap();
    st.api_requests += 1;
    if headers.contains_key(header::AUTHORIZATION) || headers.contains_key("dpop") {
        st.saw_credentials += 1;
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if st.bearer
        && let Some(token) = auth.strip_prefix("Bearer ")
        && st.tokens.contains_key(token)
        && !headers.contains_key("dpop")
    {
        st.api_ok += 1;
        return StatusCode::OK.into_response();
    }
    let Some(token) = auth.strip_prefix("DPoP ") else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let htu = format!("http://{}/api", st.addr);
    let unauthorized = |error: &str| {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, format!(r#"DPoP error="{error}""#))],
        )
            .into_response()
    };
    let Ok((jkt, claims)) = verify(&headers, "GET", &htu) else {
        return unauthorized("invalid_dpop_proof");
    };
    if st.tokens.get(token) != Some(&jkt)
        || claims.ath.as_deref() != Some(access_token_hash(token).as_str())
        || !st.jtis.insert(claims.jti.clone())
    {
        return unauthorized("invalid_token");
    }
    if st.api_nonce.is_some() && (st.always_new_nonce || claims.nonce != st.api_nonce) {
        st.nonce_401s += 1;
        if st.always_new_nonce {
            st.api_nonce = Some(format!("always-new-{}", st.nonce_401s));
        }
        let mut response = unauthorized("use_dpop_nonce");
        let nonce = st.api_nonce.clone().unwrap();
        response
            .headers_mut()
            .insert("dpop-nonce", nonce.parse().unwrap());
        return response;
    }
    st.api_ok += 1;
    st.accepted_jtis.insert(claims.jti);
    st.accepted_since_rotation += 1;
    if st.rotate_every == Some(st.accepted_since_rotation) {
        st.rotations += 1;
        st.accepted_since_rotation = 0;
        st.api_nonce = Some(format!("api-nonce-{}", st.rotations));
    }
    StatusCode::OK.into_response()
}

async fn start(configure: impl FnOnce(&mut St)) -> (SocketAddr, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut st = St {
        addr: addr.to_string(),
        ..Default::default()
    };
    configure(&mut st);
    let st = Arc::new(Mutex::new(st));
    let app = Router::new()
        .route("/token", post(token))
        .route("/api", get(api))
        .with_state(st.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, st)
}

fn source(addr: SocketAddr, dpop: &Dpop) -> ClientCredentials {
    ClientCredentials::builder()
        .token_url(format!("http://{addr}/token"))
        .client_id("c")
        .client_secret("client-secret-1")
        .dpop(dpop.clone())
        .build()
        .unwrap()
}

type Svc = tower::util::BoxCloneService<
    Request<Empty<Bytes>>,
    http::Response<hyper::body::Incoming>,
    BoxError,
>;

fn client(layer: OAuthLayer, dpop: &Dpop) -> Svc {
    ServiceBuilder::new()
        .layer(tower::util::BoxCloneService::layer())
        .layer(layer)
        .layer(DpopLayer::new(dpop.clone()))
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>())
}

async fn get_api(svc: &Svc, addr: SocketAddr) -> Result<StatusCode, BoxError> {
    let request = Request::get(format!("http://{addr}/api"))
        .body(Empty::new())
        .unwrap();
    let svc = svc.clone();
    Ok(svc.oneshot(request).await?.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_1000_calls_one_token_with_nonces_required_at_both_ends_1000_distinct_jti() {
    let (addr, st) = start(|st| {
        st.token_nonce = Some("token-nonce-1".into());
        st.api_nonce = Some("api-nonce-0".into());
    })
    .await;
    let dpop = Dpop::new(DpopKey::generate_es256().unwrap());
    let svc = client(OAuthLayer::new(source(addr, &dpop)), &dpop);
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let request = Request::get(format!("http://{addr}/api"))
                    .body(Empty::new())
                    .unwrap();
                svc.oneshot(request).await.map(|r| r.status())
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), StatusCode::OK);
    }
    let st = st.lock().unwrap();
    assert_eq!(st.issued, 1, "one token");
    assert_eq!(st.token_requests, 2, "1 token request plus 1 nonce retry");
    assert_eq!(st.api_ok, 1_000);
    assert_eq!(
        st.accepted_jtis.len(),
        1_000,
        "1,000 distinct jti at the API"
    );
    assert!(
        st.api_requests <= 2_000,
        "each call at most twice: {}",
        st.api_requests
    );
    assert_eq!(
        st.tokens.values().next().unwrap(),
        dpop.key().thumbprint(),
        "bound to our key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nonce_rotations_no_failure_one_extra_request_each_and_the_token_is_kept() {
    let (addr, st) = start(|st| {
        st.api_nonce = Some("api-nonce-0".into());
        st.rotate_every = Some(100);
    })
    .await;
    let dpop = Dpop::new(DpopKey::generate_es256().unwrap());
    let svc = client(OAuthLayer::new(source(addr, &dpop)), &dpop);
    for _ in 0..550 {
        assert_eq!(get_api(&svc, addr).await.unwrap(), StatusCode::OK);
    }
    let st = st.lock().unwrap();
    assert_eq!(st.rotations, 5);
    assert_eq!(st.api_ok, 550, "0 failures");
    // The first request learns the first nonce; each rotation costs one more request.
    assert_eq!(st.nonce_401s, 1 + 5);
    assert_eq!(st.issued, 1, "use_dpop_nonce drops no token");
}

#[tokio::test]
async fn a_server_that_always_wants_a_new_nonce_gets_one_retry_and_no_loop() {
    let (addr, st) = start(|st| {
        st.api_nonce = Some("first".into());
        st.always_new_nonce = true;
    })
    .await;
    let dpop = Dpop::new(DpopKey::generate_es256().unwrap());
    let svc = client(OAuthLayer::new(source(addr, &dpop)), &dpop);
    assert_eq!(get_api(&svc, addr).await.unwrap(), StatusCode::UNAUTHORIZED);
    let st = st.lock().unwrap();
    assert_eq!(st.api_requests, 2, "sent once more, not more");
    assert_eq!(st.issued, 1);
}

#[tokio::test]
async fn a_malformed_nonce_at_the_token_endpoint_is_one_retry_then_a_typed_error() {
    let (addr, st) = start(|st| {
        st.token_nonce = Some("real".into());
        st.token_nonce_header = Some("has a space".into());
    })
    .await;
    let dpop = Dpop::new(DpopKey::generate_es256().unwrap());
    let svc = client(OAuthLayer::new(source(addr, &dpop)), &dpop);
    let err = get_api(&svc, addr).await.unwrap_err();
    let err = err.downcast_ref::<Error>().expect("a tower_oauth::Error");
    assert_eq!(
        err.token_endpoint_error().unwrap().error(),
        "use_dpop_nonce"
    );
    let st = st.lock().unwrap();
    assert_eq!(st.token_requests, 2, "one retry, no loop");
    assert_eq!(st.api_requests, 0, "nothing sent without a token");
}

#[tokio::test]
async fn a_bearer_answer_to_a_dpop_request_is_an_error_unless_allowed() {
    let (addr, st) = start(|st| st.bearer = true).await;
    let dpop = Dpop::new(DpopKey::generate_es256().unwrap());
    let svc = client(OAuthLayer::new(source(addr, &dpop)), &dpop);
    let err = get_api(&svc, addr).await.unwrap_err();
    let err = err.downcast_ref::<Error>().expect("a tower_oauth::Error");
    assert!(err.is_invalid_response(), "{err}");
    assert_eq!(st.lock().unwrap().api_requests, 0);

    let downgrade = dpop.clone().allowing_bearer_downgrade();
    let svc = client(OAuthLayer::new(source(addr, &downgrade)), &downgrade);
    assert_eq!(get_api(&svc, addr).await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn other_origins_get_neither_token_nor_proof() {
    let (addr, _) = start(|_| {}).await;
    let (other, other_st) = start(|_| {}).await;
    let dpop = Dpop::new(DpopKey::generate_es256().unwrap());
    let layer = OAuthLayer::builder(source(addr, &dpop))
        .allowed_origins([Origin::parse(&format!("http://{addr}")).unwrap()])
        .build();
    let svc = client(layer, &dpop);
    assert_eq!(get_api(&svc, addr).await.unwrap(), StatusCode::OK);
    assert_eq!(
        get_api(&svc, other).await.unwrap(),
        StatusCode::UNAUTHORIZED
    );
    let other_st = other_st.lock().unwrap();
    assert_eq!(other_st.api_requests, 1);
    assert_eq!(
        other_st.saw_credentials, 0,
        "no Authorization, no DPoP header"
    );
}

#[tokio::test]
async fn instances_share_a_token_only_with_the_same_key() {
    let (addr, st) = start(|_| {}).await;
    let store = MemoryStore::new();
    let key = DpopKey::generate_es256().unwrap();
    let same = [Dpop::new(key.clone()), Dpop::new(key)];
    let other = Dpop::new(DpopKey::generate_es256().unwrap());
    for dpop in same.iter().chain([&other]) {
        let layer = OAuthLayer::builder(source(addr, dpop))
            .store(store.clone())
            .build();
        assert_eq!(
            get_api(&client(layer, dpop), addr).await.unwrap(),
            StatusCode::OK
        );
    }
    assert_eq!(
        st.lock().unwrap().issued,
        2,
        "1 for the shared key, 1 for the other"
    );
    let shown = format!("{:?} {:?}", same[0], DpopLayer::new(other.clone()));
    assert!(shown.contains(other.key().thumbprint()), "{shown}");
    assert!(
        !shown.contains("BEGIN") && !shown.contains("MII"),
        "{shown}"
    );
}
