//! Reading token endpoint responses (RFC 6749 sections 5.1 and 5.2): [`ResponseParser`],
//! [`parse_retry_after`], and the redaction of echoed credentials. No HTTP client needed.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use secrecy::zeroize::Zeroize;
use serde_json::{Map, Value};

use crate::error::{Error, TokenEndpointError};
use crate::token::{Token, TokenType};

/// The default lifetime of a token whose response has no `expires_in` (or null, or 0):
/// 300 seconds.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(300);
pub use crate::token::{MAX_EXPIRES_IN, MAX_TOKEN_LEN};
/// The largest response body read: 64 KiB.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// Reads token endpoint responses, tolerantly where servers differ and strictly where a
/// wrong reading would be unsafe.
///
/// It turns what a token endpoint sent back into a [`Token`] or a typed [`Error`]. It is
/// what [`ClientCredentials`](crate::ClientCredentials) uses, and it is public so that a
/// [`TokenSource`](crate::TokenSource) of your own reads responses the same way.
///
/// ```
/// use http::StatusCode;
/// use tower_oauth::endpoint::ResponseParser;
///
/// let parser = ResponseParser::default();
/// let body = br#"{"access_token":"abc","token_type":"bearer","expires_in":"3600"}"#;
/// let token = parser.parse(StatusCode::OK, Some("application/json"), body).unwrap();
/// assert_eq!(token.token_type().as_str(), "Bearer");
/// assert_eq!(token.expires_in().as_secs(), 3600);
///
/// let body = br#"{"error":"invalid_client","error_description":"bad secret"}"#;
/// let err = parser.parse(StatusCode::UNAUTHORIZED, Some("application/json"), body).unwrap_err();
/// assert_eq!(err.token_endpoint_error().unwrap().error(), "invalid_client");
/// ```
///
/// - `expires_in` may be a number or a numeric string. Missing, `null` or `0` means
///   [`default_expires_in`](ResponseParser::default_expires_in) (300 seconds unless set);
///   values over [`max_expires_in`](ResponseParser::max_expires_in) (at most and by default
///   365 days) are clamped;
///   negative or non-numeric values are an error.
/// - `token_type` is normalised ([`TokenType::parse`]); a missing one means `Bearer`.
/// - Any response with an `error` member, even with status 200, is an RFC 6749 section 5.2
///   error ([`Error::token_endpoint_error`]).
/// - A body that is not a JSON object (an HTML error page, say), a body over 64 KiB, JSON
///   nested 128 levels deep or more (serde_json's recursion limit), a missing or over-long
///   (16 KiB) `access_token` are [`Error::is_invalid_response`] errors that carry the status
///   and content type. The body limit is checked before anything is parsed, so a
///   multi-megabyte token is an error, never an allocation of its size.
/// - The access token moves into the [`Token`]'s secret without a copy; a `refresh_token`
///   or `id_token` in the response is not kept, and is zeroed before it is dropped. Error
///   messages carry the status, content type and RFC 6749 error fields, never a token.
#[derive(Clone, Debug)]
pub struct ResponseParser {
    default_expires_in: Duration,
    max_expires_in: Duration,
    max_body_len: usize,
    max_token_len: usize,
}

impl Default for ResponseParser {
    fn default() -> Self {
        ResponseParser {
            default_expires_in: DEFAULT_EXPIRES_IN,
            max_expires_in: MAX_EXPIRES_IN,
            max_body_len: MAX_BODY_LEN,
            max_token_len: MAX_TOKEN_LEN,
        }
    }
}

impl ResponseParser {
    /// The lifetime of a token whose response gives none (default 300 seconds).
    pub fn default_expires_in(mut self, lifetime: Duration) -> Self {
        self.default_expires_in = lifetime;
        self
    }

    /// The longest lifetime believed: larger `expires_in` values are clamped to it. The
    /// default, [`MAX_EXPIRES_IN`] (365 days), is also the most this can be: a larger
    /// `lifetime` acts as `MAX_EXPIRES_IN`, since every [`Token`] is clamped to it
    /// ([`Token::new`]). Use it to believe less, e.g. a server known to overstate.
    pub fn max_expires_in(mut self, lifetime: Duration) -> Self {
        self.max_expires_in = lifetime;
        self
    }

