//! Errors of the token lifecycle.
//!
//! Every error the layer returns for a token it could not get is an [`Error`] inside the
//! service's `BoxError`; downcast to inspect it:
//!
//! ```
//! use tower_oauth::Error;
//!
//! fn explain(err: &tower::BoxError) -> String {
//!     match err.downcast_ref::<Error>() {
//!         Some(e) => match e.token_endpoint_error() {
//!             Some(rfc) => format!("token endpoint said {} ({})", rfc.error(), rfc.status()),
//!             None => format!("no token: {e}"),
//!         },
//!         None => format!("inner service failed: {err}"),
//!     }
//! }
//! # let _ = explain;
//! ```
//!
//! No error of this crate carries a client secret or an access token, in its message, its
//! `Debug` output or its source chain.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::BoxError;
use crate::identity::Identity;

mod token_endpoint;

pub(crate) use token_endpoint::KNOWN_CODES;
pub use token_endpoint::TokenEndpointError;

/// Why no token could be had.
///
/// Cheap to clone: when many requests wait for one token fetch and it fails, each of them
/// gets a clone of the same error. Opaque: inspect it with the `is_*` predicates,
/// [`Error::token_endpoint_error`], [`Error::status`] and [`std::error::Error::source`].
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: Kind,
    source: Option<Arc<dyn StdError + Send + Sync>>,
    /// The token endpoint's `Retry-After`, on a 429 or 503 answer.
    retry_after: Option<Duration>,
    /// Which token could not be had, set by the cache that fetched it.
    identity: Option<Identity>,
}

/// What an [`Error`] is about, from [`Error::kind`]. Each variant has its predicate
/// (`ErrorKind::Timeout` and [`Error::is_timeout`], ...), whose docs say more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The token endpoint answered with an RFC 6749 section 5.2 error
    /// ([`Error::is_token_endpoint`]).
    TokenEndpoint,
    /// The answer is not a usable token ([`Error::is_invalid_response`]).
    InvalidResponse,
    /// The token endpoint could not be reached ([`Error::is_transport`]).
    Transport,
    /// The token request took longer than its timeout ([`Error::is_timeout`]).
    Timeout,
    /// A builder was given a configuration it cannot use ([`Error::is_config`]).
    Config,
    /// A token source of the user's failed ([`Error::is_other`]).
    Other,
    /// The fetch ended without a result ([`Error::is_cancelled`]).
    Cancelled,
    /// Discovery of the authorization server failed ([`Error::is_discovery`]).
    Discovery,
    /// A shared token store failed ([`Error::is_store`]).
    Store,
    /// The request's origin is refused ([`Error::is_origin_refused`]).
    OriginRefused,
    /// No client assertion could be made or read ([`Error::is_client_assertion`]).
    ClientAssertion,
    /// The request has no key for its token ([`Error::is_missing_key`]).
    MissingKey,
}

