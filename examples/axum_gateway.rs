//! An axum gateway that forwards `/api/*` to an upstream API, streaming the request body
//! through, with the upstream client wrapped in `OAuthLayer`.
//!
//! ```text
//! cargo run --example axum_gateway            # starts everything, sends a few requests, exits
//! cargo run --example axum_gateway -- --serve # keeps the gateway running for curl
//! ```
//!
//! Three servers run in this process, on loopback: the test authorization server of
//! `tests/support/auth_server.rs` (token endpoint), a fake upstream API that accepts only
//! tokens from it and tells what it received, and the gateway. The gateway's clients
//! authenticate to the gateway in their own way (here, a session token in
//! `Authorization`); the gateway authenticates to the upstream with its own
//! client-credentials token. So the layer is built with `overwrite_authorization()`: it
//! replaces the client's `Authorization` with its own token (by default a request that
//! carries its own `Authorization` is sent as it is, which would forward the client's
//! credentials). Before forwarding, the gateway drops `Cookie` and the hop-by-hop headers
//! of RFC 9110 section 7.6.1. The upstream's answers show that it never sees the client's
//! header.
//!
//! Small bodies are buffered so that an upstream 401 is replayed: `BufferBodyLayer` above
//! the layer reads bodies of up to 16 KiB into memory; after the upstream's tokens are
//! revoked, a `POST` with a JSON body is sent again with a new token and succeeds. Larger
//! bodies are streamed, not buffered: the example's client sends a 64 KiB upload (its
//! `content-length` says so, so the buffer passes it through at once) in chunks, each chunk
//! after the first only once the upstream has received the first one. A gateway that held
//! the body back would never let the first chunk through, and the upload would fail.
//!
//! `/obo/*` is the on-behalf-of route (RFC 8693 token exchange): there the caller's
//! `Authorization: Bearer` is the subject token. `SubjectTokenLayer` takes it out of the
//! request, and `on_behalf_of` exchanges it for a token of the upstream's, one per caller
//! (keyed by a SHA-256 of the caller's token, at most 1,000 callers held), kept until it
//! expires. Two callers never get each other's token; a request without a bearer token is
//! refused with 401 and nothing is sent upstream.
#[path = "../tests/support/auth_server.rs"]
mod auth_server;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_oauth::body::{BufferBody, BufferBodyLayer, ReplayBody};
use tower_oauth::oauth::on_behalf_of::{SubjectTokenLayer, on_behalf_of};
use tower_oauth::{ClientCredentials, OAuth, OAuthLayer};

use auth_server::{AuthServer, AuthServerConfig};

/// What the gateway's own client sends: its session with the gateway, not for upstream.
const CLIENT_AUTHORIZATION: &str = "Bearer users-own-session-token";

/// The gateway: its upstream base URL and the OAuth-wrapped client to reach it.
#[derive(Clone)]
struct Gateway {
    upstream: String,
    client: BufferBody<OAuth<Client<HttpConnector, ReplayBody>>>,
    /// `/obo/*`: the caller's token exchanged for one of the upstream's.
    on_behalf_of:
        BoxCloneSyncService<http::Request<Body>, http::Response<hyper::body::Incoming>, BoxError>,
}

/// Headers that describe the client's connection or the client itself, not the request
/// the gateway makes: hop-by-hop (RFC 9110 section 7.6.1), `Host` (the client sets it from
/// the URI), and the client's cookies. The client's `Authorization` is replaced by the layer
/// (`overwrite_authorization`).
const DROPPED: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::COOKIE,
];

fn strip(headers: &mut HeaderMap) {
    for name in DROPPED {
        headers.remove(name);
    }
}

/// `/api/<rest>` -> `<upstream>/<rest>`, body streamed both ways.
async fn forward(State(gateway): State<Gateway>, req: Request) -> Response {
    let client = gateway.client.clone();
    relay(&gateway, "/api", req, |request| client.oneshot(request)).await
}

/// `/obo/<rest>` -> `<upstream>/<rest>` with a token exchanged for the caller's.
async fn forward_on_behalf_of(State(gateway): State<Gateway>, req: Request) -> Response {
    let client = gateway.on_behalf_of.clone();
    relay(&gateway, "/obo", req, |request| client.oneshot(request)).await
}

