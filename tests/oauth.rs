//! The core behaviour: single flight on a cold cache, expiry on tokio's paused clock,
//! errors, and secrets kept out of `Debug`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, header::AUTHORIZATION};
use support::auth_server::{AuthMethod, AuthServer, AuthServerConfig, FailureMode};
use support::{
    client_for, counting_source, counting_source_lasting, echo_auth, echo_auth_counting, settle,
};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_oauth::{ClientAuth, ClientCredentials, Error, OAuthLayer, Token};

async fn concurrent_calls(
    layer: &OAuthLayer,
    calls: Arc<AtomicUsize>,
    n: usize,
) -> Vec<Result<Response<String>, BoxError>> {
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(echo_auth_counting(calls));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(Request::new(String::new())).await })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_cache_1000_concurrent_calls_make_exactly_one_token_request() {
    let server = AuthServer::start(AuthServerConfig {
        token_delay: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let layer = OAuthLayer::new(client_for(&server));
    let calls = Arc::new(AtomicUsize::new(0));

    let results = concurrent_calls(&layer, calls.clone(), 1000).await;

    assert_eq!(server.token_requests(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1000);
    let headers: Vec<String> = results
        .into_iter()
        .map(|r| r.expect("success").into_body())
        .collect();
    assert_eq!(headers.len(), 1000);
    assert!(headers[0].starts_with("Bearer "), "{}", headers[0]);
    assert!(
        headers.iter().all(|h| h == &headers[0]),
        "all share one token"
    );
    let token = layer.cache().current().expect("cached");
    assert!(server.is_valid(secrecy::ExposeSecret::expose_secret(token.access_token())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_1000_calls_one_token_request_and_the_rfc_error_for_all() {
    let server = AuthServer::start(AuthServerConfig {
        token_delay: Duration::from_millis(100),
        failure: FailureMode::InvalidClient,
        ..Default::default()
    })
    .await;
    let layer = OAuthLayer::new(client_for(&server));
    let calls = Arc::new(AtomicUsize::new(0));

    let results = concurrent_calls(&layer, calls.clone(), 1000).await;

    assert_eq!(server.token_requests(), 1);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no request is sent without a token"
    );
    let mut errors = 0;
    for result in results {
        let err = result.expect_err("no token, no request");
        let err = err.downcast_ref::<Error>().expect("tower_oauth::Error");
        let rfc = err.token_endpoint_error().expect("RFC 6749 5.2 error");
        assert_eq!(rfc.error(), "invalid_client");
        assert_eq!(rfc.status(), http::StatusCode::BAD_REQUEST);
        errors += 1;
    }
    assert_eq!(errors, 1000);
}

#[tokio::test]
async fn html_500_from_the_endpoint_is_a_typed_error_with_status_and_content_type() {
    let server = AuthServer::start(AuthServerConfig {
        failure: FailureMode::ServerErrorHtml,
        ..Default::default()
    })
    .await;
    let err = client_for(&server).fetch_token().await.unwrap_err();
    assert!(err.is_invalid_response(), "{err}");
    assert_eq!(err.status(), Some(http::StatusCode::INTERNAL_SERVER_ERROR));
    assert!(err.content_type().unwrap().starts_with("text/html"));
}

#[tokio::test]
async fn malformed_json_from_the_endpoint_is_a_typed_error() {
    let server = AuthServer::start(AuthServerConfig {
        failure: FailureMode::MalformedJson,
        ..Default::default()
    })
    .await;
    let err = client_for(&server).fetch_token().await.unwrap_err();
    assert!(err.is_invalid_response(), "{err}");
    assert_eq!(err.status(), Some(http::StatusCode::OK));
}

#[tokio::test]
async fn closed_port_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let source = ClientCredentials::builder()
        .token_url(format!("http://127.0.0.1:{port}/token"))
        .client_id("c")
        .client_secret("s")
        .build()
        .unwrap();
    let err = source.fetch_token().await.unwrap_err();
    assert!(err.is_transport(), "{err:?}");
}

/// `ClientCredentials` as a source, called directly.
trait FetchToken {
    async fn fetch_token(&self) -> Result<Token, Error>;
}

impl<T: tower_oauth::TokenSource> FetchToken for T {
    async fn fetch_token(&self) -> Result<Token, Error> {
        self.fetch().await
    }
}

#[tokio::test]
async fn client_secret_basic_form_encodes_id_and_secret() {
    let server = AuthServer::start(AuthServerConfig {
        client_id: "my client:1".into(),
        client_secret: "p@ss:w%rd+/= é".into(),
        ..Default::default()
    })
    .await;
    let source = ClientCredentials::builder()
        .token_url(server.token_url())
        .client_id("my client:1")
        .client_secret("p@ss:w%rd+/= é")
        .scope("api.read")
        .scope("api.write api.read")
        .audience("https://api.example.test")
        .resource("https://r1.example.test")
        .resource("https://r2.example.test")
        .param("extra", "x y")
        .build()
        .unwrap();
    let token = source
        .fetch_token()
        .await
        .expect("server accepts the credentials");
    assert_eq!(token.token_type().as_str(), "Bearer");
    let seen = server.last_token_request().unwrap();
    assert_eq!(seen.auth_method, Some(AuthMethod::ClientSecretBasic));
    assert_eq!(seen.client_id.as_deref(), Some("my client:1"));
    assert_eq!(seen.param("grant_type"), Some("client_credentials"));
    assert_eq!(seen.param("scope"), Some("api.read api.write"));
    assert_eq!(seen.param("audience"), Some("https://api.example.test"));
    assert_eq!(seen.param("extra"), Some("x y"));
    let resources: Vec<_> = seen
        .params
        .iter()
        .filter(|(k, _)| k == "resource")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        resources,
        ["https://r1.example.test", "https://r2.example.test"]
    );
    assert_eq!(seen.param("client_secret"), None);
}

#[tokio::test]
async fn client_secret_post_sends_credentials_in_the_body() {
    let server = AuthServer::start_default().await;
    let source = ClientCredentials::builder()
        .token_url(server.token_url())
        .client_id("demo")
        .client_secret("demo-secret")
        .auth_method(ClientAuth::ClientSecretPost)
        .build()
        .unwrap();
    source.fetch_token().await.expect("token");
    let seen = server.last_token_request().unwrap();
    assert_eq!(seen.auth_method, Some(AuthMethod::ClientSecretPost));
    assert_eq!(seen.param("client_id"), Some("demo"));
}

#[tokio::test]
async fn wrong_secret_gives_invalid_client_and_sends_nothing() {
    let server = AuthServer::start_default().await;
    let source = ClientCredentials::builder()
        .token_url(server.token_url())
        .client_id("demo")
        .client_secret("wrong")
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = OAuthLayer::new(source).layer_service(echo_auth_counting(calls.clone()));
    let err = svc.oneshot(Request::new(String::new())).await.unwrap_err();
    let err = err.downcast::<Error>().unwrap();
    assert_eq!(
        err.token_endpoint_error().unwrap().error(),
        "invalid_client"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

trait LayerService {
    fn layer_service<S>(&self, inner: S) -> tower_oauth::OAuth<S>;
}

impl LayerService for OAuthLayer {
    fn layer_service<S>(&self, inner: S) -> tower_oauth::OAuth<S> {
        tower::Layer::layer(self, inner)
    }
}

async fn call(
    svc: &mut tower_oauth::OAuth<
        impl Service<Request<String>, Response = Response<String>, Error = BoxError, Future: Send>
        + Clone
        + Send
        + 'static,
    >,
) -> String {
    svc.ready()
        .await
        .unwrap()
        .call(Request::new(String::new()))
        .await
        .unwrap()
        .into_body()
}

#[tokio::test(start_paused = true)]
async fn a_120s_token_is_refreshed_once_with_60s_left_not_before() {
    let fetches = Arc::new(AtomicUsize::new(0));
    // The on-demand path: refresh ahead (on by default) is tested in tests/refresh_ahead.rs.
    let layer = OAuthLayer::builder(counting_source_lasting(
        Duration::from_secs(120),
        fetches.clone(),
    ))
    .refresh_ahead(false)
    .build();
    let mut svc = layer.layer_service(echo_auth());

    assert_eq!(call(&mut svc).await, "Bearer t1");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    tokio::time::advance(Duration::from_secs(59)).await;
    settle().await;
    assert_eq!(call(&mut svc).await, "Bearer t1", "61 s left: not yet");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    // 60 s left: the caller still holds a valid token, so it does not wait; it starts the
    // one fetch, and the next caller gets the new token.
    assert_eq!(
        call(&mut svc).await,
        "Bearer t1",
        "60 s left: refresh started"
    );
    settle().await;
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_eq!(call(&mut svc).await, "Bearer t2", "refreshed");

    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(5)).await;
        settle().await;
        assert_eq!(call(&mut svc).await, "Bearer t2");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "once, not on every call");
}

#[tokio::test(start_paused = true)]
async fn a_30s_token_is_refreshed_with_15s_left() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::builder(counting_source_lasting(
        Duration::from_secs(30),
        fetches.clone(),
    ))
    .refresh_ahead(false)
    .build();
    let mut svc = layer.layer_service(echo_auth());

    assert_eq!(call(&mut svc).await, "Bearer t1");
    tokio::time::advance(Duration::from_secs(14)).await;
    settle().await;
    assert_eq!(call(&mut svc).await, "Bearer t1", "16 s left: not yet");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(
        call(&mut svc).await,
        "Bearer t1",
        "15 s left: refresh started"
    );
    settle().await;
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_eq!(call(&mut svc).await, "Bearer t2", "refreshed");
}

#[tokio::test(start_paused = true)]
async fn the_refresh_margin_is_configurable() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::builder(counting_source_lasting(
        Duration::from_secs(600),
        fetches.clone(),
    ))
    .refresh_margin(Duration::from_secs(100))
    .refresh_ahead(false)
    .build();
    let mut svc = layer.layer_service(echo_auth());
    call(&mut svc).await;
    tokio::time::advance(Duration::from_secs(499)).await;
    settle().await;
    assert_eq!(call(&mut svc).await, "Bearer t1");
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(
        call(&mut svc).await,
        "Bearer t1",
        "refresh started, no wait"
    );
    settle().await;
    assert_eq!(call(&mut svc).await, "Bearer t2");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_fetch_completes_when_its_caller_is_dropped() {
    let server = AuthServer::start(AuthServerConfig {
        token_delay: Duration::from_millis(50),
        ..Default::default()
    })
    .await;
    let layer = OAuthLayer::new(client_for(&server));
    let svc = layer.layer_service(echo_auth());
    let pending = svc.oneshot(Request::new(String::new()));
    // Start the fetch, then give up on the request.
    let _ = tokio::time::timeout(Duration::from_millis(10), pending).await;
    assert!(layer.cache().current().is_none());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        layer.cache().current().is_some(),
        "the fetch ran to completion"
    );
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test]
async fn invalidate_and_refresh() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = OAuthLayer::new(counting_source(fetches.clone()));
    let cache = layer.cache();
    let t1 = cache.token().await.unwrap();
    let again = cache.token().await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(t1.access_token()),
        secrecy::ExposeSecret::expose_secret(again.access_token())
    );
    let t2 = cache.refresh().await.unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(t2.access_token()),
        "t2"
    );
    cache.invalidate();
    assert!(cache.current().is_none());
    let mut svc = layer.layer_service(echo_auth());
    assert_eq!(call(&mut svc).await, "Bearer t3");
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_authorization_header_is_marked_sensitive() {
    let layer = OAuthLayer::new(counting_source(Arc::default()));
    let svc = layer.layer_service(service_fn(|req: Request<()>| async move {
        Ok::<_, BoxError>(Response::new(req.headers()[AUTHORIZATION].is_sensitive()))
    }));
    assert!(svc.oneshot(Request::new(())).await.unwrap().into_body());
}

