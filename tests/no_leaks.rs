//! No secret and no token in any log line or `Debug` output.
//!
//! `full_run_at_trace_level_logs_no_secret_and_no_token` captures all tracing output (every
//! target, TRACE, `log` records included) while it runs a list of scenario steps against
//! the in-process authorization server: fetch, hot path, refresh, invalidate and refetch, a
//! 401 from the API, error paths (wrong secret, HTML 500, malformed JSON, closed port, a
//! refused origin). Every secret and token the run sees is collected, and none may appear
//! in the captured output. Steps are plain functions in [`steps`]: add one (401 replay,
//! Redis fallback, ...) by writing it and listing it there.
//!
//! `debug_of_every_public_type_hides_secrets` formats every public type with `{:?}` and
//! `{:#?}` while a token is cached.

mod support;

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secrecy::ExposeSecret;
use support::Captured;
use support::auth_server::{AuthServer, AuthServerConfig, FailureMode};
use tower::util::BoxCloneService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_http::trace::{DefaultMakeSpan, DefaultOnRequest, DefaultOnResponse, TraceLayer};
use tower_oauth::endpoint::ResponseParser;
use tower_oauth::www_authenticate;
use tower_oauth::{
    ClientAuth, ClientCredentials, Error, OAuthLayer, Origin, SigningKey, Token, TokenSource,
    TokenType, source_fn,
};
use tracing::Level;

const SECRET: &str = "cl13nt s3cr3t/+&=";
const WRONG_SECRET: &str = "wr0ng-s3cr3t-value";

// ---------------------------------------------------------------------------
// Capture of all tracing output
// ---------------------------------------------------------------------------

/// Everything the global subscriber writes.
fn output() -> &'static Captured {
    static OUTPUT: OnceLock<Captured> = OnceLock::new();
    OUTPUT.get_or_init(Captured::default)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs a global subscriber that writes every event and span, at TRACE, for every
/// target, into [`output`]; `log` records (reqwest's) are forwarded to it.
fn capture_everything() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        use tracing_subscriber::util::SubscriberInitExt;
        output()
            .subscriber(Level::TRACE)
            .try_init()
            .expect("no other global subscriber in this test binary");
    });
}

fn captured() -> String {
    output().text()
}

// ---------------------------------------------------------------------------
// The run and its steps
// ---------------------------------------------------------------------------

/// The response body is dropped: the steps look at status and headers only.
type HttpService = BoxCloneService<Request<Empty<Bytes>>, Response<()>, BoxError>;

/// What the steps share.
struct Run {
    server: AuthServer,
    layer: OAuthLayer,
    /// OAuthLayer -> TraceLayer (with headers) -> hyper client.
    client: HttpService,
    /// Every secret and token seen: none may appear in the captured output.
    secrets: Mutex<Vec<String>>,
}