async fn relay<B, F, Fut>(gateway: &Gateway, prefix: &str, req: Request, send: F) -> Response
where
    F: FnOnce(http::Request<Body>) -> Fut,
    Fut: Future<Output = Result<http::Response<B>, BoxError>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    let rest = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .strip_prefix(prefix)
        .unwrap_or("/");
    let Ok(uri) = format!("{}{rest}", gateway.upstream).parse::<Uri>() else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    strip(&mut parts.headers);
    let request = http::Request::from_parts(parts, body);

    match send(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip(&mut parts.headers);
            Response::from_parts(parts, Body::new(body.map_err(Into::into)))
        }
        // On /obo: the caller sent no bearer token to act for.
        Err(e)
            if e.downcast_ref::<tower_oauth::Error>()
                .is_some_and(|e| e.is_missing_key()) =>
        {
            (StatusCode::UNAUTHORIZED, "a bearer token is required").into_response()
        }
        // On /obo: the authorization server refused the caller's token.
        Err(e)
            if e.downcast_ref::<tower_oauth::Error>()
                .and_then(|e| e.token_endpoint_error())
                .is_some_and(|rfc| rfc.error() == "invalid_grant") =>
        {
            (
                StatusCode::UNAUTHORIZED,
                "the caller's token is not accepted",
            )
                .into_response()
        }
        // No token for the upstream: say so, without the details (they are logged).
        Err(e) if e.downcast_ref::<tower_oauth::Error>().is_some() => {
            eprintln!("gateway: no upstream token: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream credentials unavailable",
            )
                .into_response()
        }
        Err(e) => {
            eprintln!("gateway: upstream failed: {e}");
            (StatusCode::BAD_GATEWAY, "upstream unreachable").into_response()
        }
    }
}

