//! Hardening: the token goes only to the allowed origins (also across redirects), a request
//! that has its own `Authorization` is left alone, token-endpoint errors never echo the
//! client's credentials, and oversized token responses are refused.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::{Request as AxumRequest, State};
use axum::response::{IntoResponse, Response as AxumResponse};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::ExposeSecret;
use support::auth_server::AuthServer;
use support::{client_for, counting_source};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_http::follow_redirect::FollowRedirectLayer;
use tower_http::follow_redirect::policy::Limited;
use tower_oauth::{ClientAuth, ClientCredentials, Error, OAuthLayer, Origin, TokenSource};

// ---------------------------------------------------------------------------
// A recording HTTP server on loopback: one origin per port.
// ---------------------------------------------------------------------------

/// What a recorder saw: the path and the `Authorization` header of each request.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Recorder {
    addr: SocketAddr,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    /// A server that records every request and answers `/start` with a 302 to
    /// `redirect_to` (if given), anything else with 200.
    async fn start(redirect_to: Option<String>) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let app = Router::new()
            .fallback(record)
            .with_state((seen.clone(), redirect_to));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Recorder { addr, seen, task }
    }

    fn origin(&self) -> Origin {
        Origin::parse(&format!("http://{}", self.addr)).unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(
    State((seen, redirect_to)): State<(Seen, Option<String>)>,
    req: AxumRequest,
) -> AxumResponse {
    let auth = req
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let path = req.uri().path().to_owned();
    seen.lock().unwrap().push((path.clone(), auth));
    match redirect_to {
        Some(to) if path == "/start" => (StatusCode::FOUND, [(LOCATION, to)]).into_response(),
        _ => "ok".into_response(),
    }
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get(url: &str) -> Request<Empty<Bytes>> {
    Request::get(url).body(Empty::new()).unwrap()
}

// ---------------------------------------------------------------------------
// Origin scoping
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_request_to_a_non_allowed_origin_carries_no_token_and_makes_no_token_request() {
    let auth = AuthServer::start_default().await;
    let api = Recorder::start(None).await;
    let other = Recorder::start(None).await;
    let layer = OAuthLayer::builder(client_for(&auth))
        .allowed_origins([api.origin()])
        .build();
    let client = ServiceBuilder::new().layer(layer).service(http_client());

    let response = client.clone().oneshot(get(&other.url("/x"))).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(other.seen(), [("/x".to_owned(), None)]);
    assert_eq!(auth.token_requests(), 0);

    // The allowed origin gets the token: one token request, then the token on the wire.
    client.clone().oneshot(get(&api.url("/y"))).await.unwrap();
    client.oneshot(get(&other.url("/z"))).await.unwrap();
    assert_eq!(auth.token_requests(), 1);
    let seen = api.seen();
    assert_eq!(seen.len(), 1);
    let token = seen[0]
        .1
        .as_deref()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    assert!(auth.is_valid(token));
    assert_eq!(other.seen()[1], ("/z".to_owned(), None));
}

#[tokio::test]
async fn refused_origins_fail_typed_without_sending_or_fetching() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let other = Recorder::start(None).await;
    let layer = OAuthLayer::builder(counting_source(fetches.clone()))
        .allowed_origins([Origin::parse("https://api.example.com").unwrap()])
        .refuse_other_origins()
        .build();
    let client = ServiceBuilder::new().layer(layer).service(http_client());

    let err = client
        .oneshot(get(&other.url("/secret/path?q=1")))
        .await
        .unwrap_err();

    let err = err.downcast_ref::<Error>().expect("tower_oauth::Error");
    assert!(err.is_origin_refused(), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "request for http://{} refused: not an allowed origin for the access token",
            other.addr
        )
    );
    assert!(other.seen().is_empty(), "nothing sent");
    assert_eq!(fetches.load(Ordering::SeqCst), 0, "nothing fetched");
}

