//! `OAuthMiddleware` (reqwest 0.13, reqwest-middleware 0.5) next to aliri_reqwest's
//! `AccessTokenMiddleware` (reqwest 0.12, reqwest-middleware 0.4), per request, with a
//! token that is already valid. A package of its own because aliri_reqwest needs
//! reqwest 0.12; not part of the main crate's build nor of CI.
//!
//! As in `benches/reqwest_middleware.rs`, each chain ends in a middleware of its own,
//! `Answer`, that answers `200` without calling `next`: the rows measure the middleware
//! chain (`client.get(url)`, the boxed futures of the `async_trait` middlewares) and not
//! the network. Each reqwest-middleware version has its own `Answer`, its own floor and its
//! own static header, and each token middleware is read against the floor of its own
//! version:
//!
//! - `rm04_floor`, `rm05_floor`: `Answer` alone.
//! - `rm04_static_header`, `rm05_static_header`: a middleware that inserts a fixed
//!   `Authorization` value.
//! - `rm04_aliri`: `AccessTokenMiddleware` over a `TokenWatcher` filled by aliri_tokens'
//!   `ConstTokenSource` (valid for an hour, so its background task does not renew it
//!   during a run), with its default `HttpsOnly` predicate (the URL is `https`). Per
//!   request it borrows the watch channel's token, formats `Bearer <token>` into a new
//!   `BytesMut` and inserts it if the request has no `Authorization` yet. It keeps no copy
//!   of the request and does nothing on a `401`.
//! - `rm05_oauth`: `OAuthMiddleware` with its defaults (recovery on: a `try_clone` of each
//!   request is kept, so that a `401` drops the token and the request is sent once more
//!   with a new one), over an in-process source, cache warmed before the run.
//!
//! Groups `aliri/1_worker` and `aliri/2_workers`, [`TASKS`] tasks on each; the report at
//! the end gives ns per request (criterion's median) and what each stack adds over its
//! own floor.
//!
//! Run: `cd benches/aliri && CARGO_TARGET_DIR=$PWD/target cargo bench --bench aliri`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aliri_clock::DurationSecs;
use aliri_reqwest::AccessTokenMiddleware;
use aliri_tokens::TokenWatcher;
use aliri_tokens::backoff::ErrorBackoffConfig;
use aliri_tokens::jitter::NullJitter;
use aliri_tokens::sources::ConstTokenSource;
use async_trait::async_trait;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{Extensions, HeaderValue};
use tokio::runtime::Runtime;
use tower_oauth::{OAuthLayer, OAuthMiddleware, Token, source_fn};

/// Tasks sending requests at once.
const TASKS: u64 = 256;
/// `https`, so that aliri's default `HttpsOnly` predicate attaches its token.
const URL: &str = "https://api.example.com/v1/items";
/// The same token as the main crate's benches.
const TOKEN: &str = "2YotnFZFEjr1zCsicMWpAA.bench-token-0123456789abcdef";
/// Long enough never to be refreshed in a run.
const LIFETIME: Duration = Duration::from_secs(3600);

fn bearer_value(token: &str) -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).expect("valid header");
    value.set_sensitive(true);
    value
}

