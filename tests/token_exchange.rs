//! On behalf of the caller (RFC 8693 token exchange) through `SubjectTokenLayer` and
//! `on_behalf_of`: 10,000 distinct callers through 1,000 slots, each upstream request with
//! its own caller's exchanged token (checked by the upstream against the server's record),
//! never the caller's own token; one exchange per caller per token lifetime; a request
//! without a caller's token, or with one the server refuses, is a typed error and nothing
//! goes upstream.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response, header::AUTHORIZATION};
use support::auth_server::AuthServer;
use support::{auth_of, client_for};
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_oauth::oauth::on_behalf_of::{SubjectTokenLayer, on_behalf_of};
use tower_oauth::{Error, SubjectToken, TokenSource};

const SUBJECTS: usize = 10_000;
const SLOTS: usize = 1_000;

#[derive(Default)]
struct Upstream {
    requests: AtomicUsize,
    /// Requests whose token was not exchanged for the caller named in `x-caller`.
    crossings: AtomicUsize,
}

/// The gateway's upstream client: `SubjectTokenLayer` -> `on_behalf_of` -> an upstream that
/// checks every request's token against the server's record of whom it was issued for.
fn gateway(
    server: &Arc<AuthServer>,
    upstream: &Arc<Upstream>,
    slots: usize,
) -> (
    BoxCloneService<Request<()>, Response<()>, BoxError>,
    impl Fn() -> usize,
) {
    let layer = on_behalf_of(client_for(server)).max_slots(slots);
    let held = layer.clone();
    let (server, upstream) = (server.clone(), upstream.clone());
    let svc = ServiceBuilder::new()
        .layer(SubjectTokenLayer::new())
        .layer(layer)
        .service(service_fn(move |req: Request<()>| {
            upstream.requests.fetch_add(1, Ordering::SeqCst);
            let caller = req.headers()["x-caller"].to_str().unwrap().to_owned();
            let auth = auth_of(&req);
            let token = auth.strip_prefix("Bearer ").unwrap_or_default();
            if server.subject_of(token).as_deref() != Some(caller.as_str()) {
                upstream.crossings.fetch_add(1, Ordering::SeqCst);
            }
            async { Ok::<_, BoxError>(Response::new(())) }
        }))
        .boxed_clone();
    (svc, move || held.slots())
}

fn request_of(caller: &str) -> Request<()> {
    Request::get("http://upstream.internal/orders")
        .header(AUTHORIZATION, format!("Bearer {caller}"))
        .header("x-caller", caller)
        .body(())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_callers_through_1000_slots_each_get_only_their_own_token() {
    let server = Arc::new(AuthServer::start_default().await);
    let upstream = Arc::new(Upstream::default());
    let (svc, slots) = gateway(&server, &upstream, SLOTS);

    let mut max_held = 0;
    for start in (0..SUBJECTS).step_by(500) {
        let tasks: Vec<_> = (start..start + 500)
            .map(|i| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.oneshot(request_of(&format!("caller-{i}"))).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().expect("a success");
        }
        max_held = max_held.max(slots());
    }

    assert_eq!(upstream.requests.load(Ordering::SeqCst), SUBJECTS);
    assert_eq!(upstream.crossings.load(Ordering::SeqCst), 0, "0 crossings");
    assert_eq!(server.token_requests(), SUBJECTS, "one exchange per caller");
    assert!(
        max_held <= SLOTS,
        "at most {SLOTS} slots held, saw {max_held}"
    );
    assert!(slots() <= SLOTS);
    let log = server.token_request_log();
    assert!(log.iter().all(|r| {
        r.param("grant_type") == Some("urn:ietf:params:oauth:grant-type:token-exchange")
            && r.param("subject_token_type")
                == Some("urn:ietf:params:oauth:token-type:access_token")
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_calls_by_a_caller_make_one_exchange_per_token_lifetime() {
    let server = Arc::new(AuthServer::start_default().await);
    let upstream = Arc::new(Upstream::default());
    let (svc, slots) = gateway(&server, &upstream, SLOTS);
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(request_of(&format!("caller-{}", i % 3))).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().expect("a success");
    }
    assert_eq!(server.token_requests(), 3, "3 callers, 3 exchanges");
    assert_eq!(slots(), 3);
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 300);
    assert_eq!(upstream.crossings.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn no_caller_token_or_a_refused_one_is_a_typed_error_and_nothing_goes_upstream() {
    let server = Arc::new(AuthServer::start_default().await);
    let upstream = Arc::new(Upstream::default());
    let (svc, _) = gateway(&server, &upstream, SLOTS);

    let without = Request::get("http://upstream.internal/orders")
        .header("x-caller", "nobody")
        .body(())
        .unwrap();
    let err = svc.clone().oneshot(without).await.unwrap_err();
    let err = err.downcast_ref::<Error>().expect("a tower_oauth::Error");
    assert!(err.is_missing_key(), "{err}");
    assert!(err.to_string().contains("subject token"), "{err}");
    assert_eq!(server.token_requests(), 0);

    let err = svc.oneshot(request_of("bad-caller")).await.unwrap_err();
    let err = err.downcast_ref::<Error>().expect("a tower_oauth::Error");
    assert_eq!(err.token_endpoint_error().unwrap().error(), "invalid_grant");
    assert!(!format!("{err} {err:?}").contains("bad-caller"), "{err:?}");
    assert_eq!(
        upstream.requests.load(Ordering::SeqCst),
        0,
        "nothing upstream"
    );
}

#[tokio::test]
async fn the_exchange_carries_the_client_parameters_and_redacts_the_subject() {
    let server = Arc::new(AuthServer::start_default().await);
    let client = tower_oauth::ClientCredentials::builder()
        .token_url(server.token_url())
        .client_id("demo")
        .client_secret("demo-secret")
        .audience("https://orders.internal")
        .build()
        .unwrap();
    let source = client
        .token_exchange(SubjectToken::new("caller-token-1"))
        .requested_token_type("urn:ietf:params:oauth:token-type:access_token");
    let token = source.fetch().await.unwrap();
    let request = server.last_token_request().unwrap();
    assert_eq!(request.param("subject_token"), Some("caller-token-1"));
    assert_eq!(request.param("audience"), Some("https://orders.internal"));
    assert_eq!(
        request.param("requested_token_type"),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    use tower_oauth::ExposeSecret as _;
    assert_eq!(
        server
            .subject_of(token.access_token().expose_secret())
            .as_deref(),
        Some("caller-token-1")
    );
    let shown = format!("{source:?} {}", source.identity().unwrap());
    assert!(!shown.contains("caller-token-1"), "{shown}");
    assert_ne!(
        source.cache_key(),
        client
            .token_exchange(SubjectToken::new("caller-token-2"))
            .cache_key()
    );
}
