//! Load demo: many concurrent requests through `OAuthLayer`, across several token
//! lifetimes, with every request checked for a valid token.
//!
//! ```text
//! cargo run --example demo                                # in-process server, ~12 s
//! cargo run --example demo -- --seconds 3 --requests 2000 # quick run for CI
//! cargo run --example demo -- --no-revoke                 # without the mid-run revocation
//! OAUTH_CLIENT_SECRET=... cargo run --example demo -- \
//!     --token-url https://idp.example/token --client-id ID --api-url https://api.example/x
//! bash tests/interop/demo.sh                              # against the interop provider
//! ```
//!
//! Without `--token-url` the demo starts the test authorization server of
//! `tests/support/auth_server.rs` on loopback, with short-lived tokens, and checks on the
//! server side that no request reached the API without a valid token. It exits non-zero if
//! any request failed or went out without a valid token.
#[path = "../tests/support/auth_server.rs"]
mod auth_server;

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secrecy::ExposeSecret;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_oauth::{ClientAuth, ClientCredentials, OAuthLayer, SigningKey};

use auth_server::{AuthServer, AuthServerConfig};

const USAGE: &str = "\
usage: demo [options]

load (both modes):
  --requests N       requests to send (default 10000)
  --seconds S        spread them over S seconds (default 12)
  --concurrency C    concurrent tasks (default 64)
  --margin-ms M      refresh margin in ms (default: a fifth of the token lifetime
                     in-process, the layer's default against a real server)
  --auth basic|post|private_key_jwt
                     client authentication (default basic); private_key_jwt signs
                     each token request's assertion with --key
  --key FILE         the private key (PEM or JWK) for private_key_jwt (default, with
                     the in-process server: tests/keys/p256.pem)

in-process server (the default):
  --lifetime L       token lifetime in seconds (default 5, less for --seconds under 12
                     so a run spans several lifetimes)
  --no-revoke        do not revoke every token half-way through the run (revoking is
                     the default: the layer recovers from the 401s it causes)

real server (all three together; the secret comes from OAUTH_CLIENT_SECRET):
  --token-url URL  --client-id ID  --api-url URL  [--scope SCOPE]  [--resource URI]";

/// The authorization server and API to run against.
struct Remote {
    token_url: String,
    client_id: String,
    /// Not needed for `private_key_jwt`.
    client_secret: Option<String>,
    api_url: String,
}

struct Args {
    requests: usize,
    seconds: f64,
    concurrency: usize,
    lifetime: u64,
    /// `None`: the layer's default (against a real server, whose lifetimes we don't know).
    margin: Option<Duration>,
    auth: ClientAuth,
    /// For `private_key_jwt`.
    key: Option<SigningKey>,
    scope: Option<String>,
    /// RFC 8707 resource indicator for the token request.
    resource: Option<String>,
    revoke: bool,
    remote: Option<Remote>,
}

fn parse_args() -> Result<Args, String> {
    let mut requests = 10_000;
    let mut seconds: f64 = 12.0;
    let mut concurrency = 64;
    let mut lifetime = None;
    let mut margin_ms = None;
    let mut auth = ClientAuth::ClientSecretBasic;
    let mut key_file = None;
    let mut scope = None;
    let mut resource = None;
    let mut revoke = None;
    let (mut token_url, mut client_id, mut api_url) = (None, None, None);

    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--requests" => requests = parse(&flag, &value()?)?,
            "--seconds" => seconds = parse(&flag, &value()?)?,
            "--concurrency" => concurrency = parse(&flag, &value()?)?,
            "--lifetime" => lifetime = Some(parse(&flag, &value()?)?),
            "--margin-ms" => margin_ms = Some(parse(&flag, &value()?)?),
            "--auth" => {
                auth = match value()?.as_str() {
                    "basic" => ClientAuth::ClientSecretBasic,
                    "post" => ClientAuth::ClientSecretPost,
                    "private_key_jwt" => ClientAuth::PrivateKeyJwt,
                    other => {
                        return Err(format!(
                            "--auth: expected basic, post or private_key_jwt, got {other}"
                        ));
                    }
                }
            }
            "--key" => key_file = Some(value()?),
            "--scope" => scope = Some(value()?),
            "--resource" => resource = Some(value()?),
            "--no-revoke" => revoke = Some(false),
            "--token-url" => token_url = Some(value()?),
            "--client-id" => client_id = Some(value()?),
            "--api-url" => api_url = Some(value()?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if requests == 0 || concurrency == 0 || !(seconds >= 0.0 && seconds.is_finite()) {
        return Err("--requests and --concurrency must be positive, --seconds finite".into());
    }

    let remote = match (token_url, client_id, api_url) {
        (None, None, None) => None,
        (Some(token_url), Some(client_id), Some(api_url)) => Some(Remote {
            token_url,
            client_id,
            api_url,
            client_secret: match std::env::var("OAUTH_CLIENT_SECRET") {
                Ok(secret) => Some(secret),
                Err(_) if auth == ClientAuth::PrivateKeyJwt => None,
                Err(_) => return Err("set OAUTH_CLIENT_SECRET for --token-url".to_owned()),
            },
        }),
        _ => return Err("--token-url, --client-id and --api-url go together".into()),
    };
    if let Some(remote) = &remote {
        if revoke.is_some() || lifetime.is_some() {
            return Err("--no-revoke and --lifetime need the in-process server".into());
        }
        // The demo's API client is a plain hyper-util HttpConnector: no TLS.
        if !remote.api_url.starts_with("http://") {
            return Err("--api-url must be an http:// URL (the demo's client has no TLS)".into());
        }
    }
    let key = match (auth, key_file, &remote) {
        (ClientAuth::PrivateKeyJwt, Some(file), _) => Some(read_key(&file)?),
        (ClientAuth::PrivateKeyJwt, None, None) => Some(read_key(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/keys/p256.pem"
        ))?),
        (ClientAuth::PrivateKeyJwt, None, Some(_)) => {
            return Err("--auth private_key_jwt needs --key with --token-url".into());
        }
        (_, Some(_), _) => return Err("--key goes with --auth private_key_jwt".into()),
        (_, None, _) => None,
    };
    // Keep several token lifetimes within the run: 5 s for the default 12 s run, scaled
    // down (to at least 1 s, the smallest `expires_in`) for shorter runs.
    let lifetime = lifetime.unwrap_or_else(|| (seconds / 2.4).round().clamp(1.0, 5.0) as u64);
    let margin = match (margin_ms, &remote) {
        (Some(ms), _) => Some(Duration::from_millis(ms)),
        (None, None) => Some(Duration::from_secs(lifetime) / 5),
        (None, Some(_)) => None,
    };
    Ok(Args {
        requests,
        seconds,
        concurrency,
        lifetime,
        margin,
        auth,
        key,
        scope,
        resource,
        // Revoking mid-run needs the in-process server; it is on unless --no-revoke.
        revoke: remote.is_none() && revoke.unwrap_or(true),
        remote,
    })
}

/// A `private_key_jwt` key from a PEM or JWK file.
fn read_key(path: &str) -> Result<SigningKey, String> {
    let text = std::fs::read(path).map_err(|e| format!("--key {path}: {e}"))?;
    let key = if text.trim_ascii_start().starts_with(b"{") {
        SigningKey::from_jwk(&String::from_utf8_lossy(&text))
    } else {
        SigningKey::from_pem(&text)
    };
    key.map_err(|e| format!("--key {path}: {e}"))
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: cannot parse {value:?}"))
}

/// What one task saw.
#[derive(Default)]
struct TaskReport {
    latencies: Vec<Duration>,
    succeeded: usize,
    failures: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    #[cfg(feature = "metrics")]
    let metrics = metrics_summary::install();
    let mut args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}\n");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    // The in-process server, unless we run against a real one.
    let (server, target) = match args.remote.take() {
        Some(remote) => (None, remote),
        None => {
            let server = AuthServer::start(AuthServerConfig {
                client_id: "demo".into(),
                client_secret: "demo-secret".into(),
                expires_in: args.lifetime,
                scopes: vec!["api.read".into()],
                assertion_keys: args.key.iter().map(SigningKey::public_jwk).collect(),
                ..Default::default()
            })
            .await;
            let target = Remote {
                token_url: server.token_url(),
                client_id: server.config().client_id.clone(),
                client_secret: Some(server.config().client_secret.clone()),
                api_url: server.api_url(),
            };
            args.scope.get_or_insert_with(|| "api.read".into());
            (Some(server), target)
        }
    };
    let api_url = target.api_url;

    let mut source = ClientCredentials::builder()
        .token_url(target.token_url)
        .client_id(target.client_id)
        .auth_method(args.auth);
    match args.key.take() {
        Some(key) => source = source.private_key(key),
        None => source = source.client_secret(target.client_secret.unwrap_or_default()),
    }
    if let Some(scope) = &args.scope {
        source = source.scope(scope.as_str());
    }
    if let Some(resource) = &args.resource {
        source = source.resource(resource.as_str());
    }
    let source = match source.build() {
        Ok(source) => source,
        Err(e) => {
            eprintln!("error: bad client configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let mut layer = OAuthLayer::builder(source);
    if let Some(margin) = args.margin {
        layer = layer.refresh_margin(margin);
    }
    let layer = layer.build();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(client);

    println!(
        "tower-oauth demo: {} requests from {} tasks over {:.1} s against {}",
        args.requests,
        args.concurrency,
        args.seconds,
        if server.is_some() {
            "the in-process server"
        } else {
            api_url.as_str()
        },
    );
    if server.is_some() {
        println!(
            "token lifetime {} s, refresh margin {} ms{}",
            args.lifetime,
            args.margin.unwrap_or_default().as_millis(),
            if args.revoke {
                ", all tokens revoked half-way"
            } else {
                ""
            },
        );
    }

    let start = Instant::now();

    // Watch the cache to count the distinct tokens the client used; this works against a
    // real server too. Only a hash of each token is kept.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let cache = layer.cache().clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = HashSet::new();
            loop {
                let finished = done.load(Ordering::Acquire);
                if let Some(token) = cache.current() {
                    let mut h = DefaultHasher::new();
                    token.access_token().expose_secret().hash(&mut h);
                    seen.insert(h.finish());
                }
                if finished {
                    return seen.len();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // Revoke every token half-way: requests in flight with the revoked token get 401, and
    // the layer invalidates it, fetches one new token and replays them, so no caller fails.
    let server = server.map(Arc::new);
    if let (true, Some(server)) = (args.revoke, &server) {
        let server = server.clone();
        let at = start + Duration::from_secs_f64(args.seconds / 2.0);
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            server.revoke_all();
            println!(
                "revoked all tokens at t={:.2} s",
                at.duration_since(start).as_secs_f64()
            );
        });
    }

    // Pace the load: request i goes out at start + i * interval (or as soon as a task is
    // free, if the tasks fall behind), so the run spans the requested time.
    let interval = Duration::from_secs_f64(args.seconds / args.requests as f64);
    let next = Arc::new(AtomicUsize::new(0));
    let local = server.is_some();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let mut svc = svc.clone();
            let next = next.clone();
            let api_url = api_url.clone();
            let requests = args.requests;
            tokio::spawn(async move {
                let mut report = TaskReport::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return report;
                    }
                    tokio::time::sleep_until(start + interval * i as u32).await;
                    let t = Instant::now();
                    let outcome = one_request(&mut svc, &api_url, i, local).await;
                    report.latencies.push(t.elapsed());
                    match outcome {
                        Ok(()) => report.succeeded += 1,
                        Err(e) => report.failures.push(format!("request {i}: {e}")),
                    }
                }
            })
        })
        .collect();

    let mut latencies = Vec::with_capacity(args.requests);
    let mut succeeded = 0;
    let mut failures = Vec::new();
    for task in tasks {
        match task.await {
            Ok(report) => {
                latencies.extend(report.latencies);
                succeeded += report.succeeded;
                failures.extend(report.failures);
            }
            Err(e) => failures.push(format!("task panicked: {e}")),
        }
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Release);
    let distinct_tokens = watcher.await.unwrap_or(0);

    latencies.sort_unstable();
    let sent = latencies.len();
    println!();
    println!("requests sent          {sent}");
    println!("succeeded              {succeeded}");
    println!("failed                 {}", failures.len());
    for f in failures.iter().take(5) {
        println!("  {f}");
    }
    if failures.len() > 5 {
        println!("  ... and {} more", failures.len() - 5);
    }
    println!("distinct tokens used   {distinct_tokens} (seen in the client's cache)");
    let mut ok = failures.is_empty() && succeeded == args.requests;
    if let Some(server) = &server {
        let stats = server.api_stats();
        let without_valid = stats.invalid_without_revocation();
        println!(
            "token requests         {} (server)",
            server.token_requests()
        );
        println!("API requests accepted  {} (server)", stats.accepted);
        println!(
            "without a valid token  {without_valid} (server: {} no token, {} unknown, {} expired)",
            stats.missing, stats.unknown, stats.expired
        );
        if args.revoke {
            println!(
                "401 after revocation   {} (server; each replayed with a new token)",
                stats.revoked
            );
        }
        ok &= without_valid == 0 && (args.revoke || stats.revoked == 0);
    }
    println!(
        "latency p50 / p99      {} / {} (max {})",
        fmt_ms(percentile(&latencies, 50.0)),
        fmt_ms(percentile(&latencies, 99.0)),
        fmt_ms(latencies.last().copied().unwrap_or_default()),
    );
    println!(
        "elapsed                {:.2} s ({:.0} requests/s)",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    #[cfg(feature = "metrics")]
    metrics_summary::print(&metrics);
    println!(
        "result                 {}",
        if ok { "OK" } else { "FAILED" }
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Sends request `i`. Against the in-process server, every fourth request is a POST whose
/// echoed body is checked; other requests are GETs.
async fn one_request<S>(svc: &mut S, api_url: &str, i: usize, local: bool) -> Result<(), BoxError>
where
    S: Service<
            http::Request<Full<Bytes>>,
            Response = http::Response<hyper::body::Incoming>,
            Error = BoxError,
        >,
{
    let post = local && i.is_multiple_of(4);
    let payload = Bytes::from(format!("{{\"request\":{i}}}"));
    let request = if post {
        http::Request::post(format!("{api_url}/echo"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(payload.clone()))?
    } else if local {
        http::Request::get(format!("{api_url}/items/{i}")).body(Full::default())?
    } else {
        http::Request::get(api_url).body(Full::default())?
    };
    let response = svc.ready().await?.call(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP {status}").into());
    }
    if post && body != payload {
        return Err("echoed body differs from the one sent".into());
    }
    Ok(())
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// With `--features metrics`: the crate's metrics of the run, from metrics-util's debugging
/// recorder (a real service installs a Prometheus or OpenTelemetry exporter instead).
#[cfg(feature = "metrics")]
mod metrics_summary {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    pub fn install() -> Snapshotter {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder).expect("the demo's only recorder");
        snapshotter
    }

    pub fn print(snapshotter: &Snapshotter) {
        println!("metrics (feature `metrics`):");
        let mut rows: Vec<(String, String)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                let value = match value {
                    DebugValue::Counter(n) => n.to_string(),
                    DebugValue::Gauge(g) => format!("{:.0}", g.into_inner()),
                    DebugValue::Histogram(h) => {
                        let mean =
                            h.iter().map(|v| v.into_inner()).sum::<f64>() / h.len().max(1) as f64;
                        format!("{} samples, mean {:.1} ms", h.len(), mean * 1e3)
                    }
                };
                (format!("  {}{{{}}}", key.name(), labels.join(",")), value)
            })
            .collect();
        rows.sort();
        for (name, value) in rows {
            println!("{name:<86} {value}");
        }
    }
}
