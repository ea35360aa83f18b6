//! DPoP proofs (RFC 9449 section 4): the key and the signed proof JWT a client sends in the
//! `DPoP` header of a token request and of each request with a DPoP-bound token.
//!
//! [`Dpop`] is what a client shares between its token requests
//! ([`ClientCredentialsBuilder::dpop`](super::ClientCredentialsBuilder::dpop)) and its API
//! requests ([`DpopLayer`](crate::oauth::dpop::DpopLayer), below
//! [`OAuthLayer`](crate::OAuthLayer)): the key, and the latest nonce of each origin.
//!
//! ```
//! use http::Method;
//! use tower_oauth::endpoint::dpop::{DpopKey, access_token_hash, htu};
//!
//! # fn main() -> Result<(), tower_oauth::Error> {
//! let key = DpopKey::generate_es256()?;
//! let uri: http::Uri = "https://api.example.com/v1/orders?page=2#top".parse().unwrap();
//! let target = htu(&uri).expect("an absolute URI");
//! assert_eq!(target, "https://api.example.com/v1/orders");
//! let proof = key.proof(&Method::GET, &target, Some("the-access-token"), Some("server-nonce"))?;
//! assert_eq!(proof.split('.').count(), 3); // a compact JWS
//! assert_eq!(access_token_hash("the-access-token").len(), 43);
//! assert_eq!(key.thumbprint().len(), 43); // what the server's `cnf.jkt` holds
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, Uri};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::signing_key::SigningKey;
use crate::error::Error;

/// The `typ` of a DPoP proof (RFC 9449 section 4.2).
pub const DPOP_JWT_TYPE: &str = "dpop+jwt";

/// The longest nonce a proof carries: 1,024 characters. A server's `DPoP-Nonce` longer than
/// that, or with characters outside RFC 9449's `NQCHAR` (`%x21 / %x23-5B / %x5D-7E`), is
/// refused by [`parse_nonce`].
pub const MAX_NONCE_LEN: usize = 1024;

/// The key a client proves possession of with DPoP (RFC 9449): ES256 by default
/// ([`generate_es256`](Self::generate_es256)), or any [`SigningKey`] (RS256, PS256, ES256,
/// ES384, EdDSA). Its RFC 7638 [`thumbprint`](Self::thumbprint) is what a server binds
/// tokens to (`cnf.jkt`). `Debug` shows the algorithm and thumbprint, never the key; the
/// private key is zeroed when the last clone is dropped.
#[derive(Clone)]
pub struct DpopKey {
    key: SigningKey,
}

#[derive(Serialize)]
struct ProofClaims<'a> {
    jti: String,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

impl DpopKey {
    /// A new P-256 key for ES256.
    ///
    /// # Errors
    /// [`Error::is_config`] if no key can be generated.
    pub fn generate_es256() -> Result<DpopKey, Error> {
        Ok(DpopKey {
            key: SigningKey::generate_es256()?,
        })
    }

    /// A key read elsewhere ([`SigningKey::from_pem`], [`SigningKey::from_jwk`]), with
    /// its algorithm.
    pub fn from_signing_key(key: SigningKey) -> DpopKey {
        DpopKey { key }
    }

    /// The JWS algorithm of its proofs.
    pub fn algorithm(&self) -> &'static str {
        self.key.algorithm()
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key, base64url (43 characters): the
    /// `jkt` a server binds tokens to (RFC 9449 section 6.1).
    pub fn thumbprint(&self) -> &str {
        self.key.thumbprint()
    }