#[tokio::test]
async fn a_request_with_its_own_authorization_is_left_alone_unless_overwrite_is_set() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let api = Recorder::start(None).await;
    let with_basic = || {
        Request::get(api.url("/own"))
            .header(AUTHORIZATION, "Basic dXNlcjpwdw==")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };

    let layer = OAuthLayer::new(counting_source(fetches.clone()));
    let client = ServiceBuilder::new().layer(layer).service(http_client());
    client.oneshot(with_basic()).await.unwrap();
    assert_eq!(
        api.seen(),
        [("/own".to_owned(), Some("Basic dXNlcjpwdw==".to_owned()))]
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 0);

    let layer = OAuthLayer::builder(counting_source(fetches.clone()))
        .overwrite_authorization()
        .build();
    let client = ServiceBuilder::new().layer(layer).service(http_client());
    client.oneshot(with_basic()).await.unwrap();
    assert_eq!(
        api.seen()[1],
        ("/own".to_owned(), Some("Bearer t1".to_owned()))
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn with_allowed_origins_a_relative_uri_gets_no_token() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::builder(counting_source(fetches.clone()))
        .allowed_origins([Origin::parse("http://127.0.0.1:1").unwrap()])
        .build();
    let svc =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|req: Request<()>| async move {
                Ok::<_, BoxError>(Response::new(req.headers().contains_key(AUTHORIZATION)))
            }));
    let has_token = svc
        .oneshot(Request::get("/relative").body(()).unwrap())
        .await
        .unwrap();
    assert!(!has_token.into_body());
    assert_eq!(fetches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_authorization_header_is_sensitive_on_every_path() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::builder(counting_source(fetches.clone()))
        .overwrite_authorization()
        .build();
    let svc =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|req: Request<()>| async move {
                let value = &req.headers()[AUTHORIZATION];
                Ok::<_, BoxError>(Response::new((value.is_sensitive(), format!("{value:?}"))))
            }));
    let plain = || Request::new(());
    let own = || {
        Request::get("/")
            .header(AUTHORIZATION, "Basic x")
            .body(())
            .unwrap()
    };
    // Cold cache (waits for the fetch), warm cache, and an overwritten header.
    for req in [plain(), plain(), own()] {
        let (sensitive, debug) = svc.clone().oneshot(req).await.unwrap().into_body();
        assert!(sensitive);
        assert_eq!(debug, "Sensitive");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// Redirects: two loopback servers, two origins, the first answers 302 to the second.
// ---------------------------------------------------------------------------

struct RedirectPair {
    first: Recorder,
    second: Recorder,
}

async fn redirect_pair() -> RedirectPair {
    let second = Recorder::start(None).await;
    let first = Recorder::start(Some(second.url("/landing"))).await;
    RedirectPair { first, second }
}

#[tokio::test]
async fn follow_redirect_outside_the_layer_a_302_to_another_origin_gets_no_token() {
    let pair = redirect_pair().await;
    let fetches = Arc::new(AtomicUsize::new(0));
    let oauth = OAuthLayer::builder(counting_source(fetches.clone()))
        .allowed_origins([pair.first.origin()])
        .build();
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(oauth)
        .service(http_client());

    let response = client
        .oneshot(get(&pair.first.url("/start")))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        pair.first.seen(),
        [("/start".to_owned(), Some("Bearer t1".to_owned()))]
    );
    assert_eq!(pair.second.seen(), [("/landing".to_owned(), None)]);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

/// Why `allowed_origins` matter in the safe order: without them the layer authorizes each
/// hop it sees, wherever it goes. This test pins that behaviour, which the docs describe.
#[tokio::test]
async fn follow_redirect_outside_the_layer_without_allowed_origins_every_hop_gets_the_token() {
    let pair = redirect_pair().await;
    let oauth = OAuthLayer::new(counting_source(Arc::default()));
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(oauth)
        .service(http_client());

    client
        .oneshot(get(&pair.first.url("/start")))
        .await
        .unwrap();

    assert_eq!(
        pair.second.seen(),
        [("/landing".to_owned(), Some("Bearer t1".to_owned()))]
    );
}

/// The other order: the layer sees only the first hop. tower-http's default policy
/// (`Standard` = `Limited` + `FilterCredentials`) drops `Authorization` on the
/// cross-origin hop.
#[tokio::test]
async fn follow_redirect_inside_the_layer_the_standard_policy_drops_the_token_cross_origin() {
    let pair = redirect_pair().await;
    let oauth = OAuthLayer::new(counting_source(Arc::default()));
    let client = ServiceBuilder::new()
        .layer(oauth)
        .layer(FollowRedirectLayer::new())
        .service(http_client());

    client
        .oneshot(get(&pair.first.url("/start")))
        .await
        .unwrap();

    assert_eq!(
        pair.first.seen(),
        [("/start".to_owned(), Some("Bearer t1".to_owned()))]
    );
    assert_eq!(pair.second.seen(), [("/landing".to_owned(), None)]);
}

/// ...but a policy without `FilterCredentials` forwards the token to the other origin, and
/// `allowed_origins` cannot stop it, since the layer never sees that hop.
#[tokio::test]
async fn follow_redirect_inside_the_layer_a_permissive_policy_leaks_the_token() {
    let pair = redirect_pair().await;
    let oauth = OAuthLayer::builder(counting_source(Arc::default()))
        .allowed_origins([pair.first.origin()])
        .build();
    let client = ServiceBuilder::new()
        .layer(oauth)
        .layer(FollowRedirectLayer::with_policy(Limited::default()))
        .service(http_client());

    client
        .oneshot(get(&pair.first.url("/start")))
        .await
        .unwrap();

    assert_eq!(
        pair.second.seen(),
        [("/landing".to_owned(), Some("Bearer t1".to_owned()))]
    );
}

// ---------------------------------------------------------------------------
// The token endpoint: https only, no echo of credentials, bounded responses.
// ---------------------------------------------------------------------------

#[test]
fn an_http_token_url_to_a_remote_host_fails_at_build_with_a_clear_message() {
    let err = ClientCredentials::builder()
        .token_url("http://auth.example.com/oauth2/token")
        .client_id("c")
        .client_secret("s3cr3t-value")
        .build()
        .unwrap_err();
    assert!(err.is_config());
    assert_eq!(
        err.to_string(),
        "invalid configuration: token_url must be https: `auth.example.com` would send the \
         client secret in clear text (plain http is allowed only to loopback addresses, or \
         with allow_insecure_http())"
    );
    // Loopback in every spelling is allowed; a look-alike name is not.
    for ok in [
        "http://127.0.0.2/t",
        "http://LOCALHOST:9/t",
        "http://[::1]/t",
    ] {
        let built = ClientCredentials::builder()
            .token_url(ok)
            .client_id("c")
            .build();
        assert!(built.is_ok(), "{ok}");
    }
    for remote in [
        "http://localhost.evil.example/t",
        "http://127.0.0.1.nip.io/t",
        "http://10.0.0.1/t",
    ] {
        let err = ClientCredentials::builder()
            .token_url(remote)
            .client_id("c")
            .build()
            .unwrap_err();
        assert!(err.is_config(), "{remote}");
    }
}

#[test]
fn credentials_in_the_token_url_are_refused_at_build() {
    for url in [
        "https://user:pw@auth.example.com/token",
        "https://user@auth.example.com/token",
    ] {
        let err = ClientCredentials::builder()
            .token_url(url)
            .client_id("c")
            .build()
            .unwrap_err();
        assert!(err.is_config(), "{url}");
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}

/// A token endpoint that answers 401 with everything the request carried in its error:
/// the `Authorization` header and the form body, raw and decoded.
async fn echo_endpoint() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    async fn echo(req: AxumRequest) -> AxumResponse {
        let auth = req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body).into_owned();
        let decoded = support::auth_server::parse_form(body.as_bytes())
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let basic = support::auth_server::decode_basic(&auth)
            .map(|(id, secret)| format!("{id} / {secret}"))
            .unwrap_or_default();
        let description =
            format!("rejected: auth=[{auth}] basic=[{basic}] body=[{body}] form=[{decoded}]");
        let json = serde_json::json!({
            "error": format!("invalid_client {auth}"),
            "error_description": description,
            "error_uri": format!("https://errors.example/?{body}"),
        });
        (
            StatusCode::UNAUTHORIZED,
            [(CONTENT_TYPE, format!("application/json; echo={body}"))],
            json.to_string(),
        )
            .into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, Router::new().fallback(echo)).await;
    });
    (addr, task)
}

