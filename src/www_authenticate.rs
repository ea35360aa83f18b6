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
    let mut c = Cursor { s: value, i: 0 };
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
    let mut c = Cursor { s: value, i: 0 };
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

/// `tchar` (RFC 9110 section 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The characters of `token68` before its padding (RFC 9110 section 11.2).
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

/// Optional whitespace (RFC 9110 section 5.6.3).
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `qdtext` (RFC 9110 section 5.6.4).
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// The byte after a backslash in a `quoted-pair` (RFC 9110 section 5.6.4).
fn is_escapable(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}

/// What follows an auth scheme.
enum Data<'a> {
    /// Nothing: the end, or a comma (OWS before it consumed).
    None,
    /// A `token68` that is the whole of the challenge's data.
    Token68(&'a [u8]),
    /// Auth-params, from the cursor on.
    Params,
    /// Not a space: the scheme is followed by something the grammar does not allow.
    Junk,
}

/// An auth-param value as it is in the input: a token, or the inside of a quoted string
/// with its escapes.
#[derive(Clone, Copy)]
struct Value<'a> {
    raw: &'a [u8],
    quoted: bool,
}

impl Value<'_> {
    /// The value's bytes with quoted-pair escapes undone.
    fn bytes(self) -> impl Iterator<Item = u8> {
        let mut escaped = false;
        self.raw.iter().copied().filter(move |&b| {
            if self.quoted && !escaped && b == b'\\' {
                escaped = true;
                return false;
            }
            escaped = false;
            true
        })
    }

    /// Whether the value, unescaped, is `expected`.
    fn is(self, expected: &[u8]) -> bool {
        self.bytes().eq(expected.iter().copied())
    }

    /// The value, unescaped, with bytes that are not UTF-8 as U+FFFD.
    fn to_string_lossy(self) -> String {
        let bytes: Vec<u8> = self.bytes().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    fn error(&self, reason: &'static str) -> ParseError {
        ParseError {
            position: self.i,
            reason,
        }
    }

    /// OWS, then the end or a comma (not consumed).
    fn at_item_end(&mut self) -> bool {
        self.skip(is_ows);
        self.at_end() || self.peek() == Some(b',')
    }

    /// `1*tchar`, or `None` (and nothing consumed).
    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        self.skip(is_tchar);
        (self.i > start).then(|| &self.s[start..self.i])
    }

    /// What follows an auth scheme just read: `token68` if that is the whole of the
    /// challenge's data (tried first, as `abc=` is also the start of a parameter).
    fn after_scheme(&mut self) -> Data<'a> {
        let after_scheme = self.i;
        if self.at_item_end() {
            return Data::None;
        }
        if self.i == after_scheme {
            return Data::Junk;
        }
        match self.token68() {
            Some(token68) => Data::Token68(token68),
            None => Data::Params,
        }
    }

    /// A `token68` that is the whole of a challenge's data: followed by OWS and then the
    /// end or a comma. Otherwise `None`, and nothing consumed.
    fn token68(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        self.skip(is_token68_char);
        if self.i == start {
            return None;
        }
        self.skip(|b| b == b'=');
        let end = self.i;
        if self.at_item_end() {
            Some(&self.s[start..end])
        } else {
            self.i = start;
            None
        }
    }

    /// Whether an auth-param (`token BWS "="`) starts here. Consumes nothing.
    fn at_param(&self) -> bool {
        let mut i = self.i;
        let start = i;
        while self.s.get(i).copied().is_some_and(is_tchar) {
            i += 1;
        }
        if i == start {
            return false;
        }
        while self.s.get(i).copied().is_some_and(is_ows) {
            i += 1;
        }
        self.s.get(i) == Some(&b'=')
    }

    /// `token BWS "=" BWS ( token / quoted-string )`.
    fn param(&mut self) -> Result<(&'a [u8], Value<'a>), ParseError> {
        let name = self
            .token()
            .ok_or_else(|| self.error("expected a parameter name"))?;
        Ok((name, self.param_value()?))
    }

    /// `BWS "=" BWS ( token / quoted-string )`: the rest of an auth-param after its name.
    fn param_value(&mut self) -> Result<Value<'a>, ParseError> {
        self.skip(is_ows);
        if self.peek() != Some(b'=') {
            return Err(self.error("expected `=` after a parameter name"));
        }
        self.i += 1;
        self.skip(is_ows);
        let value = if self.peek() == Some(b'"') {
            Value {
                raw: self.quoted_string()?,
                quoted: true,
            }
        } else {
            Value {
                raw: self
                    .token()
                    .ok_or_else(|| self.error("expected a token or a quoted string"))?,
                quoted: false,
            }
        };
        Ok(value)
    }

    /// `DQUOTE *( qdtext / quoted-pair ) DQUOTE` (RFC 9110 section 5.6.4): the bytes
    /// between the quotes, escapes still in.
    fn quoted_string(&mut self) -> Result<&'a [u8], ParseError> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.i += 1;
        let start = self.i;
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated quoted string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(&self.s[start..self.i - 1]);
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(e) if is_escapable(e) => self.i += 1,
                        Some(_) => return Err(self.error("invalid escape in a quoted string")),
                        None => return Err(self.error("unterminated quoted string")),
                    }
                }
                Some(b) if is_qdtext(b) => self.i += 1,
                Some(_) => return Err(self.error("control character in a quoted string")),
            }
        }
    }

    /// Lenient: from `from`, up to the next comma outside a quoted string (or the end).
    fn skip_item(&mut self, from: usize) {
        self.i = from;
        let (mut quoted, mut escaped) = (false, false);
        while let Some(b) = self.peek() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b',' if !quoted => return,
                _ => {}
            }
            self.i += 1;
        }
    }
}

