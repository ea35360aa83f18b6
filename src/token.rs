//! Access tokens as the token endpoint issues them (RFC 6749 section 5.1).
//!
//! ```
//! use std::time::Duration;
//! use tower_oauth::{Token, TokenType};
//! use secrecy::ExposeSecret;
//!
//! let token = Token::new("2YotnFZFEjr1zCsicMWpAA", Duration::from_secs(3600))
//!     .with_token_type(TokenType::parse("bearer"))
//!     .with_scope("api.read api.write");
//! assert_eq!(token.token_type().as_str(), "Bearer");
//! assert_eq!(token.access_token().expose_secret(), "2YotnFZFEjr1zCsicMWpAA");
//! // Debug never shows the token itself.
//! assert!(!format!("{token:?}").contains("2YotnFZFEjr1zCsicMWpAA"));
//! ```

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;

/// The longest token lifetime believed: 365 days. [`Token::new`] clamps longer lifetimes
/// to it, so that every expiry is a representable time, and the token endpoint's
/// `expires_in` (RFC 6749 section 5.1) is clamped to it by
/// [`ResponseParser`](crate::endpoint::ResponseParser).
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(365 * 24 * 3600);

/// The longest access token accepted, in bytes: 16 KiB. Longer tokens in a token response
/// are an error of [`ResponseParser`](crate::endpoint::ResponseParser), and longer tokens
/// in a shared [`store`](crate::store) are not read.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The type of an access token, as in `token_type` (RFC 6749 section 7.1).
///
/// [`TokenType::parse`] normalises the case of the types this crate knows, so that
/// `bearer` and `BEARER` become `Bearer` (RFC 6750) and `dpop` becomes `DPoP` (RFC 9449).
/// Any other type is kept as the server wrote it. The type is the scheme of the
/// `Authorization` header the layer sends: `Authorization: <type> <access_token>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenType(Cow<'static, str>);

impl TokenType {
    /// `Bearer` (RFC 6750).
    pub const BEARER: TokenType = TokenType(Cow::Borrowed("Bearer"));
    /// `DPoP` (RFC 9449): the header scheme; the proof each request needs comes from a
    /// [`DpopLayer`](crate::oauth::dpop::DpopLayer) below the layer.
    pub const DPOP: TokenType = TokenType(Cow::Borrowed("DPoP"));

    /// Reads a `token_type` value, normalising the case of `Bearer` and `DPoP`.
    pub fn parse(value: &str) -> TokenType {
        if value.eq_ignore_ascii_case("bearer") {
            TokenType::BEARER
        } else if value.eq_ignore_ascii_case("dpop") {
            TokenType::DPOP
        } else {
            TokenType(Cow::Owned(value.to_owned()))
        }
    }

    /// The type as it goes into the `Authorization` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TokenType {
    fn default() -> Self {
        TokenType::BEARER
    }
}

impl fmt::Debug for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An access token with what the layer needs to use it: its type, its scope and when it
/// expires (RFC 6749 section 5.1).
///
/// The token value is a [`SecretString`]: it is zeroed when dropped, and neither `Debug` nor
/// any error or log line of this crate shows it. Read it with
/// [`ExposeSecret::expose_secret`].
///
/// The expiry is absolute, on the wall clock: [`Token::expires_at`] is the time the token
/// was issued plus its `expires_in`.
#[derive(Clone)]
pub struct Token {
    access_token: SecretString,
    token_type: TokenType,
    issued_at: SystemTime,
    expires_in: Duration,
    scope: Option<String>,
}

impl Token {
    /// A `Bearer` token issued now that lives for `expires_in`. Lifetimes over
    /// [`MAX_EXPIRES_IN`] (365 days) are clamped to it, as
    /// [`ResponseParser`](crate::endpoint::ResponseParser) clamps them, so that every expiry
    /// is a representable time.
    pub fn new(access_token: impl Into<String>, expires_in: Duration) -> Token {
        Token {
            access_token: SecretString::from(access_token.into()),
            token_type: TokenType::BEARER,
            issued_at: SystemTime::now(),
            expires_in: expires_in.min(MAX_EXPIRES_IN),
            scope: None,
        }
    }

    /// Sets the token type (`token_type`).
    pub fn with_token_type(mut self, token_type: TokenType) -> Token {
        self.token_type = token_type;
        self
    }

    /// Sets the granted scope (`scope`, space-separated, RFC 6749 section 3.3).
    pub fn with_scope(mut self, scope: impl Into<String>) -> Token {
        self.scope = Some(scope.into());
        self
    }

    /// Sets when the token was issued, on the wall clock (default: when it was built).
    pub fn with_issued_at(mut self, issued_at: SystemTime) -> Token {
        self.issued_at = issued_at;
        self
    }

