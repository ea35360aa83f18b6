//! Client authentication by assertion (RFC 7523 section 2.2): `private_key_jwt` with RS256,
//! PS256, ES256, ES384 and EdDSA keys, `client_secret_jwt`, an assertion file the platform
//! rotates, a closure; keys from every PEM form and from JWKs; typed errors for bad keys,
//! files and settings, with nothing sent. The test server verifies every assertion
//! (signature, `iss`, `sub`, `aud`, `exp`, `iat`, a `jti` never seen before).

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Request;
use support::auth_server::{AuthMethod, AuthServer, AuthServerConfig, FailureMode};
use support::echo_auth_counting;
use tower::{BoxError, Layer, ServiceExt};
use tower_oauth::endpoint::{DEFAULT_ASSERTION_LIFETIME, MAX_ASSERTION_LIFETIME};
use tower_oauth::{ClientAuth, ClientCredentials, Error, OAuthLayer, SigningKey, TokenSource};

const CALLS: usize = 1_000;

fn key_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn read_key(name: &str) -> String {
    std::fs::read_to_string(key_file(name)).expect("test key")
}

fn pem_key(name: &str) -> SigningKey {
    SigningKey::from_pem(read_key(name)).expect("key parses")
}

/// A server that accepts assertions signed with `key`'s public half.
async fn server_for(key: &SigningKey) -> AuthServer {
    AuthServer::start(AuthServerConfig {
        assertion_keys: vec![key.public_jwk()],
        ..Default::default()
    })
    .await
}

fn base(server: &AuthServer) -> tower_oauth::endpoint::ClientCredentialsBuilder {
    ClientCredentials::builder()
        .token_url(server.token_url())
        .client_id(&server.config().client_id)
}

/// [`CALLS`] concurrent requests on a cold cache through the layer: each answer's
/// `Authorization` header, and how many reached the inner service.
async fn cold_calls(source: ClientCredentials) -> (Vec<Result<String, BoxError>>, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = OAuthLayer::new(source).layer(echo_auth_counting::<()>(calls.clone()));
    let tasks: Vec<_> = (0..CALLS)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(Request::new(())).await })
        })
        .collect();
    let mut out = Vec::with_capacity(CALLS);
    for task in tasks {
        out.push(task.await.expect("task").map(|r| r.into_body()));
    }
    (out, calls.load(Ordering::SeqCst))
}

fn assert_all_ok_with_one_token(server: &AuthServer, results: &[Result<String, BoxError>]) {
    assert_eq!(server.token_requests(), 1, "exactly one token request");
    assert_eq!(results.len(), CALLS);
    let first = results[0].as_ref().expect("a success").clone();
    let token = first.strip_prefix("Bearer ").expect("a bearer header");
    assert!(server.is_valid(token));
    assert_eq!(
        results
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|h| *h == first))
            .count(),
        CALLS,
        "1,000 successes with the one token"
    );
}

