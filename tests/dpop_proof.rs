//! DPoP proofs (RFC 9449 section 4.2), verified as a server would: `typ` `dpop+jwt`, the
//! public `jwk` in the header (and no private member), the signature with that key, `htm`,
//! `htu` without query and fragment, `iat` now, `ath`, `nonce`, a `jti` never seen before
//! (1,000 proofs, 1,000 `jti`s), the RFC 7638 thumbprint of the header's key equal to the
//! key's. For a generated ES256 key and for RS256, PS256, ES384 and EdDSA keys.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use http::Method;
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::{DecodingKey, Validation};
use tower_oauth::SigningKey;
use tower_oauth::endpoint::dpop::{DpopKey, access_token_hash, htu};

#[derive(serde::Deserialize)]
struct Claims {
    jti: String,
    htm: String,
    htu: String,
    iat: u64,
    ath: Option<String>,
    nonce: Option<String>,
}

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// What a server checks of a proof; its claims.
fn verify(proof: &str, key: &DpopKey) -> Claims {
    let header = jsonwebtoken::decode_header(proof).unwrap();
    assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
    let jwk = header.jwk.expect("the public key in the header");
    let as_json = serde_json::to_value(&jwk).unwrap();
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(as_json.get(private).is_none(), "private member {private}");
    }
    assert_eq!(
        jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
        key.thumbprint()
    );
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<Claims>(proof, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
        .expect("the signature verifies with the header's key")
        .claims
}

#[test]
fn proofs_verify_with_their_own_key_and_carry_what_rfc_9449_asks() {
    let keys = [
        DpopKey::generate_es256().unwrap(),
        DpopKey::from_signing_key(SigningKey::from_pem(key_file("rsa.pem")).unwrap()),
        DpopKey::from_signing_key(
            SigningKey::from_pem(key_file("rsa.pem"))
                .unwrap()
                .with_algorithm("PS256")
                .unwrap(),
        ),
        DpopKey::from_signing_key(SigningKey::from_pem(key_file("p384.pem")).unwrap()),
        DpopKey::from_signing_key(SigningKey::from_pem(key_file("ed25519.pem")).unwrap()),
    ];
    let uri: http::Uri = "https://api.example.com/v1/orders?page=2#top"
        .parse()
        .unwrap();
    let target = htu(&uri).unwrap();
    for key in &keys {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = verify(
            &key.proof(&Method::POST, &target, Some("tok"), Some("n-1"))
                .unwrap(),
            key,
        );
        assert_eq!(claims.htm, "POST");
        assert_eq!(claims.htu, "https://api.example.com/v1/orders");
        assert!(claims.iat.abs_diff(now) <= 5, "iat now");
        assert_eq!(
            claims.ath.as_deref(),
            Some(access_token_hash("tok").as_str())
        );
        assert_eq!(claims.nonce.as_deref(), Some("n-1"));
        // A token request's proof: no ath, no nonce until the server asks for one.
        let claims = verify(
            &key.proof(&Method::POST, "https://idp.example/token", None, None)
                .unwrap(),
            key,
        );
        assert!(claims.ath.is_none() && claims.nonce.is_none());
        assert!(!format!("{key:?}").contains("MII"));
    }
    let key = &keys[0];
    let jtis: HashSet<String> = (0..1_000)
        .map(|_| {
            verify(
                &key.proof(&Method::GET, &target, Some("tok"), None).unwrap(),
                key,
            )
            .jti
        })
        .collect();
    assert_eq!(jtis.len(), 1_000, "1,000 proofs, 1,000 distinct jti");
    assert_ne!(
        DpopKey::generate_es256().unwrap().thumbprint(),
        key.thumbprint(),
        "each generated key is new"
    );
}
