//! End to end: a hyper-util (legacy) client over loopback to a hyper HTTP/1.1 server that
//! answers `200` with an empty body, with [`CONCURRENCY`] requests in flight at once.
//! Reported as requests per second.
//!
//! The stacks: `no_header` (the client alone), `static_header` (tower-http
//! `SetRequestHeader` with a fixed `Authorization` value) and `oauth` (`OAuthLayer` with a
//! warm cache); `copy_floor` only in the paired rounds below. Two groups: `end_to_end`, each request a `GET` with an `Empty<Bytes>` body,
//! and `end_to_end/post`, each request the realistic `POST` of the other benches
//! (`content-type`, `accept` and `user-agent` headers made at run time once and cloned per
//! request, a small JSON `Full<Bytes>` body), on a client of its own. Every response body
//! is read to the end so the connection goes back to the pool.
//!
//! The server runs on a runtime of its own (one worker thread), the client on another (one
//! worker thread), as two processes on one machine would.
//!
//! After criterion's groups, a paired comparison per request shape: [`ROUNDS`] rounds of
//! [`PER_ROUND`] requests with the static header and with `OAuth<S>`, one after the other
//! (alternating which goes first), and the throughput ratio of each round. On a machine
//! whose load drifts, the ratio within a round is steadier than the ratio of two criterion
//! runs made seconds apart. It prints one `paired:` line per shape (read by
//! `scripts/bench.sh`), then one more for the copy floor against the static header
//! (`common/copy_floor.rs`: the static header and the copy `OAuth<S>` keeps for a second
//! attempt, no token), what keeping that copy costs alone.
//!
//! Run: `cargo bench --bench end_to_end`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::copy_floor::{CopyFloor, CopyFloorLayer};
use common::{TOKEN, bearer_value, oauth_layer, post_to, static_header_layer, warm};
use criterion::{Criterion, SamplingMode, Throughput};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body::Body;
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
use tower_http::set_header::SetRequestHeader;
use tower_oauth::{OAuth, OAuthLayer};

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

