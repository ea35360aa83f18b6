//! Two HTTP servers on loopback, two origins: `api` redirects, `other` is where the
//! redirects go. Both record the `Authorization` header of every request they get, so a
//! test can tell which origin saw the token. Used by the reqwest tests (the middleware and
//! the tower adapter), whose client follows the redirects itself.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tower_oauth::Origin;

use super::{Seen, auth_in};

/// The two servers and what each has seen.
pub struct TwoOrigins {
    /// `GET /redirect/{path}` answers `302 Found` to `http://{other}/{path}`.
    pub api: SocketAddr,
    /// `GET /landing` answers `200 landed`, `GET /denied` answers `401`.
    pub other: SocketAddr,
    /// The `Authorization` headers `api` got, in order (`""` without one).
    pub api_seen: Seen,
    /// The `Authorization` headers `other` got, in order (`""` without one).
    pub other_seen: Seen,
}

impl TwoOrigins {
    pub async fn start() -> TwoOrigins {
        let other_seen = Seen::default();
        let other = serve(
            Router::new()
                .route("/landing", get(landing))
                .route("/denied", get(denied))
                .with_state(other_seen.clone()),
        )
        .await;
        let api_seen = Seen::default();
        let api = serve(
            Router::new()
                .route("/redirect/{*path}", get(redirect))
                .with_state((api_seen.clone(), other)),
        )
        .await;
        TwoOrigins {
            api,
            other,
            api_seen,
            other_seen,
        }
    }

    /// `http://{api}`, the origin the token is for.
    pub fn api_origin(&self) -> Origin {
        Origin::parse(&format!("http://{}", self.api)).expect("a loopback origin")
    }

    /// The URL on `api` that redirects to `path` on `other`.
    pub fn redirect_to(&self, path: &str) -> String {
        format!("http://{}/redirect/{path}", self.api)
    }

    /// `path` on `other`, straight.
    pub fn other_url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.other)
    }
}

/// Serves `app` on a free loopback port, on a task of its own.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn redirect(
    State((seen, other)): State<(Seen, SocketAddr)>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> impl IntoResponse {
    seen.push(auth_in(&headers));
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("http://{other}/{path}"))],
    )
}

async fn landing(State(seen): State<Seen>, headers: HeaderMap) -> &'static str {
    seen.push(auth_in(&headers));
    "landed"
}

async fn denied(State(seen): State<Seen>, headers: HeaderMap) -> StatusCode {
    seen.push(auth_in(&headers));
    StatusCode::UNAUTHORIZED
}