#[tokio::test]
async fn token_endpoint_errors_never_echo_the_credentials() {
    let (addr, task) = echo_endpoint().await;
    // A secret with characters that change under form-urlencoding.
    let secret = "s3cr3t value/with+chars&=";
    for method in [ClientAuth::ClientSecretBasic, ClientAuth::ClientSecretPost] {
        let source = ClientCredentials::builder()
            .token_url(format!("http://{addr}/token"))
            .client_id("client-1")
            .client_secret(secret)
            .auth_method(method)
            .build()
            .unwrap();
        let err = source.fetch().await.unwrap_err();
        let rfc = err.token_endpoint_error().expect("an RFC 6749 error");
        assert_eq!(rfc.status(), StatusCode::UNAUTHORIZED);
        let description = rfc.error_description().unwrap();
        // The server did echo something; what it echoed is cut out.
        assert!(
            description.contains("[redacted]"),
            "{method:?}: {description}"
        );
        let text = format!("{err} | {err:?} | {err:#?} | {:?}", err.content_type());
        for leaked in [
            secret,
            "s3cr3t+value%2Fwith%2Bchars%26%3D",
            "s3cr3t",
            // base64 of "client-1:" + the encoded secret, as sent in the Basic header.
            "Y2xpZW50LTE6czNjcjN0K3ZhbHVlJTJGd2l0aCUyQmNoYXJzJTI2JTNE",
        ] {
            assert!(!text.contains(leaked), "{method:?}: `{leaked}` in {text}");
        }
    }
    task.abort();
}

