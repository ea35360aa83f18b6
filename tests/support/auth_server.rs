//! In-process OAuth 2.0 authorization server and protected API for tests and
//! the demo.
//!
//! Integration tests reach it as `support::auth_server` (`mod support;`); an
//! example includes this file alone, with
//! `#[path = "../tests/support/auth_server.rs"] mod auth_server;`, so it
//! depends on nothing else in `tests/support`.
//!
//! The server listens on `127.0.0.1:<random port>` and serves:
//!
//! * `POST /token`: the token endpoint for the client-credentials grant
//!   (RFC 6749 §4.4), with client authentication by `client_secret_basic` or
//!   `client_secret_post` (RFC 6749 §2.3.1).
//! * `GET|POST /api` and `/api/*`: a resource server that accepts bearer
//!   tokens (RFC 6750) issued by the token endpoint. `GET` answers a short
//!   text, `POST` echoes the request body.
//!
//! Everything is observable (requests counted and recorded) and steerable at
//! run time (revoke tokens, make the token endpoint fail). Time is measured
//! with [`tokio::time::Instant`] and the optional token-endpoint delay uses
//! [`tokio::time::sleep`], so tests on a paused clock
//! (`#[tokio::test(start_paused = true)]`, current-thread runtime) can step
//! through token lifetimes and delays without waiting. A paused clock
//! auto-advances whenever the runtime is idle, also while it waits for socket
//! I/O, so keep client-side timeouts in such tests well above the delay.
//!
//! No input from the client makes a handler panic: malformed requests get
//! `400 {"error":"invalid_request"}`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
#[path = "assertion_check.rs"]
pub mod assertion_check;

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How the server configures a run. Build it with struct update syntax on
/// [`AuthServerConfig::default()`].
#[derive(Debug, Clone)]
pub struct AuthServerConfig {
    /// The only client the server knows.
    pub client_id: String,
    /// That client's secret.
    pub client_secret: String,
    /// Other secrets the client may authenticate with too, as during a secret rotation.
    pub extra_secrets: Vec<String>,
    /// Lifetime of issued tokens in seconds; also sent as `expires_in`.
    pub expires_in: u64,
    /// Whether the token response carries `expires_in` (it is only
    /// RECOMMENDED by RFC 6749 §5.1). Tokens still expire server-side.
    pub send_expires_in: bool,
    /// Scopes the client may ask for. Empty: any scope is accepted.
    pub scopes: Vec<String>,
    /// Wait this long (on tokio's clock) before answering a token request.
    pub token_delay: Duration,
    /// How the token endpoint answers; see [`FailureMode`].
    pub failure: FailureMode,
    /// A `Retry-After` header value (seconds or an HTTP-date) sent with every injected
    /// failure (see [`FailureMode`]). `None`: no header.
    pub retry_after: Option<String>,
    /// Public JWKs the client may sign `private_key_jwt` assertions with (RFC 7523). Empty:
    /// only `client_secret_jwt` assertions (HS256 with `client_secret`) are accepted.
    pub assertion_keys: Vec<serde_json::Value>,
    /// The `aud` assertions must carry. `None`: the token URL.
    pub assertion_audience: Option<String>,
}

impl Default for AuthServerConfig {
    fn default() -> Self {
        Self {
            client_id: "demo".into(),
            client_secret: "demo-secret".into(),
            extra_secrets: Vec::new(),
            expires_in: 3600,
            send_expires_in: true,
            scopes: Vec::new(),
            token_delay: Duration::ZERO,
            failure: FailureMode::None,
            retry_after: None,
            assertion_keys: Vec::new(),
            assertion_audience: None,
        }
    }
}

/// A way for the token endpoint to fail, whatever the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Answer normally.
    None,
    /// `400 {"error":"invalid_client",...}` as a misconfigured server would.
    InvalidClient,
    /// `503` with `{"error":"temporarily_unavailable",...}`.
    TemporarilyUnavailable,
    /// `500` with an HTML body, as a broken proxy in front of the server would.
    ServerErrorHtml,
    /// `200` with a body that is not JSON.
    MalformedJson,
    /// `429` with a plain-text body, as a rate-limiting proxy would.
    TooManyRequests,
}

