//! Settings at their edges (issue 12, item 4): every duration and fraction setting of
//! `OAuthLayerBuilder` at 0, 1 ns, 1 ms, `Duration::MAX`, and fractions at 0.0, 1.0, NaN,
//! negative and above 1, never panic and never loop: each stored token causes at most one
//! token request, and the background refresh of a token never starts sooner than its floor
//! (1 second, and 1% of the usable part) after the token was stored.
//!
//! All on tokio's paused clock, moved on with `advance` (the timer task looks at the wall
//! clock every second, so letting the runtime skip ahead to each timer would take a million
//! steps for a 200-day token).

use std::cell::Cell;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use http::{Request, Response, header::AUTHORIZATION};
use proptest::prelude::*;
use secrecy::ExposeSecret;
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};
use tower_oauth::store::{CacheKey, MemoryStore, StoreOptions};
use tower_oauth::{OAuthLayer, OAuthLayerBuilder, Token, TokenCache, TokenSource, source_fn};

thread_local! {
    /// Panics on this thread. A spawned task's panic does not reach the test, but it runs
    /// on the test's thread: every runtime here is a current-thread one.
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.set(PANICS.get() + 1);
            previous(info);
        }));
    });
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// One token request: when it was made, and which token the cache held then.
#[derive(Clone, Debug)]
struct Fetch {
    at: Duration,
    holding: Option<String>,
}

/// A token endpoint that issues `t1`, `t2`... of one lifetime, at once, and logs each
/// request with the token the cache held when it was made.
#[derive(Clone)]
struct Counting {
    start: Instant,
    lifetime: Duration,
    cache: Arc<OnceLock<TokenCache>>,
    log: Arc<Mutex<Vec<Fetch>>>,
}

impl Counting {
    fn new(lifetime: Duration) -> Counting {
        Counting {
            start: Instant::now(),
            lifetime,
            cache: Arc::default(),
            log: Arc::default(),
        }
    }

    fn source(&self) -> impl TokenSource + use<> {
        let this = self.clone();
        source_fn(move || {
            let holding = this
                .cache
                .get()
                .and_then(|c| c.current())
                .map(|t| t.access_token().expose_secret().to_owned());
            let mut log = this.log.lock().unwrap();
            log.push(Fetch {
                at: this.start.elapsed(),
                holding,
            });
            let token = Token::new(format!("t{}", log.len()), this.lifetime);
            async move { Ok(token) }
        })
    }

    fn build(&self, builder: OAuthLayerBuilder<impl TokenSource>) -> OAuthLayer {
        let layer = builder.build();
        let _ = self.cache.set(layer.cache().clone());
        layer
    }

    fn fetches(&self) -> Vec<Fetch> {
        self.log.lock().unwrap().clone()
    }
}

/// One request through the layer; the token it carried.
async fn request(layer: &OAuthLayer) -> String {
    let svc = layer.layer(service_fn(|req: Request<String>| async move {
        let auth = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
        Ok::<_, std::convert::Infallible>(Response::new(auth))
    }));
    let response = svc.oneshot(Request::new(String::new())).await;
    response.expect("request failed").into_body()
}

/// Lets the tasks woken by the last `advance` run.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// The usable part of a token of `lifetime` under `margin`.
fn usable(lifetime: Duration, margin: Duration) -> Duration {
    lifetime - margin.min(lifetime / 2)
}

