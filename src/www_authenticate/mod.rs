//! Reading `WWW-Authenticate` challenges (RFC 9110 section 11.6.1; the `Bearer` scheme's
//! parameters are in RFC 6750 section 3).
//!
//! A resource server that refuses a token says why in `WWW-Authenticate`:
//!
//! ```text
//! WWW-Authenticate: Bearer realm="example", error="invalid_token",
//!                   error_description="The access token expired"
//! ```
//!
//! [`parse`] reads one header value into its [`Challenge`]s; [`challenges`] reads every
//! `WWW-Authenticate` line of a response; [`is_invalid_token`] answers the question a client
//! most often has: did the server reject the token itself (so a new one may help)? It is
//! the check the layer's 401 recovery makes with `RecoverOn::InvalidToken`, and it
//! allocates nothing ([`is_invalid_token_value`] for one header value).
//!
//! ```
//! use tower_oauth::www_authenticate;
//!
//! let value = br#"Bearer realm="api", error="invalid_token", error_description="expired", Basic realm="x""#;
//! let challenges = www_authenticate::parse(value).unwrap();
//! assert_eq!(challenges.len(), 2);
//! assert!(challenges[0].is_scheme("bearer"));
//! assert_eq!(challenges[0].error(), Some("invalid_token"));
//! assert_eq!(challenges[0].param("ERROR_DESCRIPTION"), Some("expired"));
//! assert_eq!(challenges[1].scheme(), "Basic");
//! assert!(www_authenticate::is_invalid_token_value(value));
//! ```
//!
//! The parser is a pure function of its input: it never panics, reads at most
//! [`MAX_VALUE_LEN`] bytes of one value, does work linear in the input, and returns a
//! [`ParseError`] for anything the grammar does not allow (an unterminated quoted string, a
//! control character, a stray character after a parameter...). Scheme and parameter names
//! compare case-insensitively; values are kept as sent, with quoted-pair escapes undone.
//!
//! # A parameter named twice
//!
//! RFC 9110 says each parameter name occurs once per challenge, but does not say what a
//! reader does with a repeat. Here the first occurrence wins, as in browsers and most
//! HTTP libraries: [`parse`] keeps every occurrence in [`Challenge::params`], and
//! [`Challenge::param`] (so [`Challenge::error`]) gives the first. For
//! `Bearer error="invalid_token", error="x"` both [`parse`] and [`is_invalid_token_value`]
//! say the token was rejected; for `Bearer error="x", error="invalid_token"` neither does.
//!
//! # The scan and the parser
//!
//! [`is_invalid_token_value`] reads the same grammar as [`parse`] with the same helpers,
//! without building anything. For every value [`parse`] accepts it gives the answer of
//! [`parse`] followed by [`Challenge::is_invalid_token`] on each challenge (a unit test
//! and the fuzz target check this). Where [`parse`] gives
//! up, the scan goes on: an item it cannot read is skipped up to the next comma outside a
//! quoted string, and a parameter counts only if it is read to its end.

use std::fmt;

use http::HeaderMap;
use http::header::WWW_AUTHENTICATE;

mod grammar;

use grammar::{Cursor, Data, is_ows};

/// The longest header value [`parse`] reads: 8 KiB. Longer values are a [`ParseError`].
pub const MAX_VALUE_LEN: usize = 8 * 1024;

/// The most auth-params one challenge may have: 64. More are a [`ParseError`].
pub const MAX_PARAMS: usize = 64;

/// How many `WWW-Authenticate` lines [`challenges`] reads: 32. Later lines are ignored.
pub const MAX_HEADER_LINES: usize = 32;

