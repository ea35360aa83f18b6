//! Errors and log lines that say what failed and where: each names the token (its
//! identity), the token endpoint's origin and the cause, and has the expected `kind()`.
//! Real sockets on loopback (a closed port, a server that speaks no TLS, a silent one).

#![cfg(feature = "reqwest")]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::Captured;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower_oauth::error::ErrorKind;
use tower_oauth::{ClientCredentials, Error, OAuthLayer};

fn source(token_url: String) -> ClientCredentials {
    ClientCredentials::builder()
        .token_url(token_url)
        .client_id("billing")
        .client_secret("not-in-any-message")
        .timeout(Duration::from_secs(5))
        .build()
        .expect("valid configuration")
}

async fn fetch_error(token_url: String) -> Error {
    let layer = OAuthLayer::new(source(token_url));
    layer.cache().token().await.expect_err("no token")
}

/// A loopback port with nothing listening on it.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Answers every connection with `answer` once it has read something, then closes.
async fn answering(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(answer).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

/// Accepts connections and never answers.
async fn silent() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    addr
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains("not-in-any-message"), "{text}");
}

#[tokio::test]
async fn a_refused_connection_says_refused() {
    let addr = closed_port().await;
    let error = fetch_error(format!("http://{addr}/token?tenant=x")).await;
    assert_eq!(error.kind(), ErrorKind::Transport);
    let text = error.to_string();
    let prefix =
        format!("billing@127.0.0.1 (token endpoint http://{addr}): token endpoint unreachable: ");
    assert!(text.starts_with(&prefix), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(!text.contains("tenant"), "no query in the message: {text}");
    assert_eq!(error.identity().unwrap().name(), "billing@127.0.0.1");
    assert_no_secret(&text);
}

#[tokio::test]
async fn a_host_that_does_not_resolve_says_so() {
    // `.invalid` never resolves (RFC 6761).
    let error = fetch_error("https://token.invalid/token".into()).await;
    assert_eq!(error.kind(), ErrorKind::Transport, "{error}");
    let text = error.to_string();
    assert!(
        text.starts_with(
            "billing@token.invalid (token endpoint https://token.invalid): token endpoint unreachable: "
        ),
        "{text}"
    );
    let cause = text.rsplit(": ").next().unwrap().to_lowercase();
    assert!(
        ["resolve", "lookup", "name", "dns", "address"]
            .iter()
            .any(|w| cause.contains(w)),
        "the cause is the resolver's: {text}"
    );
}

#[tokio::test]
async fn a_tls_failure_says_what_tls_said() {
    // An https URL to a server that answers in plain HTTP.
    let addr = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    let error = fetch_error(format!("https://{addr}/token")).await;
    assert_eq!(error.kind(), ErrorKind::Transport, "{error}");
    let text = error.to_string();
    let prefix =
        format!("billing@127.0.0.1 (token endpoint https://{addr}): token endpoint unreachable: ");
    assert!(text.starts_with(&prefix), "{text}");
    assert!(text.len() > prefix.len(), "a cause follows: {text}");
}

#[tokio::test]
async fn a_500_html_page_is_an_invalid_response_of_that_endpoint() {
    let addr = answering(
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/html\r\ncontent-length: 13\r\nconnection: close\r\n\r\n<h1>oops</h1>",
    )
    .await;
    let error = fetch_error(format!("http://{addr}/token")).await;
    assert_eq!(error.kind(), ErrorKind::InvalidResponse);
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "billing@127.0.0.1 (token endpoint http://{addr}): invalid token response (500 Internal Server Error, text/html)"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn the_layers_name_replaces_the_sources() {
    let addr = closed_port().await;
    let layer = OAuthLayer::builder(source(format!("http://{addr}/token")))
        .name("billing-api")
        .build();
    let error = layer.cache().token().await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("billing-api (token endpoint http://{addr}): ")),
        "{error}"
    );
}

#[tokio::test]
async fn a_timeout_names_the_token_and_the_limit() {
    let addr = silent().await;
    let source = ClientCredentials::builder()
        .token_url(format!("http://{addr}/token"))
        .client_id("billing")
        .client_secret("s")
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = OAuthLayer::new(source).cache().token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(
        error.to_string(),
        format!(
            "billing@127.0.0.1 (token endpoint http://{addr}): token request timed out after 200ms (ClientCredentialsBuilder::timeout)"
        )
    );
}

#[cfg(feature = "redis")]
mod store {
    use super::*;
    use support::auth_server::AuthServer;
    use tower_oauth::store::{RedisStore, StoreOptions};

    /// The one `WARN` line about the store, after a token fetch through it.
    async fn store_warning(redis: SocketAddr, timeout: Duration) -> String {
        let captured = Captured::default();
        let _guard = tracing::subscriber::set_default(captured.subscriber(tracing::Level::WARN));
        let server = AuthServer::start_default().await;
        let store = RedisStore::open(&format!("redis://{redis}")).unwrap();
        let layer = OAuthLayer::builder(support::client_for(&server))
            .name("billing-api")
            .store(store)
            .store_options(StoreOptions::new().timeout(timeout))
            .build();
        // The store is down: the token comes from the token endpoint all the same.
        layer
            .cache()
            .token()
            .await
            .expect("a token without the store");
        assert_eq!(server.token_requests(), 1);
        let text = captured.text();
        let warned: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warned.len(), 1, "one rate-limited warning: {text}");
        assert_no_secret(&text);
        warned[0].to_owned()
    }

    #[tokio::test]
    async fn a_refused_redis_is_reported_as_refused_not_as_a_timeout() {
        let line = store_warning(closed_port().await, Duration::from_secs(2)).await;
        assert!(line.contains("identity=\"billing-api\""), "{line}");
        assert!(
            line.contains("billing-api (token endpoint http://"),
            "{line}"
        );
        assert!(line.to_lowercase().contains("refused"), "{line}");
        assert!(!line.contains("timed out"), "{line}");
    }

    #[tokio::test]
    async fn a_silent_redis_is_a_timeout_of_the_store_call() {
        let line = store_warning(silent().await, Duration::from_millis(200)).await;
        assert!(line.contains("identity=\"billing-api\""), "{line}");
        assert!(line.contains("token store: call timed out"), "{line}");
    }
}
