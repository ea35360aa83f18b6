//! Refresh ahead and riding out token-endpoint failures, on tokio's paused clock.
//!
//! The token endpoint is a scripted [`source_fn`]: each token request takes the next
//! [`Answer`] of its script and is logged with the (paused) time it was made, so the tests
//! assert exact request times.

mod support;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{Request, Response};
use support::auth_server::{AuthServer, AuthServerConfig, FailureMode};
use support::{client_for, echo_auth, settle};
use tower::util::BoxCloneService;
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_oauth::{Error, OAuth, OAuthLayer, Token, TokenSource, source_fn};

use tokio::time::Instant;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// What the scripted token endpoint does with one request.
#[derive(Clone, Debug)]
enum Answer {
    /// A new token `t<n>` with this lifetime, after this delay.
    Token(Duration, Duration),
    /// An error, at once.
    Fail,
    /// An error carrying this `Retry-After`, at once (a 503 with the header).
    RetryAfter(Duration),
    /// No answer, ever.
    Never,
}

fn token(lifetime_secs: u64) -> Answer {
    Answer::Token(Duration::from_secs(lifetime_secs), Duration::ZERO)
}

fn slow_token(lifetime_secs: u64, delay: Duration) -> Answer {
    Answer::Token(Duration::from_secs(lifetime_secs), delay)
}

#[derive(Clone)]
struct Endpoint {
    start: Instant,
    requests: Arc<Mutex<Vec<Duration>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    then: Answer,
    issued: Arc<AtomicUsize>,
}

impl Endpoint {
    /// Answers with `script`, then with `then` for ever.
    fn new(script: impl IntoIterator<Item = Answer>, then: Answer) -> Endpoint {
        Endpoint {
            start: Instant::now(),
            requests: Arc::default(),
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            then,
            issued: Arc::default(),
        }
    }

    fn source(&self) -> impl TokenSource + use<> {
        let endpoint = self.clone();
        source_fn(move || {
            endpoint
                .requests
                .lock()
                .unwrap()
                .push(endpoint.start.elapsed());
            let answer = endpoint
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| endpoint.then.clone());
            let issued = endpoint.issued.clone();
            async move {
                match answer {
                    Answer::Token(lifetime, delay) => {
                        tokio::time::sleep(delay).await;
                        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                        Ok(Token::new(format!("t{n}"), lifetime))
                    }
                    Answer::Fail => Err(Error::other("token endpoint down")),
                    Answer::RetryAfter(delay) => {
                        Err(Error::other("503 Service Unavailable").with_retry_after(delay))
                    }
                    Answer::Never => std::future::pending().await,
                }
            }
        })
    }

    /// When each token request was made, from the endpoint's creation.
    fn requests(&self) -> Vec<Duration> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

type Echo = BoxCloneService<Request<String>, Response<String>, BoxError>;

/// An inner service that answers with the `Authorization` header it got.
fn echo() -> Echo {
    BoxCloneService::new(echo_auth())
}

struct Called {
    /// The request took the hot path: the token was in the slot, fresh.
    hot: bool,
    /// How long the call took on the (paused) clock.
    waited: Duration,
    result: Result<String, BoxError>,
}

impl Called {
    fn header(self) -> String {
        self.result.expect("the call succeeds")
    }

    fn error(self) -> Error {
        *self
            .result
            .expect_err("the call fails")
            .downcast::<Error>()
            .expect("a tower_oauth::Error")
    }
}

async fn call(svc: &mut OAuth<Echo>) -> Called {
    let before = Instant::now();
    let future = svc.ready().await.unwrap().call(Request::new(String::new()));
    let hot = format!("{future:?}").contains("\"called\"");
    let result = future.await.map(Response::into_body);
    Called {
        hot,
        waited: before.elapsed(),
        result,
    }
}

/// Calls `svc` every `every` until `until` (from `start`), with `check` on each call. Before
/// each call, lets the cache's tasks that are due at the same instant run first.
async fn calls_until(
    svc: &mut OAuth<Echo>,
    start: Instant,
    every: Duration,
    until: Duration,
    mut check: impl FnMut(Duration, Called),
) {
    while start.elapsed() < until {
        let at = start.elapsed();
        settle().await;
        let called = call(svc).await;
        check(at, called);
        tokio::time::sleep_until(start + at + every).await;
    }
}