/// One challenge: an auth scheme with either a `token68` or a list of auth-params
/// (RFC 9110 section 11.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    token68: Option<String>,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// The auth scheme as the server wrote it (`Bearer`, `Basic`, `DPoP`...).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether the scheme is `scheme`, ignoring ASCII case (schemes are case-insensitive,
    /// RFC 9110 section 11.1).
    pub fn is_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// The `token68` form of the challenge's data (`Negotiate abc==`), if that is the form
    /// it has.
    pub fn token68(&self) -> Option<&str> {
        self.token68.as_deref()
    }

    /// The auth-params, names and values as sent, in order; a name sent twice is here
    /// twice.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The value of the auth-param `name`, ignoring the ASCII case of the name. If the
    /// name was sent more than once, the first value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `realm` (RFC 9110 section 11.5).
    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    /// `error` (RFC 6750 section 3): `invalid_request`, `invalid_token` or
    /// `insufficient_scope` for `Bearer`.
    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }

    /// `error_description` (RFC 6750 section 3).
    pub fn error_description(&self) -> Option<&str> {
        self.param("error_description")
    }

    /// `scope` (RFC 6750 section 3): the scopes the resource needs, space-separated.
    pub fn scope(&self) -> Option<&str> {
        self.param("scope")
    }

    /// Whether this is a `Bearer` or `DPoP` challenge whose [`error`](Challenge::error) is
    /// `invalid_token` (RFC 6750 section 3.1; RFC 9449 section 7.1): the server rejected
    /// the token itself.
    pub fn is_invalid_token(&self) -> bool {
        is_token_scheme(self.scheme.as_bytes()) && self.error() == Some(INVALID_TOKEN)
    }
}

/// A `WWW-Authenticate` value that does not follow RFC 9110 section 11.6.1.
///
/// Says where and why; never repeats the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    position: usize,
    reason: &'static str,
}

impl ParseError {
    /// The byte offset in the value where parsing stopped.
    pub fn position(&self) -> usize {
        self.position
    }

    /// What was wrong there.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid WWW-Authenticate value at byte {}: {}",
            self.position, self.reason
        )
    }
}

impl std::error::Error for ParseError {}

/// Reads one `WWW-Authenticate` value into its challenges, in order.
///
/// Empty list elements (`, ,`) are skipped, as RFC 9110 section 5.6.1 asks; an empty value
/// gives no challenges. A parameter named twice in one challenge is kept twice (see
/// [the module docs](self#a-parameter-named-twice)).
///
/// # Errors
/// A [`ParseError`] for a value longer than [`MAX_VALUE_LEN`], one with more than
/// [`MAX_PARAMS`] parameters in a challenge, or one the grammar does not allow.
pub fn parse(value: &[u8]) -> Result<Vec<Challenge>, ParseError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(ParseError {
            position: MAX_VALUE_LEN,
            reason: "value over the length limit",
        });
    }
    let mut c = Cursor::new(value);
    let mut out = Vec::new();
    loop {
        c.skip(|b| is_ows(b) || b == b',');
        if c.at_end() {
            return Ok(out);
        }
        let scheme = c
            .token()
            .ok_or_else(|| c.error("expected an auth scheme"))?;
        let mut challenge = Challenge {
            scheme: ascii(scheme),
            token68: None,
            params: Vec::new(),
        };
        match c.after_scheme() {
            Data::None => {
                out.push(challenge);
                continue;
            }
            Data::Token68(token68) => {
                challenge.token68 = Some(ascii(token68));
                out.push(challenge);
                continue;
            }
            Data::Params => {}
            Data::Junk => return Err(c.error("expected a space after the auth scheme")),
        }
        loop {
            let (name, value) = c.param()?;
            if challenge.params.len() == MAX_PARAMS {
                return Err(c.error("too many parameters in one challenge"));
            }
            challenge
                .params
                .push((ascii(name), value.to_string_lossy()));
            if !c.at_item_end() {
                return Err(c.error("expected `,` after a parameter"));
            }
            c.skip(|b| is_ows(b) || b == b',');
            if c.at_end() || !c.at_param() {
                // The next item is a new challenge (or there is none).
                break;
            }
        }
        out.push(challenge);
    }
}

