//! Client assertions (RFC 7521, RFC 7523 section 2.2): where the `client_assertion` of a
//! token request comes from (a key that signs one here, the client secret, a file the
//! platform rotates, a closure of the user's), made anew for every token request.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::signing_key::{SigningKey, install_crypto_provider};
use crate::BoxError;
use crate::error::Error;

/// The `client_assertion_type` of a JWT assertion (RFC 7523 section 2.2).
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The lifetime of an assertion signed here unless set: 60 seconds.
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// The longest lifetime an assertion signed here may be given: 1 hour.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// The largest assertion file read: 64 KiB.
pub(crate) const MAX_ASSERTION_FILE_LEN: u64 = 64 * 1024;

/// A user's closure that returns a client assertion.
pub(crate) type AssertionFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>> + Send + Sync>;

/// Where the `client_assertion` comes from.
#[derive(Clone)]
pub(crate) enum AssertionSource {
    /// `private_key_jwt`, signed here with the client's key.
    Key(SigningKey),
    /// `client_secret_jwt`, signed here HS256 with the client secret.
    Secret(SecretString),
    /// An assertion the platform writes to a file (Kubernetes projected service account
    /// tokens, Azure workload identity, SPIFFE JWT-SVIDs), read at every token request.
    File(PathBuf),
    /// A closure of the user's.
    Fn(AssertionFn),
}

/// An assertion for one token request, zeroed when dropped.
pub(crate) struct Assertion {
    pub(crate) value: Zeroizing<String>,
    /// SHA-256 of the file's content, for an assertion read from a file.
    pub(crate) file_digest: Option<[u8; 32]>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

impl AssertionSource {
    /// A new assertion: signed now with a fresh `jti` (for a key or the secret), read
    /// anew (a file), or asked for (a closure).
    ///
    /// # Errors
    /// [`Error::is_client_assertion`]: the key could not sign, the file is missing, empty,
    /// unreadable, over 64 KiB, not a JWT or expired, the closure failed.
    pub(crate) async fn make(
        &self,
        client_id: &str,
        audience: &str,
        lifetime: Duration,
    ) -> Result<Assertion, Error> {
        let signed = |sign: &dyn Fn(&Claims<'_>) -> Result<String, Error>| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let claims = Claims {
                iss: client_id,
                sub: client_id,
                aud: audience,
                jti: jti()?,
                iat: now,
                exp: now.saturating_add(lifetime.as_secs().max(1)),
            };
            Ok::<_, Error>(Assertion {
                value: Zeroizing::new(sign(&claims)?),
                file_digest: None,
            })
        };
        match self {
            AssertionSource::Key(key) => signed(&|claims| key.sign("JWT", claims)),
            AssertionSource::Secret(secret) => signed(&|claims| {
                install_crypto_provider();
                let key = EncodingKey::from_secret(secret.expose_secret().as_bytes())
                    .map_err(|_| Error::client_assertion("the client secret is empty", None))?;
                let mut header = Header::new(Algorithm::HS256);
                header.typ = Some("JWT".to_owned());
                jsonwebtoken::encode(&header, claims, &key)
                    .map_err(|_| Error::client_assertion("the client secret could not sign", None))
            }),
            AssertionSource::File(path) => read_file(path),
            AssertionSource::Fn(f) => {
                let value = f().await.map_err(|e| {
                    Error::client_assertion("the client_assertion_fn closure failed", Some(e))
                })?;
                let value = Zeroizing::new(value);
                check_jwt(value.trim(), "the assertion from client_assertion_fn")?;
                Ok(Assertion {
                    value: Zeroizing::new(value.trim().to_owned()),
                    file_digest: None,
                })
            }
        }
    }

    /// For an assertion file: whether its content now differs from what `digest` was taken
    /// of (so that an `invalid_client` may have been for the old one).
    pub(crate) fn file_changed_since(&self, digest: Option<[u8; 32]>) -> bool {
        match (self, digest) {
            (AssertionSource::File(path), Some(old)) => {
                read_file(path).is_ok_and(|now| now.file_digest != Some(old))
            }
            _ => false,
        }
    }

    /// What tells two sources apart in a cache key: the key's RFC 7638 thumbprint, the
    /// file's path; the secret is in the key already, and a closure has nothing stable.
    pub(crate) fn key_material(&self) -> (&'static str, String) {
        match self {
            AssertionSource::Key(key) => ("jwk_thumbprint", key.thumbprint().to_owned()),
            AssertionSource::Secret(_) => ("client_secret_jwt", String::new()),
            AssertionSource::File(path) => ("assertion_file", path.to_string_lossy().into_owned()),
            AssertionSource::Fn(_) => ("assertion_fn", String::new()),
        }
    }
}

impl fmt::Debug for AssertionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssertionSource::Key(key) => f.debug_tuple("Key").field(key).finish(),
            AssertionSource::Secret(_) => f.write_str("Secret([redacted])"),
            AssertionSource::File(path) => f.debug_tuple("File").field(path).finish(),
            AssertionSource::Fn(_) => f.write_str("Fn(..)"),
        }
    }
}

/// 128 random bits, hex: unique per assertion (RFC 7523 section 3, item 7).
fn jti() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|_| Error::client_assertion("no randomness for the assertion's jti", None))?;
    Ok(hex::encode(bytes))
}

/// Reads an assertion file: at most 64 KiB, trimmed, a JWT whose `exp` (if any) is ahead.
/// Errors name the path, never the content.
fn read_file(path: &Path) -> Result<Assertion, Error> {
    let name = path.display();
    let too_large =
        || Error::client_assertion(format!("the assertion file {name} is over 64 KiB"), None);
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::client_assertion(
            format!("the assertion file {name} cannot be read"),
            Some(e.into()),
        )
    })?;
    if meta.len() > MAX_ASSERTION_FILE_LEN {
        return Err(too_large());
    }
    // A small local file, read on the token request's task: no request waits on it while
    // a valid token is at hand.
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
        Error::client_assertion(
            format!("the assertion file {name} cannot be read"),
            Some(e.into()),
        )
    })?);
    if bytes.len() as u64 > MAX_ASSERTION_FILE_LEN {
        return Err(too_large());
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Error::client_assertion(format!("the assertion file {name} is not UTF-8"), None)
    })?;
    let value = text.trim();
    check_jwt(value, &format!("the assertion file {name}"))?;
    Ok(Assertion {
        value: Zeroizing::new(value.to_owned()),
        file_digest: Some(Sha256::digest(value.as_bytes()).into()),
    })
}

/// An assertion must be a compact JWT, not expired (its signature is for the server).
fn check_jwt(value: &str, what: &str) -> Result<(), Error> {
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: Option<serde_json::Value>,
    }
    if value.is_empty() {
        return Err(Error::client_assertion(format!("{what} is empty"), None));
    }
    let claims: Exp = jsonwebtoken::dangerous::insecure_decode_claims(value)
        .map_err(|_| Error::client_assertion(format!("{what} is not a JWT (RFC 7519)"), None))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    match claims.exp.as_ref().map(serde_json::Value::as_f64) {
        None => Ok(()),
        Some(Some(exp)) if exp > now => Ok(()),
        Some(Some(_)) => Err(Error::client_assertion(format!("{what} has expired"), None)),
        Some(None) => Err(Error::client_assertion(
            format!("{what} has an `exp` that is not a number"),
            None,
        )),
    }
}