/// `/healthz`: 200 while the gateway holds a valid upstream token, 503 otherwise (before the
/// first token, or once the held one expired because refreshes failed). No token in it.
fn healthz(cache: &tower_oauth::TokenCache) -> (StatusCode, String) {
    let status = cache.status();
    let seconds_left = status
        .valid_until()
        .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
        .map_or(0, |d| d.as_secs());
    let body = format!(
        "valid_token={} seconds_left={seconds_left} failures_in_a_row={} last_error={}\n",
        status.has_valid_token(),
        status.failures_in_a_row(),
        status
            .last_error()
            .map_or_else(|| "none".to_owned(), |e| e.to_string()),
    );
    if status.has_valid_token() {
        (StatusCode::OK, body)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

async fn start_gateway(upstream: String, token_source: ClientCredentials) -> SocketAddr {
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody>();
    // A gateway must never forward its caller's `Authorization`: the layer overwrites it.
    let oauth = OAuthLayer::builder(token_source.clone())
        .overwrite_authorization()
        .build();
    let cache = oauth.cache().clone();
    let on_behalf_of = ServiceBuilder::new()
        .layer(BoxCloneSyncService::layer())
        .layer(BufferBodyLayer::new(16 * 1024))
        .layer(SubjectTokenLayer::new())
        .layer(on_behalf_of(token_source))
        .service(client.clone());
    let gateway = Gateway {
        upstream,
        on_behalf_of,
        // Bodies of up to 16 KiB are kept, so a request the upstream answers 401 to is
        // sent again with a new token; larger ones stream through.
        client: ServiceBuilder::new()
            .layer(BufferBodyLayer::new(16 * 1024))
            .layer(oauth)
            .service(client),
    };
    let app = Router::new()
        .route("/api/{*rest}", any(forward))
        .route("/obo/{*rest}", any(forward_on_behalf_of))
        .route(
            "/healthz",
            get(move || {
                let cache = cache.clone();
                async move { healthz(&cache) }
            }),
        )
        .with_state(gateway);
    serve(app).await
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The fake upstream: what it was sent, and whether the token is one the authorization
/// server issued.
#[derive(Clone)]
struct Upstream {
    auth: Arc<AuthServer>,
    first_chunk: Arc<Notify>,
}

fn who(upstream: &Upstream, headers: &HeaderMap) -> serde_json::Value {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = authorization.and_then(|v| v.strip_prefix("Bearer "));
    serde_json::json!({
        // A token exchanged on behalf of a caller: that caller's token (demo tokens only).
        "on_behalf_of": token.and_then(|t| upstream.auth.subject_of(t)),
        "clients_authorization_forwarded": authorization == Some(CLIENT_AUTHORIZATION),
        "valid_token_from_the_authorization_server":
            token.is_some_and(|t| upstream.auth.is_valid(t)),
        "cookie_forwarded": headers.contains_key(header::COOKIE),
    })
}

async fn whoami(State(upstream): State<Upstream>, headers: HeaderMap) -> Response {
    let body = who(&upstream, &headers);
    if body["valid_token_from_the_authorization_server"] != true {
        return (StatusCode::UNAUTHORIZED, body.to_string()).into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Reads the upload frame by frame, as it arrives.
async fn upload(State(upstream): State<Upstream>, headers: HeaderMap, body: Body) -> Response {
    let mut who = who(&upstream, &headers);
    if who["valid_token_from_the_authorization_server"] != true {
        return (StatusCode::UNAUTHORIZED, who.to_string()).into_response();
    }
    let mut body = body;
    let (mut bytes, mut frames) = (0usize, 0usize);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return (StatusCode::BAD_REQUEST, "body failed").into_response();
        };
        if let Some(data) = frame.data_ref() {
            if frames == 0 {
                upstream.first_chunk.notify_one();
            }
            bytes += data.len();
            frames += 1;
        }
    }
    who["bytes"] = bytes.into();
    who["frames"] = frames.into();
    (
        [(header::CONTENT_TYPE, "application/json")],
        who.to_string(),
    )
        .into_response()
}

/// A streamed upload: `chunks` chunks of `size` bytes; each after the first waits until
/// the upstream has the first one.
fn streamed_upload(
    chunks: usize,
    size: usize,
    first_arrived: Arc<Notify>,
) -> UnsyncBoxBody<Bytes, BoxError> {
    let stream = futures_util::stream::unfold(0, move |i| {
        let first_arrived = first_arrived.clone();
        async move {
            if i == chunks {
                return None;
            }
            if i == 1 {
                let wait = tokio::time::timeout(Duration::from_secs(5), first_arrived.notified());
                if wait.await.is_err() {
                    let err: BoxError =
                        "the upstream did not get the first chunk: the gateway buffers".into();
                    return Some((Err(err), chunks));
                }
            }
            let frame = Frame::data(Bytes::from(vec![b'a' + i as u8; size]));
            Some((Ok(frame), i + 1))
        }
    });
    StreamBody::new(stream).boxed_unsync()
}

#[tokio::main]
async fn main() -> ExitCode {
    let serve_forever = std::env::args().any(|a| a == "--serve");

    let auth = Arc::new(
        AuthServer::start(AuthServerConfig {
            client_id: "gateway".into(),
            client_secret: "gateway-secret".into(),
            ..Default::default()
        })
        .await,
    );
    let first_chunk = Arc::new(Notify::new());
    let upstream = serve(
        Router::new()
            .route("/whoami", get(whoami).post(whoami))
            .route("/upload", post(upload))
            .with_state(Upstream {
                auth: auth.clone(),
                first_chunk: first_chunk.clone(),
            }),
    )
    .await;
    let source = ClientCredentials::builder()
        .token_url(auth.token_url())
        .client_id("gateway")
        .client_secret("gateway-secret")
        .build()
        .expect("valid configuration");
    let gateway = start_gateway(format!("http://{upstream}"), source).await;
    println!(
        "gateway http://{gateway}/api/* -> upstream http://{upstream} (tokens from {})",
        auth.token_url()
    );

    if serve_forever {
        println!("try: curl -s -H 'Authorization: Bearer mine' http://{gateway}/api/whoami");
        println!("     curl -s -T Cargo.lock http://{gateway}/api/upload");
        let _ = tokio::signal::ctrl_c().await;
        return ExitCode::SUCCESS;
    }

    match exercise(gateway, first_chunk, &auth).await {
        Ok(()) if auth.token_requests() == 4 => {
            println!(
                "token requests         4 (the first, one after the revocation, one exchange for each of 2 callers)"
            );
            println!("result                 OK");
            ExitCode::SUCCESS
        }
        Ok(()) => {
            println!(
                "result                 FAILED: {} token requests",
                auth.token_requests()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            println!("result                 FAILED: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Acts as the gateway's client and checks what the upstream reports.
async fn exercise(
    gateway: SocketAddr,
    first_chunk: Arc<Notify>,
    auth: &AuthServer,
) -> Result<(), BoxError> {
    let client =
        Client::builder(TokioExecutor::new()).build_http::<UnsyncBoxBody<Bytes, BoxError>>();
    let empty = || {
        http_body_util::Empty::<Bytes>::new()
            .map_err(BoxError::from)
            .boxed_unsync()
    };
    let full = |text: &'static str| {
        http_body_util::Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(BoxError::from)
            .boxed_unsync()
    };

    // 0. Before the first upstream call no token is held: /healthz says 503.
    let request = http::Request::get(format!("http://{gateway}/healthz")).body(empty())?;
    let (status, body) = send(&client, request).await?;
    println!(
        "GET  /healthz     before any upstream call\n  -> {status} {}",
        body.trim()
    );
    if status != StatusCode::SERVICE_UNAVAILABLE {
        return Err("/healthz should be 503 before the first token".into());
    }

    // 1. The client's own Authorization and Cookie do not reach the upstream.
    let request = http::Request::get(format!("http://{gateway}/api/whoami"))
        .header(header::AUTHORIZATION, CLIENT_AUTHORIZATION)
        .header(header::COOKIE, "session=abc")
        .body(empty())?;
    let (status, body) = send(&client, request).await?;
    println!(
        "GET  /api/whoami  with the client's own Authorization and Cookie\n  -> {status} {body}"
    );
    let body: serde_json::Value = serde_json::from_str(&body)?;
    if status != StatusCode::OK
        || body["clients_authorization_forwarded"] != false
        || body["cookie_forwarded"] != false
        || body["valid_token_from_the_authorization_server"] != true
    {
        return Err("the upstream saw the client's credentials or no valid token".into());
    }

    // 2. An upload streamed through, chunk by chunk.
    let (chunks, size) = (4, 16 * 1024);
    let request = http::Request::post(format!("http://{gateway}/api/upload"))
        .header(header::AUTHORIZATION, CLIENT_AUTHORIZATION)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )
        .header(header::CONTENT_LENGTH, chunks * size)
        .body(streamed_upload(chunks, size, first_chunk))?;
    let (status, body) = send(&client, request).await?;
    println!(
        "POST /api/upload  {} bytes in {chunks} chunks, chunk 2 sent only once the upstream has chunk 1\n  -> {status} {body}",
        chunks * size
    );
    let body: serde_json::Value = serde_json::from_str(&body)?;
    if status != StatusCode::OK
        || body["bytes"] != chunks * size
        || body["clients_authorization_forwarded"] != false
    {
        return Err("the upload did not arrive whole".into());
    }

    // 3. The upstream's tokens are revoked: the next POST gets a 401 upstream, and the
    //    gateway sends it again (its body was buffered) with a new token.
    auth.revoke_all();
    let request = http::Request::post(format!("http://{gateway}/api/whoami"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(r#"{"order":42}"#))?;
    let (status, body) = send(&client, request).await?;
    println!("POST /api/whoami  after the upstream's tokens were revoked\n  -> {status} {body}");
    if status != StatusCode::OK {
        return Err("the 401 after the revocation was not replayed".into());
    }

    // 4. On behalf of two callers: each gets a token exchanged for its own, once.
    for round in 0..2 {
        for caller in ["alice-session", "bob-session"] {
            let request = http::Request::get(format!("http://{gateway}/obo/whoami"))
                .header(header::AUTHORIZATION, format!("Bearer {caller}"))
                .body(empty())?;
            let (status, body) = send(&client, request).await?;
            println!("GET  /obo/whoami  as {caller} (round {round})\n  -> {status} {body}");
            let body: serde_json::Value = serde_json::from_str(&body)?;
            if status != StatusCode::OK || body["on_behalf_of"] != caller {
                return Err("the upstream did not get a token exchanged for this caller".into());
            }
        }
    }
    let request = http::Request::get(format!("http://{gateway}/obo/whoami")).body(empty())?;
    let (status, _) = send(&client, request).await?;
    println!("GET  /obo/whoami  without a bearer token -> {status}");
    if status != StatusCode::UNAUTHORIZED {
        return Err("a request without a caller's token was not refused".into());
    }

    // 5. Only /api/* and /obo/* are forwarded.
    let request = http::Request::get(format!("http://{gateway}/elsewhere")).body(empty())?;
    let (status, _) = send(&client, request).await?;
    println!("GET  /elsewhere  -> {status} (not forwarded)");
    if status != StatusCode::NOT_FOUND {
        return Err("a path outside /api was forwarded".into());
    }
    // Last: a valid token is held now, /healthz says 200.
    let request = http::Request::get(format!("http://{gateway}/healthz")).body(empty())?;
    let (status, body) = send(&client, request).await?;
    println!(
        "GET  /healthz     after the calls\n  -> {status} {}",
        body.trim()
    );
    if status != StatusCode::OK {
        return Err("/healthz should be 200 with a valid token".into());
    }

    Ok(())
}

async fn send(
    client: &Client<HttpConnector, UnsyncBoxBody<Bytes, BoxError>>,
    request: http::Request<UnsyncBoxBody<Bytes, BoxError>>,
) -> Result<(StatusCode, String), BoxError> {
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
