//! What a DPoP proof (RFC 9449 section 4.2) costs to make, per request: `DpopKey::proof`
//! for an API request (`htm`, `htu`, `iat`, a random `jti`, `ath`, `nonce`), with a
//! generated ES256 key and with the test keys for EdDSA and RS256. One thread. This is what
//! `DpopLayer` adds to each request with a DPoP token.
//!
//!
//! Then a request with a valid token through the layer, next to the bearer row: `bearer`
//! (`OAuthLayer` over a no-op inner service) and `dpop_es256` (`OAuthLayer` with a DPoP
//! token over a `DpopLayer` over the same service), on 1 thread (one task, one after the
//! other) and on 2 worker threads (two tasks): `dpop/request/{1_thread,2_threads}/..`.
//!
//! Run: `cargo bench --all-features --bench dpop`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response};
use tower::{Layer, Service, ServiceExt};
use tower_oauth::endpoint::dpop::{Dpop, DpopKey, access_token_hash};
use tower_oauth::oauth::dpop::DpopLayer;
use tower_oauth::{OAuthLayer, SigningKey, Token, TokenType, source_fn};

/// Answers at once.
#[derive(Clone)]
struct Noop;

impl Service<Request<()>> for Noop {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

fn layer(token_type: TokenType) -> OAuthLayer {
    OAuthLayer::new(source_fn(move || {
        let token_type = token_type.clone();
        async move {
            Ok(Token::new("x".repeat(800), Duration::from_secs(3600)).with_token_type(token_type))
        }
    }))
}

/// `n` requests through `svc` on `tasks` tasks of `rt`: how long they took.
fn run<S>(rt: &tokio::runtime::Runtime, svc: &S, n: u64, tasks: u64) -> Duration
where
    S: Service<Request<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    for _ in 0..n.div_ceil(tasks) {
                        let request = Request::get("https://api.example.com/v1/orders")
                            .body(())
                            .unwrap();
                        svc.clone().oneshot(request).await.unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        start.elapsed()
    })
}

fn requests(c: &mut Criterion) {
    let dpop = Dpop::new(DpopKey::generate_es256().expect("key"));
    for (group, workers, tasks) in [
        ("dpop/request/1_thread", 1, 1),
        ("dpop/request/2_threads", 2, 2),
    ] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap();
        let bearer = layer(TokenType::BEARER);
        let bound = layer(TokenType::DPOP);
        rt.block_on(async {
            bearer.cache().token().await.unwrap();
            bound.cache().token().await.unwrap();
        });
        let bearer_svc = bearer.layer(Noop);
        let dpop_svc = bound.layer(DpopLayer::new(dpop.clone()).layer(Noop));
        let mut g = c.benchmark_group(group);
        g.bench_function("bearer", |b| {
            b.iter_custom(|n| run(&rt, &bearer_svc, n, tasks))
        });
        g.bench_function("dpop_es256", |b| {
            b.iter_custom(|n| run(&rt, &dpop_svc, n, tasks))
        });
        g.finish();
    }
}

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).expect("key")
}

fn proofs(c: &mut Criterion) {
    let keys = [
        ("ES256", DpopKey::generate_es256().expect("key")),
        (
            "EdDSA",
            DpopKey::from_signing_key(SigningKey::from_pem(key_file("ed25519.pem")).expect("key")),
        ),
        (
            "RS256",
            DpopKey::from_signing_key(SigningKey::from_pem(key_file("rsa.pem")).expect("key")),
        ),
    ];
    let token = "x".repeat(800); // a JWT access token's length
    let mut group = c.benchmark_group("dpop/proof");
    for (name, key) in &keys {
        group.bench_function(*name, |b| {
            b.iter(|| {
                key.proof(
                    &Method::GET,
                    "https://api.example.com/v1/orders",
                    Some(&token),
                    Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"),
                )
                .expect("proof")
            })
        });
    }
    group.bench_function("ath_only", |b| b.iter(|| access_token_hash(&token)));
    group.finish();
}

criterion_group!(benches, proofs, requests);
criterion_main!(benches);
