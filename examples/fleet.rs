//! A chaos run anyone can repeat: a fleet of OS processes shares one token through Redis
//! while the token endpoint fails half its requests and Redis dies and comes back.
//!
//! ```text
//! cargo run --example fleet --features redis -- [--processes 8] [--seconds 20] [--redis-port 6390]
//! ```
//!
//! The parent starts, all on loopback:
//! - a token endpoint (client credentials) that answers every other request with `503` and
//!   `Retry-After: 1`, and issues 6 second tokens otherwise;
//! - a protected API that accepts a token only while it is valid, and counts the requests
//!   that came without one;
//! - a Redis server of its own (`redis-server` on `--redis-port`), which it kills at one
//!   third of the run and starts again at two thirds;
//! - `--processes` copies of this program, each an instance of a service with an
//!   `OAuthLayer` and a `RedisStore`, sending requests for `--seconds`.
//!
//! It prints, per process and in total: requests, successes, requests that reached the API
//! without a valid token (must be 0), token requests, the longest wait for a response, and
//! calls that hung past the configured timeouts (must be 0). It exits with status 1 if a
//! must-be-0 figure is not 0, and with status 0 and a message if `redis-server` is missing.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::Request;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_oauth::store::{RedisStore, StoreOptions};
use tower_oauth::{ClientCredentials, OAuthLayer, Token, TokenSource};

const CLIENT_ID: &str = "fleet";
const CLIENT_SECRET: &str = "fleet-secret";
const TOKEN_LIFETIME: Duration = Duration::from_secs(6);
/// A call that takes longer than this hung: the fetch timeout (10 s) plus the store's
/// calls and some slack.
const HANG: Duration = Duration::from_secs(15);

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if let Some(index) = arg(&args, "--child") {
        return rt.block_on(child(
            index.parse()?,
            arg(&args, "--token-url").ok_or("--token-url")?,
            arg(&args, "--api-url").ok_or("--api-url")?,
            arg(&args, "--redis-url").ok_or("--redis-url")?,
            Duration::from_secs(arg(&args, "--seconds").ok_or("--seconds")?.parse()?),
        ));
    }
    let processes: usize = arg(&args, "--processes").map_or(Ok(8), |s| s.parse())?;
    let seconds: u64 = arg(&args, "--seconds").map_or(Ok(20), |s| s.parse())?;
    let redis_port: u16 = arg(&args, "--redis-port").map_or(Ok(6390), |s| s.parse())?;
    let ok = rt.block_on(parent(processes, seconds, redis_port))?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The parent: token endpoint, API, Redis, and the fleet.
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Servers {
    token_requests: AtomicUsize,
    issued: AtomicU64,
    /// Tokens and when they expire.
    valid: Mutex<Vec<(String, Instant)>>,
    /// API requests per process, and those without a valid token.
    api: Mutex<Vec<(usize, usize)>>,
}

async fn token(State(s): State<Arc<Servers>>, headers: HeaderMap) -> Response {
    let n = s.token_requests.fetch_add(1, Ordering::SeqCst);
    let basic = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    use base64::Engine;
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    if basic != format!("Basic {expected}") {
        return (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#).into_response();
    }
    if n % 2 == 1 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1"), ("content-type", "application/json")],
            r#"{"error":"temporarily_unavailable"}"#,
        )
            .into_response();
    }
    let id = s.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("fleet-token-{id}-{}", fastrand::u64(..));
    s.valid
        .lock()
        .unwrap()
        .push((token.clone(), Instant::now() + TOKEN_LIFETIME));
    (
        [("content-type", "application/json")],
        format!(
            r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{}}}"#,
            TOKEN_LIFETIME.as_secs()
        ),
    )
        .into_response()
}

async fn api(State(s): State<Arc<Servers>>, headers: HeaderMap) -> StatusCode {
    let process: usize = headers
        .get("x-fleet-process")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok()?.strip_prefix("Bearer ").map(str::to_owned));
    let now = Instant::now();
    let valid = token.is_some_and(|t| {
        s.valid
            .lock()
            .unwrap()
            .iter()
            .any(|(v, until)| *v == t && now < *until)
    });
    let mut api = s.api.lock().unwrap();
    if api.len() <= process {
        api.resize(process + 1, (0, 0));
    }
    api[process].0 += 1;
    if valid {
        StatusCode::OK
    } else {
        api[process].1 += 1;
        StatusCode::UNAUTHORIZED
    }
}

async fn serve(router: Router) -> Result<SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}