#[derive(Clone, Debug)]
enum Kind {
    /// The token endpoint answered with an RFC 6749 section 5.2 error.
    TokenEndpoint(TokenEndpointError),
    /// The token endpoint answered, but not with something this crate can read.
    InvalidResponse {
        status: StatusCode,
        content_type: Option<String>,
        reason: &'static str,
    },
    /// The access token cannot go into an HTTP header (control characters, non-ASCII).
    InvalidToken,
    /// The token endpoint could not be reached, or the connection failed.
    Transport,
    /// The token request did not finish in time: which limit fired, and its duration,
    /// where known.
    Timeout(Option<(&'static str, Duration)>),
    /// The configuration is not usable (reported by builders).
    Config(String),
    /// A [`TokenSource`](crate::TokenSource) of the user's failed ([`Error::other`]).
    Other,
    /// The fetch ended without a result (its task was cancelled, e.g. at runtime shutdown).
    Cancelled,
    /// The authorization server metadata (RFC 8414, OpenID Connect Discovery) could not be
    /// fetched or is not usable.
    Discovery {
        status: Option<StatusCode>,
        reason: String,
    },
    /// A shared token store failed, timed out, or held a value that cannot be read.
    Store(&'static str),
    /// The request was for an origin outside the allowed origins, and the layer refuses
    /// those. Holds the request's origin (`scheme://host:port`), nothing else of it.
    OriginRefused(String),
    /// No client assertion (RFC 7521, RFC 7523 section 2.2) could be made or read: a key
    /// that cannot sign, an assertion file that is missing, empty, malformed or expired,
    /// a closure of the user's that failed. The message names the file, never its content.
    ClientAssertion(String),
    /// A [`KeyedLayer`](crate::oauth::keyed::KeyedLayer) that refuses requests without a key
    /// got one: what the key is (`"subject token"`).
    MissingKey(&'static str),
}

impl Error {
    fn new(kind: Kind, source: Option<BoxError>) -> Error {
        Error {
            inner: Arc::new(Inner {
                kind,
                source: source.map(Arc::from),
                retry_after: None,
                identity: None,
            }),
        }
    }

    /// The same error, naming the token it is about (unless it already names one).
    pub(crate) fn for_identity(self, identity: &Identity) -> Error {
        if self.inner.identity.is_some() {
            return self;
        }
        Error {
            inner: Arc::new(Inner {
                kind: self.inner.kind.clone(),
                source: self.inner.source.clone(),
                retry_after: self.inner.retry_after,
                identity: Some(identity.clone()),
            }),
        }
    }

    /// Which token this error is about: its name and token endpoint origin (see
    /// [`identity`](crate::identity)). Set on every error of a fetch made by a layer's
    /// cache; `None` on errors made before one (a builder's, a refused origin).
    pub fn identity(&self) -> Option<&Identity> {
        self.inner.identity.as_ref()
    }

    pub(crate) fn token_endpoint(error: TokenEndpointError) -> Error {
        Error::new(Kind::TokenEndpoint(error), None)
    }

    pub(crate) fn invalid_response(
        status: StatusCode,
        content_type: Option<&str>,
        reason: &'static str,
        source: Option<BoxError>,
    ) -> Error {
        let content_type = content_type.map(|c| clip(c, CONTENT_TYPE_LIMIT).to_owned());
        Error::new(
            Kind::InvalidResponse {
                status,
                content_type,
                reason,
            },
            source,
        )
    }

    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn transport(source: impl Into<BoxError>) -> Error {
        Error::new(Kind::Transport, Some(source.into()))
    }

    /// A timeout of `limit` (the setting's name, as a user writes it) after `after`.
    pub(crate) fn timeout_of(limit: &'static str, after: Duration) -> Error {
        Error::new(Kind::Timeout(Some((limit, after))), None)
    }

    pub(crate) fn timeout() -> Error {
        Error::new(Kind::Timeout(None), None)
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(Kind::Config(message.into()), None)
    }

    pub(crate) fn invalid_token() -> Error {
        Error::new(Kind::InvalidToken, None)
    }

    pub(crate) fn cancelled() -> Error {
        Error::new(Kind::Cancelled, None)
    }

    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn discovery(
        status: Option<StatusCode>,
        reason: impl Into<String>,
        source: Option<BoxError>,
    ) -> Error {
        let mut reason = reason.into();
        reason.truncate(clip(&reason, REASON_LIMIT).len());
        Error::new(Kind::Discovery { status, reason }, source)
    }

    pub(crate) fn store(reason: &'static str, source: Option<BoxError>) -> Error {
        Error::new(Kind::Store(reason), source)
    }

    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn client_assertion(message: impl Into<String>, source: Option<BoxError>) -> Error {
        Error::new(Kind::ClientAssertion(message.into()), source)
    }

    pub(crate) fn missing_key(what: &'static str) -> Error {
        Error::new(Kind::MissingKey(what), None)
    }

    pub(crate) fn origin_refused(origin: String) -> Error {
        Error::new(Kind::OriginRefused(origin), None)
    }

    /// An error for a [`TokenSource`](crate::TokenSource) of your own to return. Its message
    /// and source must not contain secrets.
    pub fn other(source: impl Into<BoxError>) -> Error {
        Error::new(Kind::Other, Some(source.into()))
    }

    /// The same error, saying that the token endpoint asked not to be tried again for
    /// `delay` (its `Retry-After`, RFC 9110 section 10.2.3, on a 429 or 503 answer).
    ///
    /// [`ClientCredentials`](crate::ClientCredentials) sets it; a
    /// [`TokenSource`](crate::TokenSource) of your own may, too
    /// ([`endpoint::parse_retry_after`](crate::endpoint::parse_retry_after) reads the
    /// header). The layer then makes no token request for that long (up to its backoff
    /// maximum, see [`OAuthLayerBuilder::retry_backoff`](crate::OAuthLayerBuilder::retry_backoff)).
    pub fn with_retry_after(self, delay: Duration) -> Error {
        Error {
            inner: Arc::new(Inner {
                kind: self.inner.kind.clone(),
                source: self.inner.source.clone(),
                retry_after: Some(delay),
                identity: self.inner.identity.clone(),
            }),
        }
    }

    /// How long the token endpoint asked not to be tried again (its `Retry-After` on a 429
    /// or 503 answer), if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// What failed, as an enum to `match` on; the `is_*` predicates say the same one at a
    /// time.
    ///
    /// ```
    /// use tower_oauth::error::{Error, ErrorKind};
    ///
    /// let error = Error::other("no token today");
    /// match error.kind() {
    ///     ErrorKind::TokenEndpoint | ErrorKind::Transport | ErrorKind::Timeout => {}
    ///     ErrorKind::Other => tracing::warn!(%error, "the source failed"),
    ///     _ => {}
    /// }
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match &self.inner.kind {
            Kind::TokenEndpoint(_) => ErrorKind::TokenEndpoint,
            Kind::InvalidResponse { .. } | Kind::InvalidToken => ErrorKind::InvalidResponse,
            Kind::Transport => ErrorKind::Transport,
            Kind::Timeout(_) => ErrorKind::Timeout,
            Kind::Config(_) => ErrorKind::Config,
            Kind::Other => ErrorKind::Other,
            Kind::Cancelled => ErrorKind::Cancelled,
            Kind::Discovery { .. } => ErrorKind::Discovery,
            Kind::Store(_) => ErrorKind::Store,
            Kind::OriginRefused(_) => ErrorKind::OriginRefused,
            Kind::ClientAssertion(_) => ErrorKind::ClientAssertion,
            Kind::MissingKey(_) => ErrorKind::MissingKey,
        }
    }

    /// For a [timeout](Error::is_timeout): the duration of the limit that fired, where
    /// known (not for a timeout read back from a shared store's failure record).
    pub fn timeout_after(&self) -> Option<Duration> {
        match self.inner.kind {
            Kind::Timeout(Some((_, after))) => Some(after),
            _ => None,
        }
    }

    /// The token endpoint refused the request with an RFC 6749 section 5.2 error
    /// (`invalid_client`, `invalid_scope`, ...). See [`Error::token_endpoint_error`].
    pub fn is_token_endpoint(&self) -> bool {
        matches!(self.inner.kind, Kind::TokenEndpoint(_))
    }

    /// The token source's answer is not a usable token.
    ///
    /// From the token endpoint: something that is not a token response (not JSON, an HTML
    /// error page, a body over the size limit, a missing `access_token`, a negative
    /// `expires_in`); [`Error::status`] and [`Error::content_type`] say what came back.
    /// From any [`TokenSource`](crate::TokenSource), [`ClientCredentials`](crate::ClientCredentials)
    /// or your own: an access token that cannot be a header value (control characters,
    /// non-ASCII); `status()` and `content_type()` are then `None`.
    pub fn is_invalid_response(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::InvalidResponse { .. } | Kind::InvalidToken
        )
    }

    /// The token endpoint could not be reached (refused connection, DNS, TLS, reset).
    pub fn is_transport(&self) -> bool {
        matches!(self.inner.kind, Kind::Transport)
    }

    /// The token request took longer than its timeout. Its `Display` names the limit that
    /// fired and its duration: `OAuthLayerBuilder::fetch_timeout` (the whole fetch, the
    /// store's part included) or `ClientCredentialsBuilder::timeout` (one HTTP request to
    /// the token endpoint); [`timeout_after`](Error::timeout_after) gives the duration.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::Timeout(_))
    }

    /// A builder was given a configuration it cannot use.
    pub fn is_config(&self) -> bool {
        matches!(self.inner.kind, Kind::Config(_))
    }

    /// A token source of the user's failed ([`Error::other`]).
    pub fn is_other(&self) -> bool {
        matches!(self.inner.kind, Kind::Other)
    }

    /// The fetch was cancelled before it had a result (its runtime shut down).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.inner.kind, Kind::Cancelled)
    }