/// How a token request authenticated the client (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `Authorization: Basic ...` header.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A `client_assertion` JWT (RFC 7523 section 2.2), signed with a key or the secret.
    Assertion,
}

/// One request to `POST /token`, as the server saw it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// Client authentication used, if one could be told apart.
    pub auth_method: Option<AuthMethod>,
    /// Client id presented (from the Basic header or the body).
    pub client_id: Option<String>,
    /// Form parameters in order, `client_secret` left out.
    pub params: Vec<(String, String)>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The status the server answered with.
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
    /// The client assertion, if one was sent and it checked out.
    pub assertion: Option<assertion_check::AssertionSeen>,
}

impl TokenRequest {
    /// The value of form parameter `name`, if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Counts of requests to the protected API, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiStats {
    /// Requests with a valid token (answered 200).
    pub accepted: usize,
    /// No `Authorization: Bearer` header, or a malformed one.
    pub missing: usize,
    /// A bearer token the server never issued.
    pub unknown: usize,
    /// A token past its expiry.
    pub expired: usize,
    /// A revoked token.
    pub revoked: usize,
}

impl ApiStats {
    /// All requests rejected with 401.
    pub fn rejected(&self) -> usize {
        self.missing + self.unknown + self.expired + self.revoked
    }

    /// Requests that reached the API without any token the server could ever
    /// have accepted: no token, an unknown one or an expired one. Revoked
    /// tokens are left out, since a client cannot know of a revocation before
    /// it is told with a 401.
    pub fn invalid_without_revocation(&self) -> usize {
        self.missing + self.unknown + self.expired
    }
}

/// A running test server. Dropping it stops the server.
pub struct AuthServer {
    addr: SocketAddr,
    state: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    config: AuthServerConfig,
    token_url: String,
    inner: Mutex<Inner>,
}

struct Inner {
    failure: FailureMode,
    /// `Some(n)`: `failure` applies to the next `n` token requests only.
    failure_remaining: Option<usize>,
    token_requests: usize,
    token_in_flight: usize,
    token_max_in_flight: usize,
    records: Vec<TokenRequest>,
    tokens: HashMap<String, IssuedToken>,
    issued: usize,
    api: ApiStats,
    jtis: std::collections::HashSet<String>,
}

struct IssuedToken {
    /// The `subject_token` of a token exchange (RFC 8693) it was issued for.
    subject: Option<String>,
    expires_at: Instant,
    revoked: bool,
    api_requests: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the state from the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AuthServer {
    /// Binds `127.0.0.1:0` and serves in a spawned task.
    ///
    /// # Panics
    /// If the loopback listener cannot be bound.
    pub async fn start(config: AuthServerConfig) -> AuthServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let state = Arc::new(Shared {
            inner: Mutex::new(Inner {
                failure: config.failure,
                failure_remaining: None,
                token_requests: 0,
                token_in_flight: 0,
                token_max_in_flight: 0,
                records: Vec::new(),
                tokens: HashMap::new(),
                issued: 0,
                api: ApiStats::default(),
                jtis: std::collections::HashSet::new(),
            }),
            token_url: format!("http://{addr}/token"),
            config,
        });
        let app = Router::new()
            .route("/token", post(token_endpoint))
            .route("/api", any(api_endpoint))
            .route("/api/{*rest}", any(api_endpoint))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        AuthServer { addr, state, task }
    }

