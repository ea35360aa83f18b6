//! [`TokenExchange`]: the token-exchange grant (RFC 8693) as a [`TokenSource`], a token
//! for an upstream on behalf of the caller whose token (the subject token) came in.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::client_credentials::ClientCredentials;
use crate::error::Error;
use crate::identity::Identity;
use crate::key::CacheKey;
use crate::source::TokenSource;
use crate::subject::SubjectToken;
use crate::token::Token;

/// The `grant_type` of a token exchange (RFC 8693 section 2.1).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The token type of an OAuth 2.0 access token (RFC 8693 section 3): the default
/// `subject_token_type`.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A [`TokenSource`] for the token-exchange grant (RFC 8693 section 2): each fetch is one
/// `POST` of `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` with the
/// `subject_token` and its `subject_token_type` (default [`ACCESS_TOKEN_TYPE`]), an
/// `actor_token` and `requested_token_type` when set, and the client's `audience`,
/// `resource` and `scope`, authenticated as the client is (any [`ClientAuth`](crate::ClientAuth)).
///
/// Made by [`ClientCredentials::token_exchange`] from the client's configuration. A
/// refused subject token is an [`Error::is_token_endpoint`] with `invalid_grant`
/// (section 2.2.2). `Debug`, errors and logs never show the subject or actor token;
/// the cache key holds a SHA-256 of them, not them.
///
/// ```
/// use tower_oauth::{ClientCredentials, SubjectToken, TokenSource};
///
/// # fn main() -> Result<(), tower_oauth::Error> {
/// let gateway = ClientCredentials::builder()
///     .token_url("https://idp.example.com/oauth2/token")
///     .client_id("gateway")
///     .client_secret("s3cr3t")
///     .audience("https://orders.internal")
///     .build()?;
/// let source = gateway.token_exchange(SubjectToken::new("the caller's access token"));
/// assert!(!format!("{source:?}").contains("caller"));
/// assert_ne!(
///     source.cache_key(),
///     gateway.token_exchange(SubjectToken::new("another caller's")).cache_key()
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TokenExchange {
    client: ClientCredentials,
    subject: SubjectToken,
    subject_token_type: String,
    actor: Option<(SecretString, String)>,
    requested_token_type: Option<String>,
}

impl ClientCredentials {
    /// A token-exchange source (RFC 8693) for `subject`, with this client's token
    /// endpoint, authentication and `audience` / `resource` / `scope` parameters.
    pub fn token_exchange(&self, subject: SubjectToken) -> TokenExchange {
        TokenExchange {
            client: self.clone(),
            subject,
            subject_token_type: ACCESS_TOKEN_TYPE.to_owned(),
            actor: None,
            requested_token_type: None,
        }
    }
}

impl TokenExchange {
    /// The `subject_token_type` (default [`ACCESS_TOKEN_TYPE`]; `..:id_token`, `..:jwt`...).
    pub fn subject_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.subject_token_type = token_type.into();
        self
    }

    /// An `actor_token` and its `actor_token_type` (RFC 8693 section 2.1): delegation, the
    /// gateway acting for the subject.
    pub fn actor_token(mut self, token: impl Into<String>, token_type: impl Into<String>) -> Self {
        self.actor = Some((SecretString::from(token.into()), token_type.into()));
        self
    }

    /// The `requested_token_type` (RFC 8693 section 2.1).
    pub fn requested_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.requested_token_type = Some(token_type.into());
        self
    }

    /// The subject the tokens are for.
    pub fn subject(&self) -> &SubjectToken {
        &self.subject
    }

    async fn exchange(&self) -> Result<Token, Error> {
        let subject = self.subject.token().expose_secret();
        let mut grant: Vec<(&str, &str)> = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("subject_token", subject),
            ("subject_token_type", &self.subject_token_type),
        ];
        let mut secrets = vec![subject];
        if let Some((token, token_type)) = &self.actor {
            grant.push(("actor_token", token.expose_secret()));
            grant.push(("actor_token_type", token_type));
            secrets.push(token.expose_secret());
        }
        if let Some(requested) = &self.requested_token_type {
            grant.push(("requested_token_type", requested));
        }
        self.client.request_grant(&grant, &secrets).await
    }
}

impl TokenSource for TokenExchange {
    fn fetch(&self) -> impl Future<Output = Result<Token, Error>> + Send {
        self.exchange()
    }

    /// The client's identity, with the subject's key: `gateway@idp.example.com for
    /// 3f2a...`.
    fn identity(&self) -> Option<Identity> {
        let host = self.client.token_url().host_str().unwrap_or_default();
        Some(
            Identity::new(format!(
                "{}@{host} for {}",
                self.client.client_id(),
                self.subject.key()
            ))
            .with_token_endpoint(self.client.token_url().as_str()),
        )
    }

    /// The client's key, the grant, a SHA-256 of the subject token (and of the actor
    /// token), and the token types.
    fn cache_key(&self) -> Option<CacheKey> {
        let base = self.client.cache_key()?;
        let mut key = CacheKey::builder("token_exchange/v1")
            .field("client", base.to_hex())
            .secret_field("subject_token", self.subject.token().expose_secret())
            .field("subject_token_type", &self.subject_token_type);
        if let Some((token, token_type)) = &self.actor {
            key = key
                .secret_field("actor_token", token.expose_secret())
                .field("actor_token_type", token_type);
        }
        if let Some(requested) = &self.requested_token_type {
            key = key.field("requested_token_type", requested);
        }
        Some(key.build())
    }
}

impl fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchange")
            .field("client", &self.client)
            .field("subject", &self.subject)
            .field("subject_token_type", &self.subject_token_type)
            .field(
                "actor_token",
                &self.actor.as_ref().map(|(_, t)| (t, "[redacted]")),
            )
            .field("requested_token_type", &self.requested_token_type)
            .finish()
    }
}