    /// The largest body accepted, in bytes (default 64 KiB).
    pub fn max_body_len(mut self, bytes: usize) -> Self {
        self.max_body_len = bytes;
        self
    }

    /// The longest access token accepted, in bytes (default 16 KiB).
    pub fn max_token_len(mut self, bytes: usize) -> Self {
        self.max_token_len = bytes;
        self
    }

    /// The body size limit in bytes, for readers that stop early.
    pub fn body_limit(&self) -> usize {
        self.max_body_len
    }

    /// Reads one response: its status, its `Content-Type` and its body.
    ///
    /// # Errors
    /// [`Error::is_token_endpoint`] for an RFC 6749 section 5.2 error response;
    /// [`Error::is_invalid_response`] for anything that is neither that nor a token.
    pub fn parse(
        &self,
        status: StatusCode,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Token, Error> {
        self.parse_redacting(status, content_type, body, &[])
    }

    /// [`parse`](Self::parse), with every occurrence of each of `secrets` cut out of the
    /// texts an error keeps (RFC 6749 error fields, content type), before they are clipped.
    pub(crate) fn parse_redacting(
        &self,
        status: StatusCode,
        content_type: Option<&str>,
        body: &[u8],
        secrets: &[&str],
    ) -> Result<Token, Error> {
        let content_type = content_type.map(|c| redact(c, secrets));
        let content_type = content_type.as_deref();
        let invalid =
            |reason: &'static str| Error::invalid_response(status, content_type, reason, None);
        if body.len() > self.max_body_len {
            return Err(invalid("body over the size limit"));
        }
        let mut object: Map<String, Value> = match serde_json::from_slice(body) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err(invalid("body is not a JSON object")),
            Err(_) if status.is_success() => return Err(invalid("body is not JSON")),
            Err(_) => return Err(invalid("error response is not JSON")),
        };
        if let Some(error) = object.get("error") {
            let Some(code) = error.as_str() else {
                return Err(invalid("`error` is not a string"));
            };
            let text = |name: &str| {
                object
                    .get(name)
                    .and_then(Value::as_str)
                    .map(|t| redact(t, secrets))
            };
            return Err(Error::token_endpoint(TokenEndpointError::new(
                status,
                // A registered code is kept as it is: a short secret ("s") must not turn
                // `use_dpop_nonce` into something no retry recognises.
                &if crate::error::KNOWN_CODES.contains(&code) {
                    Cow::Borrowed(code)
                } else {
                    redact(code, secrets)
                },
                text("error_description").as_deref(),
                text("error_uri").as_deref(),
            )));
        }
        if !status.is_success() {
            return Err(invalid("error response without an `error` code"));
        }
        // Other credentials the response may carry are not kept: zero them now.
        for name in ["refresh_token", "id_token"] {
            if let Some(Value::String(mut other)) = object.remove(name) {
                other.zeroize();
            }
        }
        // Moved, not copied, into the token's secret, so no second copy is left behind.
        let access_token = match object.remove("access_token") {
            Some(Value::String(mut t)) if t.is_empty() || t.len() > self.max_token_len => {
                let reason = if t.is_empty() {
                    "empty `access_token`"
                } else {
                    "`access_token` over the length limit"
                };
                t.zeroize();
                return Err(invalid(reason));
            }
            Some(Value::String(t)) => t,
            Some(_) => return Err(invalid("`access_token` is not a string")),
            None => return Err(invalid("no `access_token`")),
        };
        let token_type = match object.get("token_type") {
            None | Some(Value::Null) => TokenType::BEARER,
            Some(Value::String(t)) if !t.is_empty() && t.len() <= 64 => TokenType::parse(t),
            Some(_) => return Err(invalid("`token_type` is not a token type")),
        };
        let expires_in = match self.expires_in(object.get("expires_in")) {
            Ok(lifetime) => lifetime,
            Err(reason) => return Err(invalid(reason)),
        };
        let mut token = Token::new(access_token, expires_in)
            .with_token_type(token_type)
            .with_issued_at(SystemTime::now());
        match object.get("scope") {
            None | Some(Value::Null) => {}
            Some(Value::String(scope)) => token = token.with_scope(scope.clone()),
            Some(_) => return Err(invalid("`scope` is not a string")),
        }
        Ok(token)
    }

