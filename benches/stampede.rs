//! Cold stampede: [`CALLERS`] concurrent callers hit a cold cache while the token endpoint
//! takes [`TOKEN_DELAY`] to answer. Measured: the time from the first caller's spawn until
//! every caller has its response. Checked on every iteration: exactly one token request.
//!
//! - `stampede/http/oauth`: `OAuthLayer` over `ClientCredentials`, against the in-process
//!   authorization server of the tests (`tests/support/auth_server.rs`) on loopback, whose
//!   token endpoint sleeps 50 ms before it answers. The honest one: a real HTTP fetch, on a
//!   cold connection.
//! - `stampede/in_process/{oauth,mutex_slot,rwlock_slot}`: a source that sleeps 50 ms and
//!   answers, behind `OAuthLayer` and behind the hand-written slots of `common`.
//!
//! Each iteration builds a new layer (cold cache) outside the timed part. The inner service
//! is the no-op one; the runtime has 2 worker threads. After each group of runs the bench
//! prints a `token-requests:` line per stack (read by `scripts/bench.sh`).
//!
//! Run: `cargo bench --bench stampede`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::support::auth_server::{AuthServer, AuthServerConfig};
use common::support::client_for;
use common::{
    MutexSlotLayer, Noop, RwLockSlotLayer, delayed_fetch, empty_body, oauth_layer_delayed,
};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use http::{Request, Response};
use tokio::runtime::Runtime;
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_oauth::OAuthLayer;

/// Concurrent callers on a cold cache.
const CALLERS: usize = 10_000;
/// How long the token endpoint takes to answer.
const TOKEN_DELAY: Duration = Duration::from_millis(50);

/// Spawns [`CALLERS`] callers at once and waits until all have their response.
async fn stampede<S>(svc: S) -> Duration
where
    S: Service<Request<http_body_util::Empty<bytes::Bytes>>, Response = Response<()>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                svc.oneshot(Request::new(empty_body()))
                    .await
                    .map_err(Into::into)
            })
        })
        .collect();
    for task in tasks {
        if let Err(error) = task.await.expect("task") {
            panic!("caller failed: {error}");
        }
    }
    start.elapsed()
}

/// Token requests per cold start, over all iterations of one stack.
#[derive(Default)]
struct Counts {
    iterations: u64,
    min: usize,
    max: usize,
}

impl Counts {
    fn record(&mut self, n: usize) {
        if self.iterations == 0 {
            (self.min, self.max) = (n, n);
        }
        self.iterations += 1;
        self.min = self.min.min(n);
        self.max = self.max.max(n);
    }

    fn print(&self, id: &str) {
        println!(
            "token-requests: {id} iterations={} min={} max={}",
            self.iterations, self.min, self.max
        );
    }
}

/// Runs `iters` cold stampedes, each on a fresh slot from `fresh`, which returns the stack
/// and a function that reads how many token requests were made so far.
fn cold_runs<S>(
    rt: &Runtime,
    iters: u64,
    counts: &mut Counts,
    mut fresh: impl FnMut() -> (S, Box<dyn Fn() -> usize>),
) -> Duration
where
    S: Service<Request<http_body_util::Empty<bytes::Bytes>>, Response = Response<()>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (svc, requests) = fresh();
        let before = requests();
        total += rt.block_on(stampede(svc));
        let made = requests() - before;
        assert_eq!(made, 1, "a cold stampede made {made} token requests");
        counts.record(made);
    }
    total
}

fn in_process(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("stampede/in_process");
    group.sampling_mode(SamplingMode::Flat);

    let mut counts = Counts::default();
    group.bench_function("oauth", |b| {
        b.iter_custom(|iters| {
            cold_runs(rt, iters, &mut counts, || {
                let fetches = Arc::new(AtomicUsize::new(0));
                let layer = oauth_layer_delayed(fetches.clone(), TOKEN_DELAY);
                let read = Box::new(move || fetches.load(Ordering::SeqCst));
                (layer.layer(Noop), read as Box<dyn Fn() -> usize>)
            })
        })
    });
    counts.print("stampede/in_process/oauth");

    let mut counts = Counts::default();
    group.bench_function("mutex_slot", |b| {
        b.iter_custom(|iters| {
            cold_runs(rt, iters, &mut counts, || {
                let fetches = Arc::new(AtomicUsize::new(0));
                let layer = MutexSlotLayer::new(delayed_fetch(fetches.clone(), TOKEN_DELAY));
                let read = Box::new(move || fetches.load(Ordering::SeqCst));
                (layer.layer(Noop), read as Box<dyn Fn() -> usize>)
            })
        })
    });
    counts.print("stampede/in_process/mutex_slot");

    let mut counts = Counts::default();
    group.bench_function("rwlock_slot", |b| {
        b.iter_custom(|iters| {
            cold_runs(rt, iters, &mut counts, || {
                let fetches = Arc::new(AtomicUsize::new(0));
                let layer = RwLockSlotLayer::new(delayed_fetch(fetches.clone(), TOKEN_DELAY));
                let read = Box::new(move || fetches.load(Ordering::SeqCst));
                (layer.layer(Noop), read as Box<dyn Fn() -> usize>)
            })
        })
    });
    counts.print("stampede/in_process/rwlock_slot");
    group.finish();
}

fn http(c: &mut Criterion, rt: &Runtime) {
    let server = Arc::new(rt.block_on(AuthServer::start(AuthServerConfig {
        token_delay: TOKEN_DELAY,
        ..Default::default()
    })));
    let mut group = c.benchmark_group("stampede/http");
    group.sampling_mode(SamplingMode::Flat);

    let mut counts = Counts::default();
    group.bench_function("oauth", |b| {
        b.iter_custom(|iters| {
            cold_runs(rt, iters, &mut counts, || {
                // Built inside the runtime: the reqwest client needs it.
                let source = rt.block_on(async { client_for(&server) });
                let layer = OAuthLayer::new(source);
                let server = server.clone();
                let read = Box::new(move || server.token_requests());
                (layer.layer(Noop), read as Box<dyn Fn() -> usize>)
            })
        })
    });
    counts.print("stampede/http/oauth");
    group.finish();
}

fn stampedes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    http(c, &rt);
    in_process(c, &rt);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = stampedes
}
criterion_main!(benches);
