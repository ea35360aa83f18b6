#![allow(dead_code)]
//! A real tonic server for the gRPC tests, example and bench, without protoc: the messages
//! are written with prost's derive, the service routes by path to tonic's server helpers.
//!
//! `/echo.Echo/Say` (unary), `/echo.Echo/Watch` (server streaming, 3 answers),
//! `/echo.Echo/Forbidden` (unary, always `PERMISSION_DENIED` for a valid token) and
//! `/echo.Echo/Collect` (client streaming). Each call must carry `authorization: Bearer
//! <token>` with a token not revoked; otherwise it is answered `UNAUTHENTICATED`
//! (trailers-only). The server counts the attempts per call `id`.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tonic::body::Body;
use tonic::server::{Grpc, NamedService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;
use tower::{Service, service_fn};

/// A call's message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Say {
    /// Which call this is (the server counts attempts per id).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub text: String,
}

/// An answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Said {
    #[prost(string, tag = "1")]
    pub text: String,
}

pub const SAY: &str = "/echo.Echo/Say";
pub const WATCH: &str = "/echo.Echo/Watch";
pub const FORBIDDEN: &str = "/echo.Echo/Forbidden";
pub const COLLECT: &str = "/echo.Echo/Collect";

#[derive(Default)]
struct State {
    seen: Mutex<HashSet<String>>,
    revoked: Mutex<HashSet<String>>,
    attempts: Mutex<HashMap<(String, u64), usize>>,
    /// Set when `Collect` has its first message.
    first_collected: Notify,
}

/// The server's view: tokens seen and revoked, attempts per call.
#[derive(Clone, Default)]
pub struct EchoServer {
    state: Arc<State>,
}

impl EchoServer {
    /// Serves on a loopback port; returns its address (`http://`).
    pub async fn start(self) -> SocketAddr {
        self.serve(tonic::transport::Server::builder()).await
    }

    /// Serves over TLS with a fresh self-signed certificate for `localhost`; returns the
    /// address (`https://`) and the certificate (PEM) for the client to trust.
    pub async fn start_tls(self) -> (SocketAddr, String) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
        let identity = tonic::transport::Identity::from_pem(&cert_pem, key_pem);
        let builder = tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .unwrap();
        (self.serve(builder).await, cert_pem)
    }

    async fn serve(self, mut builder: tonic::transport::Server) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let router = builder.add_service(self);
        tokio::spawn(async move { router.serve_with_incoming(incoming).await });
        addr
    }

    /// Revokes every token seen so far.
    pub fn revoke_seen(&self) {
        let seen = self.state.seen.lock().unwrap().clone();
        self.state.revoked.lock().unwrap().extend(seen);
    }

    /// How many times call `id` of `path` reached the server.
    pub fn attempts(&self, path: &str, id: u64) -> usize {
        let attempts = self.state.attempts.lock().unwrap();
        attempts.get(&(path.to_owned(), id)).copied().unwrap_or(0)
    }

    /// The largest number of attempts of any call to `path`.
    pub fn max_attempts(&self, path: &str) -> usize {
        let attempts = self.state.attempts.lock().unwrap();
        attempts
            .iter()
            .filter(|((p, _), _)| p == path)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }

    /// Resolves once a `Collect` call has its first message.
    pub async fn first_collected(&self) {
        self.state.first_collected.notified().await
    }

    /// Checks the token and counts the attempt of call `id`.
    fn admit<T>(state: &State, path: &str, id: u64, request: &Request<T>) -> Result<(), Status> {
        *state
            .attempts
            .lock()
            .unwrap()
            .entry((path.to_owned(), id))
            .or_default() += 1;
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("no token"))?
            .to_owned();
        state.seen.lock().unwrap().insert(token.clone());
        if state.revoked.lock().unwrap().contains(&token) {
            return Err(Status::unauthenticated("token revoked"));
        }
        Ok(())
    }
}

impl NamedService for EchoServer {
    const NAME: &'static str = "echo.Echo";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Answers = Pin<Box<dyn futures_util::Stream<Item = Result<Said, Status>> + Send>>;

impl Service<http::Request<Body>> for EchoServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let state = self.state.clone();
        let path = req.uri().path().to_owned();
        Box::pin(async move {
            let mut grpc = Grpc::new(ProstCodec::<Said, Say>::default());
            let response = match path.as_str() {
                SAY | FORBIDDEN => {
                    let forbidden = path == FORBIDDEN;
                    let handler = service_fn(move |request: Request<Say>| {
                        let (state, path) = (state.clone(), path.clone());
                        async move {
                            let id = request.get_ref().id;
                            EchoServer::admit(&state, &path, id, &request)?;
                            if forbidden {
                                return Err(Status::permission_denied("not for this client"));
                            }
                            let text = request.into_inner().text;
                            Ok(Response::new(Said { text }))
                        }
                    });
                    grpc.unary(handler, req).await
                }
                WATCH => {
                    let handler = service_fn(move |request: Request<Say>| {
                        let state = state.clone();
                        async move {
                            let id = request.get_ref().id;
                            EchoServer::admit(&state, WATCH, id, &request)?;
                            let text = request.into_inner().text;
                            let answers = (0..3).map(move |i| {
                                Ok(Said {
                                    text: format!("{text} {i}"),
                                })
                            });
                            Ok(Response::new(
                                Box::pin(futures_util::stream::iter(answers)) as Answers
                            ))
                        }
                    });
                    grpc.server_streaming(handler, req).await
                }
                COLLECT => {
                    let handler = service_fn(move |request: Request<Streaming<Say>>| {
                        let state = state.clone();
                        async move {
                            EchoServer::admit(&state, COLLECT, 0, &request)?;
                            let mut messages = request.into_inner();
                            let mut text = String::new();
                            while let Some(message) = messages.message().await? {
                                if text.is_empty() {
                                    state.first_collected.notify_one();
                                }
                                text.push_str(&message.text);
                            }
                            Ok(Response::new(Said { text }))
                        }
                    });
                    grpc.client_streaming(handler, req).await
                }
                _ => Status::unimplemented(path).into_http(),
            };
            Ok(response)
        })
    }
}
