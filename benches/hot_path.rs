//! The hot path on one thread: a request with a valid token through each layer, in front of
//! a no-op inner service that answers with a ready future.
//!
//! One criterion group per request, each a comparison of six stacks:
//!
//! - `floor`: no middleware, the no-op service alone;
//! - `static_header`: tower-http `SetRequestHeader` with a fixed `Authorization` value;
//! - `oauth`: `OAuthLayer` with a warm cache;
//! - `oauth_no_replay`: the same with `replay(false)` (no copy kept for a 401 replay);
//! - `mutex_slot`: a hand-written layer over `Arc<tokio::sync::Mutex<Option<Token>>>`;
//! - `rwlock_slot`: a hand-written layer over `Arc<tokio::sync::RwLock<Option<Token>>>`.
//!
//! The requests: three bare ones (`GET /`, no headers) with the body `empty`
//! (`http_body_util::Empty<Bytes>`), `full` (`Full<Bytes>`, a small body that could be
//! replayed) or `streaming` (a one-shot body of unknown length that cannot be replayed), and
//! `post`, the realistic one: `POST` with `content-type`, `accept` and `user-agent` headers
//! and a `Full<Bytes>` body (header values made at run time once, cloned per request; see
//! `tests/support/hot_path.rs`). Each timed iteration builds the request, waits for
//! `ready`, calls, and awaits the response, on a current-thread tokio runtime; building the
//! request and the await are in the floor too.
//!
//! Run: `cargo bench --bench hot_path`. `scripts/bench.sh` runs it and writes BENCHMARKS.md.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use common::{
    MutexSlotLayer, Noop, RwLockSlotLayer, bare, drive, empty_body, full_body, instant_fetch,
    oauth_layer, oauth_layer_no_replay, post, static_header_layer, streaming_body, warm,
};
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tokio::runtime::Runtime;
use tower::Layer;

fn bench_request<B, R>(c: &mut Criterion, rt: &Runtime, name: &str, request: R)
where
    B: Send + 'static,
    R: Fn() -> Request<B> + Clone,
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
            .iter_custom(|iters| drive(floor, request.clone(), iters))
    });
    group.bench_function("static_header", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive(static_header.clone(), request.clone(), iters))
    });
    group.bench_function("oauth", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive(oauth.clone(), request.clone(), iters))
    });
    group.bench_function("oauth_no_replay", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive(oauth_no_replay.clone(), request.clone(), iters))
    });
    group.bench_function("mutex_slot", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive(mutex.clone(), request.clone(), iters))
    });
    group.bench_function("rwlock_slot", |b| {
        b.to_async(rt)
            .iter_custom(|iters| drive(rwlock.clone(), request.clone(), iters))
    });
    group.finish();
}

fn hot_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bench_request(c, &rt, "empty", bare(empty_body));
    bench_request(c, &rt, "full", bare(full_body));
    bench_request(c, &rt, "streaming", bare(streaming_body));
    bench_request(c, &rt, "post", post());
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