    /// Discovery of the authorization server failed: its metadata document (RFC 8414,
    /// OpenID Connect Discovery 1.0) could not be fetched, is not a JSON object, is over the
    /// size limit, names another issuer, or lacks a usable `token_endpoint`.
    /// [`Error::status`] is the HTTP status of the metadata response, where there was one.
    pub fn is_discovery(&self) -> bool {
        matches!(self.inner.kind, Kind::Discovery { .. })
    }

    /// A shared [`TokenStore`](crate::store::TokenStore) failed or timed out, or held a
    /// value that cannot be read: not one this crate wrote, or sealed with another
    /// `EncryptionKey`. The layer never fails a request for
    /// this: it fetches a token of its own instead. Reported by
    /// [`TokenCache::stored_token`](crate::TokenCache::stored_token).
    pub fn is_store(&self) -> bool {
        matches!(self.inner.kind, Kind::Store(_))
    }

    /// The request was for an origin that is not among the layer's allowed origins, and the
    /// layer was built with
    /// [`refuse_other_origins`](crate::OAuthLayerBuilder::refuse_other_origins). The request
    /// was not sent and no token was fetched for it.
    pub fn is_origin_refused(&self) -> bool {
        matches!(self.inner.kind, Kind::OriginRefused(_))
    }

    /// No client assertion could be made or read for the token request (RFC 7521, RFC 7523
    /// section 2.2), so none was sent: the signing key could not sign, the assertion file
    /// (`client_assertion_file`) is missing, empty, unreadable, not a JWT or expired, or the
    /// closure given to `client_assertion_fn` failed (its error is the source). The message
    /// names the file's path, never its content.
    pub fn is_client_assertion(&self) -> bool {
        matches!(self.inner.kind, Kind::ClientAssertion(_))
    }