#[tokio::test]
async fn debug_never_shows_the_secret_or_the_token() {
    let server = AuthServer::start_default().await;
    let source = client_for(&server);
    let layer = OAuthLayer::new(source.clone());
    let token = layer.cache().token().await.unwrap();
    let access_token = secrecy::ExposeSecret::expose_secret(token.access_token()).to_owned();
    let svc = layer.layer_service(tower::service_fn(|_: Request<()>| async {
        Ok::<_, BoxError>(Response::new(()))
    }));
    for text in [
        format!("{source:?}"),
        format!("{source:#?}"),
        format!("{layer:?}"),
        format!("{layer:#?}"),
        format!("{:?}", svc.get_ref() as *const _),
        format!("{:?}", svc.cache()),
        format!("{token:?}"),
        format!("{token:#?}"),
        format!("{:?}", layer.cache()),
        format!(
            "{:?}",
            ClientCredentials::builder().client_secret("demo-secret")
        ),
    ] {
        assert!(!text.contains("demo-secret"), "secret in {text}");
        assert!(!text.contains(&access_token), "token in {text}");
    }
}

#[test]
fn plain_http_to_a_remote_host_fails_at_build() {
    let err = ClientCredentials::builder()
        .token_url("http://auth.example.com/token")
        .client_id("c")
        .build()
        .unwrap_err();
    assert!(err.is_config());
    assert!(err.to_string().contains("https"), "{err}");
    for ok in [
        "http://127.0.0.1:8080/t",
        "http://localhost/t",
        "http://[::1]:1/t",
    ] {
        ClientCredentials::builder()
            .token_url(ok)
            .client_id("c")
            .build()
            .unwrap();
    }
    ClientCredentials::builder()
        .token_url("http://auth.example.com/token")
        .client_id("c")
        .allow_insecure_http()
        .build()
        .unwrap();
}

#[test]
fn missing_configuration_is_a_config_error() {
    assert!(
        ClientCredentials::builder()
            .client_id("c")
            .build()
            .unwrap_err()
            .is_config()
    );
    assert!(
        ClientCredentials::builder()
            .token_url("https://a.test/t")
            .build()
            .unwrap_err()
            .is_config()
    );
    let err = ClientCredentials::builder()
        .token_url("https://a.test/t")
        .client_id("c")
        .param("grant_type", "password")
        .build()
        .unwrap_err();
    assert!(err.is_config(), "{err}");
}
