//! Client authentication against the pinned `oidc-provider` of `tests/interop/`:
//! `private_key_jwt` with RS256, ES256 and EdDSA keys, `client_secret_jwt`, an assertion
//! file, and `tls_client_auth` over the provider's mutual-TLS listener (found through
//! `mtls_endpoint_aliases`). For each: 1,000 concurrent calls on a cold cache through the
//! layer, exactly 1 token issued, 1,000 successes at an API that introspects every token;
//! a wrong key or an untrusted certificate is `invalid_client` and nothing reaches the API.
//!
//! Needs Node, so every test is `#[ignore]`d (see `tests/interop.rs`).

mod support;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use tower_oauth::{ClientAuth, ClientCredentials, Error, OAuthLayer, SigningKey};

use support::interop::{api_client, cold_calls, get, setup};
use support::oidc_provider::Provider;

const CALLS: usize = 1_000;

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(key_file(name)).expect("test key")
}

fn key(name: &str, alg: &str) -> SigningKey {
    SigningKey::from_pem(read(name))
        .and_then(|k| k.with_algorithm(alg))
        .expect("test key")
}

fn base(provider: &Provider, client_id: &str) -> tower_oauth::endpoint::ClientCredentialsBuilder {
    ClientCredentials::builder()
        .token_url(provider.token_url())
        .client_id(client_id)
        .scope("api.read")
}

/// What the platform would write: a JWT for `client_id` signed with the P-384 test key.
fn platform_assertion(client_id: &str, aud: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": aud,
        "jti": format!("platform-{now}-{}", std::process::id()),
        "iat": now, "exp": now + 600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384),
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&read("p384.pem")).unwrap(),
    )
    .unwrap()
}

async fn mtls_source(provider: &Provider, cert: &str, key: &str) -> ClientCredentials {
    ClientCredentials::builder()
        .issuer(provider.issuer())
        .client_id("mtls-client")
        .scope("api.read")
        .client_certificate(read(cert), read(key))
        .add_root_certificate(read("mtls/ca.pem"))
        .discover()
        .await
        .expect("discovery")
        .build()
        .expect("a mutual-TLS source")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and npm ci in tests/interop"]
async fn each_method_1000_cold_calls_issue_exactly_one_token() {
    let Some((provider, api)) = setup(300).await else {
        return;
    };
    let file = std::env::temp_dir().join(format!("tower-oauth-interop-{}", std::process::id()));
    std::fs::write(
        &file,
        platform_assertion("assertion-file-client", provider.issuer()),
    )
    .unwrap();
    let cases: Vec<(&str, ClientCredentials, &str)> = vec![
        (
            "pkjwt-rs256",
            base(&provider, "pkjwt-rs256")
                .private_key(key("rsa.pem", "RS256"))
                .build()
                .unwrap(),
            "assertion",
        ),
        (
            "pkjwt-es256",
            base(&provider, "pkjwt-es256")
                .private_key(key("p256.pem", "ES256"))
                .build()
                .unwrap(),
            "assertion",
        ),
        (
            "pkjwt-eddsa",
            base(&provider, "pkjwt-eddsa")
                .private_key(key("ed25519.pem", "EdDSA"))
                .assertion_audience(provider.issuer())
                .build()
                .unwrap(),
            "assertion",
        ),
        (
            "secret-jwt-client",
            base(&provider, "secret-jwt-client")
                .client_secret("a-client-secret-of-more-than-32-bytes")
                .auth_method(ClientAuth::ClientSecretJwt)
                .build()
                .unwrap(),
            "assertion",
        ),
        (
            "assertion-file-client",
            base(&provider, "assertion-file-client")
                .client_assertion_file(&file)
                .build()
                .unwrap(),
            "assertion",
        ),
        (
            "mtls-client",
            mtls_source(&provider, "mtls/client.pem", "mtls/client.key").await,
            "mtls",
        ),
    ];
    let mut accepted = 0;
    for (client_id, source, wire) in cases {
        let requests_before = provider.stats().await.token_requests.len();
        let ok = cold_calls(&OAuthLayer::new(source), &api.url(), CALLS).await;
        accepted += CALLS;
        assert_eq!(ok, CALLS, "{client_id}");
        assert_eq!(api.accepted(), accepted, "{client_id}");
        let stats = provider.stats().await;
        assert_eq!(stats.issued_to(client_id), 1, "{client_id}: one token");
        assert_eq!(
            stats.token_requests.len(),
            requests_before + 1,
            "{client_id}"
        );
        let last = stats.token_requests.last().unwrap();
        assert_eq!(
            (last.auth.as_str(), last.client_id.as_deref(), last.status),
            (wire, Some(client_id), 200),
            "{client_id}"
        );
    }
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and npm ci in tests/interop"]
async fn a_wrong_key_or_an_untrusted_certificate_is_invalid_client_and_nothing_is_sent() {
    let Some((provider, api)) = setup(300).await else {
        return;
    };
    let sources = [
        base(&provider, "pkjwt-es256")
            .private_key(key("p256.other.pem", "ES256"))
            .build()
            .unwrap(),
        base(&provider, "secret-jwt-client")
            .client_secret("not-the-secret-but-also-more-than-32-bytes")
            .auth_method(ClientAuth::ClientSecretJwt)
            .build()
            .unwrap(),
        mtls_source(&provider, "mtls/stranger.pem", "mtls/stranger.key").await,
    ];
    for source in sources {
        let layer = OAuthLayer::new(source);
        let err = get(&mut api_client(&layer), &api.url()).await.unwrap_err();
        let err = err.downcast_ref::<Error>().expect("a tower_oauth::Error");
        let rfc = err.token_endpoint_error().expect("an RFC 6749 error");
        assert_eq!(rfc.error(), "invalid_client", "{err}");
    }
    assert_eq!(api.requests(), 0);
    assert_eq!(provider.stats().await.issued_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and npm ci in tests/interop"]
async fn dpop_bound_tokens_with_the_required_nonce_1000_cold_calls_one_token() {
    use tower::{ServiceBuilder, ServiceExt};
    use tower_oauth::endpoint::dpop::{Dpop, DpopKey};
    use tower_oauth::oauth::dpop::DpopLayer;
    let Some((provider, api)) = setup(300).await else {
        return;
    };
    let dpop = Dpop::new(DpopKey::generate_es256().unwrap());
    let source = base(&provider, "pkjwt-es256")
        .private_key(key("p256.pem", "ES256"))
        .dpop(dpop.clone())
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(OAuthLayer::new(source))
        .layer(DpopLayer::new(dpop.clone()))
        .service(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>(),
        );
    let tasks: Vec<_> = (0..CALLS)
        .map(|_| {
            let client = client.clone();
            let url = api.url();
            tokio::spawn(async move {
                let request = http::Request::get(url)
                    .body(http_body_util::Empty::new())
                    .unwrap();
                let response = client.oneshot(request).await.expect("a response");
                let status = response.status();
                let body = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                (
                    status,
                    serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
                )
            })
        })
        .collect();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, http::StatusCode::OK, "{body}");
        assert_eq!(
            body["jkt"],
            dpop.key().thumbprint(),
            "bound to our key (cnf.jkt)"
        );
    }
    assert_eq!(api.accepted(), CALLS);
    let stats = provider.stats().await;
    assert_eq!(stats.issued_to("pkjwt-es256"), 1, "one token");
    // The first token request is answered use_dpop_nonce, the second with the token.
    assert_eq!(stats.token_requests.len(), 2);
    assert_eq!(
        stats.token_requests[0].error.as_deref(),
        Some("use_dpop_nonce")
    );
}
