//! [`SigningKey`]: a private key that signs client assertions (RFC 7523 section 2.2), read
//! from PEM or from a JWK, with its algorithm, `kid` and RFC 7638 thumbprint.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, Ed25519KeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::zeroize::Zeroizing;
use serde::Serialize;

use super::jws::{PrivateJwk, algorithm_name, parse_algorithm};
use crate::error::Error;

/// A private key that signs the client's assertions for `private_key_jwt` (RFC 7523
/// section 2.2, OpenID Connect Core section 9).
///
/// Read from PEM ([`from_pem`](Self::from_pem): PKCS#8 `PRIVATE KEY`, SEC1
/// `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`) or from a private JWK
/// ([`from_jwk`](Self::from_jwk), RFC 7517: `RSA`, `EC` P-256 / P-384, `OKP` Ed25519).
/// The algorithm follows from the key (RS256 for RSA, ES256 for P-256, ES384 for P-384,
/// EdDSA for Ed25519) unless [`with_algorithm`](Self::with_algorithm) picks another that
/// fits it (PS256 for RSA, say). Signing and the keys are
/// [`jsonwebtoken`](https://docs.rs/jsonwebtoken)'s, on aws-lc-rs.
///
/// ```
/// use tower_oauth::endpoint::SigningKey;
///
/// # fn main() -> Result<(), tower_oauth::Error> {
/// let pem = "-----BEGIN PRIVATE KEY-----
/// MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgYjxU4gjuF9bXnTuF
/// bI8W0R0jAMiqUELnDTlm/oOYP4yhRANCAATu8GNWBWRK+KhN6iayoAFxJgC9U/Cl
/// NvK2OoY+11UIG5oQQfHnbsauOkbjvqkSHeaZTHPZoKHOE8ti67VU3Me6
/// -----END PRIVATE KEY-----";
/// let key = SigningKey::from_pem(pem)?.with_key_id("2026-12");
/// assert_eq!(key.algorithm(), "ES256");
/// assert_eq!(key.key_id(), Some("2026-12"));
/// assert_eq!(key.thumbprint().len(), 43); // base64url of a SHA-256
/// # Ok(())
/// # }
/// ```
///
/// The private key is zeroed when the last clone is dropped; `Debug` shows the algorithm,
/// the `kid` and the thumbprint, never the key.
#[derive(Clone)]
pub struct SigningKey {
    inner: Arc<Inner>,
}

struct Inner {
    key: EncodingKey,
    algorithm: Algorithm,
    key_id: Option<String>,
    /// RFC 7638 SHA-256 thumbprint of the public key, base64url.
    thumbprint: String,
    /// The public key as a JWK, with `alg` (and `kid` when set).
    public_jwk: Jwk,
}

