//! [`Grpc`]: the recovery policy for gRPC calls.

use std::sync::Arc;

use http::{HeaderMap, Request, StatusCode};

use crate::body::ReplayBody;
use crate::recover::{Policy, is_grpc_rejection};

/// The [recovery policy](crate::recover::Policy) for gRPC: a rejected token is an HTTP `401`
/// or an answer whose headers carry `grpc-status: 16` (`UNAUTHENTICATED`, a trailers-only
/// response); `grpc-status: 7` (`PERMISSION_DENIED`) is not, like a `403`.
///
/// A call is sent again once, with the new token, when its request body was buffered whole
/// (a unary call's message, read by the [`GrpcLayer`](super::GrpcLayer)'s buffer) and its
/// method is not one of the [streaming methods](Self::streaming_method). The HTTP request of
/// a unary and of a server-streaming call look the same (one message, then the end), so
/// server-streaming methods are named here; client-streaming and bidirectional calls are
/// never buffered whole, so never sent again. A call that is not sent again still drops the
/// rejected token: the caller gets `UNAUTHENTICATED`, and its next call goes out with a new
/// token.
///
/// ```
/// use tower_oauth::grpc::Grpc;
///
/// let policy = Grpc::new().streaming_method("/echo.Echo/Watch");
/// # let _ = policy;
/// ```
#[derive(Clone, Debug, Default)]
pub struct Grpc {
    /// Paths (`/package.Service/Method`) of the calls never sent again.
    streaming: Arc<[String]>,
}

impl Grpc {
    /// Every call with a buffered body may be sent again once.
    pub fn new() -> Grpc {
        Grpc::default()
    }

    /// Never sends calls to `path` (`/package.Service/Method`, as in the request's URI)
    /// again: for server-streaming methods. Calls add up.
    pub fn streaming_method(self, path: impl Into<String>) -> Grpc {
        let mut streaming = self.streaming.to_vec();
        streaming.push(path.into());
        Grpc {
            streaming: streaming.into(),
        }
    }
}

impl Policy<ReplayBody> for Grpc {
    fn is_rejection(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        is_grpc_rejection(status, headers)
    }

    fn may_replay(&self, request: &Request<ReplayBody>) -> bool {
        let path = request.uri().path();
        !self.streaming.iter().any(|p| p == path)
    }

    fn clone_body(&self, body: &ReplayBody) -> Option<ReplayBody> {
        body.try_clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_methods_are_not_replayed() {
        let policy = Grpc::new().streaming_method("/e.E/Watch");
        let request = |path: &str| {
            Request::post(format!("http://x{path}"))
                .body(ReplayBody::empty())
                .unwrap()
        };
        assert!(policy.may_replay(&request("/e.E/Say")));
        assert!(!policy.may_replay(&request("/e.E/Watch")));
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", "16".parse().unwrap());
        assert!(policy.is_rejection(StatusCode::OK, &headers));
        headers.insert("grpc-status", "7".parse().unwrap());
        assert!(!policy.is_rejection(StatusCode::OK, &headers));
    }
}
