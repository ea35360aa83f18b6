//! gRPC over a real tonic server on loopback (`support/grpc_echo.rs`): tokens on a tonic
//! channel through `GrpcLayer`, `UNAUTHENTICATED` recovered once for unary calls, never a
//! replay of a streaming call, `PERMISSION_DENIED` left alone.

#![cfg(feature = "tonic")]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::PathAndQuery;
use support::counting_source;
use support::grpc_echo::{COLLECT, EchoServer, FORBIDDEN, SAY, Said, Say, WATCH};
use tonic::client::Grpc as GrpcClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_prost::ProstCodec;
use tower::ServiceBuilder;
use tower_oauth::OAuthLayer;
use tower_oauth::grpc::{Grpc, GrpcLayer};

type Stack = tower_oauth::body::BufferBody<
    tower_oauth::OAuth<tower_oauth::grpc::IntoTonicBody<Channel>, Grpc>,
>;

struct Setup {
    server: EchoServer,
    fetches: Arc<AtomicUsize>,
    client: GrpcClient<Stack>,
}

async fn setup() -> Setup {
    let server = EchoServer::default();
    let addr: SocketAddr = server.clone().start().await;
    let origin: http::Uri = format!("http://{addr}").parse().unwrap();
    let channel = Channel::builder(origin.clone()).connect().await.unwrap();
    let fetches = Arc::new(AtomicUsize::new(0));
    let oauth = OAuthLayer::builder(counting_source(fetches.clone()))
        .recover_policy(Grpc::new().streaming_method(WATCH))
        .build();
    let stack = ServiceBuilder::new()
        .layer(GrpcLayer::new(oauth))
        .service(channel);
    Setup {
        server,
        fetches,
        client: GrpcClient::with_origin(stack, origin),
    }
}

async fn say(mut client: GrpcClient<Stack>, path: &'static str, id: u64) -> Result<Said, Status> {
    client
        .ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let request = Request::new(Say {
        id,
        text: format!("hello {id}"),
    });
    let codec = ProstCodec::<Say, Said>::default();
    let response = client
        .unary(request, PathAndQuery::from_static(path), codec)
        .await?;
    Ok(response.into_inner())
}

async fn wave(setup: &Setup, ids: std::ops::Range<u64>) -> Vec<Result<Said, Status>> {
    let calls: Vec<_> = ids
        .map(|id| tokio::spawn(say(setup.client.clone(), SAY, id)))
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_unary_calls_on_a_cold_cache_make_one_token_request() {
    let setup = setup().await;
    let results = wave(&setup, 0..1000).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1000, "{:?}", results.iter().find(|r| r.is_err()));
    assert_eq!(setup.fetches.load(Ordering::SeqCst), 1);
    assert_eq!(setup.server.max_attempts(SAY), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_are_refreshed_once_and_unary_calls_replayed() {
    let setup = setup().await;
    say(setup.client.clone(), SAY, 10_000).await.unwrap();
    assert_eq!(setup.fetches.load(Ordering::SeqCst), 1);

    // The server revokes every token: 200 calls, all OK after exactly 1 refresh.
    setup.server.revoke_seen();
    let results = wave(&setup, 0..200).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 200, "{:?}", results.iter().find(|r| r.is_err()));
    assert_eq!(setup.fetches.load(Ordering::SeqCst), 2);
    for id in 0..200 {
        assert!(setup.server.attempts(SAY, id) <= 2, "call {id}");
    }
    assert_eq!(
        setup.server.max_attempts(SAY),
        2,
        "rejected calls were sent again"
    );

    // Revoked again: a server-streaming call gets UNAUTHENTICATED and is not replayed...
    setup.server.revoke_seen();
    let mut client = setup.client.clone();
    client.ready().await.unwrap();
    let request = Request::new(Say {
        id: 1,
        text: "watch".into(),
    });
    let codec = ProstCodec::<Say, Said>::default();
    let status = client
        .server_streaming(request, PathAndQuery::from_static(WATCH), codec)
        .await
        .expect_err("the streaming call is not sent again");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(setup.server.attempts(WATCH, 1), 1);
    // ... and the next call goes out with a new token.
    let answer = say(setup.client.clone(), SAY, 20_000).await.unwrap();
    assert_eq!(answer.text, "hello 20000");
    assert_eq!(setup.server.attempts(SAY, 20_000), 1);
    assert_eq!(setup.fetches.load(Ordering::SeqCst), 3);

    // A streaming call with a valid token streams all its answers.
    let mut client = setup.client.clone();
    client.ready().await.unwrap();
    let request = Request::new(Say {
        id: 2,
        text: "watch".into(),
    });
    let codec = ProstCodec::<Say, Said>::default();
    let mut stream = client
        .server_streaming(request, PathAndQuery::from_static(WATCH), codec)
        .await
        .unwrap()
        .into_inner();
    let mut answers = 0;
    while stream.message().await.unwrap().is_some() {
        answers += 1;
    }
    assert_eq!(answers, 3);
}

#[tokio::test]
async fn permission_denied_is_one_attempt_and_no_token_request() {
    let setup = setup().await;
    say(setup.client.clone(), SAY, 1).await.unwrap();
    assert_eq!(setup.fetches.load(Ordering::SeqCst), 1);
    let status = say(setup.client.clone(), FORBIDDEN, 2).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(setup.server.attempts(FORBIDDEN, 2), 1);
    assert_eq!(setup.fetches.load(Ordering::SeqCst), 1);
}

/// A client-streaming call whose second message waits for the server to have the first:
/// the buffer must pass it on at once.
#[tokio::test]
async fn a_client_streaming_call_is_never_held_back_by_the_buffer() {
    let setup = setup().await;
    let server = setup.server.clone();
    let messages = async_stream(server);
    let mut client = setup.client.clone();
    client.ready().await.unwrap();
    let codec = ProstCodec::<Say, Said>::default();
    let call = client.client_streaming(
        Request::new(messages),
        PathAndQuery::from_static(COLLECT),
        codec,
    );
    let answer = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call was held back")
        .unwrap();
    assert_eq!(answer.into_inner().text, "onetwo");
}

fn async_stream(server: EchoServer) -> impl futures_util::Stream<Item = Say> + Send + 'static {
    futures_util::stream::unfold(0, move |i| {
        let server = server.clone();
        async move {
            let text = match i {
                0 => "one",
                1 => {
                    server.first_collected().await;
                    "two"
                }
                _ => return None,
            };
            Some((
                Say {
                    id: 0,
                    text: text.into(),
                },
                i + 1,
            ))
        }
    })
}

#[tokio::test]
async fn a_tls_channel_gets_the_token_the_same_way() {
    use tonic::transport::{Certificate, ClientTlsConfig};
    let server = EchoServer::default();
    let (addr, ca) = server.clone().start_tls().await;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    let origin: http::Uri = format!("https://127.0.0.1:{}", addr.port())
        .parse()
        .unwrap();
    let channel = Channel::builder(origin.clone())
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let fetches = Arc::new(AtomicUsize::new(0));
    let oauth = OAuthLayer::builder(counting_source(fetches.clone()))
        .recover_policy(Grpc::new())
        .build();
    let stack = ServiceBuilder::new()
        .layer(GrpcLayer::new(oauth))
        .service(channel);
    let client = GrpcClient::with_origin(stack, origin);
    say(client.clone(), SAY, 1).await.unwrap();
    server.revoke_seen();
    say(client, SAY, 2).await.unwrap();
    assert_eq!(server.attempts(SAY, 2), 2, "rejected once, then sent again");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}