    /// The access token. Keep it out of logs.
    pub fn access_token(&self) -> &SecretString {
        &self.access_token
    }

    /// The token type, normalised (see [`TokenType::parse`]).
    pub fn token_type(&self) -> &TokenType {
        &self.token_type
    }

    /// The scope the server granted, if it said.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The lifetime the server gave the token (`expires_in`).
    pub fn expires_in(&self) -> Duration {
        self.expires_in
    }

    /// When the token was issued, on the wall clock.
    pub fn issued_at(&self) -> SystemTime {
        self.issued_at
    }

    /// When the token expires, on the wall clock: `issued_at + expires_in`.
    pub fn expires_at(&self) -> SystemTime {
        self.issued_at
            .checked_add(self.expires_in)
            .unwrap_or(self.issued_at)
    }

    /// How long the token has left on the wall clock; zero once it has expired.
    pub fn remaining(&self) -> Duration {
        self.expires_at()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }

    /// How long from `now` (wall clock) the token may be used before it is refreshed: its
    /// remaining lifetime less the refresh margin, where the margin is
    /// `min(margin, expires_in / 2)`, so a short-lived token is still used for half its
    /// lifetime. Zero once that point has passed.
    pub(crate) fn usable_for(&self, margin: Duration, now: SystemTime) -> Duration {
        let margin = margin.min(self.expires_in / 2);
        let remaining = self.expires_at().duration_since(now).unwrap_or_default();
        remaining.saturating_sub(margin)
    }

    /// The `Authorization` header value for this token, `<token_type> <access_token>`
    /// (RFC 6750 section 2.1), marked sensitive. The one place where a token is checked
    /// to fit in a header.
    ///
    /// # Errors
    /// An [`Error`] for which [`Error::is_invalid_response`] is true if the type or the
    /// token holds a byte a header value cannot carry (a control character such as a line
    /// break).
    pub(crate) fn header_value(&self) -> Result<HeaderValue, Error> {
        let mut header = HeaderValue::from_maybe_shared(Bytes::from(self.header_string()))
            .map_err(|_| Error::invalid_token())?;
        header.set_sensitive(true);
        // A clone of a value made from a `String` shares its bytes through `Bytes`' shared
        // representation; the clones made of that clone on every request then take the
        // shortest path (one reference count, no representation test).
        let shared = header.clone();
        drop(header);
        Ok(shared)
    }

    /// `<token_type> <access_token>`.
    fn header_string(&self) -> String {
        let secret = self.access_token.expose_secret();
        let mut value = String::with_capacity(self.token_type.as_str().len() + 1 + secret.len());
        value.push_str(self.token_type.as_str());
        value.push(' ');
        value.push_str(secret);
        value
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_type_is_normalised() {
        assert_eq!(TokenType::parse("bearer"), TokenType::BEARER);
        assert_eq!(TokenType::parse("BEARER").as_str(), "Bearer");
        assert_eq!(TokenType::parse("dpop").as_str(), "DPoP");
        assert_eq!(TokenType::parse("N_A").as_str(), "N_A");
    }

    #[test]
    fn debug_hides_the_token() {
        let token = Token::new("very-secret-token", Duration::from_secs(60));
        assert!(!format!("{token:?}").contains("very-secret-token"));
        assert!(!format!("{token:#?}").contains("very-secret-token"));
        assert_eq!(token.header_string(), "Bearer very-secret-token");
        let header = token.header_value().unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header, "Bearer very-secret-token");
        assert!(!format!("{header:?}").contains("very-secret-token"));
    }

    #[test]
    fn a_token_that_cannot_go_into_a_header_is_an_error() {
        let token = Token::new("line\nbreak", Duration::from_secs(60));
        assert!(token.header_value().unwrap_err().is_invalid_response());
    }

    #[test]
    fn usable_for_leaves_the_margin_but_at_least_half_the_lifetime() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = Token::new("t", Duration::from_secs(600)).with_issued_at(issued);
        let margin = Duration::from_secs(60);
        assert_eq!(token.usable_for(margin, issued), Duration::from_secs(540));
        let later = issued + Duration::from_secs(500);
        assert_eq!(token.usable_for(margin, later), Duration::from_secs(40));
        assert_eq!(
            token.usable_for(margin, issued + Duration::from_secs(541)),
            Duration::ZERO
        );
        assert_eq!(
            token.usable_for(margin, issued + Duration::from_secs(9999)),
            Duration::ZERO
        );
        // A 30 s token with a 60 s margin is used for half its lifetime.
        let short = Token::new("t", Duration::from_secs(30)).with_issued_at(issued);
        assert_eq!(short.usable_for(margin, issued), Duration::from_secs(15));
    }
}
