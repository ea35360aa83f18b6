//! Tower middleware that puts a valid OAuth 2.0 access token on every request.
//!
//! [`OAuthLayer`] wraps any HTTP client `Service<http::Request<B>>` (a hyper client, a
//! `ServiceBuilder` stack, the upstream client of a gateway) and adds
//! `Authorization: Bearer <token>` to each request. Tokens come from a [`TokenSource`],
//! first of all [`ClientCredentials`] (RFC 6749 section 4.4); they are cached for their
//! lifetime in a lock-free slot and refreshed before they expire, by one fetch however
//! many requests are waiting. A token the server rejects with a `401` is dropped and the
//! request sent once more with a new one ([`recover`]).
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, header::AUTHORIZATION};
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_oauth::{source_fn, OAuthLayer, Token};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // In production: ClientCredentials::builder()...build()?
//! let source = source_fn(|| async { Ok(Token::new("s3cr3t", Duration::from_secs(3600))) });
//!
//! let client = ServiceBuilder::new()
//!     .layer(OAuthLayer::new(source))
//!     .service(service_fn(|req: Request<String>| async move {
//!         // The inner client sees the token.
//!         let auth = req.headers()[AUTHORIZATION].to_str()?.to_owned();
//!         Ok::<_, BoxError>(Response::new(auth))
//!     }));
//!
//! let response = client.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.body(), "Bearer s3cr3t");
//! # Ok(())
//! # }
//! ```
//!
//! # Where the layer goes
//!
//! Put `OAuthLayer` *below* (inside of) anything that can send a request somewhere else
//! than where you addressed it, such as tower-http's `FollowRedirectLayer`, and tell it
//! where the token may go with
//! [`allowed_origins`](OAuthLayerBuilder::allowed_origins): the layer then sees each hop
//! and gives the token only to hops for those origins. Without allowed origins every
//! request that passes through the layer gets the token, whatever its host. The
//! [`origin`] module shows the order and says what happens in the other one. Put the layer
//! *above* retries and timeouts that should apply per attempt.
//!
//! The `Authorization` header the layer sets is always marked sensitive, so HTTP/2 (HPACK)
//! never indexes it and `Debug` of the header map, as in tower-http's tracing, shows
//! `Sensitive` instead of the token.
//!
//! # Secrets
//!
//! The client secret and access tokens are kept in [`secrecy::SecretString`]s, zeroed when
//! dropped, and so is the crate's buffer of a token response. Copies handed to other
//! crates are out of its reach: the `HeaderValue` the layer sends (it is `Bytes`), the
//! token request reqwest sends, and the HTTP clients' I/O buffers. With a shared
//! [`store`], the crate's own copies of a token on its way to and from the store are
//! plain, not zeroed: the JSON value it writes and reads (sealed only if an
//! `EncryptionKey` is set, and then plain before sealing and after opening), the bytes
//! the store client hands over, and the values a [`store::MemoryStore`] keeps in memory.
//!
//! No `Debug` or `Display` output, error or tracing event of this crate shows a secret or
//! a token, and the errors [`ClientCredentials`] makes from token-endpoint responses have
//! any echo of the client's credentials (as sent, form-encoded, or base64 in `Basic`) cut
//! out. A `refresh_token` or `id_token` in a response is not kept (the client-credentials
//! grant has no use for them; RFC 6749 section 4.4.3). Token responses are read within
//! limits: 64 KiB of body, 16 KiB of token, JSON less than 128 levels deep (see
//! [`endpoint::ResponseParser`]).
//!
//! # Feature flags
//!
//! - `reqwest` (default): [`ClientCredentials`], the client-credentials token source,
//!   over reqwest with rustls (no system OpenSSL), and discovery of its token endpoint
//!   (see [`endpoint`]); [`ReqwestService`], a `reqwest::Client` as a tower service for
//!   the layer to wrap (see [`reqwest_service`]). The token-response parser and
//!   [`ClientAuth`] need no feature.
//! - `redis`: `store::RedisStore`, one token shared by a fleet of instances through
//!   Redis, with a fleet-wide single-flight refresh (see [`store`]). Turns on `encryption`.
//! - `encryption`: `store::EncryptionKey`, AES-256-GCM sealing of the tokens kept in a
//!   shared store.
//! - `reqwest-middleware`: `OAuthMiddleware`, the same token cache behind
//!   reqwest-middleware's `ClientWithMiddleware` (see `middleware`). Turns on `reqwest`.

#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod cache;
pub mod endpoint;
pub mod error;
#[cfg(feature = "tonic")]
pub mod grpc;
pub mod identity;
pub mod key;
mod macros;
pub mod metrics;
#[cfg(feature = "reqwest-middleware")]
pub mod middleware;
pub mod oauth;
pub mod origin;
pub mod recover;
#[cfg(feature = "reqwest")]
pub mod reqwest_service;
pub mod source;
pub mod store;
pub mod subject;
pub mod token;
pub mod www_authenticate;

pub use cache::TokenCache;
pub use endpoint::ClientAuth;
#[cfg(feature = "reqwest")]
pub use endpoint::{ClientCredentials, SigningKey, TokenExchange};
pub use error::{Error, TokenEndpointError};
#[cfg(feature = "reqwest-middleware")]
pub use middleware::OAuthMiddleware;
pub use oauth::{OAuth, OAuthLayer, OAuthLayerBuilder, PerOrigin, PerOriginLayer};
pub use origin::Origin;
#[cfg(feature = "reqwest")]
pub use reqwest_service::ReqwestService;
/// Re-exported so that reading a token (`token.access_token().expose_secret()`) needs no
/// `secrecy` dependency of your own.
pub use secrecy::ExposeSecret;
pub use source::{TokenSource, source_fn};
pub use subject::{SubjectKey, SubjectToken};
pub use token::{Token, TokenType};

/// The code blocks of README.md, compiled as doctests so that they stay true.
#[cfg(all(doctest, feature = "redis", feature = "reqwest-middleware"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The error type of the [`OAuth`] service: the inner service's error, or an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
