//! A protected API that checks every bearer token by introspection (RFC 7662) at an
//! authorization server, as a resource server in front of `oidc-provider` would.
//!
//! Integration tests reach it as `support::introspection_api`; an example includes this
//! file alone, with `#[path = "../tests/support/introspection_api.rs"]`.
//!
//! `GET|POST /api` and `/api/*`: the token in `Authorization: Bearer <token>` is sent to
//! the introspection endpoint (authenticated as the API's own client with HTTP Basic).
//! Active: `200` with the token's introspected `client_id`, `scope`, `aud` and `subject`
//! (a token exchanged on behalf of a caller) as JSON.
//! Inactive: `401` with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1).
//! No token: `401` with `WWW-Authenticate: Bearer`. Introspection failing: `502`. Every
//! request is counted.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

/// Counters of the API, by outcome.
#[derive(Debug, Default)]
pub struct Counters {
    /// Every request.
    pub requests: AtomicUsize,
    /// Answered 200 (active token).
    pub accepted: AtomicUsize,
    /// Answered 401 because the token was not active.
    pub rejected: AtomicUsize,
    /// Answered 401 because there was no bearer token.
    pub missing: AtomicUsize,
    /// Answered 502 because introspection failed.
    pub errors: AtomicUsize,
}

struct Shared {
    introspection_url: String,
    client_id: String,
    client_secret: String,
    http: reqwest::Client,
    counters: Counters,
}

/// A running API; stops when dropped.
pub struct IntrospectionApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl IntrospectionApi {
    /// Serves on `127.0.0.1:0`, introspecting at `introspection_url` as `client`.
    pub async fn start(introspection_url: &str, client: (&str, &str)) -> IntrospectionApi {
        Self::start_on("127.0.0.1:0".parse().unwrap(), introspection_url, client).await
    }

    /// Serves on `addr`.
    ///
    /// # Panics
    /// If `addr` cannot be bound.
    pub async fn start_on(
        addr: SocketAddr,
        introspection_url: &str,
        client: (&str, &str),
    ) -> IntrospectionApi {
        let shared = Arc::new(Shared {
            introspection_url: introspection_url.to_owned(),
            client_id: client.0.to_owned(),
            client_secret: client.1.to_owned(),
            http: reqwest::Client::new(),
            counters: Counters::default(),
        });
        let app = Router::new()
            .route("/api", any(handle))
            .route("/api/{*rest}", any(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        IntrospectionApi { addr, shared, task }
    }

    /// `http://127.0.0.1:<port>/api`.
    pub fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Every request so far.
    pub fn requests(&self) -> usize {
        self.shared.counters.requests.load(Ordering::SeqCst)
    }

    /// Requests answered 200.
    pub fn accepted(&self) -> usize {
        self.shared.counters.accepted.load(Ordering::SeqCst)
    }

    /// Requests answered 401 for an inactive token.
    pub fn rejected(&self) -> usize {
        self.shared.counters.rejected.load(Ordering::SeqCst)
    }

    /// Requests answered 401 for no token.
    pub fn missing(&self) -> usize {
        self.shared.counters.missing.load(Ordering::SeqCst)
    }

    /// Requests answered 502.
    pub fn errors(&self) -> usize {
        self.shared.counters.errors.load(Ordering::SeqCst)
    }
}

impl Drop for IntrospectionApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The RFC 7638 thumbprint of the key in the request's DPoP proof, if the proof's signature
/// verifies with it.
fn dpop_proof_key(headers: &HeaderMap) -> Option<String> {
    let proof = headers.get("dpop")?.to_str().ok()?;
    let header = jsonwebtoken::decode_header(proof).ok()?;
    let jwk = header.jwk?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(
        proof,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).ok()?,
        &validation,
    )
    .ok()?;
    jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .ok()
}

fn form(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let counters = &shared.counters;
    counters.requests.fetch_add(1, Ordering::SeqCst);
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            let token = token.trim();
            let dpop = scheme.eq_ignore_ascii_case("dpop");
            ((scheme.eq_ignore_ascii_case("bearer") || dpop) && !token.is_empty())
                .then_some((token, dpop))
        });
    let Some((token, dpop)) = credentials else {
        counters.missing.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
        )
            .into_response();
    };
    let introspection = shared
        .http
        .post(&shared.introspection_url)
        .basic_auth(form(&shared.client_id), Some(form(&shared.client_secret)))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("token", token),
            ("token_type_hint", "access_token"),
        ]))
        .send()
        .await;
    let result: Option<serde_json::Value> = match introspection {
        Ok(r) if r.status().is_success() => match r.bytes().await {
            Ok(body) => serde_json::from_slice(&body).ok(),
            Err(_) => None,
        },
        _ => None,
    };
    let Some(result) = result else {
        counters.errors.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::BAD_GATEWAY, "introspection failed").into_response();
    };
    // A DPoP token (RFC 9449 section 7): the request's proof must be signed by the key the
    // token is bound to (`cnf.jkt`); a bearer use of a bound token is refused.
    let bound = result["cnf"]["jkt"].as_str();
    let proof_key = dpop.then(|| dpop_proof_key(&headers)).flatten();
    if result["active"] == serde_json::Value::Bool(true)
        && (bound.is_some() || dpop)
        && proof_key.as_deref() != bound
    {
        counters.rejected.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"DPoP error="invalid_token""#)],
        )
            .into_response();
    }
    if result["active"] != serde_json::Value::Bool(true) {
        counters.rejected.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                r#"Bearer error="invalid_token", error_description="the access token is not active""#,
            )],
        )
            .into_response();
    }
    counters.accepted.fetch_add(1, Ordering::SeqCst);
    let body = serde_json::json!({
        "client_id": result["client_id"],
        "scope": result["scope"],
        "aud": result["aud"],
        // Set by the interop provider's token-exchange grant: whom the token is for.
        "subject": result["subject"],
        "jkt": bound,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