/// A layer over `endpoint` whose refresh-ahead point and retry delays have no jitter, so
/// that the token requests come at exact times.
fn without_jitter(endpoint: &Endpoint) -> OAuthLayer {
    OAuthLayer::builder(endpoint.source())
        .refresh_ahead_jitter(0.0)
        .retry_jitter(0.0)
        .build()
}

/// A service through `layer` in front of [`echo`], after a first call that fetched `t1`.
async fn serving_t1(layer: &OAuthLayer) -> OAuth<Echo> {
    let mut svc = layer.layer(echo());
    assert_eq!(call(&mut svc).await.header(), "Bearer t1");
    svc
}

/// The header a call at `at` carries when `t2` replaced `t1` at `switch`.
fn t1_until(switch: Duration, at: Duration) -> &'static str {
    if at < switch {
        "Bearer t1"
    } else {
        "Bearer t2"
    }
}

/// Calls `svc` every 0.1 s until `until` (from `start`): no call waits, each carries `t1`
/// before `switch` and `t2` from then on.
async fn no_call_waits_and_t2_from(
    svc: &mut OAuth<Echo>,
    start: Instant,
    until: Duration,
    switch: Duration,
) {
    calls_until(svc, start, secs(0.1), until, |at, called| {
        assert_eq!(called.waited, Duration::ZERO, "at {at:?}");
        assert_eq!(called.header(), t1_until(switch, at), "at {at:?}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_100s_token_is_refreshed_in_the_background_between_32_5_and_37_5_s_and_no_caller_waits() {
    // The background fetch takes 200 ms, so a caller that waited for it would show.
    let endpoint = Endpoint::new([token(100)], slow_token(100, secs(0.2)));
    let start = endpoint.start;
    let layer = OAuthLayer::new(endpoint.source());
    let mut svc = layer.layer(echo());

    let first = call(&mut svc).await;
    assert!(!first.hot, "the cold cache fetches");
    assert_eq!(first.header(), "Bearer t1");

    let mut t2_from = None;
    calls_until(&mut svc, start, secs(0.1), secs(50.0), |at, called| {
        assert!(called.hot, "at {at:?}: the call took the slow path");
        assert_eq!(called.waited, Duration::ZERO, "at {at:?}");
        let header = called.header();
        if header == "Bearer t2" {
            t2_from.get_or_insert(at);
        } else {
            assert_eq!(header, "Bearer t1", "at {at:?}");
            assert!(t2_from.is_none(), "at {at:?}: back to t1");
        }
    })
    .await;

    let requests = endpoint.requests();
    assert_eq!(requests.len(), 2, "exactly 2 token requests by 50 s");
    assert_eq!(requests[0], Duration::ZERO);
    let refresh = requests[1];
    assert!(
        refresh >= secs(32.5) && refresh <= secs(37.5),
        "background refresh at {refresh:?}"
    );
    let t2_from = t2_from.expect("t2 in use by 50 s");
    assert!(t2_from >= refresh + secs(0.2) && t2_from <= refresh + secs(0.3));
}

#[tokio::test(start_paused = true)]
async fn without_refresh_ahead_the_first_caller_after_50s_starts_the_fetch_and_does_not_wait() {
    let endpoint = Endpoint::new([token(100)], slow_token(100, secs(0.2)));
    let start = endpoint.start;
    let layer = OAuthLayer::builder(endpoint.source())
        .refresh_ahead(false)
        .build();
    let mut svc = serving_t1(&layer).await;

    calls_until(&mut svc, start, secs(0.1), secs(50.0), |at, called| {
        assert!(called.hot, "at {at:?}");
        assert_eq!(called.header(), "Bearer t1", "at {at:?}");
    })
    .await;
    assert_eq!(endpoint.requests(), [Duration::ZERO]);

    assert_eq!(start.elapsed(), secs(50.0));
    settle().await;
    let called = call(&mut svc).await;
    assert!(!called.hot);
    // The token is valid for 50 s more: the caller uses it while the fetch runs.
    assert_eq!(
        called.waited,
        Duration::ZERO,
        "no caller with a valid token waits"
    );
    assert_eq!(called.header(), "Bearer t1");
    settle().await;
    assert_eq!(endpoint.requests(), [secs(0.0), secs(50.0)]);
    calls_until(&mut svc, start, secs(0.05), secs(50.4), |at, called| {
        assert_eq!(called.waited, Duration::ZERO, "at {at:?}");
        let expected = if at < secs(50.2) {
            "Bearer t1"
        } else {
            "Bearer t2"
        };
        assert_eq!(called.header(), expected, "at {at:?}");
    })
    .await;
    assert_eq!(endpoint.requests(), [secs(0.0), secs(50.0)]);
}

#[tokio::test(start_paused = true)]
async fn a_fleet_started_together_does_not_refresh_together() {
    let endpoints: Vec<Endpoint> = (0..20).map(|_| Endpoint::new([], token(100))).collect();
    let layers: Vec<OAuthLayer> = endpoints
        .iter()
        .map(|e| OAuthLayer::new(e.source()))
        .collect();
    for layer in &layers {
        layer.cache().token().await.unwrap();
    }
    tokio::time::sleep(secs(50.0)).await;

    let starts: Vec<Duration> = endpoints
        .iter()
        .map(|e| {
            let requests = e.requests();
            assert_eq!(requests.len(), 2, "one background refresh each");
            requests[1]
        })
        .collect();
    for &at in &starts {
        assert!(at >= secs(32.5) && at <= secs(37.5), "refresh at {at:?}");
    }
    let distinct: HashSet<_> = starts.iter().map(Duration::as_millis).collect();
    assert!(distinct.len() >= 10, "{starts:?}");
    let spread = starts
        .iter()
        .max()
        .unwrap()
        .saturating_sub(*starts.iter().min().unwrap());
    assert!(spread >= secs(1.0), "{starts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_background_refresh_is_retried_on_the_backoff_schedule() {
    // Fails three times, then recovers; the first token is valid all along.
    let endpoint = Endpoint::new(
        [token(100), Answer::Fail, Answer::Fail, Answer::Fail],
        token(100),
    );
    let start = endpoint.start;
    let layer = without_jitter(&endpoint);
    let mut svc = serving_t1(&layer).await;

    calls_until(&mut svc, start, secs(0.1), secs(80.0), |at, called| {
        assert!(called.hot, "at {at:?}");
        assert_eq!(called.header(), t1_until(secs(44.5), at), "at {at:?}");
    })
    .await;

    // 75% of the usable 50 s, then 1 s, 2 s, 4 s.
    assert_eq!(
        endpoint.requests(),
        [secs(0.0), secs(37.5), secs(38.5), secs(40.5), secs(44.5)]
    );
}

#[tokio::test(start_paused = true)]
async fn an_outage_past_the_usable_part_is_ridden_out_with_the_valid_token() {
    // Fails five times: the retries run past the usable part (50 s) of the first token,
    // which is still valid until 100 s.
    let endpoint = Endpoint::new(
        [
            token(100),
            Answer::Fail,
            Answer::Fail,
            Answer::Fail,
            Answer::Fail,
            Answer::Fail,
        ],
        token(100),
    );
    let start = endpoint.start;
    let layer = without_jitter(&endpoint);
    let mut svc = serving_t1(&layer).await;

    calls_until(&mut svc, start, secs(0.1), secs(70.0), |at, called| {
        assert_eq!(called.waited, Duration::ZERO, "at {at:?}");
        assert_eq!(
            called.hot,
            !(secs(50.0)..secs(68.5)).contains(&at),
            "at {at:?}"
        );
        assert_eq!(called.header(), t1_until(secs(68.5), at), "at {at:?}");
    })
    .await;
    // 37.5 s, then 1, 2, 4, 8 and 16 s later.
    assert_eq!(
        endpoint.requests(),
        [
            secs(0.0),
            secs(37.5),
            secs(38.5),
            secs(40.5),
            secs(44.5),
            secs(52.5),
            secs(68.5)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn without_refresh_ahead_a_failed_fetch_past_the_usable_part_serves_the_valid_token() {
    let endpoint = Endpoint::new([token(100), Answer::Fail, Answer::Fail], token(100));
    let start = endpoint.start;
    let layer = OAuthLayer::builder(endpoint.source())
        .refresh_ahead(false)
        .retry_jitter(0.0)
        .build();
    let mut svc = serving_t1(&layer).await;
    // The caller that starts the successful try at 53 s still uses t1.
    no_call_waits_and_t2_from(&mut svc, start, secs(55.0), secs(53.05)).await;
    // Callers make the tries (at the end of the usable part, then 1 s and 2 s later).
    assert_eq!(
        endpoint.requests(),
        [secs(0.0), secs(50.0), secs(51.0), secs(53.0)]
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_30_s_means_no_token_request_for_30_s() {
    let endpoint = Endpoint::new([token(100), Answer::RetryAfter(secs(30.0))], token(100));
    let start = endpoint.start;
    let layer = without_jitter(&endpoint);
    let mut svc = serving_t1(&layer).await;
    no_call_waits_and_t2_from(&mut svc, start, secs(80.0), secs(67.5)).await;
    // The 503 at 37.5 s asked for 30 s: nothing until 67.5 s (the backoff said 1 s).
    assert_eq!(endpoint.requests(), [secs(0.0), secs(37.5), secs(67.5)]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_on_a_cold_cache_holds_callers_for_30_s() {
    let endpoint = Endpoint::new([Answer::RetryAfter(secs(30.0))], token(100));
    let start = endpoint.start;
    let layer = OAuthLayer::new(endpoint.source());
    let mut svc = layer.layer(echo());

    calls_until(&mut svc, start, secs(0.1), secs(30.0), |at, called| {
        assert_eq!(called.waited, Duration::ZERO, "at {at:?}");
        let error = called.error();
        assert_eq!(error.retry_after(), Some(secs(30.0)), "at {at:?}");
    })
    .await;
    assert_eq!(endpoint.requests(), [secs(0.0)]);
    assert_eq!(call(&mut svc).await.header(), "Bearer t1");
    assert_eq!(endpoint.requests(), [secs(0.0), secs(30.0)]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_bounded_by_the_backoff_maximum() {
    let endpoint = Endpoint::new(
        [Answer::RetryAfter(Duration::from_secs(86_400))],
        token(100),
    );
    let start = endpoint.start;
    let layer = OAuthLayer::builder(endpoint.source())
        .retry_backoff(secs(1.0), secs(10.0))
        .build();
    let mut svc = layer.layer(echo());
    calls_until(&mut svc, start, secs(0.5), secs(10.0), |at, called| {
        assert!(called.error().retry_after().is_some(), "at {at:?}");
    })
    .await;
    assert_eq!(call(&mut svc).await.header(), "Bearer t1");
    assert_eq!(endpoint.requests(), [secs(0.0), secs(10.0)]);
}

#[tokio::test(start_paused = true)]
async fn cold_cache_endpoint_down_500_calls_within_1s_make_1_token_request() {
    let endpoint = Endpoint::new([], Answer::Fail);
    let start = endpoint.start;
    let layer = OAuthLayer::new(endpoint.source());
    let mut svc = layer.layer(echo());

    let mut failed = 0;
    calls_until(&mut svc, start, secs(0.002), secs(1.0), |at, called| {
        assert_eq!(
            called.waited,
            Duration::ZERO,
            "at {at:?}: the error comes at once"
        );
        assert!(called.error().is_other(), "at {at:?}");
        failed += 1;
    })
    .await;
    assert_eq!(failed, 500);
    assert_eq!(endpoint.count(), 1);

    // The window is over: the next call tries again.
    assert_eq!(start.elapsed(), secs(1.0));
    assert!(call(&mut svc).await.error().is_other());
    assert_eq!(endpoint.requests(), [secs(0.0), secs(1.0)]);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_concurrent_callers_on_a_failing_endpoint_makes_1_token_request() {
    let endpoint = Endpoint::new([], Answer::Fail);
    let layer = OAuthLayer::new(endpoint.source());
    let svc = layer.layer(echo());
    let tasks: Vec<_> = (0..500)
        .map(|_| tokio::spawn(svc.clone().oneshot(Request::new(String::new()))))
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_err());
    }
    assert_eq!(endpoint.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_never_answers_fails_at_the_timeout() {
    let endpoint = Endpoint::new([], Answer::Never);
    let start = endpoint.start;
    let layer = OAuthLayer::new(endpoint.source());
    let mut svc = layer.layer(echo());

    // A second caller joins the fetch 4 s later; both get the timeout at 10 s.
    let mut joiner = svc.clone();
    let late = tokio::spawn(async move {
        tokio::time::sleep(secs(4.0)).await;
        call(&mut joiner).await
    });
    let first = call(&mut svc).await;
    assert_eq!(first.waited, secs(10.0));
    let error = first.error();
    assert!(error.is_timeout());
    // The error says which limit fired, and its duration.
    assert_eq!(error.timeout_after(), Some(secs(10.0)));
    assert_eq!(
        error.to_string(),
        "token: token request timed out after 10s (OAuthLayerBuilder::fetch_timeout)"
    );
    let late = late.await.unwrap();
    assert_eq!(late.waited, secs(6.0));
    assert!(late.error().is_timeout());
    assert_eq!(endpoint.count(), 1);

    // Within the failure window: the timeout error at once, no token request.
    calls_until(&mut svc, start, secs(0.1), secs(11.0), |at, called| {
        assert_eq!(called.waited, Duration::ZERO, "at {at:?}");
        assert!(called.error().is_timeout(), "at {at:?}");
    })
    .await;
    assert_eq!(endpoint.count(), 1);

    // After it: a new try (which hangs again, and times out at 21 s).
    let next = call(&mut svc).await;
    assert_eq!(next.waited, secs(10.0));
    assert!(next.error().is_timeout());
    assert_eq!(endpoint.requests(), [secs(0.0), secs(11.0)]);
}

#[tokio::test(start_paused = true)]
async fn the_fetch_timeout_is_configurable() {
    let endpoint = Endpoint::new([], Answer::Never);
    let layer = OAuthLayer::builder(endpoint.source())
        .fetch_timeout(secs(2.5))
        .build();
    let called = call(&mut layer.layer(echo())).await;
    assert_eq!(called.waited, secs(2.5));
    assert!(called.error().is_timeout());
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// A source that keeps `marker` alive as long as the cache has the source.
fn marked(endpoint: &Endpoint, marker: Arc<()>) -> impl TokenSource + use<> {
    let inner = Arc::new(endpoint.source());
    source_fn(move || {
        let _alive = &marker;
        let inner = inner.clone();
        async move { inner.fetch().await }
    })
}

#[tokio::test(start_paused = true)]
async fn dropping_every_layer_clone_ends_the_background_task() {
    let marker = Arc::new(());
    let endpoint = Endpoint::new([], token(100));
    let layer = OAuthLayer::new(marked(&endpoint, marker.clone()));
    let clone = layer.clone();
    let mut svc = clone.layer(echo());
    assert_eq!(call(&mut svc).await.header(), "Bearer t1");
    settle().await;
    assert_eq!(alive_tasks(), 1, "the timer task");

    tokio::time::sleep(secs(20.0)).await;
    drop(layer);
    drop(clone);
    settle().await;
    assert_eq!(alive_tasks(), 1, "a service still holds the cache");
    drop(svc);
    settle().await;
    assert_eq!(alive_tasks(), 0, "the timer task ended");
    assert_eq!(
        Arc::strong_count(&marker),
        1,
        "the cache and its source are gone"
    );
    tokio::time::sleep(secs(100.0)).await;
    assert_eq!(endpoint.count(), 1, "nothing ran after the drop");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_layer_during_a_background_refresh_or_backoff_ends_everything() {
    // During a background fetch: it completes, then the timer ends.
    let marker = Arc::new(());
    let endpoint = Endpoint::new([token(100)], slow_token(100, secs(1.0)));
    let layer = OAuthLayer::builder(marked(&endpoint, marker.clone()))
        .refresh_ahead_jitter(0.0)
        .build();
    layer.cache().token().await.unwrap();
    tokio::time::sleep(secs(37.6)).await;
    assert_eq!(endpoint.count(), 2, "the background fetch is running");
    assert_eq!(alive_tasks(), 2, "the timer and the fetch");
    drop(layer);
    tokio::time::sleep(secs(1.0)).await;
    settle().await;
    assert_eq!(alive_tasks(), 0);
    assert_eq!(Arc::strong_count(&marker), 1);

    // During a backoff sleep.
    let marker = Arc::new(());
    let endpoint = Endpoint::new([token(100)], Answer::Fail);
    let layer = OAuthLayer::builder(marked(&endpoint, marker.clone()))
        .refresh_ahead_jitter(0.0)
        .retry_jitter(0.0)
        .build();
    layer.cache().token().await.unwrap();
    tokio::time::sleep(secs(40.0)).await;
    assert_eq!(endpoint.count(), 3, "two failed background tries");
    assert_eq!(alive_tasks(), 1);
    drop(layer);
    settle().await;
    assert_eq!(alive_tasks(), 0);
    assert_eq!(Arc::strong_count(&marker), 1);
}

// The real HTTP path: the `Retry-After` header of a 429 or 503 gets into the error.

#[tokio::test]
async fn a_503_with_retry_after_30_is_an_rfc_error_that_carries_30_s() {
    let server = AuthServer::start(AuthServerConfig {
        failure: FailureMode::TemporarilyUnavailable,
        retry_after: Some("30".into()),
        ..Default::default()
    })
    .await;
    let err = client_for(&server).fetch().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    let rfc = err
        .token_endpoint_error()
        .expect("JSON error body stays typed");
    assert_eq!(rfc.error(), "temporarily_unavailable");
    assert_eq!(rfc.status(), http::StatusCode::SERVICE_UNAVAILABLE);

    // Through the layer: the second call gets the same error without a token request.
    let layer = OAuthLayer::new(client_for(&server));
    let svc = layer.layer(echo());
    for _ in 0..2 {
        let err = svc
            .clone()
            .oneshot(Request::new(String::new()))
            .await
            .unwrap_err();
        let err = err.downcast_ref::<Error>().unwrap();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    }
    assert_eq!(
        server.token_requests(),
        2,
        "one direct, one through the layer"
    );
}

#[tokio::test]
async fn a_429_text_body_with_an_http_date_is_an_invalid_response_that_carries_the_delay() {
    let at = SystemTime::now() + Duration::from_secs(120);
    let server = AuthServer::start(AuthServerConfig {
        failure: FailureMode::TooManyRequests,
        retry_after: Some(httpdate::fmt_http_date(at)),
        ..Default::default()
    })
    .await;
    let err = client_for(&server).fetch().await.unwrap_err();
    assert!(err.is_invalid_response(), "{err}");
    assert_eq!(err.status(), Some(http::StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(err.content_type(), Some("text/plain"));
    let delay = err.retry_after().expect("Retry-After read");
    // An HTTP-date has whole seconds; the request took some real time.
    assert!(
        delay <= Duration::from_secs(120) && delay >= Duration::from_secs(110),
        "{delay:?}"
    );
}

#[tokio::test]
async fn retry_after_is_read_on_429_and_503_only() {
    for (failure, header, expected) in [
        (FailureMode::TemporarilyUnavailable, None, None),
        (FailureMode::TemporarilyUnavailable, Some("soon"), None),
        (FailureMode::TooManyRequests, Some("7"), Some(7)),
        (FailureMode::InvalidClient, Some("7"), None),
        (FailureMode::ServerErrorHtml, Some("7"), None),
    ] {
        let server = AuthServer::start(AuthServerConfig {
            failure,
            retry_after: header.map(str::to_owned),
            ..Default::default()
        })
        .await;
        let err = client_for(&server).fetch().await.unwrap_err();
        assert_eq!(
            err.retry_after(),
            expected.map(Duration::from_secs),
            "{failure:?} {header:?}"
        );
    }
}

/// Issue: a black-holed token endpoint (accepts, never answers) must not hold up requests
/// while the cached token is valid. With refresh ahead on and off, every request between
/// 50 s and 100 s (past the usable part of a 100 s token) returns at once with the token.
#[tokio::test(start_paused = true)]
async fn a_hanging_endpoint_holds_up_no_request_while_the_token_is_valid() {
    for refresh_ahead in [true, false] {
        let endpoint = Endpoint::new([token(100)], Answer::Never);
        let start = endpoint.start;
        let layer = OAuthLayer::builder(endpoint.source())
            .refresh_ahead(refresh_ahead)
            .build();
        let mut svc = layer.layer(echo());
        assert_eq!(call(&mut svc).await.header(), "Bearer t1");
        tokio::time::sleep_until(start + secs(50.0)).await;

        let mut waited = 0;
        let mut calls = 0;
        calls_until(&mut svc, start, secs(0.1), secs(99.9), |at, called| {
            calls += 1;
            if called.waited > Duration::ZERO {
                waited += 1;
            }
            assert_eq!(called.header(), "Bearer t1", "at {at:?}");
        })
        .await;
        assert_eq!(
            waited, 0,
            "refresh ahead {refresh_ahead}: requests that waited"
        );
        assert!(calls >= 499, "{calls} calls");
        // The tries hang and time out one after another; none is made per request.
        assert!(
            endpoint.count() <= 10,
            "{} token requests",
            endpoint.count()
        );
    }
}