    /// Starts a server with the default configuration.
    pub async fn start_default() -> AuthServer {
        Self::start(AuthServerConfig::default()).await
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/token`.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// `http://127.0.0.1:<port>/api`, the base of the protected API; any
    /// path below it is served.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The configuration the server was started with.
    pub fn config(&self) -> &AuthServerConfig {
        &self.state.config
    }

    /// Token requests received so far, counted on arrival (before the
    /// configured delay), whatever their outcome.
    pub fn token_requests(&self) -> usize {
        self.state.lock().token_requests
    }

    /// The largest number of token requests being handled at once so far.
    /// 1 means the client never had two token requests in flight.
    pub fn max_concurrent_token_requests(&self) -> usize {
        self.state.lock().token_max_in_flight
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.state.lock().issued
    }

    /// Every completed token request, oldest first.
    pub fn token_request_log(&self) -> Vec<TokenRequest> {
        self.state.lock().records.clone()
    }

    /// The most recently completed token request.
    pub fn last_token_request(&self) -> Option<TokenRequest> {
        self.state.lock().records.last().cloned()
    }

    /// Makes every later token request answer with `mode`
    /// ([`FailureMode::None`] restores normal service).
    pub fn set_failure(&self, mode: FailureMode) {
        let mut inner = self.state.lock();
        inner.failure = mode;
        inner.failure_remaining = None;
    }

    /// Makes the next `n` token requests answer with `mode`, then serves
    /// normally again.
    pub fn fail_next(&self, n: usize, mode: FailureMode) {
        let mut inner = self.state.lock();
        inner.failure = mode;
        inner.failure_remaining = Some(n);
    }

    /// Revokes one token. Returns whether the server had issued it.
    pub fn revoke(&self, token: &str) -> bool {
        match self.state.lock().tokens.get_mut(token) {
            Some(t) => {
                t.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Revokes every token issued so far.
    pub fn revoke_all(&self) {
        for t in self.state.lock().tokens.values_mut() {
            t.revoked = true;
        }
    }

    /// Counts of protected-API requests by outcome.
    pub fn api_stats(&self) -> ApiStats {
        self.state.lock().api
    }

    /// API requests that carried `token`, accepted or not (0 if unknown).
    pub fn api_requests_with(&self, token: &str) -> usize {
        self.state
            .lock()
            .tokens
            .get(token)
            .map_or(0, |t| t.api_requests)
    }

    /// Whether `token` would be accepted by the API right now.
    /// The subject token a token was exchanged for (RFC 8693), if it was.
    pub fn subject_of(&self, token: &str) -> Option<String> {
        self.state
            .lock()
            .tokens
            .get(token)
            .and_then(|t| t.subject.clone())
    }

    pub fn is_valid(&self, token: &str) -> bool {
        let now = Instant::now();
        self.state
            .lock()
            .tokens
            .get(token)
            .is_some_and(|t| !t.revoked && now < t.expires_at)
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// Token endpoint
// ---------------------------------------------------------------------------

/// Decrements the in-flight counter even if the handler future is dropped.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().token_in_flight -= 1;
    }
}

async fn token_endpoint(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let failure = {
        let mut inner = state.lock();
        inner.token_requests += 1;
        inner.token_in_flight += 1;
        inner.token_max_in_flight = inner.token_max_in_flight.max(inner.token_in_flight);
        let failure = inner.failure;
        if let Some(n) = inner.failure_remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.failure = FailureMode::None;
                inner.failure_remaining = None;
            }
        }
        failure
    };
    let _guard = InFlight(state.clone());
    if !state.config.token_delay.is_zero() {
        tokio::time::sleep(state.config.token_delay).await;
    }

    let mut record = TokenRequest {
        auth_method: None,
        client_id: None,
        params: Vec::new(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        status: 0,
        at: arrived,
        assertion: None,
    };
    let response = token_response(&state, &headers, &body, failure, &mut record);
    record.status = response.status().as_u16();
    state.lock().records.push(record);
    response
}

fn token_response(
    state: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    failure: FailureMode,
    record: &mut TokenRequest,
) -> Response {
    let config = &state.config;

    // Parse what we can first so that even failing requests are recorded.
    let form_content = record
        .content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| {
            ct.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let params = match parse_form(body) {
        Some(p) => p,
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "bad form body"),
    };
    record.params = params
        .iter()
        .filter(|(k, _)| k != "client_secret")
        .cloned()
        .collect();

    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => match v.to_str().ok().and_then(decode_basic) {
            Some(creds) => Some(creds),
            None => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "malformed Authorization header",
                );
            }
        },
    };
    let body_id = single(&params, "client_id");
    let body_secret = single(&params, "client_secret");
    if let Some(assertion) = single(&params, "client_assertion") {
        record.auth_method = Some(AuthMethod::Assertion);
        record.client_id = body_id.map(str::to_owned);
        if basic.is_some() || body_secret.is_some() {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "more than one client authentication method",
            );
        }
        if single(&params, "client_assertion_type")
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_assertion_type must be jwt-bearer",
            );
        }
        if failure == FailureMode::InvalidClient {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                "failure injected by the test server",
            );
        }
        let audience = config
            .assertion_audience
            .clone()
            .unwrap_or_else(|| state.token_url.clone());
        let checked = {
            let mut inner = state.lock();
            assertion_check::check(
                assertion,
                &config.client_id,
                &audience,
                &config.assertion_keys,
                &config.client_secret,
                &mut inner.jtis,
            )
        };
        match checked {
            Ok(seen) if body_id.is_none_or(|id| id == config.client_id) => {
                record.assertion = Some(seen);
                return issue_after_auth(state, &params, record);
            }
            Ok(_) => {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client_id differs from the assertion",
                );
            }
            Err(reason) => {
                return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", reason);
            }
        }
    }
    let (method, id, secret) = match (basic, body_secret) {
        (Some(_), Some(_)) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "more than one client authentication method",
            );
        }
        (Some((id, secret)), None) => {
            if body_id.is_some_and(|b| b != id) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "client_id in body differs from Authorization header",
                );
            }
            (Some(AuthMethod::ClientSecretBasic), Some(id), Some(secret))
        }
        (None, Some(secret)) => (
            Some(AuthMethod::ClientSecretPost),
            body_id.map(str::to_owned),
            Some(secret.to_owned()),
        ),
        (None, None) => (None, body_id.map(str::to_owned), None),
    };
    record.auth_method = method;
    record.client_id = id.clone();

    match failure {
        FailureMode::None => {}
        FailureMode::InvalidClient => {
            let mut response = oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                "failure injected by the test server",
            );
            with_retry_after(&mut response, config);
            return response;
        }
        FailureMode::TemporarilyUnavailable => {
            let mut response = oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "failure injected by the test server",
            );
            with_retry_after(&mut response, config);
            return response;
        }
        FailureMode::TooManyRequests => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::CONTENT_TYPE, "text/plain")],
                "Too Many Requests",
            )
                .into_response();
            with_retry_after(&mut response, config);
            return response;
        }
        FailureMode::ServerErrorHtml => {
            let mut response = (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>500 Internal Server Error</h1></body></html>",
            )
                .into_response();
            with_retry_after(&mut response, config);
            return response;
        }
        FailureMode::MalformedJson => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"access_token\": ",
            )
                .into_response();
        }
    }

    if !form_content {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    // RFC 6749 §3.2: parameters MUST NOT be included more than once, except
    // `resource`, which RFC 8707 §2 allows to repeat.
    for (i, (k, _)) in params.iter().enumerate() {
        if k != "resource" && params[..i].iter().any(|(k2, _)| k2 == k) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "repeated parameter",
            );
        }
    }
    let authenticated = method.is_some()
        && id.as_deref() == Some(config.client_id.as_str())
        && secret.as_deref().is_some_and(|s| {
            s == config.client_secret || config.extra_secrets.iter().any(|e| e == s)
        });
    if !authenticated {
        let mut resp = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
        if method == Some(AuthMethod::ClientSecretBasic) || method.is_none() {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"token\""),
            );
        }
        return resp;
    }
    issue_after_auth(state, &params, record)
}