impl Run {
    async fn start() -> Run {
        let server = AuthServer::start(AuthServerConfig {
            client_id: "client-1".into(),
            client_secret: SECRET.into(),
            assertion_keys: vec![test_key("p256.pem").public_jwk()],
            ..Default::default()
        })
        .await;
        let source = ClientCredentials::builder()
            .token_url(server.token_url())
            .client_id("client-1")
            .client_secret(SECRET)
            .build()
            .unwrap();
        let layer = OAuthLayer::builder(source)
            .allowed_origins([Origin::parse(&format!("http://{}", server.addr())).unwrap()])
            // Each failing step is followed at once by a request that must fetch again.
            .failure_window(std::time::Duration::ZERO)
            .build();
        let client = ServiceBuilder::new()
            .layer(layer.clone())
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(
                        DefaultMakeSpan::new()
                            .level(Level::TRACE)
                            .include_headers(true),
                    )
                    .on_request(DefaultOnRequest::new().level(Level::TRACE))
                    .on_response(
                        DefaultOnResponse::new()
                            .level(Level::TRACE)
                            .include_headers(true),
                    ),
            )
            .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>())
            .map_response(|response: Response<_>| response.map(|_| ()))
            .boxed_clone();
        let run = Run {
            server,
            layer,
            client,
            secrets: Mutex::default(),
        };
        run.note_credentials("client-1", SECRET);
        run.note_credentials("client-1", WRONG_SECRET);
        for key in [
            "p256.pem",
            "p256.other.pem",
            "p256.jwk.json",
            "rsa.pem",
            "mtls/client.key",
        ] {
            run.note_key_material(key);
        }
        run
    }

    /// The private parts of a test key file: each base64 line of a PEM, the private
    /// members of a JWK.
    fn note_key_material(&self, name: &str) {
        let text = std::fs::read_to_string(key_path(name)).unwrap();
        let mut secrets = lock(&self.secrets);
        if text.trim_start().starts_with('{') {
            let jwk: serde_json::Value = serde_json::from_str(&text).unwrap();
            secrets.push(jwk["d"].as_str().unwrap().to_owned());
        } else {
            secrets.extend(
                text.lines()
                    .filter(|line| !line.starts_with("-----") && line.len() > 20)
                    .map(str::to_owned),
            );
        }
    }

    /// Notes the client assertion of the server's last token request.
    fn note_last_assertion(&self) {
        if let Some(assertion) = self
            .server
            .last_token_request()
            .and_then(|r| r.param("client_assertion").map(str::to_owned))
        {
            lock(&self.secrets).push(assertion);
        }
    }

    fn builder(&self) -> tower_oauth::endpoint::ClientCredentialsBuilder {
        ClientCredentials::builder()
            .token_url(self.server.token_url())
            .client_id("client-1")
    }

    /// The secret in the forms it leaves in: as is, form-urlencoded, and in the `Basic`
    /// header (base64 of `urlencode(id):urlencode(secret)`).
    fn note_credentials(&self, id: &str, secret: &str) {
        let basic = support::auth_server::basic_auth_header(id, secret);
        let mut secrets = lock(&self.secrets);
        secrets.push(secret.to_owned());
        secrets.push(support::auth_server::form_urlencode(secret));
        secrets.push(basic.strip_prefix("Basic ").unwrap().to_owned());
    }

    fn note_token(&self, token: &Token) {
        lock(&self.secrets).push(token.access_token().expose_secret().to_owned());
    }

    /// Notes the cached token, if any.
    fn note_current(&self) {
        if let Some(token) = self.layer.cache().current() {
            self.note_token(&token);
        }
    }

    async fn get(&self, path: &str) -> Result<Response<()>, BoxError> {
        let url = format!("{}{path}", self.server.api_url());
        let request = Request::get(url).body(Empty::new()).unwrap();
        let result = self.client.clone().oneshot(request).await;
        self.note_current();
        result
    }

    /// Logs an error the way an application would: Display and Debug, as tracing fields.
    fn log_error(&self, step: &str, err: &(dyn std::error::Error + 'static)) {
        tracing::error!(step, error = %err, debug = ?err, "request failed");
        let mut source = err.source();
        while let Some(s) = source {
            tracing::error!(step, cause = %s, debug = ?s, "caused by");
            source = s.source();
        }
    }

    /// A source for the same server with another secret or auth method.
    fn source(&self, secret: &str, auth: ClientAuth) -> ClientCredentials {
        ClientCredentials::builder()
            .token_url(self.server.token_url())
            .client_id("client-1")
            .client_secret(secret)
            .auth_method(auth)
            .build()
            .unwrap()
    }
}

/// One scenario step.
type Step = fn(&Run) -> LocalBoxFuture<'_, ()>;

/// The steps of the full run, in order. New behaviour (401 replay, Redis fallback...) gets
/// a step here.
fn steps() -> Vec<(&'static str, Step)> {
    vec![
        ("fetch", fetch),
        ("hot path", hot_path),
        ("refresh", refresh),
        ("invalidate and refetch", invalidate_and_refetch),
        ("401 from the API, replayed", rejected_by_the_api),
        ("401 from the API, not replayed", rejected_without_replay),
        #[cfg(feature = "redis")]
        ("Redis down, local fallback", redis_fallback),
        ("wrong secret", wrong_secret),
        ("client_secret_post", client_secret_post),
        ("private_key_jwt", private_key_jwt),
        ("client_secret_jwt", client_secret_jwt),
        ("assertion file", assertion_file),
        ("mutual TLS", mutual_tls),
        ("token exchange", token_exchange),
        ("DPoP", dpop),
        ("HTML 500", html_500),
        ("malformed JSON", malformed_json),
        ("temporarily unavailable", temporarily_unavailable),
        ("closed port", closed_port),
        ("refused origin", refused_origin),
    ]
}