/// The floor of the background refresh: 1 second and 1% of the usable part, or the end of
/// the usable part if that comes first.
fn floor(usable: Duration) -> Duration {
    secs(1).max(usable / 100).min(usable)
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_fraction_zero_makes_one_token_request_per_token() {
    count_panics();
    let endpoint = Counting::new(secs(100));
    let layer = endpoint.build(
        OAuthLayer::builder(endpoint.source())
            .refresh_ahead_fraction(0.0)
            .refresh_ahead_jitter(0.0),
    );
    assert_eq!(request(&layer).await, "Bearer t1");
    for _ in 0..20 {
        tokio::time::advance(Duration::from_millis(10)).await;
        settle().await;
        request(&layer).await;
    }
    assert_eq!(endpoint.fetches().len(), 1, "200 ms: no refresh yet");
    // The floor is 1 second (1% of a 50 s usable part is less).
    tokio::time::advance(Duration::from_millis(800)).await;
    settle().await;
    let fetches = endpoint.fetches();
    assert_eq!(fetches.len(), 2, "{fetches:?}");
    assert_eq!(fetches[1].at, secs(1));
    assert_eq!(request(&layer).await, "Bearer t2");
    assert_eq!(PANICS.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_fraction_one_with_a_200_day_token_refreshes_at_the_end_of_the_usable_part() {
    count_panics();
    let lifetime = secs(200 * 24 * 3600);
    let endpoint = Counting::new(lifetime);
    let layer = endpoint.build(
        OAuthLayer::builder(endpoint.source())
            .refresh_ahead_fraction(1.0)
            .refresh_ahead_jitter(0.0),
    );
    assert_eq!(request(&layer).await, "Bearer t1");
    let usable = usable(lifetime, secs(60));
    tokio::time::advance(usable - secs(2)).await;
    settle().await;
    assert_eq!(request(&layer).await, "Bearer t1");
    assert_eq!(endpoint.fetches().len(), 1);
    tokio::time::advance(secs(3)).await;
    settle().await;
    let fetches = endpoint.fetches();
    assert_eq!(fetches.len(), 2, "{fetches:?}");
    assert!(fetches[1].at >= usable && fetches[1].at <= usable + secs(1));
    assert_eq!(request(&layer).await, "Bearer t2");
    assert_eq!(PANICS.get(), 0, "the timer task panicked");
}

fn key() -> CacheKey {
    CacheKey::builder("settings-test").field("id", "1").build()
}

/// Two instances sharing a `MemoryStore` with `options`: both get the one token, the
/// second from the store, and nothing panics.
async fn store_case(fetch_timeout: Duration, options: StoreOptions) {
    count_panics();
    let store = MemoryStore::new();
    let endpoint = Counting::new(secs(100));
    let layers: Vec<_> = (0..2)
        .map(|_| {
            endpoint.build(
                OAuthLayer::builder(endpoint.source())
                    .fetch_timeout(fetch_timeout)
                    .store(store.clone())
                    .store_options(options.clone().key(key())),
            )
        })
        .collect();
    for layer in &layers {
        assert_eq!(request(layer).await, "Bearer t1");
    }
    assert_eq!(endpoint.fetches().len(), 1);
    // Three lifetimes: one token request per refresh, fleet-wide.
    for _ in 0..30 {
        tokio::time::advance(secs(10)).await;
        settle().await;
        for layer in &layers {
            request(layer).await;
        }
    }
    let fetches = endpoint.fetches().len();
    assert!((4..=8).contains(&fetches), "{fetches} token requests");
    assert_eq!(PANICS.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_store_with_lock_wait_max_neither_panics_nor_hangs() {
    store_case(
        tower_oauth::cache::DEFAULT_FETCH_TIMEOUT,
        StoreOptions::new().lock_wait(Duration::MAX),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_store_with_fetch_timeout_max_builds_and_works() {
    store_case(Duration::MAX, StoreOptions::new()).await;
}

#[tokio::test(start_paused = true)]
async fn a_store_with_every_store_duration_at_max_works() {
    store_case(
        Duration::MAX,
        StoreOptions::new()
            .timeout(Duration::MAX)
            .lock_ttl(Duration::MAX)
            .lock_wait(Duration::MAX),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_store_with_every_store_duration_at_zero_works() {
    store_case(
        Duration::ZERO,
        StoreOptions::new()
            .timeout(Duration::ZERO)
            .lock_ttl(Duration::ZERO)
            .lock_wait(Duration::ZERO),
    )
    .await;
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(secs(1)),
        Just(Duration::MAX),
        (0u64..200_000).prop_map(Duration::from_millis),
    ]
}

fn fraction() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(1.0),
        Just(f64::NAN),
        Just(-1.0),
        Just(2.5),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        0.0..=1.0,
    ]
}

fn lifetime() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(secs(1)),
        Just(secs(2)),
        Just(secs(100)),
        Just(secs(3600)),
        Just(secs(200 * 24 * 3600)),
    ]
}

#[derive(Clone, Debug)]
struct Settings {
    lifetime: Duration,
    refresh_margin: Duration,
    fetch_timeout: Duration,
    refresh_ahead_fraction: f64,
    refresh_ahead_jitter: f64,
    retry_base: Duration,
    retry_max: Duration,
    retry_jitter: f64,
    failure_window: Duration,
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        lifetime(),
        duration(),
        duration(),
        fraction(),
        fraction(),
        (duration(), duration()),
        fraction(),
        duration(),
    )
        .prop_map(
            |(lifetime, margin, timeout, ahead, jitter, (base, max), retry_jitter, window)| {
                Settings {
                    lifetime,
                    refresh_margin: margin,
                    fetch_timeout: timeout,
                    refresh_ahead_fraction: ahead,
                    refresh_ahead_jitter: jitter,
                    retry_base: base,
                    retry_max: max,
                    retry_jitter,
                    failure_window: window,
                }
            },
        )
}

/// Builds a layer with `s`, sends requests every tenth of a lifetime for four lifetimes,
/// and checks the token requests.
async fn run(s: Settings) {
    count_panics();
    let panics = PANICS.get();
    let endpoint = Counting::new(s.lifetime);
    let layer = endpoint.build(
        OAuthLayer::builder(endpoint.source())
            .refresh_margin(s.refresh_margin)
            .fetch_timeout(s.fetch_timeout)
            .refresh_ahead_fraction(s.refresh_ahead_fraction)
            .refresh_ahead_jitter(s.refresh_ahead_jitter)
            .retry_backoff(s.retry_base, s.retry_max)
            .retry_jitter(s.retry_jitter)
            .failure_window(s.failure_window),
    );
    let step = s.lifetime / 10;
    let steps = 40;
    for _ in 0..steps {
        for _ in 0..3 {
            request(&layer).await;
        }
        tokio::time::advance(step).await;
        settle().await;
    }
    assert_eq!(PANICS.get(), panics, "a task panicked");

    let fetches = endpoint.fetches();
    // Each stored token causes at most one token request: no two requests were made while
    // the cache held the same token, and only the first with none.
    let mut holding: Vec<_> = fetches.iter().map(|f| f.holding.clone()).collect();
    assert_eq!(holding.first(), Some(&None), "{fetches:?}");
    holding.remove(0);
    let count = holding.len();
    holding.sort();
    holding.dedup();
    assert_eq!(
        holding.len(),
        count,
        "a token caused two requests: {fetches:?}"
    );
    assert!(holding.iter().all(Option::is_some), "{fetches:?}");

    // And no sooner than the floor after the one before (margin as the layer clamps it).
    let margin = s.refresh_margin;
    let gap = floor(usable(s.lifetime, margin));
    for pair in fetches.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= gap,
            "requests {:?} apart, floor {gap:?}: {fetches:?}",
            pair[1].at - pair[0].at
        );
    }
    let span = step * steps;
    assert!(fetches.len() as u128 <= span.as_nanos() / gap.as_nanos() + 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_setting_panics_or_loops(s in settings()) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(run(s));
    }
}
