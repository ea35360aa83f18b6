//! Cold stampede, the correctness half of `benches/stampede.rs`: 10,000 concurrent callers
//! on a cold cache, a token endpoint that takes 50 ms, exactly one token request, and every
//! caller sent with the one token. (How long it takes is measured by the bench, not here.)

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use support::auth_server::{AuthServer, AuthServerConfig};
use support::{client_for, echo_auth};
use tower::{Layer, ServiceExt};
use tower_oauth::{OAuthLayer, Token, source_fn};

const CALLERS: usize = 10_000;
const TOKEN_DELAY: Duration = Duration::from_millis(50);

/// Sends [`CALLERS`] requests at once through `layer` and returns the `Authorization`
/// headers the inner service saw.
async fn stampede(layer: &OAuthLayer) -> Vec<String> {
    let svc = layer.layer(echo_auth::<()>());
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
    let layer = OAuthLayer::new(client_for(&server));

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
