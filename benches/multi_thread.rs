//! The hot path under concurrency: many tasks share one service (clones of it) and send
//! requests with a valid token through it, on a multi-threaded tokio runtime. Reported as
//! throughput (requests per second).
//!
//! Three groups with the six stacks of `hot_path` and `copy_floor` (a header set directly
//! and a copy of the request kept for a second attempt, no token: `common/copy_floor.rs`):
//! [`TASKS`] tasks on a runtime with 2 worker threads, with the bare `GET` (`Empty<Bytes>` body, `multi_thread/2_workers`) and
//! with the realistic `POST` (three headers and a `Full<Bytes>` body, as in `hot_path`;
//! `multi_thread/2_workers_post`), the comparisons the issue asks for; and the bare `GET`
//! on 1 worker (`multi_thread/1_worker`), so that `scripts/bench.sh` can show how each
//! stack scales from one thread to two. Each sample spreads its requests over the tasks;
//! the time runs from the first spawn to the last task's end.
//!
//! Run: `cargo bench --bench multi_thread`.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use common::copy_floor::CopyFloorLayer;
use common::{
    MutexSlotLayer, Noop, RwLockSlotLayer, TOKEN, bare, bearer_value, drive, empty_body,
    instant_fetch, oauth_layer, oauth_layer_no_replay, post, static_header_layer, warm,
};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use tokio::runtime::Runtime;
use tower::{Layer, Service};

/// Tasks sending requests at once.
const TASKS: u64 = 256;

/// Sends `iters` requests made by `request` through clones of `svc` from [`TASKS`] tasks,
/// and times them.
async fn drive_many<S, B, R>(svc: S, request: R, iters: u64) -> Duration
where
    S: Service<Request<B>, Response = Response<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
    B: Send + 'static,
    R: Fn() -> Request<B> + Clone + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let n = iters / TASKS + u64::from(i < iters % TASKS);
            tokio::spawn(drive(svc.clone(), request.clone(), n))
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    start.elapsed()
}

fn bench_runtime<B, R>(c: &mut Criterion, rt: &Runtime, name: &str, request: R)
where
    B: Clone + Unpin + Send + 'static,
    R: Fn() -> Request<B> + Clone + Send + 'static,
{
    let oauth = oauth_layer(Arc::new(AtomicUsize::new(0)));
    let oauth_no_replay = oauth_layer_no_replay(Arc::new(AtomicUsize::new(0)));
    let mutex = MutexSlotLayer::new(instant_fetch(Arc::new(AtomicUsize::new(0))));
    let rwlock = RwLockSlotLayer::new(instant_fetch(Arc::new(AtomicUsize::new(0))));
    rt.block_on(async {
        warm(&oauth).await;
        warm(&oauth_no_replay).await;
        mutex.warm().await;
        rwlock.warm().await;
    });

    let static_header = static_header_layer().layer(Noop);
    let copy_floor = CopyFloorLayer::new(bearer_value(TOKEN)).layer(Noop);
    let oauth = oauth.layer(Noop);
    let oauth_no_replay = oauth_no_replay.layer(Noop);
    let mutex = mutex.layer(Noop);
    let rwlock = rwlock.layer(Noop);

    let mut group = c.benchmark_group(format!("multi_thread/{name}"));
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("floor", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive_many(Noop, request.clone(), iters))
    });
    group.bench_function("static_header", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive_many(static_header.clone(), request.clone(), iters))
    });
    group.bench_function("copy_floor", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive_many(copy_floor.clone(), request.clone(), iters))
    });
    group.bench_function("oauth", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive_many(oauth.clone(), request.clone(), iters))
    });
    group.bench_function("oauth_no_replay", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive_many(oauth_no_replay.clone(), request.clone(), iters))
    });
    group.bench_function("mutex_slot", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive_many(mutex.clone(), request.clone(), iters))
    });
    group.bench_function("rwlock_slot", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive_many(rwlock.clone(), request.clone(), iters))
    });
    group.finish();
}

fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

fn multi_thread(c: &mut Criterion) {
    let two = runtime(2);
    bench_runtime(c, &two, "2_workers", bare(empty_body));
    bench_runtime(c, &two, "2_workers_post", post());
    bench_runtime(c, &runtime(1), "1_worker", bare(empty_body));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = multi_thread
}
criterion_main!(benches);
