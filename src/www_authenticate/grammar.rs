//! The grammar of `WWW-Authenticate` (RFC 9110 sections 5.6 and 11), read without
//! allocating: character classes and a cursor that [`parse`](super::parse) and
//! [`is_invalid_token_value`](super::is_invalid_token_value) share, so the two read the
//! same language.

use super::ParseError;

/// `tchar` (RFC 9110 section 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The characters of `token68` before its padding (RFC 9110 section 11.2).
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

/// Optional whitespace (RFC 9110 section 5.6.3).
pub(super) fn is_ows(b: u8) -> bool {
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
pub(super) enum Data<'a> {
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
pub(super) struct Value<'a> {
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
    pub(super) fn is(self, expected: &[u8]) -> bool {
        self.bytes().eq(expected.iter().copied())
    }

    /// The value, unescaped, with bytes that are not UTF-8 as U+FFFD.
    pub(super) fn to_string_lossy(self) -> String {
        let bytes: Vec<u8> = self.bytes().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A position in one header value.
pub(super) struct Cursor<'a> {
    pub(super) s: &'a [u8],
    pub(super) i: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(s: &'a [u8]) -> Cursor<'a> {
        Cursor { s, i: 0 }
    }

    pub(super) fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    pub(super) fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    pub(super) fn error(&self, reason: &'static str) -> ParseError {
        ParseError {
            position: self.i,
            reason,
        }
    }

    /// OWS, then the end or a comma (not consumed).
    pub(super) fn at_item_end(&mut self) -> bool {
        self.skip(is_ows);
        self.at_end() || self.peek() == Some(b',')
    }

    /// `1*tchar`, or `None` (and nothing consumed).
    pub(super) fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        self.skip(is_tchar);
        (self.i > start).then(|| &self.s[start..self.i])
    }

    /// What follows an auth scheme just read: `token68` if that is the whole of the
    /// challenge's data (tried first, as `abc=` is also the start of a parameter).
    pub(super) fn after_scheme(&mut self) -> Data<'a> {
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
    pub(super) fn at_param(&self) -> bool {
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
    pub(super) fn param(&mut self) -> Result<(&'a [u8], Value<'a>), ParseError> {
        let name = self
            .token()
            .ok_or_else(|| self.error("expected a parameter name"))?;
        Ok((name, self.param_value()?))
    }

    /// `BWS "=" BWS ( token / quoted-string )`: the rest of an auth-param after its name.
    pub(super) fn param_value(&mut self) -> Result<Value<'a>, ParseError> {
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
    pub(super) fn skip_item(&mut self, from: usize) {
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
