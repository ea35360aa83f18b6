//! Two instances of a service share one token through Redis.
//!
//! Each instance is an `OAuthLayer` with a `RedisStore` connection of its own, as two
//! processes would have. Both send requests to a protected API at the same time; the
//! authorization server sees one token request.
//!
//! ```text
//! cargo run --example shared_redis --features redis
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example shared_redis --features redis
//! ```
//!
//! Without a reachable Redis it says so and exits with status 0.

#[path = "../tests/support/auth_server.rs"]
mod auth_server;

use std::time::Duration;

use auth_server::{AuthServer, AuthServerConfig};
use http::{Request, Response};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_oauth::store::{RedisStore, StoreOptions};
use tower_oauth::{ClientCredentials, OAuthLayer};

/// An HTTP client as a tower service: `http::Request` in, `http::Response<String>` out.
fn http_client()
-> impl Service<Request<String>, Response = Response<String>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    let client = reqwest::Client::new();
    service_fn(move |req: Request<String>| {
        let client = client.clone();
        async move {
            let response = client.execute(reqwest::Request::try_from(req)?).await?;
            let status = response.status().as_u16();
            let body = response.text().await?;
            Ok::<_, BoxError>(Response::builder().status(status).body(body)?)
        }
    })
}

/// An instance of the service: a layer with a Redis connection of its own.
fn instance(server: &AuthServer, redis_url: &str, prefix: &str) -> Result<OAuthLayer, BoxError> {
    let source = ClientCredentials::builder()
        .token_url(server.token_url())
        .client_id(&server.config().client_id)
        .client_secret(&server.config().client_secret)
        .scope("orders.read")
        .build()?;
    Ok(OAuthLayer::builder(source)
        .store(RedisStore::open(redis_url)?)
        .store_options(StoreOptions::new().prefix(prefix))
        .build())
}

async fn redis_reachable(url: &str) -> Result<(), String> {
    let ping = async {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2 s".to_owned()),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    if let Err(why) = redis_reachable(&redis_url).await {
        println!("skipping: Redis at {redis_url} is unreachable ({why}); set REDIS_URL");
        return Ok(());
    }
    // The token endpoint takes 200 ms, so both instances miss the store and race.
    let server = AuthServer::start(AuthServerConfig {
        token_delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let mut id = [0u8; 8];
    getrandom::fill(&mut id)?;
    let prefix = format!("tower-oauth-example:{}:", hex::encode(id));

    let instances = [
        instance(&server, &redis_url, &prefix)?,
        instance(&server, &redis_url, &prefix)?,
    ];
    let mut tasks = Vec::new();
    for (n, layer) in instances.iter().enumerate() {
        let client = ServiceBuilder::new()
            .layer(layer.clone())
            .service(http_client());
        for _ in 0..5 {
            let request =
                Request::get(format!("{}/orders", server.api_url())).body(String::new())?;
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let response = client.oneshot(request).await?;
                Ok::<_, BoxError>((n + 1, response.status()))
            }));
        }
    }
    for task in tasks {
        let (n, status) = task.await??;
        println!("instance {n}: GET /api/orders -> {status}");
    }

    let stored = instances[0].cache().stored_token().await?;
    println!(
        "token in Redis under {prefix}{{<sha-256 of the source>}}: expires in {} s; \
         the entry ends 60 s earlier (the refresh margin)",
        stored.map_or(0, |t| t.remaining().as_secs())
    );
    println!("token requests = {}", server.token_requests());

    // Clean up what the example wrote.
    let client = redis::Client::open(redis_url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<i64>(&mut conn)
            .await?;
    }
    if server.token_requests() != 1 {
        return Err("the two instances did not share one token".into());
    }
    Ok(())
}