fn fetch(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        let response = run.get("/fetch").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(run.server.token_requests(), 1);
    })
}

fn hot_path(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        for _ in 0..3 {
            assert_eq!(run.get("/hot").await.unwrap().status(), StatusCode::OK);
        }
        assert_eq!(run.server.token_requests(), 1);
    })
}

fn refresh(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        let token = run.layer.cache().refresh().await.unwrap();
        run.note_token(&token);
        assert_eq!(
            run.get("/after-refresh").await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(run.server.token_requests(), 2);
    })
}

fn invalidate_and_refetch(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        run.layer.cache().invalidate();
        assert_eq!(run.get("/refetch").await.unwrap().status(), StatusCode::OK);
        assert_eq!(run.server.token_requests(), 3);
    })
}

fn rejected_by_the_api(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        // The API refuses the token: the layer invalidates it, fetches one new token and
        // sends the request again (with its replay logged at INFO).
        run.server.revoke_all();
        let before = run.server.token_requests();
        let response = run.get("/revoked").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(run.server.token_requests(), before + 1);
        assert_eq!(
            run.get("/recovered").await.unwrap().status(),
            StatusCode::OK
        );
    })
}

fn rejected_without_replay(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        // With replay off the 401 reaches the caller, and the token is still invalidated.
        let layer = OAuthLayer::builder(run.source(SECRET, ClientAuth::ClientSecretBasic))
            .replay(false)
            .build();
        let token = layer.cache().token().await.unwrap();
        run.note_token(&token);
        run.server.revoke_all();
        let client = ServiceBuilder::new()
            .layer(layer.clone())
            .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
        let url = format!("{}/no-replay", run.server.api_url());
        let response = client
            .oneshot(Request::get(url).body(Empty::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenges = www_authenticate::challenges(response.headers());
        tracing::warn!(?challenges, "API refused the token");
        assert!(www_authenticate::is_invalid_token(response.headers()));
        assert!(layer.cache().current().is_none(), "invalidated");
    })
}

#[cfg(feature = "redis")]
fn redis_fallback(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        // A Redis that is not there: the layer says so (warn) and fetches on its own.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let password = "redis-password-9f8e7d";
        lock(&run.secrets).push(password.to_owned());
        let url = format!("redis://:{password}@127.0.0.1:{port}/");
        let store = tower_oauth::store::RedisStore::open(&url).unwrap();
        let layer = OAuthLayer::builder(run.source(SECRET, ClientAuth::ClientSecretBasic))
            .store(store)
            .build();
        let token = layer.cache().token().await.unwrap();
        run.note_token(&token);
        let err = layer.cache().stored_token().await.unwrap_err();
        assert!(err.is_store());
        run.log_error("redis fallback", &err);
    })
}

fn wrong_secret(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        let layer = OAuthLayer::new(run.source(WRONG_SECRET, ClientAuth::ClientSecretBasic));
        let err = layer.cache().token().await.unwrap_err();
        assert_eq!(
            err.token_endpoint_error().unwrap().error(),
            "invalid_client"
        );
        run.log_error("wrong secret", &err);
    })
}

fn client_secret_post(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        let token = run
            .source(SECRET, ClientAuth::ClientSecretPost)
            .fetch()
            .await
            .unwrap();
        run.note_token(&token);
        tracing::info!(?token, "fetched with client_secret_post");
        let err = run
            .source(WRONG_SECRET, ClientAuth::ClientSecretPost)
            .fetch()
            .await
            .unwrap_err();
        assert!(err.is_token_endpoint(), "{err}");
        run.log_error("client_secret_post, wrong secret", &err);
    })
}

fn key_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn test_key(name: &str) -> SigningKey {
    SigningKey::from_pem(std::fs::read(key_path(name)).unwrap()).unwrap()
}

