//! A protected API that checks every bearer token by introspection (RFC 7662) at an
//! authorization server: the resource server for running `examples/demo.rs` against a
//! real authorization server, such as the interop provider of `tests/interop/`.
//!
//! ```text
//! cargo run --example introspection_api -- --issuer http://127.0.0.1:9876 [--listen 127.0.0.1:9877]
//! ```
//!
//! It finds the introspection endpoint in the issuer's metadata (RFC 8414), introspects as
//! the client `api` (`--client-id`; secret from `API_CLIENT_SECRET`, default `api-secret`,
//! as `tests/interop/provider.mjs` registers it), prints `API http://<addr>/api` once it
//! listens, and serves until Ctrl-C or SIGTERM, then prints what it answered. Every
//! request to `/api` or `/api/*` gets `200` for an active token, `401` with
//! `WWW-Authenticate: Bearer error="invalid_token"` otherwise. See
//! `tests/interop/README.md` for the whole demo.
#[path = "../tests/support/introspection_api.rs"]
mod introspection_api;

use std::net::SocketAddr;
use std::process::ExitCode;

use tower_oauth::endpoint::AuthorizationServerMetadata;

use introspection_api::IntrospectionApi;

const USAGE: &str = "usage: introspection_api --issuer URL [--listen ADDR] [--client-id ID]
  the introspection client's secret comes from API_CLIENT_SECRET (default api-secret)";

#[tokio::main]
async fn main() -> ExitCode {
    let mut issuer = None;
    let mut listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut client_id = "api".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--issuer", Some(v)) => issuer = Some(v),
            ("--listen", Some(v)) => match v.parse() {
                Ok(addr) => listen = addr,
                Err(_) => return usage(&format!("--listen: not an address: {v}")),
            },
            ("--client-id", Some(v)) => client_id = v,
            _ => return usage(&format!("unexpected argument {flag}")),
        }
    }
    let Some(issuer) = issuer else {
        return usage("--issuer is required");
    };
    let secret = std::env::var("API_CLIENT_SECRET").unwrap_or_else(|_| "api-secret".into());

    // The authorization server may still be starting: try for up to 10 seconds.
    let http = reqwest::Client::new();
    let mut attempts = 0;
    let metadata = loop {
        match AuthorizationServerMetadata::fetch(&http, &issuer).await {
            Ok(metadata) => break metadata,
            Err(e) if attempts < 20 && !e.is_config() => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => {
                let cause = std::error::Error::source(&e)
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                eprintln!("error: {e}{cause}");
                return ExitCode::FAILURE;
            }
        }
    };
    let Some(introspection) = metadata.get_str("introspection_endpoint") else {
        eprintln!("error: {issuer} has no introspection_endpoint in its metadata");
        return ExitCode::FAILURE;
    };
    let api = IntrospectionApi::start_on(listen, introspection, (&client_id, &secret)).await;
    println!("API {}", api.url());
    eprintln!("introspecting at {introspection} as {client_id}");

    shutdown().await;
    eprintln!(
        "API answered {} requests: {} accepted, {} rejected (inactive token), {} without a token, {} introspection errors",
        api.requests(),
        api.accepted(),
        api.rejected(),
        api.missing(),
        api.errors()
    );
    ExitCode::SUCCESS
}

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}\n{USAGE}");
    ExitCode::from(2)
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
