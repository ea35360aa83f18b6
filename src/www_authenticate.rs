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
//! most often has: did the server reject the token itself (so a new one may help)?
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
//! ```
//!
//! The parser is a pure function of its input: it never panics, reads at most
//! [`MAX_VALUE_LEN`] bytes of one value, does work linear in the input, and returns a
//! [`ParseError`] for anything the grammar does not allow (an unterminated quoted string, a
//! parameter named twice in one challenge, a control character...). Scheme and parameter
//! names compare case-insensitively; values are kept as sent, with quoted-pair escapes
//! undone.

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

    /// The auth-params, names and values as sent, in order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The value of the auth-param `name`, ignoring the ASCII case of the name.
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
/// gives no challenges.
///
/// # Errors
/// A [`ParseError`] for a value longer than [`MAX_VALUE_LEN`] or one the grammar does not
/// allow.
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
            scheme,
            token68: None,
            params: Vec::new(),
        };
        let after_scheme = c.i;
        c.skip(is_ows);
        if c.at_end() || c.peek() == Some(b',') {
            out.push(challenge);
            continue;
        }
        if c.i == after_scheme {
            return Err(c.error("expected a space after the auth scheme"));
        }
        if let Some(token68) = c.token68() {
            challenge.token68 = Some(token68);
            out.push(challenge);
            continue;
        }
        loop {
            let name = c
                .token()
                .ok_or_else(|| c.error("expected a parameter name"))?;
            c.skip(is_ows);
            if c.peek() != Some(b'=') {
                return Err(c.error("expected `=` after a parameter name"));
            }
            c.i += 1;
            c.skip(is_ows);
            let value = if c.peek() == Some(b'"') {
                c.quoted_string()?
            } else {
                c.token()
                    .ok_or_else(|| c.error("expected a token or a quoted string"))?
            };
            if challenge.params.len() == MAX_PARAMS {
                return Err(c.error("too many parameters in one challenge"));
            }
            if challenge
                .params
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(&name))
            {
                return Err(c.error("parameter named twice in one challenge"));
            }
            challenge.params.push((name, value));
            c.skip(is_ows);
            if c.at_end() {
                break;
            }
            if c.peek() != Some(b',') {
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
pub fn is_invalid_token(headers: &HeaderMap) -> bool {
    challenges(headers).iter().any(|c| {
        (c.is_scheme("Bearer") || c.is_scheme("DPoP")) && c.error() == Some("invalid_token")
    })
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

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
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

    /// `1*tchar`, or `None` (and nothing consumed).
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        self.skip(is_tchar);
        (self.i > start).then(|| ascii(&self.s[start..self.i]))
    }

    /// A `token68` that is the whole of a challenge's data: followed by OWS and then the
    /// end or a comma. Otherwise `None`, and nothing consumed.
    fn token68(&mut self) -> Option<String> {
        let start = self.i;
        self.skip(is_token68_char);
        if self.i == start {
            return None;
        }
        self.skip(|b| b == b'=');
        let end = self.i;
        self.skip(is_ows);
        if self.at_end() || self.peek() == Some(b',') {
            Some(ascii(&self.s[start..end]))
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

    /// `DQUOTE *( qdtext / quoted-pair ) DQUOTE` (RFC 9110 section 5.6.4), unescaped.
    fn quoted_string(&mut self) -> Result<String, ParseError> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.i += 1;
        let mut value = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("unterminated quoted string"));
            };
            match b {
                b'"' => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&value).into_owned());
                }
                b'\\' => {
                    self.i += 1;
                    match self.peek() {
                        Some(e)
                            if e == b'\t'
                                || e == b' '
                                || (0x21..=0x7e).contains(&e)
                                || e >= 0x80 =>
                        {
                            value.push(e);
                            self.i += 1;
                        }
                        Some(_) => return Err(self.error("invalid escape in a quoted string")),
                        None => return Err(self.error("unterminated quoted string")),
                    }
                }
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => {
                    value.push(b);
                    self.i += 1;
                }
                _ => return Err(self.error("control character in a quoted string")),
            }
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
            b"Bearer realm=a, realm=b",
            b"Bearer realm=a, REALM=b",
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