/// Bytes already checked to be ASCII, as a `String`.
fn ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn one(value: &str) -> Challenge {
        let mut all = parse(value.as_bytes()).unwrap();
        assert_eq!(all.len(), 1, "{value}: {all:?}");
        all.remove(0)
    }

    fn params(c: &Challenge) -> Vec<(&str, &str)> {
        c.params()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn rfc6750_examples() {
        // RFC 6750 section 3.
        let c = one(r#"Bearer realm="example""#);
        assert!(c.is_scheme("Bearer"));
        assert_eq!(c.realm(), Some("example"));
        let c = one(
            r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
        );
        assert_eq!(c.error(), Some("invalid_token"));
        assert_eq!(c.error_description(), Some("The access token expired"));
        assert_eq!(params(&c).len(), 3);
        // RFC 6750 section 3.1, insufficient_scope with a scope.
        let c = one(r#"Bearer error="insufficient_scope", scope="a b""#);
        assert_eq!(c.error(), Some("insufficient_scope"));
        assert_eq!(c.scope(), Some("a b"));
        // No parameters at all.
        let c = one("Bearer");
        assert!(c.params().is_empty());
        assert_eq!(c.token68(), None);
    }

    #[test]
    fn rfc9110_example_with_two_challenges_and_escapes() {
        // RFC 9110 section 11.6.1.
        let all = parse(
            br#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#,
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].scheme(), "Newauth");
        assert_eq!(
            params(&all[0]),
            [
                ("realm", "apps"),
                ("type", "1"),
                ("title", "Login to \"apps\"")
            ]
        );
        assert_eq!(all[1].scheme(), "Basic");
        assert_eq!(all[1].realm(), Some("simple"));
    }

    #[test]
    fn token68_challenges() {
        let c = one("Negotiate YIIBhwYGKwYBBQUCoIIBezCCAXeg==");
        assert_eq!(c.token68(), Some("YIIBhwYGKwYBBQUCoIIBezCCAXeg=="));
        assert!(c.params().is_empty());
        let all = parse(b"Negotiate abc/+_.~-=, Bearer realm=x").unwrap();
        assert_eq!(all[0].token68(), Some("abc/+_.~-="));
        assert_eq!(all[1].realm(), Some("x"));
        // A single-token challenge with no padding is token68 too.
        assert_eq!(one("Foo bar").token68(), Some("bar"));
    }

    #[test]
    fn whitespace_case_and_empty_elements() {
        let all = parse(b" , Bearer  realm = \"a\" ,, error=invalid_token ,\tBasic ,").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].realm(), Some("a"));
        assert_eq!(all[0].param("ERROR"), Some("invalid_token"));
        assert!(all[1].is_scheme("basic"));
        assert_eq!(parse(b"").unwrap(), vec![]);
        assert_eq!(parse(b" ,, ").unwrap(), vec![]);
        let all = parse(b"Bearer, Basic realm=x, DPoP algs=\"ES256\"").unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[0].params().is_empty());
        assert_eq!(all[2].param("algs"), Some("ES256"));
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        for bad in [
            &b"Bearer realm=\"unterminated"[..],
            b"Bearer realm=\"bad escape\\",
            b"Bearer realm=\"ctl\x01\"",
            b"Bearer realm=a b",
            b"Bearer\"x\"",
            b"=x",
            b"Bearer a=b c",
            b"\"quoted\"",
            b"Bearer ,realm=x =y",
            b"Bearer realm=\"x\"junk",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.position() <= bad.len(), "{err}");
            assert!(!err.to_string().is_empty());
        }
        let long = vec![b'a'; MAX_VALUE_LEN + 1];
        assert_eq!(
            parse(&long).unwrap_err().reason(),
            "value over the length limit"
        );
    }

    #[test]
    fn a_parameter_named_twice_is_kept_and_the_first_wins() {
        let c = one("Bearer realm=a, REALM=b");
        assert_eq!(params(&c), [("realm", "a"), ("REALM", "b")]);
        assert_eq!(c.realm(), Some("a"));
        let c = one(r#"Bearer error="invalid_token", error="x""#);
        assert_eq!(c.error(), Some("invalid_token"));
        let c = one(r#"Bearer error="x", error="invalid_token""#);
        assert_eq!(c.error(), Some("x"));
    }

    /// What [`is_invalid_token`] answers, from the full parser.
    fn parsed_says_invalid_token(value: &[u8]) -> Option<bool> {
        parse(value)
            .ok()
            .map(|all| all.iter().any(Challenge::is_invalid_token))
    }

    #[test]
    fn scan_and_parser_agree_on_a_repeated_error() {
        for (value, expected) in [
            (&br#"Bearer error="invalid_token", error="x""#[..], true),
            (br#"Bearer error="x", error="invalid_token""#, false),
            (br#"Bearer ERROR="invalid_token", error="x""#, true),
            (br#"Bearer error=x, Error=invalid_token"#, false),
            (br#"Bearer error=x, DPoP error=invalid_token"#, true),
        ] {
            let text = String::from_utf8_lossy(value);
            assert_eq!(parsed_says_invalid_token(value), Some(expected), "{text}");
            assert_eq!(is_invalid_token_value(value), expected, "{text}");
            let mut headers = HeaderMap::new();
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_bytes(value).unwrap());
            assert_eq!(is_invalid_token(&headers), expected, "{text}");
        }
    }

    #[test]
    fn scan_finds_invalid_token_in_bearer_and_dpop_challenges() {
        for yes in [
            r#"Bearer error="invalid_token""#,
            r#"Bearer realm="api", error="invalid_token", error_description="token revoked""#,
            r#"bearer error=invalid_token"#,
            r#"Bearer realm="a, b", error = "invalid_token""#,
            r#"Basic realm="x", Bearer realm="api", error="invalid_token""#,
            r#"DPoP algs="ES256", error="invalid_token""#,
            r#"Bearer error="invalid\_token""#,
            "Bearer realm=\"caf\u{e9}\", error=\"invalid_token\"",
        ] {
            assert!(is_invalid_token_value(yes.as_bytes()), "{yes}");
            assert_eq!(
                parsed_says_invalid_token(yes.as_bytes()),
                Some(true),
                "{yes}"
            );
        }
        // Lenient where the parser is not: what cannot be read is skipped.
        for yes in [
            "Bearer realm=\"ctl\x01\", error=\"invalid_token\"",
            r#"Bearer error="invalid_token", error_description="unterminated"#,
            r#"Bearer realm=x y, error=invalid_token"#,
        ] {
            assert!(is_invalid_token_value(yes.as_bytes()), "{yes}");
            assert_eq!(parsed_says_invalid_token(yes.as_bytes()), None, "{yes}");
        }
        assert!(is_invalid_token_value(
            b"Bearer realm=\"\xff\", error=invalid_token"
        ));
    }

    #[test]
    fn scan_says_no_to_anything_else() {
        for no in [
            "",
            "Bearer",
            r#"Bearer realm="api""#,
            r#"Bearer error="insufficient_scope""#,
            r#"Basic error="invalid_token""#,
            r#"Bearer realm="x", Basic error="invalid_token""#,
            r#"Bearer realm="error=\"invalid_token\"""#,
            r#"Bearer error="invalid_token"#,
            r#"Bearer error="invalid_token"x"#,
            r#"Bearer error=invalid_token junk"#,
            r#"Bearer error=invalid_tokens"#,
            r#"Bearer error="Invalid_Token""#,
            r#"Negotiate abc=, error=invalid_token"#,
            "error=invalid_token",
            "Bearer ,,,, ===, \"",
            "\u{0}\u{7f}",
        ] {
            assert!(!is_invalid_token_value(no.as_bytes()), "{no}");
            assert_ne!(parsed_says_invalid_token(no.as_bytes()), Some(true), "{no}");
        }
        assert!(!is_invalid_token_value(&[0xff, 0xfe, b'=']));
    }

    /// Values made of challenges with random schemes, parameters, separators and
    /// whitespace, some of them then damaged by one random edit.
    fn generated_value(rng: &mut fastrand::Rng) -> String {
        fn pick<'a>(rng: &mut fastrand::Rng, from: &[&'a str]) -> &'a str {
            from[rng.usize(..from.len())]
        }
        const SCHEMES: &[&str] = &["Bearer", "bearer", "DPoP", "Basic", "Negotiate", "x"];
        const NAMES: &[&str] = &["error", "ERROR", "realm", "error_description", "e"];
        const VALUES: &[&str] = &[
            "invalid_token",
            "\"invalid_token\"",
            "\"invalid\\_token\"",
            "x",
            "\"a, b=c\"",
            "\"\"",
            "\"\\\"\"",
            "\"caf\u{e9}\"",
            "invalid_token2",
        ];
        const SEPARATORS: &[&str] = &[", ", ",", " , ", ",, ", "\t,"];
        const EQUALS: &[&str] = &["=", " =", "= ", " = "];
        const DAMAGE: &[&str] = &[
            "\"",
            "\\",
            ",",
            "=",
            " ",
            "\u{1}",
            "x",
            "error=invalid_token",
            "abc==",
        ];
        let mut value = String::new();
        for i in 0..rng.usize(1..4) {
            if i > 0 {
                value.push_str(pick(rng, SEPARATORS));
            }
            value.push_str(pick(rng, SCHEMES));
            match rng.u8(..10) {
                0 => {}
                1 => value.push_str(" abc=="),
                _ => {
                    value.push_str(pick(rng, &[" ", "  ", "\t"]));
                    for j in 0..rng.usize(1..4) {
                        if j > 0 {
                            value.push_str(pick(rng, SEPARATORS));
                        }
                        value.push_str(pick(rng, NAMES));
                        value.push_str(pick(rng, EQUALS));
                        value.push_str(pick(rng, VALUES));
                    }
                }
            }
        }
        if rng.bool() {
            let at = loop {
                let at = rng.usize(..=value.len());
                if value.is_char_boundary(at) {
                    break at;
                }
            };
            if rng.bool() {
                value.insert_str(at, pick(rng, DAMAGE));
            } else if at < value.len() {
                value.remove(at);
            }
        }
        value
    }

    #[test]
    fn scan_agrees_with_the_parser_wherever_it_parses() {
        let mut rng = fastrand::Rng::with_seed(11);
        let (mut parsed, mut said) = (0, 0);
        for _ in 0..20_000 {
            let value = generated_value(&mut rng);
            if let Some(expected) = parsed_says_invalid_token(value.as_bytes()) {
                parsed += 1;
                said += usize::from(expected);
                assert_eq!(
                    is_invalid_token_value(value.as_bytes()),
                    expected,
                    "{value:?}"
                );
            }
        }
        // The generator reaches both answers often enough to mean something.
        assert!(
            parsed > 4_000 && said > 800,
            "{parsed} parsed, {said} invalid_token"
        );
    }

    #[test]
    fn obs_text_in_quoted_strings_is_kept_lossily() {
        let c = one("Bearer error_description=\"caf\u{e9}\"");
        assert_eq!(c.error_description(), Some("caf\u{e9}"));
        let c = parse(b"Bearer error_description=\"\xff\"").unwrap();
        assert_eq!(c[0].error_description(), Some("\u{fffd}"));
    }

    #[test]
    fn headers_with_several_lines() {
        let mut headers = HeaderMap::new();
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"x\""),
        );
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"unterminated"),
        );
        assert!(!is_invalid_token(&headers));
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"bearer error="invalid_token""#),
        );
        assert_eq!(challenges(&headers).len(), 2);
        assert!(is_invalid_token(&headers));

        let mut headers = HeaderMap::new();
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="insufficient_scope""#),
        );
        assert!(!is_invalid_token(&headers));
        assert!(!is_invalid_token(&HeaderMap::new()));
    }

    #[test]
    fn limits() {
        let many = "a, ".repeat(MAX_VALUE_LEN / 3);
        assert_eq!(parse(many.as_bytes()).unwrap().len(), MAX_VALUE_LEN / 3);
        let params = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| format!("p{i}=1")).collect();
            format!("Bearer {}", list.join(", "))
        };
        let ok = parse(params(MAX_PARAMS).as_bytes()).unwrap();
        assert_eq!(ok[0].params().len(), MAX_PARAMS);
        let err = parse(params(MAX_PARAMS + 1).as_bytes()).unwrap_err();
        assert_eq!(err.reason(), "too many parameters in one challenge");
    }
}
