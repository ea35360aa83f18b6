//! Just enough of `WWW-Authenticate` (RFC 9110 section 11.6.1) to find
//! `error="invalid_token"` in a `Bearer` or `DPoP` challenge (RFC 6750 section 3).
//!
//! One header value may hold several challenges, and commas separate both the challenges
//! and the parameters of one challenge: an item that starts with a token not followed by
//! `=` starts a new challenge. Anything that does not parse is skipped; nothing panics.

/// True if a challenge of scheme `Bearer` or `DPoP` in `value` has `error="invalid_token"`.
pub(crate) fn says_invalid_token(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let mut bearer = false;
    for item in split_items(value) {
        let item = item.trim_matches(is_ws);
        let word_end = item.find(|c: char| !is_tchar(c)).unwrap_or(item.len());
        let (word, rest) = item.split_at(word_end);
        let param = if word.is_empty() || rest.trim_start_matches(is_ws).starts_with('=') {
            // `name=value` of the current challenge (or something unreadable).
            item
        } else {
            // `scheme [first-param | token68]`: a new challenge.
            bearer = word.eq_ignore_ascii_case("bearer") || word.eq_ignore_ascii_case("dpop");
            rest.trim_start_matches(is_ws)
        };
        if bearer
            && let Some((name, value)) = param.split_once('=')
            && name.trim_matches(is_ws).eq_ignore_ascii_case("error")
            && unquote(value.trim_matches(is_ws)) == "invalid_token"
        {
            return true;
        }
    }
    false
}

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 9110 section 5.6.2 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Splits at the commas that are not inside a quoted string.
fn split_items(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// The content of a quoted string (escapes kept as they are: `invalid_token` has none), or
/// the token itself.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::says_invalid_token;

    #[test]
    fn finds_invalid_token_in_bearer_challenges() {
        for yes in [
            r#"Bearer error="invalid_token""#,
            r#"Bearer realm="api", error="invalid_token", error_description="token revoked""#,
            r#"bearer error=invalid_token"#,
            r#"Bearer realm="a, b", error = "invalid_token""#,
            r#"Basic realm="x", Bearer realm="api", error="invalid_token""#,
            r#"DPoP algs="ES256", error="invalid_token""#,
        ] {
            assert!(says_invalid_token(yes.as_bytes()), "{yes}");
        }
    }

    #[test]
    fn anything_else_is_not_invalid_token() {
        for no in [
            "",
            "Bearer",
            r#"Bearer realm="api""#,
            r#"Bearer error="insufficient_scope""#,
            r#"Basic error="invalid_token""#,
            r#"Bearer realm="x", Basic error="invalid_token""#,
            r#"Bearer realm="error=\"invalid_token\"""#,
            r#"Bearer error="invalid_token"#,
            "Bearer ,,,, ===, \"",
            "\u{0}\u{7f}",
        ] {
            assert!(!says_invalid_token(no.as_bytes()), "{no}");
        }
        assert!(!says_invalid_token(&[0xff, 0xfe, b'=']));
    }
}
