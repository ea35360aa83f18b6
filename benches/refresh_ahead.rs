//! Request latency through `OAuthLayer` under steady load, with a token endpoint that
//! takes 200 ms and tokens that live 2 s (so the usable part is 1 s): refresh ahead on,
//! refresh ahead off, and a baseline with no refreshes at all (a 1 hour token).
//!
//! Open loop: requests are started at a fixed rate (4 a millisecond) whatever the earlier
//! ones are doing, so requests that wait for a fetch show in the tail instead of slowing
//! the load down. The inner service answers at once: the latency is the layer's.
//!
//! `cargo bench --bench refresh_ahead` runs each case for 8 seconds (about 30 s in all);
//! without `--bench` (as `cargo test --benches` runs it) each case runs 1 second.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use tokio::time::{Instant, MissedTickBehavior};
use tower::{Layer, ServiceExt, service_fn};
use tower_oauth::{OAuthLayer, Token, source_fn};

const ENDPOINT_LATENCY: Duration = Duration::from_millis(200);
const REQUESTS_PER_MS: usize = 4;

struct Case {
    name: &'static str,
    lifetime: Duration,
    refresh_ahead: bool,
}

struct Report {
    requests: usize,
    fetches: usize,
    /// Requests that took over 1 ms: those that waited for a token fetch, and any that a
    /// busy machine held up.
    over_1ms: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn run(case: &Case, duration: Duration) -> Report {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let lifetime = case.lifetime;
    let source = source_fn(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        async move {
            tokio::time::sleep(ENDPOINT_LATENCY).await;
            Ok(Token::new("bench-token", lifetime))
        }
    });
    let layer = OAuthLayer::builder(source)
        .refresh_ahead(case.refresh_ahead)
        .build();
    let svc = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    // The first token, outside the measurement.
    layer.cache().token().await.expect("token");

    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let end = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(duration.as_millis() as usize * REQUESTS_PER_MS);
    while Instant::now() < end {
        tick.tick().await;
        for _ in 0..REQUESTS_PER_MS {
            let svc = svc.clone();
            let started = Instant::now();
            tasks.push(tokio::spawn(async move {
                svc.oneshot(Request::new(())).await.expect("request");
                started.elapsed()
            }));
        }
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await.expect("task"));
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Report {
        requests: latencies.len(),
        fetches: fetches.load(Ordering::Relaxed),
        over_1ms: latencies
            .iter()
            .filter(|l| **l > Duration::from_millis(1))
            .count(),
        p50: at(0.50),
        p99: at(0.99),
        max: *latencies.last().unwrap(),
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let duration = Duration::from_secs(if full { 8 } else { 1 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cases = [
        Case {
            name: "no refreshes (1 h token)",
            lifetime: Duration::from_secs(3600),
            refresh_ahead: true,
        },
        Case {
            name: "2 s token, refresh ahead on",
            lifetime: Duration::from_secs(2),
            refresh_ahead: true,
        },
        Case {
            name: "2 s token, refresh ahead off",
            lifetime: Duration::from_secs(2),
            refresh_ahead: false,
        },
    ];
    println!(
        "token endpoint {} ms, {} requests/s, {} s a case",
        ENDPOINT_LATENCY.as_millis(),
        REQUESTS_PER_MS * 1000,
        duration.as_secs()
    );
    println!(
        "{:<30} {:>9} {:>8} {:>9} {:>10} {:>10} {:>10}",
        "case", "requests", "fetches", "> 1 ms", "p50 (us)", "p99 (us)", "max (us)"
    );
    for case in &cases {
        let report = runtime.block_on(run(case, duration));
        println!(
            "{:<30} {:>9} {:>8} {:>9} {:>10} {:>10} {:>10}",
            case.name,
            report.requests,
            report.fetches,
            report.over_1ms,
            report.p50.as_micros(),
            report.p99.as_micros(),
            report.max.as_micros()
        );
    }
}
