//! `OAuthLayer` on a hyper client with TLS (rustls), traced and with a timeout.
//!
//! ```text
//! cargo run --example hyper_client                      # self-contained, see below
//! OAUTH_TOKEN_URL=https://idp.example/oauth2/token OAUTH_CLIENT_ID=my-service \
//! OAUTH_CLIENT_SECRET=... OAUTH_SCOPE=orders.read \
//!     cargo run --example hyper_client -- https://api.example/orders
//! ```
//!
//! With an API URL as argument, the token source comes from the `OAUTH_*` variables
//! ([`ClientCredentials::from_env`]) and the server certificate is checked by the
//! platform's verifier (the OS trust store). Without one, the example runs on its own: it
//! starts the test authorization server of `tests/support/auth_server.rs` and serves its
//! protected API over TLS with a certificate made for this run, which the client trusts
//! (and nothing else); then it sends a few requests and exits non-zero if one fails.
//!
//! # The stack, outside in
//!
//! ```text
//! TraceLayer      one span per call, around everything below
//! TimeoutLayer    the caller's whole wait: token and response
//! OAuthLayer      adds `Authorization: Bearer ...`, fetching a token if need be
//! hyper Client    HTTPS (rustls), pooled connections
//! ```
//!
//! - **Trace outermost**, so its span and latency include the time spent waiting for a
//!   token and a call that times out is reported as a failure. It logs requests before the
//!   token is added, so the token never shows up in its events (and the header the layer
//!   adds is marked sensitive, so a trace layer placed below it would print `Sensitive`).
//! - **Timeout above OAuth**, so it bounds what the caller waits for, token fetch included.
//!   A timed-out caller does not cancel the token fetch: it runs on in the background (with
//!   its own `fetch_timeout`) and the next request uses the token. Put a second timeout
//!   below `OAuthLayer` for a per-attempt limit (each attempt, with a replay after a 401).
//! - **OAuth just above the client**, so the header is set on the request exactly as it
//!   goes out. Anything that sends a request elsewhere (redirects, see
//!   `examples/follow_redirect.rs`) belongs around it with care.
#[path = "../tests/support/auth_server.rs"]
mod auth_server;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_http::trace::TraceLayer;
use tower_oauth::{ClientCredentials, OAuthLayer};
use tracing_subscriber::EnvFilter;

use auth_server::{AuthServer, AuthServerConfig};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("tower_http=debug,tower_oauth=debug")),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    // One crypto provider for the process: rustls' aws-lc-rs (no system OpenSSL).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    // Either a real API and token endpoint, or the self-contained set-up.
    let (source, tls, urls, local) = match std::env::args().nth(1) {
        Some(url) => {
            let tls = HttpsConnectorBuilder::new().try_with_platform_verifier()?;
            (ClientCredentials::from_env()?, tls, vec![url], None)
        }
        None => {
            let local = Local::start().await?;
            let source = ClientCredentials::builder()
                .token_url(local.auth.token_url())
                .client_id(&local.auth.config().client_id)
                .client_secret(&local.auth.config().client_secret)
                .scope("api.read")
                .build()?;
            let urls = (1..=3)
                .map(|i| format!("{}/items/{i}", local.api_url))
                .collect();
            let tls = HttpsConnectorBuilder::new().with_tls_config(local.tls.clone());
            (source, tls, urls, Some(local))
        }
    };

    // hyper-util's legacy client over hyper-rustls. `https_or_http` lets the same client
    // reach a plain-http service on loopback; use `https_only()` to refuse plain http.
    let https = tls.https_or_http().enable_http1().build();
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(https);

    let oauth = OAuthLayer::new(source);
    let mut svc = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(TimeoutLayer::new(Duration::from_secs(10)))
        .layer(oauth.clone())
        .service(client);

    let mut failed = 0;
    for url in &urls {
        let request = Request::get(url.as_str()).body(Empty::new())?;
        match svc.ready().await?.call(request).await {
            Ok(response) => {
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                println!("GET {url} -> {status}: {}", String::from_utf8_lossy(&body));
                if status != StatusCode::OK {
                    failed += 1;
                }
            }
            Err(e) => {
                println!("GET {url} -> error: {e}");
                failed += 1;
            }
        }
    }
    if let Some(local) = &local {
        println!(
            "{} requests over TLS, {} token request(s), {} accepted by the API",
            urls.len(),
            local.auth.token_requests(),
            local.auth.api_stats().accepted
        );
        if local.auth.token_requests() != 1 || local.auth.api_stats().accepted != urls.len() {
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {} requests failed", urls.len()).into());
    }
    Ok(())
}

/// The self-contained set-up: the test authorization server, and its API behind a TLS
/// terminator with a certificate for `localhost` made at start.
struct Local {
    auth: AuthServer,
    api_url: String,
    tls: rustls::ClientConfig,
}

impl Local {
    async fn start() -> Result<Local, BoxError> {
        let auth = AuthServer::start(AuthServerConfig {
            client_id: "hyper-example".into(),
            client_secret: "hyper-example-secret".into(),
            scopes: vec!["api.read".into()],
            ..Default::default()
        })
        .await;

        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        let cert_der = cert.cert.der().clone();
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())?;
        let server_tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key_der)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(terminate_tls(
            listener,
            tokio_rustls::TlsAcceptor::from(Arc::new(server_tls)),
            auth.addr(),
        ));

        // The client trusts this run's certificate, and nothing else.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert_der)?;
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Local {
            api_url: format!("https://localhost:{port}/api"),
            auth,
            tls,
        })
    }
}

/// Accepts TLS connections and relays the plain bytes to `backend`.
async fn terminate_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    backend: SocketAddr,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            if let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await {
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            }
        });
    }
}
