//! What `OAuthMiddleware` adds to a reqwest-middleware client per request, with a warm
//! cache, next to the tower rows of `multi_thread`. Reported as throughput (requests per
//! second).
//!
//! reqwest-middleware always ends its chain in `reqwest::Client::execute`, so the chain here
//! ends in a middleware of its own, [`Answer`], that answers `200` without calling `next`:
//! the rows measure the middleware chain (building the request with `client.get(url)`, the
//! boxed futures of the `async_trait` middlewares) and not the network. The stacks: `floor`
//! (`Answer` alone), `static_header` (a middleware that sets a fixed `Authorization`),
//! `oauth` (`OAuthMiddleware` with recovery on: a `try_clone` of each request before it is
//! sent) and `oauth_no_recovery` (`recover_on(RecoverOn::Never)`: no copy). Groups `reqwest_middleware/1_worker` and
//! `reqwest_middleware/2_workers`, [`TASKS`] tasks on each. aliri_reqwest's middleware is
//! compared in `benches/aliri/`, a separate package (it needs reqwest 0.12 and
//! reqwest-middleware 0.4) that is not part of this crate's build nor of CI.
//!
//! Run: `cargo bench --all-features --bench reqwest_middleware`.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::support::hot_path::Answer;
use common::{oauth_layer, token_source, warm};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use http::{Extensions, HeaderValue, header::AUTHORIZATION};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use tokio::runtime::Runtime;
use tower_oauth::recover::RecoverOn;
use tower_oauth::{OAuthLayer, OAuthMiddleware};

/// Tasks sending requests at once.
const TASKS: u64 = 256;
const URL: &str = "http://api.example.com/v1/items";

/// A fixed `Authorization` header: what a hand-written middleware does at best.
struct StaticHeader(HeaderValue);

#[async_trait]
impl Middleware for StaticHeader {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        req.headers_mut().insert(AUTHORIZATION, self.0.clone());
        next.run(req, extensions).await
    }
}

fn chain(first: Option<Arc<dyn Middleware>>) -> ClientWithMiddleware {
    let builder = ClientBuilder::new(reqwest::Client::new());
    let builder = match first {
        Some(first) => builder.with_arc(first),
        None => builder,
    };
    builder.with(Answer).build()
}

async fn drive_many(client: ClientWithMiddleware, iters: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let n = iters / TASKS + u64::from(i < iters % TASKS);
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..n {
                    let response = client.get(URL).send().await.expect("response");
                    assert_eq!(response.status(), 200);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    start.elapsed()
}

fn bench_runtime(c: &mut Criterion, rt: &Runtime, name: &str) {
    let oauth = oauth_layer(Arc::new(AtomicUsize::new(0)));
    let oauth_no_recovery = OAuthLayer::builder(token_source(Arc::new(AtomicUsize::new(0))))
        .recover_on(RecoverOn::Never)
        .build();
    rt.block_on(async {
        warm(&oauth).await;
        warm(&oauth_no_recovery).await;
    });
    let header = HeaderValue::from_static("Bearer static-token");
    let stacks = [
        ("floor", chain(None)),
        ("static_header", chain(Some(Arc::new(StaticHeader(header))))),
        ("oauth", chain(Some(Arc::new(OAuthMiddleware::new(&oauth))))),
        (
            "oauth_no_recovery",
            chain(Some(Arc::new(OAuthMiddleware::new(&oauth_no_recovery)))),
        ),
    ];

    let mut group = c.benchmark_group(format!("reqwest_middleware/{name}"));
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    for (stack, client) in stacks {
        group.bench_function(stack, |b| {
            b.to_async(rt)
                .iter_custom(|iters| drive_many(client.clone(), iters))
        });
    }
    group.finish();
}

fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

fn reqwest_middleware(c: &mut Criterion) {
    bench_runtime(c, &runtime(1), "1_worker");
    bench_runtime(c, &runtime(2), "2_workers");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = reqwest_middleware
}
criterion_main!(benches);
