//! The token-endpoint client: getting access tokens from an OAuth 2.0 authorization server.
//!
//! - [`ClientCredentials`] is the [`TokenSource`](crate::TokenSource) of the
//!   client-credentials grant (RFC 6749 section 4.4), over reqwest with rustls. Configure
//!   it with a [`ClientCredentialsBuilder`], from `OAUTH_*` environment variables
//!   ([`ClientCredentials::from_env`]), or from the issuer URL alone
//!   ([`ClientCredentialsBuilder::discover`], which reads the
//!   [`AuthorizationServerMetadata`], RFC 8414 and OpenID Connect Discovery).
//! - [`ClientAuth`] says how the client proves who it is to the token endpoint, by its
//!   RFC 7591 name.
//! - [`ResponseParser`] reads token responses (RFC 6749 sections 5.1 and 5.2) within
//!   limits, and [`parse_retry_after`] a `Retry-After` header: what [`ClientCredentials`]
//!   uses, public so that a token source of your own reads responses the same way. They
//!   need no HTTP client, and are there without the `reqwest` feature.
//!
//! Every URL a client secret is sent to (token URL, issuer, discovered token endpoint)
//! must be `https`, or plain `http` to a loopback address unless
//! [`allow_insecure_http`](ClientCredentialsBuilder::allow_insecure_http) is set. Each
//! request has a timeout ([`DEFAULT_TIMEOUT`] unless
//! [`timeout`](ClientCredentialsBuilder::timeout) says otherwise), and the default HTTP
//! client does not follow redirects.
//!
//! ```
//! use http::{Request, Response};
//! use tower::{service_fn, BoxError, ServiceBuilder};
//! use tower_oauth::{ClientAuth, ClientCredentials, OAuthLayer};
//!
//! # fn main() -> Result<(), BoxError> {
//! let source = ClientCredentials::builder()
//!     .token_url("https://auth.example.com/oauth2/token")
//!     .client_id("my-service")
//!     .client_secret(std::env::var("OAUTH_CLIENT_SECRET").unwrap_or_default())
//!     .scope("orders.read")
//!     .audience("https://api.example.com")
//!     .auth_method(ClientAuth::ClientSecretBasic)
//!     .build()?; // checks the configuration; no request yet
//!
//! let client = ServiceBuilder::new()
//!     .layer(OAuthLayer::new(source))
//!     .service(service_fn(|_: Request<String>| async {
//!         Ok::<_, BoxError>(Response::new(String::new()))
//!     }));
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! With only the issuer known, discovery finds the token endpoint (one or two `GET`
//! requests, hence `no_run` here):
//!
//! ```no_run
//! use tower_oauth::ClientCredentials;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth::Error> {
//! let source = ClientCredentials::builder()
//!     .issuer("https://auth.example.com")
//!     .client_id("my-service")
//!     .client_secret(std::env::var("OAUTH_CLIENT_SECRET").unwrap_or_default())
//!     .discover() // GET .../.well-known/oauth-authorization-server, then openid-configuration
//!     .await?
//!     .build()?;
//! # let _ = source;
//! # Ok(())
//! # }
//! ```
//!
//! # Where the mechanisms are
//!
//! One type or mechanism a file: `auth.rs` ([`ClientAuth`], the RFC 7591 names),
//! `signing_key.rs` ([`SigningKey`], keys for RFC 7523 assertions, on jsonwebtoken),
//! `assertion.rs` (where a `client_assertion` comes from: a key, the secret, a file, a
//! closure), `mtls.rs` (the RFC 8705 client certificate), `client_credentials.rs` (the
//! grant and its token request), `token_exchange.rs` (RFC 8693), `builder/` (`mod.rs`, and
//! the client-authentication material in `auth.rs`), `discovery.rs`, `env.rs`,
//! `response.rs` (token responses), `http.rs` (the https-or-loopback rule, the
//! size-limited body reader) and [`dpop`] (RFC 9449: keys, proofs, the nonces of each
//! origin; the layer's side is [`DpopLayer`](crate::oauth::dpop::DpopLayer)).

mod auth;
mod response;

#[cfg(feature = "reqwest")]
mod assertion;
#[cfg(feature = "reqwest")]
mod builder;
#[cfg(feature = "reqwest")]
mod client_credentials;
#[cfg(feature = "reqwest")]
mod discovery;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod dpop;
#[cfg(feature = "reqwest")]
mod env;
#[cfg(feature = "reqwest")]
mod http;
#[cfg(feature = "reqwest")]
mod jws;
#[cfg(feature = "reqwest")]
mod mtls;
#[cfg(feature = "reqwest")]
mod signing_key;
#[cfg(feature = "reqwest")]
mod token_exchange;

pub use auth::ClientAuth;
pub use response::{
    DEFAULT_EXPIRES_IN, MAX_BODY_LEN, MAX_EXPIRES_IN, MAX_TOKEN_LEN, ResponseParser,
    parse_retry_after,
};

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use assertion::{DEFAULT_ASSERTION_LIFETIME, MAX_ASSERTION_LIFETIME};
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use builder::ClientCredentialsBuilder;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use client_credentials::ClientCredentials;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use discovery::{AuthorizationServerMetadata, MAX_METADATA_LEN};
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use http::DEFAULT_TIMEOUT;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use signing_key::SigningKey;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use token_exchange::{ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, TokenExchange};