fn private_key_jwt(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        let key =
            SigningKey::from_jwk(&std::fs::read_to_string(key_path("p256.jwk.json")).unwrap())
                .unwrap();
        tracing::info!(?key, "signing key");
        let source = run.builder().private_key(key).build().unwrap();
        tracing::info!(?source, "source");
        let token = source.fetch().await.unwrap();
        run.note_last_assertion();
        run.note_token(&token);
        tracing::info!(?token, "fetched with private_key_jwt");
        let wrong = run
            .builder()
            .private_key(test_key("p256.other.pem"))
            .build()
            .unwrap();
        let err = wrong.fetch().await.unwrap_err();
        run.note_last_assertion();
        assert_eq!(
            err.token_endpoint_error().unwrap().error(),
            "invalid_client"
        );
        run.log_error("private_key_jwt, wrong key", &err);
    })
}

fn client_secret_jwt(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        for (secret, ok) in [(SECRET, true), (WRONG_SECRET, false)] {
            let source = run
                .builder()
                .client_secret(secret)
                .auth_method(ClientAuth::ClientSecretJwt)
                .build()
                .unwrap();
            let result = source.fetch().await;
            run.note_last_assertion();
            match result {
                Ok(token) if ok => run.note_token(&token),
                Err(err) if !ok => run.log_error("client_secret_jwt, wrong secret", &err),
                other => panic!("client_secret_jwt: {other:?}"),
            }
        }
    })
}

fn assertion_file(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        let dir = std::env::temp_dir().join(format!("tower-oauth-leaks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A token the server refuses (not a JWT it can verify), and one that is not a JWT.
        let refused = dir.join("refused");
        let refused_jwt =
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjbGllbnQtMSJ9.c2lnbmF0dXJlLW9mLWEtbGVhaw";
        std::fs::write(&refused, refused_jwt).unwrap();
        let malformed = dir.join("malformed");
        std::fs::write(&malformed, "assertion-that-must-not-leak").unwrap();
        {
            let mut secrets = lock(&run.secrets);
            secrets.push(refused_jwt.to_owned());
            secrets.push("assertion-that-must-not-leak".to_owned());
        }
        for path in [&refused, &malformed] {
            let layer = OAuthLayer::new(run.builder().client_assertion_file(path).build().unwrap());
            let err = layer.cache().token().await.unwrap_err();
            run.log_error("assertion file", &err);
        }
        let _ = std::fs::remove_dir_all(&dir);
    })
}

fn mutual_tls(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        // The plain-http test server cannot do TLS: a transport error, logged.
        let source = ClientCredentials::builder()
            .token_url(format!("https://{}/token", run.server.addr()))
            .client_id("client-1")
            .client_certificate(
                std::fs::read(key_path("mtls/client.pem")).unwrap(),
                std::fs::read(key_path("mtls/client.key")).unwrap(),
            )
            .build()
            .unwrap();
        tracing::info!(?source, "mutual-TLS source");
        let err = source.fetch().await.unwrap_err();
        assert!(err.is_transport(), "{err}");
        run.log_error("mutual TLS", &err);
    })
}

fn dpop(run: &Run) -> LocalBoxFuture<'_, ()> {
    use tower_oauth::endpoint::dpop::{Dpop, DpopKey};
    use tower_oauth::oauth::dpop::DpopLayer;
    Box::pin(async move {
        // The p256.pem key: its PEM lines are noted secrets.
        let dpop =
            Dpop::new(DpopKey::from_signing_key(test_key("p256.pem"))).allowing_bearer_downgrade();
        let source = run
            .builder()
            .client_secret(SECRET)
            .dpop(dpop.clone())
            .build()
            .unwrap();
        let layer = DpopLayer::new(dpop.clone());
        tracing::info!(?dpop, ?source, ?layer, key = ?dpop.key(), "DPoP set-up");
        let token = source.fetch().await.unwrap();
        run.note_token(&token);
        tracing::info!(?token, "fetched with a DPoP proof");
    })
}

fn token_exchange(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        let client = run.builder().client_secret(SECRET).build().unwrap();
        let good = "subject-token-that-must-not-leak";
        let bad = "bad-subject-token-that-must-not-leak";
        lock(&run.secrets).extend([good.to_owned(), bad.to_owned()]);
        let source = client.token_exchange(tower_oauth::SubjectToken::new(good));
        tracing::info!(?source, identity = %source.identity().unwrap(), "token exchange source");
        let token = source.fetch().await.unwrap();
        run.note_token(&token);
        let err = client
            .token_exchange(tower_oauth::SubjectToken::new(bad))
            .fetch()
            .await
            .unwrap_err();
        assert_eq!(err.token_endpoint_error().unwrap().error(), "invalid_grant");
        run.log_error("token exchange, refused subject", &err);
    })
}

