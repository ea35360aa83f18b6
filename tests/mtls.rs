//! Mutual-TLS client authentication (RFC 8705 section 2): a token endpoint behind TLS that
//! requires a client certificate from its CA; the source presents the configured chain and
//! key, sends `client_id` and no secret; 1,000 cold calls through the layer make one token
//! request; a certificate the server does not trust is a transport error and nothing is
//! sent to the API.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};
use support::echo_auth_counting;
use tokio_rustls::TlsAcceptor;
use tower::{BoxError, Layer, ServiceExt};
use tower_oauth::{ClientAuth, ClientCredentials, Error, OAuthLayer};

const CALLS: usize = 1_000;

/// A CA, a server certificate for 127.0.0.1 and two client certificates: one from the CA,
/// one self-signed (which the server does not trust).
struct Pki {
    ca: CertificateDer<'static>,
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
    client_pem: String,
    client_key_pem: String,
    client_sha256: String,
    stranger_pem: String,
    stranger_key_pem: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["mtls-client".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();

    let stranger_key = KeyPair::generate().unwrap();
    let mut stranger_params = CertificateParams::new(vec!["stranger".to_owned()]).unwrap();
    stranger_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let stranger_cert = stranger_params.self_signed(&stranger_key).unwrap();

    Pki {
        ca: ca_cert.der().clone(),
        ca_pem: ca_cert.pem(),
        server_chain: vec![server_cert.der().clone()],
        server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        client_sha256: hex::encode(Sha256::digest(client_cert.der())),
        client_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
        stranger_pem: stranger_cert.pem(),
        stranger_key_pem: stranger_key.serialize_pem(),
    }
}

#[derive(Default)]
struct Seen {
    token_requests: AtomicUsize,
    /// SHA-256 of each client certificate presented, and the form of each token request.
    requests: Mutex<Vec<(String, String)>>,
}

/// A token endpoint over TLS that requires a client certificate issued by the CA.
async fn start(pki: &Pki) -> (SocketAddr, Arc<Seen>) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let state = state.clone();
            tokio::spawn(async move {
                // A client without a trusted certificate fails here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| hex::encode(Sha256::digest(c)))
                    .unwrap_or_default();
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    let peer = peer.clone();
                    async move {
                        let no_basic = req.headers().get(http::header::AUTHORIZATION).is_none();
                        let form = req.into_body().collect().await?.to_bytes();
                        let form = String::from_utf8_lossy(&form).into_owned();
                        let n = state.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
                        let ok = no_basic
                            && form.contains("client_id=mtls-client")
                            && form.contains("grant_type=client_credentials")
                            && !form.contains("client_secret");
                        state.requests.lock().unwrap().push((peer, form));
                        let (status, body) = if ok {
                            (
                                StatusCode::OK,
                                format!(
                                    r#"{{"access_token":"mtls-token-{n}","token_type":"Bearer","expires_in":3600}}"#
                                ),
                            )
                        } else {
                            (
                                StatusCode::UNAUTHORIZED,
                                r#"{"error":"invalid_client"}"#.to_owned(),
                            )
                        };
                        Ok::<_, hyper::Error>(
                            Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn source(
    addr: SocketAddr,
    pki: &Pki,
    cert: &str,
    key: &str,
    auth: ClientAuth,
) -> ClientCredentials {
    ClientCredentials::builder()
        .token_url(format!("https://127.0.0.1:{}/token", addr.port()))
        .client_id("mtls-client")
        .client_certificate(cert, key)
        .add_root_certificate(pki.ca_pem.as_str())
        .auth_method(auth)
        .build()
        .expect("valid mutual-TLS configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_auth_1000_cold_calls_make_one_token_request_with_the_certificate() {
    let pki = pki();
    let (addr, seen) = start(&pki).await;
    for (auth, expected_requests) in [
        (ClientAuth::TlsClientAuth, 1),
        (ClientAuth::SelfSignedTlsClientAuth, 2),
    ] {
        let source = source(addr, &pki, &pki.client_pem, &pki.client_key_pem, auth);
        assert_eq!(source.auth_method(), auth);
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = OAuthLayer::new(source).layer(echo_auth_counting::<()>(calls.clone()));
        let tasks: Vec<_> = (0..CALLS)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.oneshot(Request::new(())).await })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            let header = task.await.unwrap().expect("a success").into_body();
            assert_eq!(header, format!("Bearer mtls-token-{expected_requests}"));
            ok += 1;
        }
        assert_eq!(ok, CALLS);
        assert_eq!(calls.load(Ordering::SeqCst), CALLS);
        assert_eq!(
            seen.token_requests.load(Ordering::SeqCst),
            expected_requests,
            "one token request for {auth}"
        );
    }
    let requests = seen.requests.lock().unwrap();
    for (peer, form) in requests.iter() {
        assert_eq!(peer, &pki.client_sha256, "the configured certificate");
        assert!(form.contains("client_id=mtls-client"), "{form}");
        assert!(!form.contains("client_secret"), "{form}");
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_transport_error_and_nothing_is_sent() {
    let pki = pki();
    let (addr, seen) = start(&pki).await;
    let source = source(
        addr,
        &pki,
        &pki.stranger_pem,
        &pki.stranger_key_pem,
        ClientAuth::TlsClientAuth,
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = OAuthLayer::new(source).layer(echo_auth_counting::<()>(calls.clone()));
    let err: BoxError = svc.oneshot(Request::new(())).await.unwrap_err();
    let err = err.downcast_ref::<Error>().expect("a tower_oauth::Error");
    assert!(err.is_transport(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(seen.token_requests.load(Ordering::SeqCst), 0);
}

#[test]
fn a_certificate_without_its_key_or_with_a_custom_client_fails_at_build() {
    let pki = pki();
    let builder = || {
        ClientCredentials::builder()
            .token_url("https://idp.example/token")
            .client_id("mtls-client")
    };
    for (what, result) in [
        (
            "no key",
            builder()
                .client_certificate(pki.client_pem.as_str(), "")
                .build(),
        ),
        (
            "a key for the chain",
            builder()
                .client_certificate(pki.client_key_pem.as_str(), pki.client_key_pem.as_str())
                .build(),
        ),
        (
            "with http_client",
            builder()
                .client_certificate(pki.client_pem.as_str(), pki.client_key_pem.as_str())
                .http_client(reqwest::Client::new())
                .build(),
        ),
        (
            "a root that is not PEM",
            builder().add_root_certificate("nope").build(),
        ),
    ] {
        let err = result.expect_err(what);
        assert!(err.is_config(), "{what}: {err}");
        assert!(!err.to_string().contains("PRIVATE KEY-----\nMII"), "{err}");
    }
    let with_cert = builder()
        .client_certificate(pki.client_pem.as_str(), pki.client_key_pem.as_str())
        .build()
        .unwrap();
    assert_eq!(with_cert.auth_method(), ClientAuth::TlsClientAuth);
    let debug = format!("{with_cert:?}");
    assert!(!debug.contains("BEGIN"), "{debug}");
    let other = builder()
        .client_certificate(pki.stranger_pem.as_str(), pki.stranger_key_pem.as_str())
        .build()
        .unwrap();
    use tower_oauth::TokenSource as _;
    assert_ne!(with_cert.cache_key(), other.cache_key());
}
