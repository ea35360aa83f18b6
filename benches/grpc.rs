//! gRPC: a unary call over loopback to the tonic echo server of `tests/support/grpc_echo.rs`,
//! through `GrpcLayer` (warm cache) and through a static `authorization` metadata value
//! (tower-http `SetRequestHeader` on the channel), [`CONCURRENCY`] calls in flight.
//! Reported as calls per second.
//!
//! After criterion's group, a paired comparison: [`ROUNDS`] rounds, each of four segments of
//! [`PER_SEGMENT`] calls in the order static, layer, layer, static (ABBA, so that a drift of
//! the machine's speed within a round falls on both stacks alike), and the throughput ratio
//! `GrpcLayer / static` of each round; one `paired:` line (read by `scripts/bench.sh`). The
//! target of issue 16 is a median ratio of at least 0.98.
//!
//! The server runs on a runtime of its own (one worker thread), the client on another.
//!
//! Run: `cargo bench --features tonic --bench grpc`.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use common::support::counting_source;
use common::support::grpc_echo::{EchoServer, SAY, Said, Say};
use criterion::{Criterion, SamplingMode, Throughput};
use http::HeaderValue;
use http::uri::PathAndQuery;
use tokio::runtime::Runtime;
use tonic::client::{Grpc as GrpcClient, GrpcService};
use tonic::transport::Channel;
use tonic_prost::ProstCodec;
use tower::ServiceBuilder;
use tower_http::set_header::SetRequestHeaderLayer;
use tower_oauth::OAuthLayer;
use tower_oauth::grpc::{Grpc, GrpcLayer};

/// Calls in flight at once.
const CONCURRENCY: u64 = 32;
/// Rounds of the paired comparison.
const ROUNDS: usize = 31;
/// Calls per segment of a round (two segments per stack and round).
const PER_SEGMENT: u64 = 2_500;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `n` unary calls, [`CONCURRENCY`] at a time; how long they took.
async fn calls<T>(client: GrpcClient<T>, n: u64) -> Duration
where
    T: GrpcService<tonic::body::Body> + Clone + Send + 'static,
    T::Future: Send,
    T::ResponseBody: Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tower::BoxError> + Send,
    T::Error: Into<tower::BoxError>,
{
    let start = Instant::now();
    let per_task = n.div_ceil(CONCURRENCY);
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|task| {
            let mut client = client.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    client.ready().await.map_err(Into::into).expect("ready");
                    let request = tonic::Request::new(Say {
                        id: task * per_task + i,
                        text: "hi".into(),
                    });
                    let codec = ProstCodec::<Say, Said>::default();
                    let response = client
                        .unary(request, PathAndQuery::from_static(SAY), codec)
                        .await
                        .expect("OK");
                    std::hint::black_box(response);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    start.elapsed()
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .sample_size(20)
        .configure_from_args();
    let server_rt = runtime();
    let addr = server_rt.block_on(EchoServer::default().start());
    let origin: http::Uri = format!("http://{addr}").parse().expect("uri");
    let rt = runtime();
    let channel = rt.block_on(async {
        Channel::builder(origin.clone())
            .connect()
            .await
            .expect("connect")
    });

    let oauth = OAuthLayer::builder(counting_source(Arc::new(AtomicUsize::new(0))))
        .recover_policy(Grpc::new())
        .build();
    rt.block_on(oauth.cache().token()).expect("warm");
    let with_layer = GrpcClient::with_origin(
        ServiceBuilder::new()
            .layer(GrpcLayer::new(oauth))
            .service(channel.clone()),
        origin.clone(),
    );
    let with_static = GrpcClient::with_origin(
        ServiceBuilder::new()
            .layer(SetRequestHeaderLayer::overriding(
                http::header::AUTHORIZATION,
                HeaderValue::from_static("Bearer t1"),
            ))
            .service(channel),
        origin,
    );

    let mut group = c.benchmark_group("grpc/unary");
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("static_metadata", |b| {
        b.iter_custom(|n| rt.block_on(calls(with_static.clone(), n)))
    });
    group.bench_function("grpc_layer", |b| {
        b.iter_custom(|n| rt.block_on(calls(with_layer.clone(), n)))
    });
    group.finish();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let test_mode =
        !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test" || a == "--list");
    if !test_mode {
        let mut ratios = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let run_static = || rt.block_on(calls(with_static.clone(), PER_SEGMENT));
            let run_layer = || rt.block_on(calls(with_layer.clone(), PER_SEGMENT));
            let mut t_static = run_static();
            let mut t_layer = run_layer();
            t_layer += run_layer();
            t_static += run_static();
            ratios.push(t_static.as_secs_f64() / t_layer.as_secs_f64());
        }
        ratios.sort_by(f64::total_cmp);
        let quartile = |q: usize| ratios[(ratios.len() - 1) * q / 4];
        println!(
            "paired: grpc_unary grpc_layer/static_metadata rounds={ROUNDS} calls_per_round={} \
             median={:.4} q1={:.4} q3={:.4} min={:.4} max={:.4}",
            2 * PER_SEGMENT,
            quartile(2),
            quartile(1),
            quartile(3),
            ratios[0],
            ratios[ROUNDS - 1]
        );
    }
    c.final_summary();
}