fn start_redis(port: u16) -> std::io::Result<Child> {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

async fn wait_for_redis(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn parent(processes: usize, seconds: u64, redis_port: u16) -> Result<bool, BoxError> {
    let servers = Arc::new(Servers::default());
    let token_addr = serve(
        Router::new()
            .route("/token", post(token))
            .with_state(servers.clone()),
    )
    .await?;
    let api_addr = serve(
        Router::new()
            .route("/api", get(api))
            .with_state(servers.clone()),
    )
    .await?;
    let mut redis = match start_redis(redis_port) {
        Ok(redis) => redis,
        Err(error) => {
            println!("fleet: redis-server could not be started ({error}); nothing to run");
            return Ok(true);
        }
    };
    wait_for_redis(redis_port).await;

    let exe = std::env::current_exe()?;
    let run = Duration::from_secs(seconds);
    let started = Instant::now();
    let children: Vec<Child> = (0..processes)
        .map(|i| {
            Command::new(&exe)
                .args(["--child", &i.to_string()])
                .args(["--token-url", &format!("http://{token_addr}/token")])
                .args(["--api-url", &format!("http://{api_addr}/api")])
                .args(["--redis-url", &format!("redis://127.0.0.1:{redis_port}")])
                .args(["--seconds", &seconds.to_string()])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;

    tokio::time::sleep_until((started + run / 3).into()).await;
    let _ = redis.kill();
    let _ = redis.wait();
    println!(
        "fleet: Redis killed at {:.1} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep_until((started + run * 2 / 3).into()).await;
    redis = start_redis(redis_port)?;
    wait_for_redis(redis_port).await;
    println!(
        "fleet: Redis restarted at {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output())
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    let _ = redis.kill();
    let _ = redis.wait();

    let api = servers.api.lock().unwrap().clone();
    println!(
        "\n{:>7} {:>9} {:>9} {:>13} {:>14} {:>14} {:>6}",
        "process",
        "requests",
        "successes",
        "without token",
        "token fetches",
        "longest wait",
        "hangs"
    );
    let (mut requests, mut successes, mut without, mut hangs, mut longest) = (0, 0, 0, 0, 0u64);
    for (i, output) in outputs.iter().enumerate() {
        let line = String::from_utf8_lossy(&output.stdout);
        let nums: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let [r, ok, fetches, wait_ms, hung] = nums[..] else {
            println!("{i:>7} (no report: {line:?}, {})", output.status);
            hangs += 1;
            continue;
        };
        let bad = api.get(i).map_or(0, |a| a.1);
        println!(
            "{i:>7} {r:>9} {ok:>9} {bad:>13} {fetches:>14} {:>11} ms {hung:>6}",
            wait_ms
        );
        requests += r;
        successes += ok;
        without += bad;
        hangs += hung as usize;
        longest = longest.max(wait_ms);
    }
    let token_requests = servers.token_requests.load(Ordering::SeqCst);
    println!(
        "{:>7} {requests:>9} {successes:>9} {without:>13} {token_requests:>14} {longest:>11} ms {hangs:>6}",
        "total"
    );
    println!(
        "(token fetches per process are the fetches its layer made; the total is what the \
         token endpoint saw, half of them answered 503)"
    );
    let ok = without == 0 && hangs == 0;
    if !ok {
        println!("FAILED: requests without a valid token or hangs are not 0");
    }
    Ok(ok)
}

// ---------------------------------------------------------------------------------------
// A child: one instance of a service.
// ---------------------------------------------------------------------------------------

/// The client-credentials source, counting the fetches this process makes.
struct Counting {
    inner: ClientCredentials,
    fetches: Arc<AtomicUsize>,
}

impl TokenSource for Counting {
    async fn fetch(&self) -> Result<Token, tower_oauth::Error> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch().await
    }

    fn cache_key(&self) -> Option<tower_oauth::store::CacheKey> {
        self.inner.cache_key()
    }
}

async fn child(
    index: usize,
    token_url: String,
    api_url: String,
    redis_url: String,
    run: Duration,
) -> Result<(), BoxError> {
    let fetches = Arc::new(AtomicUsize::new(0));
    let source = Counting {
        inner: ClientCredentials::builder()
            .token_url(token_url)
            .client_id(CLIENT_ID)
            .client_secret(CLIENT_SECRET)
            .build()?,
        fetches: fetches.clone(),
    };
    let layer = OAuthLayer::builder(source)
        .store(RedisStore::open(&redis_url)?)
        .store_options(StoreOptions::new().prefix("fleet:"))
        .build();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let svc = ServiceBuilder::new().layer(layer).service(client);

    let requests = Arc::new(AtomicU64::new(0));
    let successes = Arc::new(AtomicU64::new(0));
    let longest = Arc::new(AtomicU64::new(0));
    let hung = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + run;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (svc, api_url) = (svc.clone(), api_url.clone());
            let (requests, successes) = (requests.clone(), successes.clone());
            let (longest, hung) = (longest.clone(), hung.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let req = Request::get(api_url.as_str())
                        .header("x-fleet-process", index.to_string())
                        .body(Empty::new())
                        .expect("request");
                    let before = Instant::now();
                    let result = tokio::time::timeout(HANG, svc.clone().oneshot(req)).await;
                    let took = before.elapsed();
                    requests.fetch_add(1, Ordering::Relaxed);
                    longest.fetch_max(took.as_millis() as u64, Ordering::Relaxed);
                    match result {
                        Err(_) => {
                            hung.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Ok(res)) if res.status() == StatusCode::OK => {
                            successes.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    println!(
        "{} {} {} {} {}",
        requests.load(Ordering::SeqCst),
        successes.load(Ordering::SeqCst),
        fetches.load(Ordering::SeqCst),
        longest.load(Ordering::SeqCst),
        hung.load(Ordering::SeqCst)
    );
    Ok(())
}
