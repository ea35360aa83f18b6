//! [`SubjectToken`]: the token of the caller a gateway acts for, the `subject_token` of an
//! RFC 8693 token exchange, known by its SHA-256 and never shown.
//!
//! ```
//! use http::HeaderMap;
//! use tower_oauth::SubjectToken;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("authorization", "Bearer caller-token".parse().unwrap());
//! let subject = SubjectToken::from_bearer(&headers).expect("a bearer token");
//! assert_eq!(subject, SubjectToken::new("caller-token"));
//! assert_eq!(format!("{subject:?}"), format!("SubjectToken({})", subject.key()));
//! ```

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The caller's token, for a token exchange on its behalf (RFC 8693 section 2.1,
/// `subject_token`).
///
/// Equal, hashed and shown by [`key`](Self::key), a SHA-256 of the token: a map keyed by
/// it holds no token, and two callers' tokens never compare equal. Cheap to clone. The
/// token is kept in a [`SecretString`], zeroed when the last clone is dropped.
#[derive(Clone)]
pub struct SubjectToken {
    token: Arc<SecretString>,
    key: SubjectKey,
}

/// The SHA-256 of a [`SubjectToken`]; `Display` and `Debug` show the first 8 bytes in hex,
/// enough to tell callers apart in a log line and nothing to replay.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubjectKey([u8; 32]);

impl SubjectToken {
    /// The caller's token, as it came.
    pub fn new(token: impl Into<String>) -> SubjectToken {
        let token = SecretString::from(token.into());
        let key = SubjectKey(Sha256::digest(token.expose_secret().as_bytes()).into());
        SubjectToken {
            token: Arc::new(token),
            key,
        }
    }

    /// The token of an `Authorization: Bearer <token>` header (RFC 6750 section 2.1; the
    /// scheme in any case), if the headers have exactly one and it is not empty.
    pub fn from_bearer(headers: &HeaderMap) -> Option<SubjectToken> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
            .then(|| SubjectToken::new(token))
    }

    /// Its SHA-256: what a map of exchanged tokens is keyed by.
    pub fn key(&self) -> SubjectKey {
        self.key
    }

    /// The token itself, for the token request.
    pub fn token(&self) -> &SecretString {
        &self.token
    }
}

impl PartialEq for SubjectToken {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for SubjectToken {}

impl Hash for SubjectToken {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectToken({})", self.key)
    }
}

impl SubjectKey {
    /// The whole SHA-256.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers_are_read_strictly() {
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(AUTHORIZATION, v.parse().unwrap());
            }
            h
        };
        assert!(SubjectToken::from_bearer(&headers(&["bearer t1"])).is_some());
        for bad in [
            &[][..],
            &["Basic dTpw"],
            &["Bearer "],
            &["Bearer a b"],
            &["Bearer t1", "Bearer t2"],
            &["Bearer"],
        ] {
            assert!(
                SubjectToken::from_bearer(&headers(bad)).is_none(),
                "{bad:?}"
            );
        }
        let a = SubjectToken::new("t1");
        assert_ne!(a, SubjectToken::new("t2"));
        assert!(!format!("{a:?}").contains("t1"));
    }
}