/// The grant, once the client is authenticated: `grant_type`, scopes, a new token.
fn issue_after_auth(
    state: &Shared,
    params: &[(String, String)],
    _record: &mut TokenRequest,
) -> Response {
    let config = &state.config;
    let mut subject = None;
    match single(params, "grant_type") {
        Some("client_credentials") => {}
        // RFC 8693 section 2.1; a subject token starting with `bad-` is refused.
        Some("urn:ietf:params:oauth:grant-type:token-exchange") => {
            let (Some(token), Some("urn:ietf:params:oauth:token-type:access_token")) = (
                single(params, "subject_token"),
                single(params, "subject_token_type"),
            ) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "subject_token and an access_token subject_token_type are required",
                );
            };
            if token.starts_with("bad-") {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the subject token is not acceptable",
                );
            }
            subject = Some(token.to_owned());
        }
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "missing grant_type",
            );
        }
    }
    let scope = single(params, "scope").map(str::to_owned);
    if let Some(scope) = &scope
        && !config.scopes.is_empty()
        && scope
            .split(' ')
            .any(|s| !config.scopes.iter().any(|ok| ok == s))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope not allowed",
        );
    }

    let token = {
        let mut inner = state.lock();
        inner.issued += 1;
        let token = random_token(inner.issued);
        inner.tokens.insert(
            token.clone(),
            IssuedToken {
                subject,
                expires_at: Instant::now() + Duration::from_secs(config.expires_in),
                revoked: false,
                api_requests: 0,
            },
        );
        token
    };
    let mut json = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
    });
    if config.send_expires_in {
        json["expires_in"] = config.expires_in.into();
    }
    let granted = scope.or_else(|| (!config.scopes.is_empty()).then(|| config.scopes.join(" ")));
    if let Some(granted) = granted {
        json["scope"] = granted.into();
    }
    json_response(StatusCode::OK, &json)
}