impl SigningKey {
    /// Reads a private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`, RSA, EC P-256 / P-384 or
    /// Ed25519), SEC1 (`BEGIN EC PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    /// Encrypted PEM is not read.
    ///
    /// # Errors
    /// [`Error::is_config`]: not such a PEM, or a key that cannot sign (an RSA key under
    /// 2,048 bits, a curve other than P-256 and P-384). The message never quotes the key.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<SigningKey, Error> {
        let pem = pem.as_ref();
        if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
            return SigningKey::new(key, None);
        }
        if let Ok(key) = EncodingKey::from_ec_pem(pem) {
            return SigningKey::new(key, None);
        }
        if let Ok(key) = EncodingKey::from_ed_pem(pem) {
            return SigningKey::new(key, None);
        }
        // SEC1 `EC PRIVATE KEY`, which jsonwebtoken does not read: aws-lc-rs parses it
        // and writes it out as PKCS#8.
        if let Ok(parsed) = pem::parse(pem)
            && parsed.tag() == "EC PRIVATE KEY"
        {
            for alg in [
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &ECDSA_P384_SHA384_FIXED_SIGNING,
            ] {
                if let Ok(pair) = EcdsaKeyPair::from_private_key_der(alg, parsed.contents()) {
                    return SigningKey::from_ec_pair(&pair);
                }
            }
            return Err(Error::config(
                "the EC private key is not on P-256 or P-384, or does not parse",
            ));
        }
        Err(Error::config(
            "the signing key is not a PEM private key this crate reads (PKCS#8 \
             `PRIVATE KEY`, SEC1 `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`, RSA of at \
             least 2,048 bits, EC P-256 or P-384, Ed25519; not encrypted)",
        ))
    }

    /// Reads a private JWK (RFC 7517 section 4, RFC 7518 section 6): `kty` `RSA` (with
    /// `n`, `e`, `d`, `p`, `q`, `dp`, `dq`, `qi`), `EC` (`crv` `P-256` or `P-384`, `x`,
    /// `y`, `d`) or `OKP` (`crv` `Ed25519`, `x`, `d`). Its `alg` and `kid`, when present,
    /// are kept.
    ///
    /// # Errors
    /// [`Error::is_config`]: not JSON, a public key only, a `kty` or `crv` not listed, a
    /// member that is not base64url, components that do not make a key, or an `alg` that
    /// does not fit it. The message never quotes the key.
    pub fn from_jwk(jwk: &str) -> Result<SigningKey, Error> {
        let jwk: Zeroizing<PrivateJwk> = Zeroizing::new(
            serde_json::from_str(jwk)
                .map_err(|_| Error::config("the signing key is not a JWK (a JSON object)"))?,
        );
        let missing = |member: &str| {
            Error::config(format!(
                "the JWK has no `{member}`: a private key is needed"
            ))
        };
        let bytes = |member: &'static str, value: &Option<String>| {
            let value = value.as_deref().ok_or_else(|| missing(member))?;
            URL_SAFE_NO_PAD
                .decode(value.trim_end_matches('='))
                .map(Zeroizing::new)
                .map_err(|_| Error::config(format!("the JWK's `{member}` is not base64url")))
        };
        let rejected = |what: &str| Error::config(format!("the JWK is not a usable {what} key"));
        let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                let alg: &'static EcdsaSigningAlgorithm = if crv == "P-256" {
                    &ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &ECDSA_P384_SHA384_FIXED_SIGNING
                };
                let (x, y, d) = (
                    bytes("x", &jwk.x)?,
                    bytes("y", &jwk.y)?,
                    bytes("d", &jwk.d)?,
                );
                let mut point = Zeroizing::new(Vec::with_capacity(1 + x.len() + y.len()));
                point.push(0x04); // SEC1 uncompressed point, as aws-lc-rs takes it
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let pair = EcdsaKeyPair::from_private_key_and_public_key(alg, &d, &point)
                    .map_err(|_| rejected("EC"))?;
                let der = pair.to_pkcs8v1().map_err(|_| rejected("EC"))?;
                EncodingKey::from_ec_der(der.as_ref())
            }
            ("OKP", Some("Ed25519")) => {
                let (x, d) = (bytes("x", &jwk.x)?, bytes("d", &jwk.d)?);
                let pair = Ed25519KeyPair::from_seed_and_public_key(&d, &x)
                    .map_err(|_| rejected("Ed25519"))?;
                let der = pair.to_pkcs8v1().map_err(|_| rejected("Ed25519"))?;
                EncodingKey::from_ed_der(der.as_ref())
            }
            ("RSA", _) => {
                let components = aws_lc_rs::rsa::KeyPairComponents {
                    public_key: aws_lc_rs::rsa::PublicKeyComponents {
                        n: bytes("n", &jwk.n)?,
                        e: bytes("e", &jwk.e)?,
                    },
                    d: bytes("d", &jwk.d)?,
                    p: bytes("p", &jwk.p)?,
                    q: bytes("q", &jwk.q)?,
                    dP: bytes("dp", &jwk.dp)?,
                    dQ: bytes("dq", &jwk.dq)?,
                    qInv: bytes("qi", &jwk.qi)?,
                };
                let pair = aws_lc_rs::rsa::KeyPair::from_components(&components)
                    .map_err(|_| rejected("RSA"))?;
                let pkcs8 = pair.as_der().map_err(|_| rejected("RSA"))?;
                let pem = Zeroizing::new(pem::encode(&pem::Pem::new(
                    "PRIVATE KEY",
                    pkcs8.as_ref().to_vec(),
                )));
                EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| rejected("RSA"))?
            }
            (kty, crv) => {
                return Err(Error::config(format!(
                    "the JWK's key type is not one this crate signs with (kty `{}`{}): use \
                     RSA, EC P-256 or P-384, or OKP Ed25519",
                    crate::error::clip(kty, 16),
                    crv.map(|c| format!(", crv `{}`", crate::error::clip(c, 16)))
                        .unwrap_or_default(),
                )));
            }
        };
        let algorithm = match jwk.alg.as_deref() {
            Some(alg) => Some(parse_algorithm(alg)?),
            None => None,
        };
        let key = SigningKey::new(key, algorithm)?;
        Ok(match &jwk.kid {
            Some(kid) => key.with_key_id(kid.clone()),
            None => key,
        })
    }

    /// The key with this signing algorithm (`RS256`, `PS256`, `ES256`, `ES384`, `EdDSA`...)
    /// instead of the one that follows from the key.
    ///
    /// # Errors
    /// [`Error::is_config`]: an unknown name, or an algorithm that does not fit the key
    /// (`ES256` on an RSA key, `ES384` on a P-256 key, an HMAC algorithm).
    pub fn with_algorithm(self, algorithm: &str) -> Result<SigningKey, Error> {
        let algorithm = parse_algorithm(algorithm)?;
        let mut key = SigningKey::new(self.inner.key.clone(), Some(algorithm))?;
        if let Some(kid) = &self.inner.key_id {
            key = key.with_key_id(kid.clone());
        }
        Ok(key)
    }

    /// The key with this key id, sent as the `kid` header of each assertion (the id of the
    /// key in the client's registered `jwks`, RFC 7591 section 2).
    pub fn with_key_id(self, key_id: impl Into<String>) -> SigningKey {
        let key_id = key_id.into();
        let mut public_jwk = self.inner.public_jwk.clone();
        public_jwk.common.key_id = Some(key_id.clone());
        SigningKey {
            inner: Arc::new(Inner {
                key: self.inner.key.clone(),
                algorithm: self.inner.algorithm,
                key_id: Some(key_id),
                thumbprint: self.inner.thumbprint.clone(),
                public_jwk,
            }),
        }
    }

    /// The JWS algorithm name (RFC 7518 section 3.1): `RS256`, `PS256`, `ES256`, `ES384`,
    /// `EdDSA`...
    pub fn algorithm(&self) -> &'static str {
        algorithm_name(self.inner.algorithm)
    }

    /// The key id, if one was set or read from the JWK.
    pub fn key_id(&self) -> Option<&str> {
        self.inner.key_id.as_deref()
    }

    /// The RFC 7638 JWK thumbprint of the public key (SHA-256, base64url without padding,
    /// 43 characters): what a server's `cnf.jkt` holds for a key-bound token.
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// The public key as a JWK (RFC 7517), with `alg`, and `kid` when set: what goes in
    /// the client's registered `jwks`. Never holds private members.
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::to_value(&self.inner.public_jwk).unwrap_or_default()
    }

    /// A JWS in compact form of `claims`, with `typ` and this key's `alg` and `kid`.
    pub(crate) fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, Error> {
        let mut header = Header::new(self.inner.algorithm);
        header.typ = Some(typ.to_owned());
        header.kid = self.inner.key_id.clone();
        jsonwebtoken::encode(&header, claims, &self.inner.key)
            .map_err(|_| Error::client_assertion("the signing key could not sign", None))
    }

    /// A new P-256 key (ES256), from aws-lc-rs's generator.
    ///
    /// # Errors
    /// [`Error::is_config`] if no key can be generated (no randomness).
    pub(crate) fn generate_es256() -> Result<SigningKey, Error> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| Error::config("no P-256 key could be generated"))?;
        SigningKey::new(EncodingKey::from_ec_der(pkcs8.as_ref()), None)
    }

    /// A JWS in compact form of `claims` whose header carries `typ`, this key's `alg` and
    /// its public key as `jwk` (no `kid`): a DPoP proof's header (RFC 9449 section 4.2).
    pub(crate) fn sign_with_jwk<T: Serialize>(
        &self,
        typ: &str,
        claims: &T,
    ) -> Result<String, Error> {
        let mut header = Header::new(self.inner.algorithm);
        header.typ = Some(typ.to_owned());
        let mut jwk = self.inner.public_jwk.clone();
        jwk.common.key_id = None;
        header.jwk = Some(jwk);
        jsonwebtoken::encode(&header, claims, &self.inner.key)
            .map_err(|_| Error::config("the DPoP key could not sign"))
    }

    fn from_ec_pair(pair: &EcdsaKeyPair) -> Result<SigningKey, Error> {
        let der = pair
            .to_pkcs8v1()
            .map_err(|_| Error::config("the EC private key cannot be written as PKCS#8"))?;
        SigningKey::new(EncodingKey::from_ec_der(der.as_ref()), None)
    }

    /// Checks that `key` signs with `algorithm` (or the one that follows from the key).
    fn new(key: EncodingKey, algorithm: Option<Algorithm>) -> Result<SigningKey, Error> {
        install_crypto_provider();
        let family = key.family();
        let candidates: &[Algorithm] = match algorithm {
            Some(alg) if family.algorithms().contains(&alg) => &[alg],
            Some(alg) => {
                return Err(Error::config(format!(
                    "the algorithm {} does not fit the key (a {family:?} key)",
                    algorithm_name(alg),
                )));
            }
            None => match family {
                jsonwebtoken::AlgorithmFamily::Rsa => &[Algorithm::RS256],
                jsonwebtoken::AlgorithmFamily::Ec => &[Algorithm::ES256, Algorithm::ES384],
                jsonwebtoken::AlgorithmFamily::Ed => &[Algorithm::EdDSA],
                jsonwebtoken::AlgorithmFamily::Hmac => &[],
            },
        };
        for &alg in candidates {
            let Ok(public_jwk) = Jwk::from_encoding_key(&key, alg) else {
                continue;
            };
            // One signature now, so that a key that cannot sign fails here, not at the
            // first token request.
            let mut header = Header::new(alg);
            header.typ = Some("JWT".to_owned());
            if jsonwebtoken::encode(&header, &serde_json::json!({}), &key).is_err() {
                continue;
            }
            let thumbprint = public_jwk
                .thumbprint(ThumbprintHash::SHA256)
                .map_err(|_| Error::config("the public key has no RFC 7638 thumbprint"))?;
            return Ok(SigningKey {
                inner: Arc::new(Inner {
                    key,
                    algorithm: alg,
                    key_id: None,
                    thumbprint,
                    public_jwk,
                }),
            });
        }
        Err(Error::config(match algorithm {
            Some(alg) => format!(
                "the key cannot sign with {} (an RSA key needs at least 2,048 bits; an EC \
                 key's curve must match: P-256 for ES256, P-384 for ES384)",
                algorithm_name(alg)
            ),
            None => "the key cannot sign (an RSA key needs at least 2,048 bits; EC keys \
                     must be on P-256 or P-384)"
                .to_owned(),
        }))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .field("key_id", &self.inner.key_id)
            .field("thumbprint", &self.inner.thumbprint)
            .finish_non_exhaustive()
    }
}

/// jsonwebtoken signs with the process's default crypto provider, which it picks itself
/// only when exactly one of its backends is compiled in: another crate of the build
/// turning its `rust_crypto` feature on as well would leave none. Install the aws-lc-rs
/// one then (a no-op when one is set).
pub(crate) fn install_crypto_provider() {
    if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    }
}
