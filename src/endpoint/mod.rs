//! The token-endpoint client.

mod response;

#[cfg(feature = "reqwest")]
mod client_credentials;
#[cfg(feature = "reqwest")]
mod discovery;
#[cfg(feature = "reqwest")]
mod env;
#[cfg(feature = "reqwest")]
mod http;

pub use response::{
    DEFAULT_EXPIRES_IN, MAX_BODY_LEN, MAX_EXPIRES_IN, MAX_TOKEN_LEN, ResponseParser,
    parse_retry_after,
};

#[cfg(feature = "reqwest")]
pub use client_credentials::{ClientAuth, ClientCredentials, ClientCredentialsBuilder};
#[cfg(feature = "reqwest")]
pub use discovery::{AuthorizationServerMetadata, DEFAULT_DISCOVERY_TIMEOUT, MAX_METADATA_LEN};
