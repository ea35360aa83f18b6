//! Cold stampede, the correctness half of `benches/stampede.rs`: 10,000 concurrent callers
//! on a cold cache, a token endpoint that takes 50 ms, exactly one token request, and every
//! caller sent with the one token. (How long it takes is measured by the bench, not here.)

#[path = "support/auth_server.rs"]
mod auth_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use auth_server::{AuthServer, AuthServerConfig};
use http::{Request, Response, header::AUTHORIZATION};
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};
use tower_oauth::{ClientCredentials, OAuthLayer, Token, source_fn};

const CALLERS: usize = 10_000;
const TOKEN_DELAY: Duration = Duration::from_millis(50);

/// Answers with the `Authorization` header it was sent.
fn echo_auth()
-> impl Service<Request<()>, Response = Response<String>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(|req: Request<()>| {
        let auth = req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("<non-ascii>").to_owned())
            .unwrap_or_default();
        async move { Ok::<_, BoxError>(Response::new(auth)) }
    })
}

/// Sends [`CALLERS`] requests at once through `layer` and returns the `Authorization`
/// headers the inner service saw.
async fn stampede(layer: &OAuthLayer) -> Vec<String> {
    let svc = layer.layer(echo_auth());
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(Request::new(())).await })
        })
        .collect();
    let mut seen = Vec::with_capacity(CALLERS);
    for task in tasks {
        let response = task.await.expect("task").expect("response");
        seen.push(response.into_body());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_stampede_of_10000_callers_over_http_makes_exactly_one_token_request() {
    let server = AuthServer::start(AuthServerConfig {
        token_delay: TOKEN_DELAY,
        ..Default::default()
    })
    .await;
    let source = ClientCredentials::builder()
        .token_url(server.token_url())
        .client_id(&server.config().client_id)
        .client_secret(&server.config().client_secret)
        .build()
        .expect("valid configuration");
    let layer = OAuthLayer::new(source);

    let seen = stampede(&layer).await;

    assert_eq!(server.token_requests(), 1);
    assert_eq!(seen.len(), CALLERS);
    let first = &seen[0];
    let access_token = first.strip_prefix("Bearer ").expect("a bearer header");
    assert!(
        server.is_valid(access_token),
        "the header carries the issued token"
    );
    assert_eq!(seen.iter().filter(|h| *h == first).count(), CALLERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_stampede_of_10000_callers_in_process_makes_exactly_one_fetch() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let layer = OAuthLayer::new(source_fn(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(TOKEN_DELAY).await;
            Ok(Token::new("stampede-token", Duration::from_secs(3600)))
        }
    }));

    let seen = stampede(&layer).await;

    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(seen.len(), CALLERS);
    assert_eq!(
        seen.iter()
            .filter(|h| *h == "Bearer stampede-token")
            .count(),
        CALLERS
    );
}