    fn expires_in(&self, value: Option<&Value>) -> Result<Duration, &'static str> {
        let secs = match value {
            None | Some(Value::Null) => return Ok(self.default_expires_in),
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(secs), _) => secs,
                (None, Some(f)) if f < 0.0 => return Err("negative `expires_in`"),
                (None, Some(f)) if f.is_finite() => {
                    return Ok(self.lifetime_f64(f));
                }
                _ => return Err("`expires_in` is not a number of seconds"),
            },
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.starts_with('-') && s.len() > 1 && s[1..].bytes().all(|b| b.is_ascii_digit()) {
                    return Err("negative `expires_in`");
                }
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err("`expires_in` is not a number of seconds");
                }
                // All digits: too many of them is just a very large number.
                s.parse::<u64>().unwrap_or(u64::MAX)
            }
            Some(_) => return Err("`expires_in` is not a number of seconds"),
        };
        if secs == 0 {
            return Ok(self.default_expires_in);
        }
        Ok(Duration::from_secs(secs).min(self.max_expires_in))
    }

    fn lifetime_f64(&self, secs: f64) -> Duration {
        if secs == 0.0 {
            return self.default_expires_in;
        }
        if secs >= self.max_expires_in.as_secs_f64() {
            return self.max_expires_in;
        }
        // A fraction of a second is taken as one second: a token that would be due before
        // it could be used would be fetched again for every request.
        Duration::from_secs_f64(secs.max(1.0))
    }
}

/// Reads a `Retry-After` header value (RFC 9110 section 10.2.3): how long from `now` the
/// server asked the client to wait.
///
/// The value is either a number of seconds (`120`) or an HTTP-date
/// (`Fri, 31 Dec 1999 23:59:59 GMT`, or the obsolete RFC 850 and asctime forms). A date in
/// the past means zero. Anything else (negative numbers, garbage) is `None`: the header is
/// then ignored, never an error.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_oauth::endpoint::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_000);
/// assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
/// assert_eq!(
///     parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now),
///     Some(Duration::from_secs(799)),
/// );
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: too many of them is just a very long wait.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