async fn failing_fetch(run: &Run, mode: FailureMode, step: &str) -> Error {
    run.server.fail_next(1, mode);
    run.layer.cache().invalidate();
    let err = run.get(step).await.unwrap_err();
    run.log_error(step, &*err);
    let err = err.downcast::<Error>().expect("tower_oauth::Error");
    // The server answers normally again: the next request gets a new token.
    assert_eq!(run.get("/ok-again").await.unwrap().status(), StatusCode::OK);
    *err
}

fn html_500(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        let err = failing_fetch(run, FailureMode::ServerErrorHtml, "/html-500").await;
        assert!(err.is_invalid_response());
    })
}

fn malformed_json(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        let err = failing_fetch(run, FailureMode::MalformedJson, "/malformed").await;
        assert!(err.is_invalid_response());
    })
}

fn temporarily_unavailable(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        let err = failing_fetch(run, FailureMode::TemporarilyUnavailable, "/503").await;
        assert!(err.is_token_endpoint());
    })
}

fn closed_port(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let source = ClientCredentials::builder()
            .token_url(format!("http://127.0.0.1:{port}/token"))
            .client_id("client-1")
            .client_secret(SECRET)
            .build()
            .unwrap();
        let err = OAuthLayer::new(source).cache().token().await.unwrap_err();
        assert!(err.is_transport(), "{err}");
        run.log_error("closed port", &err);
    })
}

fn refused_origin(run: &Run) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        let layer = OAuthLayer::builder(run.source(SECRET, ClientAuth::ClientSecretBasic))
            .allowed_origins([Origin::parse("https://api.example.com").unwrap()])
            .refuse_other_origins()
            .build();
        let svc = layer.layer_service_fn();
        let err = svc
            .oneshot(Request::get(run.server.api_url()).body(()).unwrap())
            .await
            .unwrap_err();
        run.log_error("refused origin", &*err);
        assert!(err.downcast_ref::<Error>().unwrap().is_origin_refused());
    })
}

type OkFn = fn(Request<()>) -> std::future::Ready<Result<Response<()>, BoxError>>;

/// The layer around an inner service that answers 200 to everything.
trait LayerServiceFn {
    fn layer_service_fn(&self) -> tower_oauth::OAuth<tower::util::ServiceFn<OkFn>>;
}

