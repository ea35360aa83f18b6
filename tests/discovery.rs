//! Discovery of the token endpoint from the issuer URL (RFC 8414, OpenID Connect Discovery)
//! against a loopback metadata server that serves good, bad and hostile documents; and
//! `ClientCredentials::from_env` in a child process with its own environment.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http::Request as HttpRequest;
use support::auth_server::{AuthMethod, AuthServer};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_oauth::endpoint::{AuthorizationServerMetadata, MAX_METADATA_LEN};
use tower_oauth::{ClientAuth, ClientCredentials, Error, OAuthLayer, TokenSource};

const RFC8414: &str = "/.well-known/oauth-authorization-server";
const OPENID: &str = "/.well-known/openid-configuration";

#[derive(Clone)]
enum Doc {
    Json(String),
    Raw(StatusCode, &'static str, Vec<u8>),
    /// A body of this many bytes, streamed without a `Content-Length`.
    Endless(usize),
    Redirect(String),
}

#[derive(Clone, Default)]
struct Meta {
    docs: Arc<Mutex<HashMap<String, Doc>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Meta {
    async fn start() -> (Meta, String) {
        let meta = Meta::default();
        let app = Router::new().fallback(serve).with_state(meta.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (meta, format!("http://{addr}"))
    }

    fn set(&self, path: &str, doc: Doc) {
        self.docs.lock().unwrap().insert(path.to_owned(), doc);
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

async fn serve(State(meta): State<Meta>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    meta.log.lock().unwrap().push(path.clone());
    let doc = meta.docs.lock().unwrap().get(&path).cloned();
    match doc {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Doc::Json(body)) => {
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Some(Doc::Raw(status, content_type, body)) => {
            (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Some(Doc::Endless(len)) => {
            let chunks = (0..len.div_ceil(1024)).map(|_| Ok::<_, BoxError>(vec![b' '; 1024]));
            let body = Body::from_stream(futures_util::stream::iter(chunks));
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Some(Doc::Redirect(to)) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
    }
}

fn doc(issuer: &str, token_endpoint: &str, methods: Option<&[&str]>) -> Doc {
    let mut value = serde_json::json!({
        "issuer": issuer,
        "token_endpoint": token_endpoint,
        "grant_types_supported": ["client_credentials"],
    });
    if let Some(methods) = methods {
        value["token_endpoint_auth_methods_supported"] = serde_json::json!(methods);
    }
    Doc::Json(value.to_string())
}

fn builder(issuer: &str) -> tower_oauth::endpoint::ClientCredentialsBuilder {
    ClientCredentials::builder()
        .issuer(issuer)
        .client_id("demo")
        .client_secret("demo-secret")
}

async fn discover_err(issuer: &str) -> Error {
    builder(issuer)
        .discover()
        .await
        .expect_err("discovery should fail")
}

#[tokio::test]
async fn rfc8414_document_comes_first() {
    let (meta, issuer) = Meta::start().await;
    meta.set(
        RFC8414,
        doc(&issuer, &format!("{issuer}/rfc8414-token"), None),
    );
    meta.set(
        OPENID,
        doc(&issuer, &format!("{issuer}/openid-token"), None),
    );
    let source = builder(&issuer).discover().await.unwrap().build().unwrap();
    assert_eq!(
        source.token_url().as_str(),
        format!("{issuer}/rfc8414-token")
    );
    assert_eq!(source.auth_method(), ClientAuth::ClientSecretBasic);
    assert_eq!(meta.requests(), [RFC8414]);
}

#[tokio::test]
async fn openid_document_when_rfc8414_is_missing_or_not_json() {
    let (meta, issuer) = Meta::start().await;
    meta.set(
        OPENID,
        doc(&issuer, &format!("{issuer}/openid-token"), None),
    );
    let source = builder(&issuer).discover().await.unwrap().build().unwrap();
    assert_eq!(
        source.token_url().as_str(),
        format!("{issuer}/openid-token")
    );
    assert_eq!(meta.requests(), [RFC8414, OPENID]);

    // A web app answering every path with 200 and an HTML page.
    meta.set(
        RFC8414,
        Doc::Raw(
            StatusCode::OK,
            "text/html",
            b"<!doctype html><p>app".to_vec(),
        ),
    );
    let source = builder(&issuer).discover().await.unwrap().build().unwrap();
    assert_eq!(
        source.token_url().as_str(),
        format!("{issuer}/openid-token")
    );

    // A redirect is not followed: it counts as no document.
    meta.set(RFC8414, Doc::Redirect(format!("{issuer}/elsewhere")));
    let source = builder(&issuer).discover().await.unwrap().build().unwrap();
    assert_eq!(
        source.token_url().as_str(),
        format!("{issuer}/openid-token")
    );
    assert!(!meta.requests().contains(&"/elsewhere".to_owned()));
}

#[tokio::test]
async fn issuer_with_a_path_uses_both_well_known_forms() {
    let (meta, root) = Meta::start().await;
    let issuer = format!("{root}/realms/acme");
    meta.set(
        &format!("/realms/acme{OPENID}"),
        doc(&issuer, &format!("{issuer}/token"), None),
    );
    let source = builder(&issuer).discover().await.unwrap().build().unwrap();
    assert_eq!(source.token_url().as_str(), format!("{issuer}/token"));
    assert_eq!(
        meta.requests(),
        [
            format!("{RFC8414}/realms/acme"),
            format!("/realms/acme{OPENID}")
        ]
    );
}

#[tokio::test]
async fn no_document_at_all() {
    let (meta, issuer) = Meta::start().await;
    let err = discover_err(&issuer).await;
    assert!(err.is_discovery(), "{err:?}");
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    let message = err.to_string();
    assert!(
        message.contains(RFC8414) && message.contains(OPENID),
        "{message}"
    );
    assert_eq!(meta.requests().len(), 2);
}

#[tokio::test]
async fn a_document_for_another_issuer_is_refused_without_trying_the_other() {
    let (meta, issuer) = Meta::start().await;
    meta.set(
        RFC8414,
        doc("https://evil.example", "https://evil.example/token", None),
    );
    meta.set(OPENID, doc(&issuer, &format!("{issuer}/token"), None));
    let err = discover_err(&issuer).await;
    assert!(err.is_discovery(), "{err:?}");
    assert!(err.to_string().contains("evil.example"), "{err}");
    assert_eq!(err.status(), Some(StatusCode::OK));
    assert_eq!(meta.requests(), [RFC8414]);
}

#[tokio::test]
async fn a_trailing_slash_on_the_issuer_is_tolerated() {
    let (meta, issuer) = Meta::start().await;
    meta.set(
        RFC8414,
        doc(&format!("{issuer}/"), &format!("{issuer}/t"), None),
    );
    let source = builder(&issuer).discover().await.unwrap().build().unwrap();
    assert_eq!(source.token_url().as_str(), format!("{issuer}/t"));
}

#[tokio::test]
async fn hostile_documents_give_typed_errors() {
    let (meta, issuer) = Meta::start().await;
    let cases = [
        // The secret would go over plain http to a host that is not loopback.
        (
            "http token endpoint",
            doc(&issuer, "http://token.example/token", None),
        ),
        (
            "no token endpoint",
            Doc::Json(format!(r#"{{"issuer":"{issuer}"}}"#)),
        ),
        (
            "token endpoint not a URL",
            doc(&issuer, "javascript:alert(1)", None),
        ),
        (
            "over the size limit, with a length",
            Doc::Raw(
                StatusCode::OK,
                "application/json",
                vec![b' '; MAX_METADATA_LEN + 1],
            ),
        ),
        (
            "over the size limit, streamed",
            Doc::Endless(MAX_METADATA_LEN + 10_000),
        ),
        (
            "only private_key_jwt",
            doc(&issuer, &format!("{issuer}/t"), Some(&["private_key_jwt"])),
        ),
        (
            "deeply nested",
            Doc::Raw(
                StatusCode::OK,
                "application/json",
                format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)).into_bytes(),
            ),
        ),
    ];
    for (name, bad) in cases {
        meta.set(RFC8414, bad.clone());
        meta.set(OPENID, bad);
        let err = discover_err(&issuer).await;
        assert!(err.is_discovery(), "{name}: {err:?}");
        assert!(err.to_string().len() < 2_000, "{name}: {err}");
    }
}

#[tokio::test]
async fn auth_method_comes_from_the_metadata_unless_set() {
    let server = AuthServer::start_default().await;
    let (meta, issuer) = Meta::start().await;
    meta.set(
        RFC8414,
        doc(
            &issuer,
            &server.token_url(),
            Some(&["private_key_jwt", "client_secret_post"]),
        ),
    );
    let source = builder(&issuer).discover().await.unwrap().build().unwrap();
    assert_eq!(source.auth_method(), ClientAuth::ClientSecretPost);
    assert_eq!(source.token_url().as_str(), server.token_url());

    // The discovered source gets tokens: one request through the layer, post auth.
    let layer = OAuthLayer::new(source);
    let svc =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|req: HttpRequest<()>| async move {
                let auth = req.headers()[header::AUTHORIZATION].clone();
                Ok::<_, BoxError>(http::Response::new(auth))
            }));
    let response = svc.oneshot(HttpRequest::new(())).await.unwrap();
    assert!(response.body().to_str().unwrap().starts_with("Bearer "));
    assert_eq!(server.token_requests(), 1);
    assert_eq!(
        server.last_token_request().unwrap().auth_method,
        Some(AuthMethod::ClientSecretPost)
    );

    // A method set by the user wins, even one the server does not list.
    let source = builder(&issuer)
        .auth_method(ClientAuth::ClientSecretBasic)
        .discover()
        .await
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(source.auth_method(), ClientAuth::ClientSecretBasic);

    // Basic is preferred when both are listed.
    meta.set(
        RFC8414,
        doc(
            &issuer,
            &server.token_url(),
            Some(&["client_secret_post", "client_secret_basic"]),
        ),
    );
    let source = builder(&issuer).discover().await.unwrap().build().unwrap();
    assert_eq!(source.auth_method(), ClientAuth::ClientSecretBasic);
}

#[tokio::test]
async fn issuer_and_token_url_rules() {
    // An http issuer that is not loopback is refused before any request.
    let err = discover_err("http://auth.example").await;
    assert!(err.is_config(), "{err:?}");
    // Neither set.
    let err = ClientCredentials::builder()
        .client_id("x")
        .discover()
        .await
        .unwrap_err();
    assert!(err.is_config(), "{err:?}");
    // Both set.
    let err = builder("https://auth.example")
        .token_url("https://auth.example/token")
        .discover()
        .await
        .unwrap_err();
    assert!(
        err.is_config() && err.to_string().contains("not both"),
        "{err}"
    );
    // Only a token URL: nothing to discover, the builder is unchanged.
    let source = ClientCredentials::builder()
        .token_url("https://auth.example/token")
        .client_id("x")
        .discover()
        .await
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(source.token_url().as_str(), "https://auth.example/token");
    // An issuer but no discover() before build().
    let err = builder("https://auth.example").build().unwrap_err();
    assert!(
        err.is_config() && err.to_string().contains("discover"),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_issuer_is_a_discovery_error_with_a_source() {
    // Bind and drop to get a port nobody listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = discover_err(&format!("http://{addr}")).await;
    assert!(err.is_discovery(), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn metadata_fetch_exposes_other_members() {
    let (meta, issuer) = Meta::start().await;
    meta.set(
        OPENID,
        Doc::Json(
            serde_json::json!({
                "issuer": issuer,
                "token_endpoint": format!("{issuer}/token"),
                "introspection_endpoint": format!("{issuer}/token/introspection"),
            })
            .to_string(),
        ),
    );
    let metadata = AuthorizationServerMetadata::fetch(&reqwest::Client::new(), &issuer)
        .await
        .unwrap();
    assert_eq!(metadata.issuer(), issuer);
    assert_eq!(
        metadata.get_str("introspection_endpoint"),
        Some(format!("{issuer}/token/introspection").as_str())
    );
    assert_eq!(
        metadata.url().map(|u| u.path()),
        Some("/.well-known/openid-configuration")
    );
}

/// The child half of `from_env_reads_the_process_environment`: run by it in a child
/// process whose environment has the variables; ignored in a normal run.
#[test]
#[ignore = "run by from_env_reads_the_process_environment in a child process"]
fn from_env_child() {
    if std::env::var_os("TOWER_OAUTH_FROM_ENV_CHILD").is_none() {
        eprintln!("skipped: only meaningful in the child process of its parent test");
        return;
    }
    let source = ClientCredentials::from_env().expect("from_env");
    assert_eq!(source.token_url().as_str(), "https://env.example/token");
    assert_eq!(source.client_id(), "env-client");
    assert_eq!(source.auth_method(), ClientAuth::ClientSecretPost);
    assert_eq!(
        source.params(),
        &[("scope".to_owned(), "a.read b.write".to_owned())]
    );
    let builder = ClientCredentials::builder_from_env("TOWER_OAUTH_TEST_").expect("prefixed");
    let err = builder.build().unwrap_err();
    assert!(err.to_string().contains("discover"), "{err}");
    println!("FROM_ENV_CHILD_OK");
}

#[test]
fn from_env_reads_the_process_environment() {
    // The environment is set on a child process, so no test here mutates its own.
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["from_env_child", "--exact", "--ignored", "--nocapture"])
        .env("TOWER_OAUTH_FROM_ENV_CHILD", "1")
        .env("OAUTH_TOKEN_URL", "https://env.example/token")
        .env("OAUTH_CLIENT_ID", "env-client")
        .env("OAUTH_CLIENT_SECRET", "env-secret")
        .env("OAUTH_SCOPE", "a.read b.write")
        .env("OAUTH_AUTH_METHOD", "client_secret_post")
        .env("TOWER_OAUTH_TEST_ISSUER", "https://env.example")
        .env("TOWER_OAUTH_TEST_CLIENT_ID", "c")
        .env("TOWER_OAUTH_TEST_CLIENT_SECRET", "s")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("FROM_ENV_CHILD_OK"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_method_follows_the_material_and_assertions_are_for_the_issuer() {
    let key = tower_oauth::SigningKey::from_pem(
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/p256.pem")).unwrap(),
    )
    .unwrap();
    let (meta, issuer) = Meta::start().await;
    let server = support::auth_server::AuthServer::start(support::auth_server::AuthServerConfig {
        assertion_keys: vec![key.public_jwk()],
        assertion_audience: Some(issuer.clone()),
        ..Default::default()
    })
    .await;
    meta.set(
        RFC8414,
        doc(
            &issuer,
            &server.token_url(),
            Some(&["client_secret_basic", "private_key_jwt"]),
        ),
    );
    let with_key = || {
        ClientCredentials::builder()
            .issuer(&issuer)
            .client_id("demo")
            .private_key(key.clone())
    };
    let source = with_key().discover().await.unwrap().build().unwrap();
    assert_eq!(source.auth_method(), ClientAuth::PrivateKeyJwt);
    assert_eq!(source.assertion_audience(), issuer);
    source
        .fetch()
        .await
        .expect("the server takes an assertion for its issuer");
    assert_eq!(
        server.last_token_request().unwrap().auth_method,
        Some(AuthMethod::Assertion)
    );

    // A server that lists no method for the material: a discovery error naming both lists.
    meta.set(
        RFC8414,
        doc(&issuer, &server.token_url(), Some(&["client_secret_basic"])),
    );
    let err = with_key().discover().await.unwrap_err();
    assert!(err.is_discovery(), "{err}");
    assert!(
        err.to_string().contains("private_key_jwt")
            && err.to_string().contains("client_secret_basic"),
        "{err}"
    );

    // Mutual TLS: the `mtls_endpoint_aliases` token endpoint, when it is https.
    let mut document: serde_json::Value = serde_json::json!({
        "issuer": issuer,
        "token_endpoint": server.token_url(),
        "token_endpoint_auth_methods_supported": ["tls_client_auth"],
        "mtls_endpoint_aliases": { "token_endpoint": "https://mtls.idp.example/token" },
    });
    meta.set(RFC8414, Doc::Json(document.to_string()));
    let chain = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/mtls/client.pem"
    ))
    .unwrap();
    let cert_key = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/mtls/client.key"
    ))
    .unwrap();
    let mtls = || {
        ClientCredentials::builder()
            .issuer(&issuer)
            .client_id("demo")
            .client_certificate(chain.clone(), cert_key.clone())
    };
    let source = mtls().discover().await.unwrap().build().unwrap();
    assert_eq!(source.auth_method(), ClientAuth::TlsClientAuth);
    assert_eq!(
        source.token_url().as_str(),
        "https://mtls.idp.example/token"
    );
    // A secret client keeps the plain token endpoint.
    document["token_endpoint_auth_methods_supported"] =
        serde_json::json!(["tls_client_auth", "client_secret_basic"]);
    meta.set(RFC8414, Doc::Json(document.to_string()));
    let source = builder(&issuer).discover().await.unwrap().build().unwrap();
    assert_eq!(source.token_url().as_str(), server.token_url());
    // An alias that is not https is left out.
    document["mtls_endpoint_aliases"]["token_endpoint"] = "http://mtls.idp.example/token".into();
    meta.set(RFC8414, Doc::Json(document.to_string()));
    let source = mtls().discover().await.unwrap().build().unwrap();
    assert_eq!(source.token_url().as_str(), server.token_url());
}