/// The two chains: reqwest-middleware 0.5 over reqwest 0.13 (ours) and reqwest-middleware
/// 0.4 over reqwest 0.12 (aliri_reqwest's). The same code, written once per version.
macro_rules! chain_module {
    ($module:ident, $reqwest:ident, $rm:ident) => {
        mod $module {
            use super::*;
            use $rm::{ClientBuilder, ClientWithMiddleware, Middleware, Next};

            pub type Client = ClientWithMiddleware;

            /// The end of the chain: `200`, empty body, no I/O.
            pub struct Answer;

            #[async_trait]
            impl Middleware for Answer {
                async fn handle(
                    &self,
                    _req: $reqwest::Request,
                    _extensions: &mut Extensions,
                    _next: Next<'_>,
                ) -> $rm::Result<$reqwest::Response> {
                    Ok($reqwest::Response::from(http::Response::new("")))
                }
            }

            /// The end of the check chain: `200` when the request carries the bench's
            /// token, `500` when not.
            struct Check;

            #[async_trait]
            impl Middleware for Check {
                async fn handle(
                    &self,
                    req: $reqwest::Request,
                    _extensions: &mut Extensions,
                    _next: Next<'_>,
                ) -> $rm::Result<$reqwest::Response> {
                    let ok = req.headers().get(AUTHORIZATION) == Some(&bearer_value(TOKEN));
                    let mut response = http::Response::new("");
                    if !ok {
                        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    Ok($reqwest::Response::from(response))
                }
            }

            /// A fixed `Authorization` header: what a hand-written middleware does at best.
            pub struct StaticHeader(pub HeaderValue);

            #[async_trait]
            impl Middleware for StaticHeader {
                async fn handle(
                    &self,
                    mut req: $reqwest::Request,
                    extensions: &mut Extensions,
                    next: Next<'_>,
                ) -> $rm::Result<$reqwest::Response> {
                    req.headers_mut().insert(AUTHORIZATION, self.0.clone());
                    next.run(req, extensions).await
                }
            }

            fn build(first: Option<Arc<dyn Middleware>>, last: impl Middleware) -> Client {
                let builder = ClientBuilder::new($reqwest::Client::new());
                let builder = match first {
                    Some(first) => builder.with_arc(first),
                    None => builder,
                };
                builder.with(last).build()
            }

            /// `first` (if any), then [`Answer`].
            pub fn chain(first: Option<Arc<dyn Middleware>>) -> Client {
                build(first, Answer)
            }

            /// Panics unless `first` puts the bench's token on a request.
            pub async fn check(first: Arc<dyn Middleware>) {
                let client = build(Some(first), Check);
                let response = client.get(URL).send().await.expect("response");
                assert_eq!(response.status(), 200, "the token was not attached");
            }

            pub async fn drive_many(client: Client, iters: u64) -> Duration {
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
        }
    };
}

chain_module!(rm04, reqwest12, reqwest_middleware04);
chain_module!(rm05, reqwest, reqwest_middleware);

enum Stack {
    Rm04(rm04::Client),
    Rm05(rm05::Client),
}

/// `OAuthLayer` with its defaults over an in-process source that hands out [`TOKEN`] for
/// [`LIFETIME`], warmed: what `benches/reqwest_middleware.rs` measures as `oauth`.
async fn oauth_layer() -> OAuthLayer {
    let layer = OAuthLayer::new(source_fn(|| async { Ok(Token::new(TOKEN, LIFETIME)) }));
    layer.cache().token().await.expect("token");
    layer
}

/// aliri_tokens' watcher over a constant token valid for [`LIFETIME`]: the first token is
/// fetched before it returns, so it is warm. Its renewal task runs on the current runtime.
async fn aliri_watcher() -> TokenWatcher {
    let source =
        ConstTokenSource::new(TOKEN).with_token_valid_for(DurationSecs(LIFETIME.as_secs()));
    TokenWatcher::spawn_from_token_source(source, NullJitter, ErrorBackoffConfig::default())
        .await
        .expect("token watcher")
}

fn bench_runtime(c: &mut Criterion, rt: &Runtime, name: &str, report: &mut Vec<Row>) {
    let (oauth, watcher) = rt.block_on(async { (oauth_layer().await, aliri_watcher().await) });
    let aliri: Arc<dyn reqwest_middleware04::Middleware> =
        Arc::new(AccessTokenMiddleware::new(watcher));
    let ours: Arc<dyn reqwest_middleware::Middleware> = Arc::new(OAuthMiddleware::new(&oauth));
    let static04: Arc<dyn reqwest_middleware04::Middleware> =
        Arc::new(rm04::StaticHeader(bearer_value(TOKEN)));
    let static05: Arc<dyn reqwest_middleware::Middleware> =
        Arc::new(rm05::StaticHeader(bearer_value(TOKEN)));
    rt.block_on(async {
        rm04::check(aliri.clone()).await;
        rm04::check(static04.clone()).await;
        rm05::check(ours.clone()).await;
        rm05::check(static05.clone()).await;
    });

    let stacks = [
        ("rm04_floor", Stack::Rm04(rm04::chain(None))),
        (
            "rm04_static_header",
            Stack::Rm04(rm04::chain(Some(static04))),
        ),
        ("rm04_aliri", Stack::Rm04(rm04::chain(Some(aliri)))),
        ("rm05_floor", Stack::Rm05(rm05::chain(None))),
        (
            "rm05_static_header",
            Stack::Rm05(rm05::chain(Some(static05))),
        ),
        ("rm05_oauth", Stack::Rm05(rm05::chain(Some(ours)))),
    ];

    let mut group = c.benchmark_group(format!("aliri/{name}"));
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    for (stack, client) in &stacks {
        group.bench_function(*stack, |b| match client {
            Stack::Rm04(client) => b
                .to_async(rt)
                .iter_custom(|iters| rm04::drive_many(client.clone(), iters)),
            Stack::Rm05(client) => b
                .to_async(rt)
                .iter_custom(|iters| rm05::drive_many(client.clone(), iters)),
        });
        report.push(Row {
            group: format!("aliri/{name}"),
            stack,
        });
    }
    group.finish();
}

/// One line of the report at the end, read back from criterion's `estimates.json`.
struct Row {
    group: String,
    stack: &'static str,
}

/// A bench's median in ns per request and its 95% confidence interval, from
/// `<target>/criterion/<group>/<stack>/new/estimates.json` (one iteration is one request).
struct Median {
    point: f64,
    lower: f64,
    upper: f64,
}

fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest.find([',', '}'])?;
    rest[..end].trim().parse().ok()
}

fn median(row: &Row) -> Option<Median> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target"));
    let path = target
        .join("criterion")
        .join(row.group.replace('/', "_"))
        .join(row.stack)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    // `{"mean":{...},"median":{"confidence_interval":{"confidence_level":0.95,
    // "lower_bound":L,"upper_bound":U},"point_estimate":X,...`
    let section = &text[text.find("\"median\"")?..];
    Some(Median {
        point: number_after(section, "\"point_estimate\":")?,
        lower: number_after(section, "\"lower_bound\":")?,
        upper: number_after(section, "\"upper_bound\":")?,
    })
}

fn print_report(rows: &[Row]) {
    println!();
    println!("ns per request (criterion median, 95% CI), added over the floor of its own version:");
    for row in rows {
        let Some(m) = median(row) else {
            println!("{:<16} {:<19} (no estimates.json)", row.group, row.stack);
            continue;
        };
        let floor_name = if row.stack.starts_with("rm04") {
            "rm04_floor"
        } else {
            "rm05_floor"
        };
        let added = rows
            .iter()
            .find(|r| r.group == row.group && r.stack == floor_name)
            .and_then(median)
            .filter(|_| row.stack != floor_name)
            .map(|floor| format!("added {:>7.1}", m.point - floor.point))
            .unwrap_or_default();
        println!(
            "{:<16} {:<19} {:>7.1} ({:>7.1} - {:>7.1})  {added}",
            row.group, row.stack, m.point, m.lower, m.upper
        );
    }
}

fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

fn aliri(c: &mut Criterion) {
    let mut rows = Vec::new();
    bench_runtime(c, &runtime(1), "1_worker", &mut rows);
    bench_runtime(c, &runtime(2), "2_workers", &mut rows);
    print_report(&rows);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = aliri
}
criterion_main!(benches);