impl LayerServiceFn for OAuthLayer {
    fn layer_service_fn(&self) -> tower_oauth::OAuth<tower::util::ServiceFn<OkFn>> {
        fn ok(_: Request<()>) -> std::future::Ready<Result<Response<()>, BoxError>> {
            std::future::ready(Ok(Response::new(())))
        }
        tower::Layer::layer(self, tower::service_fn(ok as OkFn))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_run_at_trace_level_logs_no_secret_and_no_token() {
    capture_everything();
    let run = Run::start().await;
    for (name, step) in steps() {
        tracing::info!(step = name, "step");
        step(&run).await;
    }

    let log = captured();
    if let Ok(path) = std::env::var("NO_LEAKS_DUMP") {
        std::fs::write(path, &log).unwrap();
    }
    let secrets = lock(&run.secrets).clone();
    // 3 forms of 2 secrets, and at least the 6 tokens the steps fetched.
    assert!(secrets.len() >= 12, "{} secrets noted", secrets.len());
    for secret in &secrets {
        assert!(!secret.is_empty());
        if let Some(at) = log.find(secret.as_str()) {
            let line_start = log[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = log[at..].find('\n').map_or(log.len(), |i| at + i);
            panic!("`{secret}` in the log: {}", &log[line_start..line_end]);
        }
    }
    // The capture saw what it is meant to check: the crate's events, errors, and the
    // Authorization header as a traced field.
    for expected in [
        "fetching token",
        "token stored",
        "token invalidated",
        "token fetch failed",
        "invalid_client",
        "text/html",
        "token endpoint unreachable",
        "refused: not an allowed origin",
        "\"authorization\": Sensitive",
        "invalid_token",
        "[redacted]",
    ] {
        assert!(log.contains(expected), "`{expected}` not captured");
    }
    eprintln!(
        "captured {} lines, {} bytes; checked {} secrets and tokens",
        log.lines().count(),
        log.len(),
        secrets.len()
    );
}

// ---------------------------------------------------------------------------
// Debug of every public type
// ---------------------------------------------------------------------------

#[tokio::test]
async fn debug_of_every_public_type_hides_secrets() {
    let server = AuthServer::start(AuthServerConfig {
        client_secret: SECRET.into(),
        ..Default::default()
    })
    .await;
    let builder = ClientCredentials::builder()
        .token_url(server.token_url())
        .client_id("demo")
        .client_secret(SECRET)
        .scope("a b");
    let builder_debug = [format!("{builder:?}"), format!("{builder:#?}")];
    let source = builder.build().unwrap();
    let layer_builder = OAuthLayer::builder(source.clone())
        .allowed_origins([Origin::parse("https://api.example.com").unwrap()]);
    let layer_builder_debug = [format!("{layer_builder:?}"), format!("{layer_builder:#?}")];
    let layer = layer_builder.build();
    let token = layer.cache().token().await.unwrap();
    let access_token = token.access_token().expose_secret().to_owned();
    let mut svc = layer.layer_service_fn();
    // A response future waiting for nothing (the token is cached) and one that is refused.
    let future = svc.call(Request::get("https://api.example.com/").body(()).unwrap());
    let other_token = Token::new(access_token.clone(), Duration::from_secs(1))
        .with_token_type(TokenType::parse("bearer"))
        .with_scope("s");
    let errors: Vec<Error> = vec![
        ResponseParser::default()
            .parse(
                StatusCode::BAD_REQUEST,
                None,
                br#"{"error":"invalid_client"}"#,
            )
            .unwrap_err(),
        ResponseParser::default()
            .parse(StatusCode::OK, Some("text/html"), b"<html>")
            .unwrap_err(),
        Error::other(std::io::Error::other("custom")),
        OAuthLayer::new(
            ClientCredentials::builder()
                .token_url(server.token_url())
                .client_id("demo")
                .client_secret("wrong")
                .build()
                .unwrap(),
        )
        .cache()
        .token()
        .await
        .unwrap_err(),
        ClientCredentials::builder()
            .token_url("http://remote.example/t")
            .client_id("c")
            .client_secret(SECRET)
            .build()
            .unwrap_err(),
    ];
    let rfc = errors[0].token_endpoint_error().unwrap().clone();
    let source_fn_debug = format!(
        "{:?}",
        source_fn(|| async { Ok(Token::new("x", Duration::from_secs(1))) })
    );
    let challenge = &www_authenticate::parse(br#"Bearer error="invalid_token""#).unwrap()[0];
    let parse_error = www_authenticate::parse(b"Bearer \"").unwrap_err();

    let mut texts: Vec<String> = Vec::new();
    texts.extend(builder_debug);
    texts.extend(layer_builder_debug);
    macro_rules! both {
        ($($value:expr),* $(,)?) => {
            $( texts.push(format!("{:?}", $value)); texts.push(format!("{:#?}", $value)); )*
        };
    }
    both!(
        source,
        layer,
        layer.cache(),
        svc,
        future,
        token,
        other_token,
        token.token_type(),
        rfc,
        ClientAuth::ClientSecretBasic,
        ResponseParser::default(),
        Origin::parse("https://api.example.com").unwrap(),
        challenge,
        parse_error,
        source_fn_debug,
    );
    for e in &errors {
        both!(e);
        texts.push(e.to_string());
    }
    for text in &texts {
        assert!(!text.contains("s3cr3t"), "secret in {text}");
        assert!(!text.contains(&access_token), "token in {text}");
    }
    // The cached token is in the layer's Debug, redacted.
    let layer_debug = texts
        .iter()
        .find(|t| t.starts_with("OAuthLayer {"))
        .unwrap();
    assert!(layer_debug.contains("[redacted]"), "{layer_debug}");
}
