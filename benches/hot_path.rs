//! The hot path on one thread: a request with a valid token through each layer, in front of
//! a no-op inner service that answers with a ready future.
//!
//! One criterion group per request body, each one comparison of five stacks:
//!
//! - `floor`: no middleware, the no-op service alone;
//! - `static_header`: tower-http `SetRequestHeader` with a fixed `Authorization` value;
//! - `oauth`: `OAuthLayer` with a warm cache;
//! - `mutex_slot`: a hand-written layer over `Arc<tokio::sync::Mutex<Option<Token>>>`;
//! - `rwlock_slot`: a hand-written layer over `Arc<tokio::sync::RwLock<Option<Token>>>`.
//!
//! The bodies: `empty` (`http_body_util::Empty<Bytes>`, a GET), `full` (`Full<Bytes>`, a
//! small POST whose body could be replayed) and `streaming` (a one-shot body of unknown
//! length that cannot be replayed). Each timed iteration builds the request, waits for
//! `ready`, calls, and awaits the response, on a current-thread tokio runtime; building the
//! request and the await are in the floor too.
//!
//! Run: `cargo bench --bench hot_path`. `scripts/bench.sh` runs it and writes BENCHMARKS.md.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use common::{
    MutexSlotLayer, Noop, RwLockSlotLayer, drive, empty_body, full_body, instant_fetch,
    oauth_layer, oauth_layer_no_replay, static_header_layer, streaming_body, warm,
};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tower::Layer;

fn bench_body<B>(c: &mut Criterion, rt: &Runtime, name: &str, body: fn() -> B)
where
    B: Send + 'static,
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

    let floor = Noop;
    let static_header = static_header_layer().layer(Noop);
    let oauth = oauth.layer(Noop);
    let oauth_no_replay = oauth_no_replay.layer(Noop);
    let mutex = mutex.layer(Noop);
    let rwlock = rwlock.layer(Noop);

    let mut group = c.benchmark_group(format!("hot_path/{name}"));
    group.bench_function("floor", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive(floor, body, iters))
    });
    group.bench_function("static_header", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive(static_header.clone(), body, iters))
    });
    group.bench_function("oauth", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive(oauth.clone(), body, iters))
    });
    group.bench_function("oauth_no_replay", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive(oauth_no_replay.clone(), body, iters))
    });
    group.bench_function("mutex_slot", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive(mutex.clone(), body, iters))
    });
    group.bench_function("rwlock_slot", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive(rwlock.clone(), body, iters))
    });
    group.finish();
}

fn hot_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bench_body(c, &rt, "empty", empty_body);
    bench_body(c, &rt, "full", full_body);
    bench_body(c, &rt, "streaming", streaming_body);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(60);
    targets = hot_path
}
criterion_main!(benches);