/// Sends `n` requests made by `request` through `svc` one after the other, reading each
/// response body.
async fn drive<S, B>(mut svc: S, request: impl Fn() -> Request<B>, n: u64)
where
    S: Service<Request<B>, Response = Response<Incoming>>,
    S::Error: Into<BoxError>,
{
    for _ in 0..n {
        let req = request();
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

/// Sends `iters` requests made by `request` from [`CONCURRENCY`] tasks, and times them.
async fn drive_many<S, B, R>(svc: S, request: R, iters: u64) -> Duration
where
    S: Service<Request<B>, Response = Response<Incoming>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    R: Fn() -> Request<B> + Clone + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|i| {
            let n = iters / CONCURRENCY + u64::from(i < iters % CONCURRENCY);
            tokio::spawn(drive(svc.clone(), request.clone(), n))
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    start.elapsed()
}

/// The three stacks over one client whose requests have a body of type `B`, and how to
/// make a request.
struct Stacks<B, R> {
    name: &'static str,
    request: R,
    no_header: Client<HttpConnector, B>,
    static_header: SetRequestHeader<Client<HttpConnector, B>, HeaderValue>,
    copy_floor: CopyFloor<Client<HttpConnector, B>>,
    oauth: OAuth<Client<HttpConnector, B>>,
}

impl<B, R> Stacks<B, R>
where
    B: Body + Clone + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    R: Fn() -> Request<B> + Clone + Send + 'static,
    OAuth<Client<HttpConnector, B>>: Service<Request<B>, Response = Response<Incoming>>,
    <OAuth<Client<HttpConnector, B>> as Service<Request<B>>>::Future: Send,
    <OAuth<Client<HttpConnector, B>> as Service<Request<B>>>::Error: Into<BoxError>,
{
    fn new(name: &'static str, rt: &Runtime, layer: &OAuthLayer, request: R) -> Self {
        let client = rt.block_on(async {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            Client::builder(TokioExecutor::new()).build::<_, B>(connector)
        });
        Stacks {
            name,
            request,
            no_header: client.clone(),
            static_header: static_header_layer().layer(client.clone()),
            copy_floor: CopyFloorLayer::new(bearer_value(TOKEN)).layer(client.clone()),
            oauth: layer.layer(client),
        }
    }

    /// Criterion's group for these stacks.
    fn bench(&self, c: &mut Criterion, rt: &Runtime) {
        let mut group = c.benchmark_group(self.name);
        group.throughput(Throughput::Elements(1));
        group.sampling_mode(SamplingMode::Flat);
        group.bench_function("no_header", |b| {
            b.to_async(rt).iter_custom(|iters| {
                drive_many(self.no_header.clone(), self.request.clone(), iters)
            })
        });
        group.bench_function("static_header", |b| {
            b.to_async(rt).iter_custom(|iters| {
                drive_many(self.static_header.clone(), self.request.clone(), iters)
            })
        });
        group.bench_function("oauth", |b| {
            b.to_async(rt)
                .iter_custom(|iters| drive_many(self.oauth.clone(), self.request.clone(), iters))
        });
        group.finish();
    }

    /// The paired comparisons: per round, the throughput of `OAuth<S>` over that of the
    /// static header; then the same for the copy floor, what the copy for a second attempt
    /// costs alone.
    fn paired(&self, rt: &Runtime) {
        self.paired_with(rt, "oauth", &self.oauth);
        self.paired_with(rt, "copy_floor", &self.copy_floor);
    }

    fn paired_with<S>(&self, rt: &Runtime, stack: &str, svc: &S)
    where
        S: Service<Request<B>, Response = Response<Incoming>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
    {
        let mut ratios = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let run_static = || {
                rt.block_on(drive_many(
                    self.static_header.clone(),
                    self.request.clone(),
                    PER_ROUND,
                ))
            };
            let run_stack =
                || rt.block_on(drive_many(svc.clone(), self.request.clone(), PER_ROUND));
            let (t_static, t_stack) = if round % 2 == 0 {
                let t = run_static();
                (t, run_stack())
            } else {
                let t = run_stack();
                (run_static(), t)
            };
            ratios.push(t_static.as_secs_f64() / t_stack.as_secs_f64());
        }
        ratios.sort_by(f64::total_cmp);
        let quartile = |q: usize| ratios[(ratios.len() - 1) * q / 4];
        println!(
            "paired: {} {stack}/static_header rounds={ROUNDS} requests_per_round={PER_ROUND} \
             median={:.4} q1={:.4} q3={:.4} min={:.4} max={:.4}",
            self.name.replace('/', "_"),
            quartile(2),
            quartile(1),
            quartile(3),
            ratios[0],
            ratios[ROUNDS - 1]
        );
    }
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
    let server_rt = runtime();
    let addr = start_server(&server_rt);
    let uri: Uri = format!("http://{addr}/api").parse().expect("uri");
    let rt = runtime();
    let layer = oauth_layer(Arc::new(AtomicUsize::new(0)));
    rt.block_on(warm(&layer));
    let get = {
        let uri = uri.clone();
        move || {
            Request::get(uri.clone())
                .body(Empty::<Bytes>::new())
                .expect("request")
        }
    };
    let get = Stacks::new("end_to_end", &rt, &layer, get);
    let post = Stacks::new("end_to_end/post", &rt, &layer, post_to(uri));

    get.bench(&mut c, &rt);
    post.bench(&mut c, &rt);
    // Not in criterion's test mode, nor when another bench was asked for by name. `cargo
    // bench` passes `--bench`; `cargo test --benches` passes nothing, and criterion then
    // runs each bench once.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test_mode =
        !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test" || a == "--list");
    if !test_mode && !filtered_out(&args) {
        get.paired(&rt);
        post.paired(&rt);
    }
    c.final_summary();
}