    /// The request carries nothing to choose its token by, and the
    /// [`KeyedLayer`](crate::oauth::keyed::KeyedLayer) refuses such requests
    /// ([`refuse_without_key`](crate::oauth::keyed::KeyedLayer::refuse_without_key)): on an
    /// on-behalf-of route, no caller's bearer token. Nothing was sent.
    pub fn is_missing_key(&self) -> bool {
        matches!(self.inner.kind, Kind::MissingKey(_))
    }

    /// The RFC 6749 section 5.2 error the token endpoint answered with, if that is what
    /// this is.
    pub fn token_endpoint_error(&self) -> Option<&TokenEndpointError> {
        match &self.inner.kind {
            Kind::TokenEndpoint(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status of the token endpoint's answer (or, for [`Error::is_discovery`], of the
    /// metadata endpoint's), where there was one.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.inner.kind {
            Kind::TokenEndpoint(e) => Some(e.status),
            Kind::InvalidResponse { status, .. } => Some(*status),
            Kind::Discovery { status, .. } => *status,
            _ => None,
        }
    }

    /// The `Content-Type` of an answer that could not be read, where it had one.
    pub fn content_type(&self) -> Option<&str> {
        match &self.inner.kind {
            Kind::InvalidResponse { content_type, .. } => content_type.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("tower_oauth::Error");
        d.field("kind", &self.inner.kind);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        if let Some(delay) = self.inner.retry_after {
            d.field("retry_after", &delay);
        }
        if let Some(identity) = &self.inner.identity {
            d.field("identity", identity);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    /// `<identity>: <what failed>[: <cause>]`, for example `client-a@idp.example.com
    /// (token endpoint https://idp.example.com): token endpoint unreachable: Connection
    /// refused (os error 111)`. The cause is the innermost error of the source chain, for
    /// the transport and store kinds only (their causes are the network's, never a secret),
    /// and for a client assertion whose file could not be read (the operating system's
    /// reason).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(identity) = &self.inner.identity {
            write!(f, "{identity}: ")?;
        }
        self.fmt_kind(f)?;
        if matches!(self.inner.kind, Kind::Transport | Kind::Store(_))
            && let Some(cause) = self.root_cause()
        {
            write!(f, ": {cause}")?;
        }
        // An assertion file that cannot be read: the operating system's reason ("No such
        // file or directory"), which names nothing of the file's content.
        if matches!(self.inner.kind, Kind::ClientAssertion(_))
            && let Some(cause) = self
                .root_cause()
                .and_then(|c| c.downcast_ref::<std::io::Error>())
        {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl Error {
    /// The innermost error of the source chain, if any.
    fn root_cause(&self) -> Option<&(dyn StdError + 'static)> {
        let mut cause = StdError::source(self)?;
        while let Some(next) = cause.source() {
            cause = next;
        }
        Some(cause)
    }

    fn fmt_kind(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.kind {
            Kind::TokenEndpoint(e) => write!(f, "token endpoint refused the request: {e}"),
            Kind::InvalidResponse {
                status,
                content_type,
                reason,
            } => {
                write!(f, "invalid token response ({status}")?;
                if let Some(ct) = content_type {
                    write!(f, ", {ct}")?;
                }
                write!(f, "): {reason}")
            }
            Kind::InvalidToken => {
                f.write_str("access token has characters not allowed in an HTTP header")
            }
            Kind::Transport => f.write_str("token endpoint unreachable"),
            Kind::Timeout(None) => f.write_str("token request timed out"),
            Kind::Timeout(Some((limit, after))) => {
                write!(f, "token request timed out after {after:?} ({limit})")
            }
            Kind::Config(message) => write!(f, "invalid configuration: {message}"),
            Kind::Other => f.write_str("token source failed"),
            Kind::Cancelled => f.write_str("token fetch cancelled"),
            Kind::Discovery { reason, .. } => write!(f, "discovery failed: {reason}"),
            Kind::Store(reason) => write!(f, "token store: {reason}"),
            Kind::ClientAssertion(message) => write!(f, "client assertion: {message}"),
            Kind::MissingKey(what) => {
                write!(f, "request refused: no {what} to choose its token by")
            }
            Kind::OriginRefused(origin) => write!(
                f,
                "request for {origin} refused: not an allowed origin for the access token"
            ),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|e| &**e as &(dyn StdError + 'static))
    }
}

/// The most characters an error keeps of a response's `Content-Type`.
const CONTENT_TYPE_LIMIT: usize = 100;
/// The most characters an error keeps of the reason discovery failed.
const REASON_LIMIT: usize = 500;

/// The first `max_chars` characters of `text`: how every error of the crate bounds the
/// text a server sent (at most 4 bytes a character, so `4 * max_chars` bytes).
pub(crate) fn clip(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::token_endpoint::FIELD_LIMIT;
    use super::*;

    #[test]
    fn kind_agrees_with_the_predicates() {
        let cases = [
            (
                Error::token_endpoint(TokenEndpointError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_client",
                    None,
                    None,
                )),
                ErrorKind::TokenEndpoint,
            ),
            (Error::transport("refused"), ErrorKind::Transport),
            (Error::timeout(), ErrorKind::Timeout),
            (Error::config("no"), ErrorKind::Config),
            (Error::invalid_token(), ErrorKind::InvalidResponse),
            (Error::cancelled(), ErrorKind::Cancelled),
            (Error::store("down", None), ErrorKind::Store),
            (
                Error::origin_refused("https://x:443".into()),
                ErrorKind::OriginRefused,
            ),
            (Error::other("mine"), ErrorKind::Other),
            (
                Error::client_assertion("the assertion file /x is empty", None),
                ErrorKind::ClientAssertion,
            ),
            (Error::missing_key("subject token"), ErrorKind::MissingKey),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
            let predicate = match kind {
                ErrorKind::TokenEndpoint => error.is_token_endpoint(),
                ErrorKind::InvalidResponse => error.is_invalid_response(),
                ErrorKind::Transport => error.is_transport(),
                ErrorKind::Timeout => error.is_timeout(),
                ErrorKind::Config => error.is_config(),
                ErrorKind::Other => error.is_other(),
                ErrorKind::Cancelled => error.is_cancelled(),
                ErrorKind::Discovery => error.is_discovery(),
                ErrorKind::Store => error.is_store(),
                ErrorKind::OriginRefused => error.is_origin_refused(),
                ErrorKind::ClientAssertion => error.is_client_assertion(),
                ErrorKind::MissingKey => error.is_missing_key(),
            };
            assert!(predicate, "{kind:?}");
        }
    }

    #[test]
    fn clip_counts_characters_and_cuts_on_their_boundaries() {
        assert_eq!(clip("", 3), "");
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc");
        assert_eq!(clip("ééé€", 3), "ééé");
        assert_eq!(clip("€", 0), "");
    }

    #[test]
    fn server_text_is_kept_within_its_limits() {
        let long = "é".repeat(5_000);
        let rfc = TokenEndpointError::new(StatusCode::BAD_REQUEST, &long, Some(&long), Some(&long));
        for field in [
            rfc.error(),
            rfc.error_description().unwrap(),
            rfc.error_uri().unwrap(),
        ] {
            assert_eq!(field.chars().count(), FIELD_LIMIT);
        }
        let err = Error::invalid_response(StatusCode::OK, Some(&long), "reason", None);
        assert_eq!(
            err.content_type().unwrap().chars().count(),
            CONTENT_TYPE_LIMIT
        );
        let Kind::Discovery { reason, .. } = &Error::discovery(None, long, None).inner.kind else {
            unreachable!()
        };
        assert_eq!(reason.chars().count(), REASON_LIMIT);
    }
}