/// `text` with every occurrence of each non-empty secret replaced by `[redacted]`.
pub(crate) fn redact<'a>(text: &'a str, secrets: &[&str]) -> Cow<'a, str> {
    let mut text = Cow::Borrowed(text);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret) {
            text = Cow::Owned(text.replace(secret, "[redacted]"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let secs = Duration::from_secs;
        assert_eq!(parse_retry_after("0", now), Some(secs(0)));
        assert_eq!(parse_retry_after(" 30 ", now), Some(secs(30)));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(secs(u64::MAX))
        );
        // RFC 9110 section 5.6.7: the same instant in its three forms.
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_retry_after(date, now), Some(secs(0)), "{date}");
            assert_eq!(
                parse_retry_after(date, now - secs(90)),
                Some(secs(90)),
                "{date}"
            );
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now + secs(5)),
            Some(secs(0)),
            "a date in the past is no wait"
        );
        for bad in ["", "-1", "1.5", "soon", "30s", "Sun, 06 Nov 1994", "\u{0}"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    fn ok(body: &str) -> Result<Token, Error> {
        ResponseParser::default().parse(StatusCode::OK, Some("application/json"), body.as_bytes())
    }

    fn lifetime(expires_in: &str) -> Result<u64, Error> {
        ok(&format!(
            r#"{{"access_token":"t","token_type":"Bearer","expires_in":{expires_in}}}"#
        ))
        .map(|t| t.expires_in().as_secs())
    }

    #[test]
    fn expires_in_number_and_string() {
        assert_eq!(lifetime("3600").unwrap(), 3600);
        assert_eq!(lifetime(r#""3600""#).unwrap(), 3600);
        assert_eq!(lifetime(r#"" 120 ""#).unwrap(), 120);
        assert_eq!(lifetime("59.9").unwrap(), 59);
        assert_eq!(
            lifetime("0.0000001").unwrap(),
            1,
            "under a second is one second"
        );
    }

    #[test]
    fn expires_in_missing_null_zero_mean_the_default() {
        let t = ok(r#"{"access_token":"t","token_type":"Bearer"}"#).unwrap();
        assert_eq!(t.expires_in(), DEFAULT_EXPIRES_IN);
        assert_eq!(lifetime("null").unwrap(), 300);
        assert_eq!(lifetime("0").unwrap(), 300);
        assert_eq!(lifetime(r#""0""#).unwrap(), 300);
        let custom = ResponseParser::default().default_expires_in(Duration::from_secs(42));
        let t = custom
            .parse(StatusCode::OK, None, br#"{"access_token":"t"}"#)
            .unwrap();
        assert_eq!(t.expires_in().as_secs(), 42);
    }

    #[test]
    fn huge_expires_in_is_clamped() {
        let max = MAX_EXPIRES_IN.as_secs();
        assert_eq!(lifetime("18446744073709551615").unwrap(), max);
        assert_eq!(lifetime("1e300").unwrap(), max);
        assert_eq!(lifetime(r#""99999999999999999999999999""#).unwrap(), max);
    }

    #[test]
    fn negative_or_non_numeric_expires_in_is_an_error() {
        for bad in ["-1", r#""-60""#, r#""soon""#, "true", "[]", r#""""#, "-0.5"] {
            let err = lifetime(bad).unwrap_err();
            assert!(err.is_invalid_response(), "{bad}: {err}");
            assert_eq!(err.status(), Some(StatusCode::OK));
        }
    }

    #[test]
    fn token_type_is_normalised_and_defaults_to_bearer() {
        let t = ok(r#"{"access_token":"t","token_type":"bearer","expires_in":60}"#).unwrap();
        assert_eq!(t.token_type().as_str(), "Bearer");
        let t = ok(r#"{"access_token":"t","token_type":"DPOP","expires_in":60}"#).unwrap();
        assert_eq!(t.token_type().as_str(), "DPoP");
        let t = ok(r#"{"access_token":"t"}"#).unwrap();
        assert_eq!(t.token_type(), &TokenType::BEARER);
    }

    #[test]
    fn scope_is_kept() {
        let t = ok(r#"{"access_token":"t","scope":"a b","expires_in":60}"#).unwrap();
        assert_eq!(t.scope(), Some("a b"));
    }

    #[test]
    fn error_with_status_200_is_a_token_endpoint_error() {
        let err = ok(
            r#"{"error":"invalid_scope","error_description":"no","error_uri":"https://e.test/x"}"#,
        )
        .unwrap_err();
        let rfc = err.token_endpoint_error().expect("rfc error");
        assert_eq!(rfc.status(), StatusCode::OK);
        assert_eq!(rfc.error(), "invalid_scope");
        assert_eq!(rfc.error_description(), Some("no"));
        assert_eq!(rfc.error_uri(), Some("https://e.test/x"));
    }

    #[test]
    fn rfc_error_keeps_status() {
        let err = ResponseParser::default()
            .parse(
                StatusCode::BAD_REQUEST,
                Some("application/json;charset=UTF-8"),
                br#"{"error":"invalid_client"}"#,
            )
            .unwrap_err();
        assert!(err.is_token_endpoint());
        assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
        assert_eq!(
            err.token_endpoint_error().unwrap().error(),
            "invalid_client"
        );
    }

    #[test]
    fn html_500_is_an_invalid_response_with_status_and_content_type() {
        let err = ResponseParser::default()
            .parse(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("text/html"),
                b"<html><body>Internal Server Error</body></html>",
            )
            .unwrap_err();
        assert!(err.is_invalid_response());
        assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
        assert_eq!(err.content_type(), Some("text/html"));
        assert!(err.to_string().contains("500"), "{err}");
    }

    #[test]
    fn html_200_is_an_invalid_response() {
        let err = ResponseParser::default()
            .parse(StatusCode::OK, Some("text/html"), b"<html>login</html>")
            .unwrap_err();
        assert!(err.is_invalid_response());
        assert_eq!(err.content_type(), Some("text/html"));
    }

    #[test]
    fn oversized_body_and_token_are_refused() {
        let big = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(MAX_BODY_LEN));
        let err = ok(&big).unwrap_err();
        assert!(err.is_invalid_response());
        assert!(err.to_string().contains("size limit"), "{err}");
        let long = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(MAX_TOKEN_LEN + 1));
        let err = ok(&long).unwrap_err();
        assert!(err.to_string().contains("length limit"), "{err}");
    }

    #[test]
    fn missing_or_wrong_access_token_is_an_error() {
        for bad in [
            r#"{}"#,
            r#"{"access_token":""}"#,
            r#"{"access_token":5}"#,
            "[]",
            "\"x\"",
        ] {
            assert!(ok(bad).unwrap_err().is_invalid_response(), "{bad}");
        }
    }

    #[test]
    fn json_nested_128_levels_deep_is_an_error() {
        let nested = |depth: usize| {
            format!(
                r#"{{"access_token":"t","x":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        // The object itself is one level: 1 + 126 levels are read, 1 + 127 are not.
        assert!(ok(&nested(126)).is_ok(), "127 levels are read");
        let err = ok(&nested(127)).unwrap_err();
        assert!(err.is_invalid_response(), "{err}");
        assert!(err.to_string().contains("not JSON"), "{err}");
    }

    #[test]
    fn refresh_and_id_tokens_are_not_kept() {
        let t = ok(r#"{"access_token":"at","refresh_token":"rt-secret","id_token":"idt-secret"}"#)
            .unwrap();
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("rt-secret") && !debug.contains("idt-secret"),
            "{debug}"
        );
        assert!(!debug.contains("\"at\""), "{debug}");
    }

    #[test]
    fn a_registered_code_is_kept_whatever_the_secret() {
        let body = br#"{"error":"use_dpop_nonce","error_description":"nonce s needed"}"#;
        let err = ResponseParser::default()
            .parse_redacting(StatusCode::BAD_REQUEST, None, body, &["s"])
            .unwrap_err();
        let rfc = err.token_endpoint_error().unwrap();
        assert_eq!(rfc.error(), "use_dpop_nonce");
        assert_eq!(rfc.error_description(), Some("nonce [redacted] needed"));
    }

    #[test]
    fn echoed_secrets_are_cut_out_of_errors_before_clipping() {
        let long = "x".repeat(1020);
        let body = format!(
            r#"{{"error":"bad s3cret","error_description":"{long}s3cret","error_uri":"https://e.test/?c=s3cret"}}"#
        );
        let err = ResponseParser::default()
            .parse_redacting(
                StatusCode::UNAUTHORIZED,
                Some("text/s3cret"),
                body.as_bytes(),
                &["s3cret", ""],
            )
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("s3c"), "{text}");
        let rfc = err.token_endpoint_error().unwrap();
        assert_eq!(rfc.error(), "bad [redacted]");
        assert_eq!(rfc.error_uri(), Some("https://e.test/?c=[redacted]"));
        let err = ResponseParser::default()
            .parse_redacting(StatusCode::OK, Some("text/s3cret"), b"<html>", &["s3cret"])
            .unwrap_err();
        assert_eq!(err.content_type(), Some("text/[redacted]"));
        assert_eq!(redact("nothing here", &["s3cret"]), "nothing here");
    }

    #[test]
    fn deep_json_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(ok(&deep).unwrap_err().is_invalid_response());
    }
}
