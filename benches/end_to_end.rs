//! End to end: a hyper-util (legacy) client over loopback to a hyper HTTP/1.1 server that
//! answers `200` with an empty body, with [`CONCURRENCY`] requests in flight at once.
//! Reported as requests per second.
//!
//! The stacks: `no_header` (the client alone), `static_header` (tower-http
//! `SetRequestHeader` with a fixed `Authorization` value) and `oauth` (`OAuthLayer` with a
//! warm cache). Each request is a `GET` with an `Empty<Bytes>` body; its response body is
//! read to the end so the connection goes back to the pool.
//!
//! The server runs on a runtime of its own (one worker thread), the client on another (one
//! worker thread), as two processes on one machine would.
//!
//! After criterion's group, a paired comparison: [`ROUNDS`] rounds of [`PER_ROUND`]
//! requests with the static header and with `OAuth<S>`, one after the other (alternating
//! which goes first), and the throughput ratio of each round. On a machine whose load
//! drifts, the ratio within a round is steadier than the ratio of two criterion runs made
//! seconds apart. It prints one `paired:` line (read by `scripts/bench.sh`).
//!
//! Run: `cargo bench --bench end_to_end`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{oauth_layer, static_header_layer, warm};
use criterion::{Criterion, SamplingMode, Throughput};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tower::{BoxError, Layer, Service, ServiceExt};

/// Requests in flight at once.
const CONCURRENCY: u64 = 64;
/// Rounds of the paired comparison.
const ROUNDS: usize = 20;
/// Requests per stack and round of the paired comparison.
const PER_ROUND: u64 = 4096;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts the server on `rt`: HTTP/1.1, keep-alive, `200` with an empty body.
fn start_server(rt: &Runtime) -> SocketAddr {
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    })
}

/// Sends `n` requests through `svc` one after the other, reading each response body.
async fn drive<S>(mut svc: S, uri: Uri, n: u64)
where
    S: Service<Request<Empty<Bytes>>, Response = Response<Incoming>>,
    S::Error: Into<BoxError>,
{
    for _ in 0..n {
        let req = Request::get(uri.clone())
            .body(Empty::new())
            .expect("request");
        let res = svc
            .ready()
            .await
            .map_err(Into::into)
            .expect("ready")
            .call(req)
            .await
            .map_err(Into::into)
            .expect("response");
        assert_eq!(res.status(), StatusCode::OK);
        res.into_body().collect().await.expect("body");
    }
}

/// Sends `iters` requests from [`CONCURRENCY`] tasks, and times them.
async fn drive_many<S>(svc: S, uri: Uri, iters: u64) -> Duration
where
    S: Service<Request<Empty<Bytes>>, Response = Response<Incoming>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|i| {
            let n = iters / CONCURRENCY + u64::from(i < iters % CONCURRENCY);
            tokio::spawn(drive(svc.clone(), uri.clone(), n))
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    start.elapsed()
}

/// The stacks under test, over one client and one server.
struct Setup {
    _server_rt: Runtime,
    rt: Runtime,
    uri: Uri,
    no_header: Client<HttpConnector, Empty<Bytes>>,
    static_header: tower_http::set_header::SetRequestHeader<
        Client<HttpConnector, Empty<Bytes>>,
        http::HeaderValue,
    >,
    oauth: tower_oauth::OAuth<Client<HttpConnector, Empty<Bytes>>>,
}

fn setup() -> Setup {
    let server_rt = runtime();
    let addr = start_server(&server_rt);
    let uri: Uri = format!("http://{addr}/api").parse().expect("uri");

    let rt = runtime();
    let client = rt.block_on(async {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector)
    });
    let oauth = oauth_layer(Arc::new(AtomicUsize::new(0)));
    rt.block_on(warm(&oauth));

    Setup {
        _server_rt: server_rt,
        uri,
        no_header: client.clone(),
        static_header: static_header_layer().layer(client.clone()),
        oauth: oauth.layer(client),
        rt,
    }
}

fn end_to_end(c: &mut Criterion, s: &Setup) {
    let mut group = c.benchmark_group("end_to_end");
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("no_header", |b| {
        b.to_async(&s.rt)
            .iter_custom(|iters| drive_many(s.no_header.clone(), s.uri.clone(), iters))
    });
    group.bench_function("static_header", |b| {
        b.to_async(&s.rt)
            .iter_custom(|iters| drive_many(s.static_header.clone(), s.uri.clone(), iters))
    });
    group.bench_function("oauth", |b| {
        b.to_async(&s.rt)
            .iter_custom(|iters| drive_many(s.oauth.clone(), s.uri.clone(), iters))
    });
    group.finish();
}

/// The paired comparison: per round, the throughput of `OAuth<S>` over that of the static
/// header.
fn paired(s: &Setup) {
    let mut ratios = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let run_static = || {
            s.rt.block_on(drive_many(
                s.static_header.clone(),
                s.uri.clone(),
                PER_ROUND,
            ))
        };
        let run_oauth = || {
            s.rt.block_on(drive_many(s.oauth.clone(), s.uri.clone(), PER_ROUND))
        };
        let (t_static, t_oauth) = if round % 2 == 0 {
            let t = run_static();
            (t, run_oauth())
        } else {
            let t = run_oauth();
            (run_static(), t)
        };
        ratios.push(t_static.as_secs_f64() / t_oauth.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let quartile = |q: usize| ratios[(ratios.len() - 1) * q / 4];
    println!(
        "paired: end_to_end oauth/static_header rounds={ROUNDS} requests_per_round={PER_ROUND} \
         median={:.4} q1={:.4} q3={:.4} min={:.4} max={:.4}",
        quartile(2),
        quartile(1),
        quartile(3),
        ratios[0],
        ratios[ROUNDS - 1]
    );
}

/// Whether criterion's filter argument (if any) leaves this bench out.
fn filtered_out(args: &[String]) -> bool {
    const WITH_VALUE: &[&str] = &[
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--color",
        "--output-format",
        "--plotting-backend",
        "--profile-time",
        "--significance-level",
        "--noise-threshold",
        "--confidence-level",
        "--nresamples",
        "--format",
    ];
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            return !"end_to_end".contains(arg.as_str()) && !arg.contains("end_to_end");
        }
    }
    false
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .sample_size(20)
        .configure_from_args();
    let s = setup();
    end_to_end(&mut c, &s);
    // Not in criterion's test mode (`cargo test --benches`), nor when another bench was
    // asked for by name.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test_mode = args.iter().any(|a| a == "--test" || a == "--list");
    if !test_mode && !filtered_out(&args) {
        paired(&s);
    }
    c.final_summary();
}
