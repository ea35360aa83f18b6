//! The tracing events of the background refresh and of a 401 replay. In a test binary of
//! their own: tracing caches per call site whether anyone listens, and a test on another
//! thread that hits a call site first, with no subscriber, could make these miss events
//! (with a single scoped subscriber in the process, the registering thread's own
//! dispatcher decides). Every test here installs its subscriber before it does anything.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, StatusCode};
use support::{Captured, auth_of, status};
use tower::{BoxError, Layer, ServiceExt, service_fn};
use tower_oauth::{Error, OAuthLayer, Token, source_fn};

#[tokio::test(start_paused = true)]
async fn events_tell_the_refresh_and_the_next_try_never_the_token() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber(tracing::Level::DEBUG));

    // Token, failure, token: at 0 s, 37.5 s (background) and 38.5 s (1 s backoff).
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let source = source_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            match n {
                2 => Err(Error::other("token endpoint down")),
                _ => Ok(Token::new(
                    format!("secret-token-{n}"),
                    Duration::from_secs(100),
                )),
            }
        }
    });
    let layer = OAuthLayer::builder(source)
        .refresh_ahead_jitter(0.0)
        .retry_jitter(0.0)
        .build();
    layer.cache().token().await.unwrap();
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(requests.load(Ordering::SeqCst), 3);

    let text = captured.text();
    let lines = |what: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(what))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(lines("background token refresh started").len(), 2, "{text}");
    // One WARN event for the failed refresh, with what follows it.
    let warned = lines(" WARN ");
    assert_eq!(warned.len(), 1, "{text}");
    let failed = lines("token fetch failed");
    assert_eq!(failed.len(), 1, "{text}");
    assert!(failed[0].contains(" WARN "), "{}", failed[0]);
    // Inside the fetch's span, which names the token and says how the fetch ended.
    assert!(
        failed[0].contains("token_fetch{identity=\"token\" outcome=\"other\" duration_ms=0}"),
        "{}",
        failed[0]
    );
    assert!(failed[0].contains("retry_in_ms=1000"), "{}", failed[0]);
    assert!(failed[0].contains("failures_in_a_row=1"), "{}", failed[0]);
    assert_eq!(lines("background token refresh failed").len(), 1, "{text}");
    // It names the token (the default name: the source gives none) and the cause.
    assert!(
        failed[0].contains("identity=\"token\" error=token: token source failed"),
        "{}",
        failed[0]
    );
    let succeeded = lines("background token refresh succeeded");
    assert_eq!(succeeded.len(), 1, "{text}");
    assert!(
        succeeded[0].contains("expires_in_secs=100"),
        "{}",
        succeeded[0]
    );
    assert!(
        !text.contains("secret-token"),
        "a token in the events: {text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn each_replay_is_traced_without_the_token() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber(tracing::Level::TRACE));

    let counter = Arc::new(AtomicUsize::new(0));
    let source = source_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            Ok(Token::new(
                format!("SECRET-TOKEN-VALUE-{n}"),
                Duration::from_secs(3600),
            ))
        }
    });
    let api = service_fn(|req: Request<String>| {
        let code = if auth_of(&req).ends_with("-1") {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        async move { Ok::<_, BoxError>(status(code)) }
    });
    let svc = OAuthLayer::new(source).layer(api);
    let req = Request::post("https://api.test/orders?api_key=QUERY-SECRET")
        .body(String::from("{}"))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let log = captured.text();
    let replay = log
        .lines()
        .find(|l| l.contains("sending the request again"))
        .unwrap_or_else(|| panic!("no replay event in:\n{log}"));
    assert!(replay.contains("INFO"), "{replay}");
    assert!(replay.contains("tower_oauth:"), "{replay}");
    assert!(replay.contains("method=POST"), "{replay}");
    assert!(replay.contains("path=\"/orders\""), "{replay}");
    assert!(replay.contains("invalidated=true"), "{replay}");
    assert!(!log.contains("SECRET-TOKEN-VALUE"), "{log}");
    assert!(!log.contains("QUERY-SECRET"), "{log}");
}
