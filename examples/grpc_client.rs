//! A tonic client with `GrpcLayer`: tokens from a client-credentials token endpoint on every
//! call, and `UNAUTHENTICATED` recovered once for unary calls.
//!
//! ```text
//! cargo run --example grpc_client --features tonic            # plain channel
//! cargo run --example grpc_client --features tonic -- --tls   # TLS channel
//! ```
//!
//! Everything runs in this process on loopback: the test authorization server of
//! `tests/support/auth_server.rs` and the tonic echo server of `tests/support/grpc_echo.rs`
//! (hand-written prost messages, no protoc). With a generated client, pass the same stack
//! to `EchoClient::new(..)`. With `--tls` the server has a self-signed certificate for
//! `localhost` and the channel trusts it (`ClientTlsConfig`, tonic's `tls-aws-lc` feature;
//! for a public CA, `with_native_roots()`): the layer does not change.
#[path = "../tests/support/auth_server.rs"]
mod auth_server;
#[path = "../tests/support/grpc_echo.rs"]
mod grpc_echo;

use std::process::ExitCode;

use auth_server::{AuthServer, AuthServerConfig};
use grpc_echo::{EchoServer, SAY, Said, Say, WATCH};
use http::uri::PathAndQuery;
use tonic::client::Grpc as GrpcClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_prost::ProstCodec;
use tower::{BoxError, ServiceBuilder};
use tower_oauth::grpc::{Grpc, GrpcLayer};
use tower_oauth::{ClientCredentials, OAuthLayer};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => {
            println!("result                 OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("result                 FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let auth = AuthServer::start(AuthServerConfig::default()).await;
    let echo = EchoServer::default();
    let tls = std::env::args().any(|a| a == "--tls");
    let source = ClientCredentials::builder()
        .token_url(auth.token_url())
        .client_id(&auth.config().client_id)
        .client_secret(&auth.config().client_secret)
        .build()?;

    // The layer, with the gRPC recovery policy; server-streaming methods are named so that
    // they are never sent twice.
    let oauth = OAuthLayer::builder(source)
        .recover_policy(Grpc::new().streaming_method(WATCH))
        .build();
    let (origin, channel) = if tls {
        let (addr, ca) = echo.clone().start_tls().await;
        let origin: http::Uri = format!("https://127.0.0.1:{}", addr.port()).parse()?;
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        let channel = Channel::builder(origin.clone())
            .tls_config(config)?
            .connect()
            .await?;
        (origin, channel)
    } else {
        let addr = echo.clone().start().await;
        let origin: http::Uri = format!("http://{addr}").parse()?;
        (origin.clone(), Channel::builder(origin).connect().await?)
    };
    println!(
        "channel                {origin} ({})",
        if tls { "TLS" } else { "plain" }
    );
    let stack = ServiceBuilder::new()
        .layer(GrpcLayer::new(oauth))
        .service(channel);
    let client = GrpcClient::with_origin(stack, origin);

    // 1. 100 concurrent unary calls on a cold cache: one token request.
    let calls: Vec<_> = (0..100)
        .map(|id| tokio::spawn(say(client.clone(), id)))
        .collect();
    for call in calls {
        call.await??;
    }
    println!(
        "100 unary calls        OK, token requests {}",
        auth.token_requests()
    );
    if auth.token_requests() != 1 {
        return Err("expected 1 token request".into());
    }

    // 2. The server revokes the token: the next call is answered UNAUTHENTICATED, the
    //    layer fetches a new token and sends the call again.
    echo.revoke_seen();
    let said = say(client.clone(), 1000).await?;
    println!(
        "after a revocation     {:?}, token requests {}, attempts {}",
        said.text,
        auth.token_requests(),
        echo.attempts(SAY, 1000)
    );
    if auth.token_requests() != 2 || echo.attempts(SAY, 1000) != 2 {
        return Err("expected 2 token requests and 2 attempts".into());
    }
    Ok(())
}

async fn say(mut client: GrpcClient<impl GrpcStack>, id: u64) -> Result<Said, BoxError> {
    client.ready().await?;
    let request = tonic::Request::new(Say {
        id,
        text: format!("hello {id}"),
    });
    let codec = ProstCodec::<Say, Said>::default();
    let response = client
        .unary(request, PathAndQuery::from_static(SAY), codec)
        .await?;
    Ok(response.into_inner())
}

/// What `GrpcClient` needs of the stack (a tonic `GrpcService`), spelled out once.
trait GrpcStack:
    tonic::client::GrpcService<
        tonic::body::Body,
        ResponseBody = tonic::body::Body,
        Error = BoxError,
    > + Clone
    + Send
    + 'static
{
}

impl<T> GrpcStack for T where
    T: tonic::client::GrpcService<
            tonic::body::Body,
            ResponseBody = tonic::body::Body,
            Error = BoxError,
        > + Clone
        + Send
        + 'static
{
}