#[test]
fn keys_are_read_from_every_pem_form_and_from_jwks() {
    for (pem, jwk, alg) in [
        ("rsa.pem", "rsa.jwk.json", "RS256"),
        ("p256.pem", "p256.jwk.json", "ES256"),
        ("p384.pem", "p384.jwk.json", "ES384"),
        ("ed25519.pem", "ed25519.jwk.json", "EdDSA"),
    ] {
        let from_pem = pem_key(pem);
        let from_jwk = SigningKey::from_jwk(&read_key(jwk)).expect(jwk);
        assert_eq!(from_pem.algorithm(), alg, "{pem}");
        assert_eq!(from_jwk.algorithm(), alg, "{jwk}");
        assert_eq!(from_pem.thumbprint(), from_jwk.thumbprint(), "{pem}");
        assert_eq!(from_pem.thumbprint().len(), 43);
        let public = from_pem.public_jwk();
        assert!(public.get("d").is_none(), "no private member in {public}");
        assert_eq!(public["alg"], alg);
    }
    // PKCS#1 and SEC1 are the same keys as their PKCS#8 forms.
    assert_eq!(
        pem_key("rsa.pkcs1.pem").thumbprint(),
        pem_key("rsa.pem").thumbprint()
    );
    assert_eq!(
        pem_key("p256.sec1.pem").thumbprint(),
        pem_key("p256.pem").thumbprint()
    );
    assert_ne!(
        pem_key("p256.other.pem").thumbprint(),
        pem_key("p256.pem").thumbprint()
    );
    let with_kid = SigningKey::from_jwk(
        &read_key("p256.jwk.json").replace('{', r#"{"kid":"k-7","alg":"ES256","#),
    )
    .unwrap();
    assert_eq!(with_kid.key_id(), Some("k-7"));
    assert_eq!(with_kid.public_jwk()["kid"], "k-7");
}

#[test]
fn an_algorithm_must_fit_its_key_and_bad_keys_are_typed_errors_that_quote_nothing() {
    assert_eq!(
        pem_key("rsa.pem")
            .with_algorithm("PS256")
            .unwrap()
            .algorithm(),
        "PS256"
    );
    for (file, alg) in [
        ("rsa.pem", "ES256"),
        ("p256.pem", "ES384"),
        ("p384.pem", "ES256"),
        ("ed25519.pem", "RS256"),
        ("p256.pem", "HS256"),
        ("p256.pem", "none"),
    ] {
        let err = pem_key(file).with_algorithm(alg).unwrap_err();
        assert!(err.is_config(), "{file} {alg}: {err}");
    }
    let rsa1024 = read_key("rsa1024.pem");
    let garbage = "-----BEGIN PRIVATE KEY-----\nMIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAw\n-----END PRIVATE KEY-----\n";
    for bad in [rsa1024.as_str(), garbage, "", "not a key"] {
        let err = SigningKey::from_pem(bad).unwrap_err();
        assert!(err.is_config(), "{err}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("MII"), "the key is quoted: {shown}");
    }
    let public_only = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    for bad in [
        public_only,
        r#"{"kty":"oct","k":"c2VjcmV0"}"#,
        r#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA","d":"AA"}"#,
        "[]",
        "{",
    ] {
        let err = SigningKey::from_jwk(bad).unwrap_err();
        assert!(err.is_config(), "{bad}: {err}");
    }
    let key = pem_key("p256.pem").with_key_id("kid-1");
    let debug = format!("{key:?}");
    assert!(
        debug.contains("ES256") && debug.contains("kid-1"),
        "{debug}"
    );
    assert!(
        !debug.contains("MII") && !debug.contains("BEGIN"),
        "{debug}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_with_each_algorithm_1000_cold_calls_make_one_token_request() {
    for (file, alg) in [
        ("rsa.pem", "RS256"),
        ("rsa.pem", "PS256"),
        ("p256.pem", "ES256"),
        ("p384.pem", "ES384"),
        ("ed25519.pem", "EdDSA"),
    ] {
        let key = pem_key(file)
            .with_algorithm(alg)
            .unwrap()
            .with_key_id(format!("{alg}-key"));
        let server = server_for(&key).await;
        let source = base(&server).private_key(key).build().unwrap();
        assert_eq!(source.auth_method(), ClientAuth::PrivateKeyJwt);
        assert_eq!(source.assertion_audience(), server.token_url());

        let (results, _) = cold_calls(source).await;

        assert_all_ok_with_one_token(&server, &results);
        let request = server.last_token_request().unwrap();
        assert_eq!(request.auth_method, Some(AuthMethod::Assertion));
        let seen = request.assertion.clone().expect("a verified assertion");
        assert_eq!(seen.alg, alg);
        assert_eq!(seen.kid.as_deref(), Some(format!("{alg}-key").as_str()));
        assert_eq!(seen.lifetime_secs, DEFAULT_ASSERTION_LIFETIME.as_secs());
        assert!(!seen.with_secret);
        assert_eq!(request.param("client_id"), Some("demo"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_jwt_1000_cold_calls_make_one_token_request() {
    let server = AuthServer::start_default().await;
    let source = base(&server)
        .client_secret(&server.config().client_secret)
        .auth_method(ClientAuth::ClientSecretJwt)
        .build()
        .unwrap();

    let (results, _) = cold_calls(source).await;

    assert_all_ok_with_one_token(&server, &results);
    let seen = server.last_token_request().unwrap().assertion.unwrap();
    assert!(seen.with_secret);
    assert_eq!(seen.alg, "HS256");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_invalid_client_and_no_request_is_sent() {
    let server = server_for(&pem_key("p256.pem")).await;
    let source = base(&server)
        .private_key(pem_key("p256.other.pem"))
        .build()
        .unwrap();

    let (results, sent) = cold_calls(source).await;

    assert_eq!(sent, 0, "no API request without a token");
    assert_eq!(server.token_requests(), 1);
    for result in &results {
        let err = result.as_ref().unwrap_err();
        let err = err.downcast_ref::<Error>().expect("a tower_oauth::Error");
        assert_eq!(
            err.token_endpoint_error().unwrap().error(),
            "invalid_client"
        );
    }
}

#[tokio::test]
async fn every_token_request_carries_a_new_assertion_with_the_set_audience_and_lifetime() {
    let key = pem_key("ed25519.pem");
    let server = AuthServer::start(AuthServerConfig {
        assertion_keys: vec![key.public_jwk()],
        assertion_audience: Some("https://issuer.example".into()),
        ..Default::default()
    })
    .await;
    let source = base(&server)
        .private_key(key)
        .assertion_audience("https://issuer.example")
        .assertion_lifetime(Duration::from_secs(30))
        .build()
        .unwrap();
    for _ in 0..100 {
        source.fetch().await.expect("a token");
    }
    let log = server.token_request_log();
    let jtis: std::collections::HashSet<_> = log
        .iter()
        .map(|r| r.assertion.as_ref().unwrap().jti.clone())
        .collect();
    assert_eq!(log.len(), 100);
    assert_eq!(jtis.len(), 100, "100 requests, 100 distinct jti");
    assert!(
        log.iter()
            .all(|r| r.assertion.as_ref().unwrap().lifetime_secs == 30)
    );
}

/// A JWT for the test server, signed with `key`, expiring `exp_in` seconds from now
/// (negative: in the past), as a platform would write it to a file.
fn platform_assertion(key: &str, aud: &str, exp_in: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({
        "iss": "demo", "sub": "demo", "aud": aud,
        "jti": format!("{:x}", fastrand_u64()),
        "iat": now - 10, "exp": now + exp_in,
    });
    let key = jsonwebtoken::EncodingKey::from_ec_pem(read_key(key).as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &key,
    )
    .unwrap()
}

fn fastrand_u64() -> u64 {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    let n = NEXT.fetch_add(1, Ordering::SeqCst) as u64;
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ std::process::id() as u64
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tower-oauth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_file_is_read_at_every_token_request_1000_cold_calls_one_token() {
    let server = server_for(&pem_key("p256.pem")).await;
    let path = temp_path("assertion-cold");
    std::fs::write(
        &path,
        platform_assertion("p256.pem", &server.token_url(), 600) + "\n",
    )
    .unwrap();
    let source = base(&server).client_assertion_file(&path).build().unwrap();
    assert_eq!(source.auth_method(), ClientAuth::PrivateKeyJwt);

    let (results, _) = cold_calls(source.clone()).await;
    assert_all_ok_with_one_token(&server, &results);

    // Rotated by the platform: the next token request sends the new one.
    let rotated = platform_assertion("p256.pem", &server.token_url(), 600);
    std::fs::write(&path, &rotated).unwrap();
    source
        .fetch()
        .await
        .expect("a token with the rotated assertion");
    let last = server.last_token_request().unwrap();
    assert_eq!(last.param("client_assertion"), Some(rotated.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_client_with_a_changed_file_reads_it_again_and_retries_once() {
    let server = AuthServer::start(AuthServerConfig {
        assertion_keys: vec![pem_key("p256.pem").public_jwk()],
        token_delay: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let path = temp_path("assertion-rotated");
    // The file holds an assertion the server refuses (another key) ...
    std::fs::write(
        &path,
        platform_assertion("p256.other.pem", &server.token_url(), 600),
    )
    .unwrap();
    let source = base(&server).client_assertion_file(&path).build().unwrap();
    let fetch = tokio::spawn({
        let source = source.clone();
        async move { source.fetch().await }
    });
    // ... and is rotated while the token request is on its way.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let good = platform_assertion("p256.pem", &server.token_url(), 600);
    std::fs::write(&path, &good).unwrap();
    fetch
        .await
        .unwrap()
        .expect("the retry with the new file succeeds");
    assert_eq!(server.token_requests(), 2, "one retry");
    assert_eq!(
        server
            .last_token_request()
            .unwrap()
            .param("client_assertion"),
        Some(good.as_str())
    );

    // Unchanged file: the invalid_client stands, no retry.
    server.fail_next(1, FailureMode::InvalidClient);
    let err = source.fetch().await.unwrap_err();
    assert_eq!(
        err.token_endpoint_error().unwrap().error(),
        "invalid_client"
    );
    assert_eq!(server.token_requests(), 3);
}

#[tokio::test]
async fn a_missing_empty_malformed_or_expired_file_is_a_typed_error_and_nothing_is_sent() {
    let server = server_for(&pem_key("p256.pem")).await;
    let missing = temp_path("no-such-assertion");
    let _ = std::fs::remove_file(&missing);
    let empty = temp_path("assertion-empty");
    std::fs::write(&empty, "\n").unwrap();
    let malformed = temp_path("assertion-malformed");
    std::fs::write(&malformed, "hunter2-not-a-jwt").unwrap();
    let expired = temp_path("assertion-expired");
    std::fs::write(
        &expired,
        platform_assertion("p256.pem", &server.token_url(), -60),
    )
    .unwrap();
    let large = temp_path("assertion-large");
    std::fs::write(&large, "a".repeat(70_000)).unwrap();

    for (path, says) in [
        (&missing, "cannot be read"),
        (&empty, "is empty"),
        (&malformed, "is not a JWT"),
        (&expired, "has expired"),
        (&large, "over 64 KiB"),
    ] {
        let source = base(&server).client_assertion_file(path).build().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = OAuthLayer::new(source).layer(echo_auth_counting::<()>(calls.clone()));
        let err = svc.oneshot(Request::new(())).await.unwrap_err();
        let err = err.downcast_ref::<Error>().expect("a tower_oauth::Error");
        assert!(err.is_client_assertion(), "{err}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains(&path.display().to_string()), "{shown}");
        assert!(shown.contains(says), "{shown}");
        assert!(!shown.contains("hunter2"), "the content is quoted: {shown}");
        if path == &missing {
            assert!(err.to_string().contains("os error"), "the OS reason: {err}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
    assert_eq!(server.token_requests(), 0, "nothing was sent");
}

#[tokio::test]
async fn a_closure_gives_the_assertion_and_its_error_is_the_source() {
    let server = server_for(&pem_key("p256.pem")).await;
    let aud = server.token_url();
    let source = base(&server)
        .client_assertion_fn(move || {
            let jwt = platform_assertion("p256.pem", &aud, 600);
            async move { Ok::<_, BoxError>(jwt) }
        })
        .build()
        .unwrap();
    source.fetch().await.expect("a token");
    assert_eq!(server.token_requests(), 1);

    let failing = base(&server)
        .client_assertion_fn(|| async { Err::<String, BoxError>("metadata server down".into()) })
        .build()
        .unwrap();
    let err = failing.fetch().await.unwrap_err();
    assert!(err.is_client_assertion(), "{err}");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "metadata server down"
    );
    assert_eq!(
        server.token_requests(),
        1,
        "nothing sent for the failed closure"
    );
}

#[test]
fn settings_without_their_material_or_out_of_range_fail_at_build() {
    let builder = || {
        ClientCredentials::builder()
            .token_url("https://idp.example/token")
            .client_id("c")
    };
    let key = pem_key("p256.pem");
    let cases: Vec<(&str, Result<ClientCredentials, Error>)> = vec![
        (
            "private_key_jwt without a key",
            builder().auth_method(ClientAuth::PrivateKeyJwt).build(),
        ),
        (
            "client_secret_jwt without a secret",
            builder().auth_method(ClientAuth::ClientSecretJwt).build(),
        ),
        (
            "a key with client_secret_post",
            builder()
                .private_key(key.clone())
                .auth_method(ClientAuth::ClientSecretPost)
                .build(),
        ),
        (
            "lifetime 0",
            builder()
                .private_key(key.clone())
                .assertion_lifetime(Duration::ZERO)
                .build(),
        ),
        (
            "lifetime MAX",
            builder()
                .private_key(key.clone())
                .assertion_lifetime(Duration::MAX)
                .build(),
        ),
        (
            "mutual TLS without a certificate",
            builder().auth_method(ClientAuth::TlsClientAuth).build(),
        ),
        (
            "a certificate that is not PEM",
            builder()
                .client_certificate("nope", read_key("p256.pem"))
                .build(),
        ),
    ];
    for (what, result) in cases {
        let err = result.expect_err(what);
        assert!(err.is_config(), "{what}: {err}");
    }
    for lifetime in [Duration::from_secs(1), MAX_ASSERTION_LIFETIME] {
        builder()
            .private_key(key.clone())
            .assertion_lifetime(lifetime)
            .build()
            .expect("in range");
    }
}

#[test]
fn the_cache_key_covers_the_key_and_the_file() {
    let builder = || {
        ClientCredentials::builder()
            .token_url("https://idp.example/token")
            .client_id("c")
    };
    let key_of = |b: tower_oauth::endpoint::ClientCredentialsBuilder| {
        b.build().unwrap().cache_key().unwrap()
    };
    let p256 = key_of(builder().private_key(pem_key("p256.pem")));
    assert_eq!(
        p256,
        key_of(builder().private_key(pem_key("p256.sec1.pem")))
    );
    assert_ne!(
        p256,
        key_of(builder().private_key(pem_key("p256.other.pem")))
    );
    assert_ne!(p256, key_of(builder().client_assertion_file("/var/run/a")));
    assert_ne!(
        key_of(builder().client_assertion_file("/var/run/a")),
        key_of(builder().client_assertion_file("/var/run/b"))
    );
    let debug = format!(
        "{:?}",
        builder().private_key(pem_key("p256.pem")).build().unwrap()
    );
    assert!(
        !debug.contains("BEGIN") && !debug.contains("MII"),
        "{debug}"
    );
}