    /// A proof for one request (RFC 9449 section 4.2): header `typ` `dpop+jwt`, `alg`, the
    /// public `jwk`; claims a new random `jti`, `htm` (the method), `htu` (the target URI
    /// without query and fragment, see [`htu`]), `iat` (now, in seconds), `ath` (the
    /// [`access_token_hash`] of `access_token`, for a request to a resource server) and
    /// `nonce` (the server's latest, when it sent one).
    ///
    /// # Errors
    /// [`Error::is_config`] if the key cannot sign or no randomness is at hand.
    pub fn proof(
        &self,
        htm: &Method,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, Error> {
        self.proof_with_ath(htm, htu, access_token.map(access_token_hash), nonce)
    }

    /// [`proof`](Self::proof) with the `ath` computed already.
    pub(crate) fn proof_with_ath(
        &self,
        htm: &Method,
        htu: &str,
        ath: Option<String>,
        nonce: Option<&str>,
    ) -> Result<String, Error> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|_| Error::config("no randomness for a DPoP jti"))?;
        let claims = ProofClaims {
            jti: hex::encode(jti),
            htm: htm.as_str(),
            htu,
            iat: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            ath,
            nonce,
        };
        self.key.sign_with_jwk(DPOP_JWT_TYPE, &claims)
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("algorithm", &self.algorithm())
            .field("thumbprint", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

/// DPoP for one client (RFC 9449): its [`DpopKey`], the latest `DPoP-Nonce` each origin
/// sent (token endpoint and APIs alike, section 8), and whether a token endpoint may
/// answer `token_type=Bearer` to a DPoP token request. Cheap to clone; clones share the
/// nonces. Give the same one to the token source and to the
/// [`DpopLayer`](crate::oauth::dpop::DpopLayer).
#[derive(Clone)]
pub struct Dpop {
    inner: Arc<DpopInner>,
}

struct DpopInner {
    key: DpopKey,
    allow_bearer: bool,
    /// `scheme://authority` -> the latest nonce it sent. At most [`MAX_ORIGINS`] origins;
    /// beyond, the map is emptied (a server asks again).
    nonces: Mutex<HashMap<String, String>>,
}

/// The most origins whose nonce a [`Dpop`] keeps.
const MAX_ORIGINS: usize = 1024;

impl Dpop {
    /// DPoP with `key`; a `Bearer` answer to a DPoP token request is an error.
    pub fn new(key: DpopKey) -> Dpop {
        Dpop::build(key, false)
    }

    /// The same, but a token endpoint that answers `token_type=Bearer` (it ignored the
    /// proof) is accepted: the token is then used as a bearer token, without proofs.
    pub fn allowing_bearer_downgrade(self) -> Dpop {
        Dpop::build(self.inner.key.clone(), true)
    }

    fn build(key: DpopKey, allow_bearer: bool) -> Dpop {
        Dpop {
            inner: Arc::new(DpopInner {
                key,
                allow_bearer,
                nonces: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The key.
    pub fn key(&self) -> &DpopKey {
        &self.inner.key
    }

    /// Whether a `Bearer` answer to a DPoP token request is accepted.
    pub fn allows_bearer_downgrade(&self) -> bool {
        self.inner.allow_bearer
    }

    /// The latest nonce `origin` (`scheme://authority`) sent, if any.
    pub fn nonce(&self, origin: &str) -> Option<String> {
        self.lock().get(origin).cloned()
    }

    /// Remembers the `DPoP-Nonce` of a response from `origin`, if it has a well-formed
    /// one; whether it differs from the one held.
    pub(crate) fn record_nonce(&self, origin: &str, headers: &http::HeaderMap) -> bool {
        let Some(nonce) = headers
            .get("dpop-nonce")
            .and_then(|v| parse_nonce(v.as_bytes()))
        else {
            return false;
        };
        let mut nonces = self.lock();
        if nonces.get(origin).is_some_and(|held| held == nonce) {
            return false;
        }
        if nonces.len() >= MAX_ORIGINS && !nonces.contains_key(origin) {
            nonces.clear();
        }
        nonces.insert(origin.to_owned(), nonce.to_owned());
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.inner.nonces.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("key", &self.inner.key)
            .field("allow_bearer_downgrade", &self.inner.allow_bearer)
            .finish_non_exhaustive()
    }
}

/// `scheme://authority` of an absolute URI: the key of its origin's nonce.
pub(crate) fn origin_of(uri: &Uri) -> Option<String> {
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))
}

/// `ath` (RFC 9449 section 4.2): base64url of the SHA-256 of the access token, without
/// padding (43 characters).
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// `htu` (RFC 9449 section 4.2): `scheme://authority/path` of an absolute URI, without its
/// query and fragment; `None` for a URI without scheme or authority.
pub fn htu(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    let path = match uri.path() {
        "" => "/",
        path => path,
    };
    Some(format!("{scheme}://{authority}{path}"))
}

/// A server's `DPoP-Nonce` header value (RFC 9449 section 8), checked: 1 to
/// [`MAX_NONCE_LEN`] characters of `NQCHAR`. `None` for anything else (empty, too long,
/// a space, a quote, a backslash, non-ASCII): a malformed nonce is not used.
pub fn parse_nonce(value: &[u8]) -> Option<&str> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NONCE_LEN
        && value
            .iter()
            .all(|&b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
    ok.then(|| std::str::from_utf8(value).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_drops_query_and_fragment_and_nonces_are_checked() {
        let htu_of = |s: &str| htu(&s.parse::<Uri>().unwrap());
        assert_eq!(
            htu_of("https://a.example:8443/x/y?q=1").as_deref(),
            Some("https://a.example:8443/x/y")
        );
        assert_eq!(
            htu_of("https://a.example").as_deref(),
            Some("https://a.example/")
        );
        assert_eq!(htu_of("/relative"), None);
        assert_eq!(
            parse_nonce(b"eyJ7S_zG.eyJH0-Z.HX4w-7v"),
            Some("eyJ7S_zG.eyJH0-Z.HX4w-7v")
        );
        for bad in [&b""[..], b"has space", b"quo\"te", b"back\\slash", &[0xff]] {
            assert_eq!(parse_nonce(bad), None, "{bad:?}");
        }
        assert_eq!(parse_nonce(&[b'a'; MAX_NONCE_LEN + 1]), None);
    }
}