/// A token endpoint that answers 200 with a token of `token_len` bytes, with or without
/// `Content-Length`.
async fn big_token_endpoint(
    token_len: usize,
    content_length: bool,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(move || async move {
        let body = format!(
            r#"{{"access_token":"{}","expires_in":60}}"#,
            "a".repeat(token_len)
        );
        let mut response = if content_length {
            let len = body.len();
            let mut r = body.into_response();
            r.headers_mut().insert(CONTENT_LENGTH, len.into());
            r
        } else {
            // Chunks of 64 KiB, no Content-Length.
            let chunks: Vec<Result<Bytes, std::io::Error>> = body
                .into_bytes()
                .chunks(64 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            AxumBody::from_stream(futures_util::stream::iter(chunks)).into_response()
        };
        response
            .headers_mut()
            .insert(CONTENT_TYPE, "application/json".parse().unwrap());
        response
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

#[tokio::test]
async fn a_multi_megabyte_token_is_an_error_not_an_allocation() {
    for content_length in [true, false] {
        let (addr, task) = big_token_endpoint(8 * 1024 * 1024, content_length).await;
        let source = ClientCredentials::builder()
            .token_url(format!("http://{addr}/token"))
            .client_id("c")
            .client_secret("s")
            .build()
            .unwrap();
        let err = source.fetch().await.unwrap_err();
        assert!(err.is_invalid_response(), "{err}");
        assert_eq!(err.status(), Some(StatusCode::OK));
        assert!(err.to_string().contains("size limit"), "{err}");
        task.abort();
    }
}

#[tokio::test]
async fn a_token_over_16_kib_is_an_error() {
    let (addr, task) = big_token_endpoint(16 * 1024 + 1, true).await;
    let source = ClientCredentials::builder()
        .token_url(format!("http://{addr}/token"))
        .client_id("c")
        .client_secret("s")
        .build()
        .unwrap();
    let err = source.fetch().await.unwrap_err();
    assert!(err.is_invalid_response(), "{err}");
    assert!(err.to_string().contains("length limit"), "{err}");
    task.abort();

    let (addr, task) = big_token_endpoint(16 * 1024, true).await;
    let source = ClientCredentials::builder()
        .token_url(format!("http://{addr}/token"))
        .client_id("c")
        .client_secret("s")
        .build()
        .unwrap();
    let token = source.fetch().await.unwrap();
    assert_eq!(token.access_token().expose_secret().len(), 16 * 1024);
    task.abort();
}

/// A token endpoint that accepts the connection and never answers: the error names the
/// limit that fired (`ClientCredentialsBuilder::timeout`, one HTTP request) and its
/// duration, not just "timed out". Real clock (reqwest's timer), generous bounds.
#[tokio::test]
async fn a_client_credentials_timeout_says_which_limit_fired() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket); // read nothing, answer nothing
        }
    });
    let source = tower_oauth::ClientCredentials::builder()
        .token_url(format!("http://{addr}/token"))
        .client_id("c")
        .client_secret("s")
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let layer = tower_oauth::OAuthLayer::new(source);
    let error = layer.cache().token().await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!(
        error.timeout_after(),
        Some(std::time::Duration::from_millis(300))
    );
    // It names the token (`client_id@host`) and the endpoint's origin, then what failed.
    assert_eq!(
        error.to_string(),
        format!(
            "c@127.0.0.1 (token endpoint http://{addr}): \
             token request timed out after 300ms (ClientCredentialsBuilder::timeout)"
        )
    );
    held.abort();
}