fn single<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn with_retry_after(response: &mut Response, config: &AuthServerConfig) {
    if let Some(value) = config
        .retry_after
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &serde_json::json!({ "error": error, "error_description": description }),
    )
}

/// JSON with the headers RFC 6749 §5.1 requires on token responses.
fn json_response(status: StatusCode, json: &serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        json.to_string(),
    )
        .into_response()
}

/// A token that is unique on this server and hard to guess across runs.
fn random_token(serial: usize) -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_usize(serial);
    format!("tok{serial}-{:016x}", h.finish())
}

// ---------------------------------------------------------------------------
// Protected API
// ---------------------------------------------------------------------------

async fn api_endpoint(
    State(state): State<Arc<Shared>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::GET && method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            let token = token.trim();
            (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
        });
    let Some(token) = bearer else {
        state.lock().api.missing += 1;
        // RFC 6750 §3.1: no error code when the request had no credentials.
        return unauthorized("Bearer realm=\"api\"");
    };

    let now = Instant::now();
    let rejection = {
        let mut inner = state.lock();
        let rejection = match inner.tokens.get_mut(token) {
            None => Some(Rejection::Unknown),
            Some(t) => {
                t.api_requests += 1;
                if t.revoked {
                    Some(Rejection::Revoked)
                } else if now >= t.expires_at {
                    Some(Rejection::Expired)
                } else {
                    None
                }
            }
        };
        let api = &mut inner.api;
        *match rejection {
            None => &mut api.accepted,
            Some(Rejection::Unknown) => &mut api.unknown,
            Some(Rejection::Revoked) => &mut api.revoked,
            Some(Rejection::Expired) => &mut api.expired,
        } += 1;
        rejection
    };
    if let Some(why) = rejection {
        let why = match why {
            Rejection::Unknown => "unknown token",
            Rejection::Revoked => "token revoked",
            Rejection::Expired => "token expired",
        };
        return unauthorized(&format!(
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"{why}\""
        ));
    }

    if method == Method::POST {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "text/plain")],
            format!("ok {}", uri.path()),
        )
            .into_response()
    }
}

enum Rejection {
    Unknown,
    Revoked,
    Expired,
}

fn unauthorized(challenge: &str) -> Response {
    let mut resp = StatusCode::UNAUTHORIZED.into_response();
    if let Ok(v) = HeaderValue::from_str(challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

// ---------------------------------------------------------------------------
// Encoding helpers, on the `base64`, `form_urlencoded` and `percent-encoding` crates
// ---------------------------------------------------------------------------

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// The `Authorization` header value for `client_secret_basic`:
/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
pub fn basic_auth_header(client_id: &str, client_secret: &str) -> String {
    let raw = format!(
        "{}:{}",
        form_urlencode(client_id),
        form_urlencode(client_secret)
    );
    format!("Basic {}", BASE64.encode(raw))
}

/// Decodes a `Basic` credential into `(client_id, client_secret)`, undoing
/// the form-urlencoding of RFC 6749 §2.3.1. `None` if malformed.
pub fn decode_basic(value: &str) -> Option<(String, String)> {
    let (scheme, b64) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = String::from_utf8(BASE64.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((form_urldecode(id)?, form_urldecode(secret)?))
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
pub fn form_urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Decodes one form-urlencoded name or value (`+` is a space). `None` on
/// invalid UTF-8.
pub fn form_urldecode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Parses a form body into ordered pairs. `None` if malformed.
pub fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_urldecode(k)?, form_urldecode(v)?))
        })
        .collect()
}
