//! What a DPoP proof (RFC 9449 section 4.2) costs to make, per request: `DpopKey::proof`
//! for an API request (`htm`, `htu`, `iat`, a random `jti`, `ath`, `nonce`), with a
//! generated ES256 key and with the test keys for EdDSA and RS256. One thread. This is what
//! `DpopLayer` adds to each request with a DPoP token.
//!
//! Run: `cargo bench --all-features --bench dpop`.

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use tower_oauth::SigningKey;
use tower_oauth::endpoint::dpop::{DpopKey, access_token_hash};

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).expect("key")
}

fn proofs(c: &mut Criterion) {
    let keys = [
        ("ES256", DpopKey::generate_es256().expect("key")),
        (
            "EdDSA",
            DpopKey::from_signing_key(SigningKey::from_pem(key_file("ed25519.pem")).expect("key")),
        ),
        (
            "RS256",
            DpopKey::from_signing_key(SigningKey::from_pem(key_file("rsa.pem")).expect("key")),
        ),
    ];
    let token = "x".repeat(800); // a JWT access token's length
    let mut group = c.benchmark_group("dpop/proof");
    for (name, key) in &keys {
        group.bench_function(*name, |b| {
            b.iter(|| {
                key.proof(
                    &Method::GET,
                    "https://api.example.com/v1/orders",
                    Some(&token),
                    Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"),
                )
                .expect("proof")
            })
        });
    }
    group.bench_function("ath_only", |b| b.iter(|| access_token_hash(&token)));
    group.finish();
}

criterion_group!(benches, proofs);
criterion_main!(benches);