/// Every challenge in the `WWW-Authenticate` lines of `headers`, in order. Reads at most
/// [`MAX_HEADER_LINES`] lines; lines that do not parse are skipped.
pub fn challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .take(MAX_HEADER_LINES)
        .filter_map(|value| parse(value.as_bytes()).ok())
        .flatten()
        .collect()
}

/// Whether `headers` carry a `DPoP` challenge with `error="use_dpop_nonce"` (RFC 9449
/// section 9): the resource server wants a proof with the nonce it sent in `DPoP-Nonce`;
/// the token itself is not rejected. Parsed with [`challenges`]; only looked at on a 401.
pub fn is_dpop_nonce_challenge(headers: &HeaderMap) -> bool {
    headers.contains_key(WWW_AUTHENTICATE)
        && challenges(headers)
            .iter()
            .any(|c| c.is_scheme("DPoP") && c.error() == Some("use_dpop_nonce"))
}

/// Whether `headers` carry a `Bearer` (or `DPoP`) challenge with `error="invalid_token"`
/// (RFC 6750 section 3.1; RFC 9449 section 7.1): the resource server rejected the token
/// itself (expired, revoked, malformed), so a new token may succeed where this one failed.
///
/// [`is_invalid_token_value`] on each `WWW-Authenticate` line, every one of them (unlike
/// [`challenges`], it allocates nothing, so it needs no line limit). This is the check of
/// the layer's 401 recovery with `RecoverOn::InvalidToken`.
pub fn is_invalid_token(headers: &HeaderMap) -> bool {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .any(|value| is_invalid_token_value(value.as_bytes()))
}

/// Whether one `WWW-Authenticate` value has a `Bearer` (or `DPoP`) challenge whose first
/// `error` parameter is `invalid_token` (RFC 6750 section 3.1; RFC 9449 section 7.1).
///
/// Reads the value once, without allocating. For a value [`parse`] accepts, the answer is
/// whether one of its challenges [`is_invalid_token`](Challenge::is_invalid_token). It is
/// lenient where [`parse`] is not: it has no length limit, and skips what it cannot read up
/// to the next comma outside a quoted string (see
/// [the module docs](self#the-scan-and-the-parser)).
pub fn is_invalid_token_value(value: &[u8]) -> bool {
    let mut c = Cursor::new(value);
    // The current challenge is `Bearer` or `DPoP` and has had no `error` parameter yet.
    let mut open = false;
    loop {
        c.skip(|b| is_ows(b) || b == b',');
        if c.at_end() {
            return false;
        }
        if c.at_param() {
            let start = c.i;
            let is_error = c.token().is_some_and(|n| n.eq_ignore_ascii_case(b"error"));
            // A parameter counts only if it is read to its end.
            let says = match c.param_value() {
                Ok(value) if c.at_item_end() => value.is(INVALID_TOKEN.as_bytes()),
                _ => {
                    c.skip_item(start);
                    false
                }
            };
            if open && is_error {
                if says {
                    return true;
                }
                // The first `error` of a challenge is the one that counts.
                open = false;
            }
        } else if let Some(scheme) = c.token() {
            open = is_token_scheme(scheme);
            match c.after_scheme() {
                Data::None | Data::Params => {}
                Data::Token68(_) => open = false,
                Data::Junk => {
                    open = false;
                    c.skip_item(c.i);
                }
            }
        } else {
            c.skip_item(c.i);
        }
    }
}

/// The `error` value of a rejected token (RFC 6750 section 3.1).
const INVALID_TOKEN: &str = "invalid_token";

/// `Bearer` (RFC 6750) or `DPoP` (RFC 9449), in any case: the schemes of this crate's tokens.
fn is_token_scheme(scheme: &[u8]) -> bool {
    scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"dpop")
}

/// Bytes already checked to be ASCII, as a `String`.
fn ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests;
