//! What the test authorization server checks of a client assertion (RFC 7523 section 3):
//! the signature (with a registered public JWK, or HS256 with the client secret for
//! `client_secret_jwt`), `iss` = `sub` = the client id, `aud`, `exp` ahead, `iat`, and a
//! `jti` never seen before.

use std::collections::HashSet;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// What the server saw of a good assertion.
#[derive(Debug, Clone)]
pub struct AssertionSeen {
    pub jti: String,
    /// `exp` - `iat`, in seconds.
    pub lifetime_secs: u64,
    /// The JWS `alg`.
    pub alg: String,
    /// The JWS `kid`, if any.
    pub kid: Option<String>,
    /// Signed with the client secret (`client_secret_jwt`) rather than a key.
    pub with_secret: bool,
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    jti: String,
    iat: u64,
    exp: u64,
}

/// Checks `assertion` for `client_id`; `Err` is the reason, for `invalid_client`.
pub fn check(
    assertion: &str,
    client_id: &str,
    audience: &str,
    keys: &[serde_json::Value],
    client_secret: &str,
    seen: &mut HashSet<String>,
) -> Result<AssertionSeen, &'static str> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| "assertion: bad header")?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
    validation.leeway = 5;
    let with_secret = header.alg == Algorithm::HS256;
    let data = if with_secret {
        jsonwebtoken::decode::<Claims>(
            assertion,
            &DecodingKey::from_secret(client_secret.as_bytes()).map_err(|_| "empty secret")?,
            &validation,
        )
        .map_err(|_| "assertion: bad HS256 signature or claims")?
    } else {
        let mut found = None;
        for key in keys {
            let jwk: Jwk = serde_json::from_value(key.clone()).map_err(|_| "bad registered key")?;
            if header.kid.is_some()
                && jwk.common.key_id.is_some()
                && header.kid != jwk.common.key_id
            {
                continue;
            }
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            if let Ok(data) = jsonwebtoken::decode::<Claims>(assertion, &decoding, &validation) {
                found = Some(data);
                break;
            }
        }
        found.ok_or("assertion: no registered key verifies it")?
    };
    let claims = data.claims;
    if claims.sub != client_id || claims.iss != client_id {
        return Err("assertion: iss and sub must be the client id");
    }
    if claims.exp <= claims.iat {
        return Err("assertion: exp not after iat");
    }
    if !seen.insert(claims.jti.clone()) {
        return Err("assertion: jti replayed");
    }
    Ok(AssertionSeen {
        jti: claims.jti,
        lifetime_secs: claims.exp - claims.iat,
        alg: format!("{:?}", header.alg),
        kid: header.kid,
        with_secret,
    })
}
