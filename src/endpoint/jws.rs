//! JWS algorithm names (RFC 7518 section 3.1) as this crate reads and writes them, and the
//! members of a private JWK (RFC 7518 section 6) it reads keys from.

use jsonwebtoken::Algorithm;

use crate::error::Error;

/// The members of a private JWK this crate reads; zeroed when dropped.
#[derive(serde::Deserialize, Default)]
pub(super) struct PrivateJwk {
    pub(super) kty: String,
    pub(super) crv: Option<String>,
    pub(super) alg: Option<String>,
    pub(super) kid: Option<String>,
    pub(super) x: Option<String>,
    pub(super) y: Option<String>,
    pub(super) d: Option<String>,
    pub(super) n: Option<String>,
    pub(super) e: Option<String>,
    pub(super) p: Option<String>,
    pub(super) q: Option<String>,
    pub(super) dp: Option<String>,
    pub(super) dq: Option<String>,
    pub(super) qi: Option<String>,
}

impl secrecy::zeroize::Zeroize for PrivateJwk {
    fn zeroize(&mut self) {
        for member in [
            &mut self.d,
            &mut self.p,
            &mut self.q,
            &mut self.dp,
            &mut self.dq,
            &mut self.qi,
        ] {
            member.zeroize();
        }
    }
}

/// The algorithms a client assertion can be signed with here: RSA, ECDSA and EdDSA (HMAC
/// is `client_secret_jwt`, signed with the client secret).
pub(super) fn parse_algorithm(name: &str) -> Result<Algorithm, Error> {
    const NAMES: [(&str, Algorithm); 9] = [
        ("RS256", Algorithm::RS256),
        ("RS384", Algorithm::RS384),
        ("RS512", Algorithm::RS512),
        ("PS256", Algorithm::PS256),
        ("PS384", Algorithm::PS384),
        ("PS512", Algorithm::PS512),
        ("ES256", Algorithm::ES256),
        ("ES384", Algorithm::ES384),
        ("EdDSA", Algorithm::EdDSA),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, alg)| alg)
        .ok_or_else(|| {
            Error::config(format!(
                "unknown signing algorithm `{}`: use RS256, RS384, RS512, PS256, PS384, \
                 PS512, ES256, ES384 or EdDSA",
                crate::error::clip(name, 16)
            ))
        })
}

pub(crate) fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "an algorithm this crate does not sign with",
    }
}
