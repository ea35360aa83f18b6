//! Fuzzes the token-response parser (RFC 6749 sections 5.1 and 5.2) with arbitrary bodies,
//! read as a success and as an error response, with and without a JSON content type.
//!
//! Beyond "never panics", it checks what a token from a hostile server must satisfy.
#![no_main]

use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;
use tower_oauth::endpoint::{MAX_EXPIRES_IN, MAX_TOKEN_LEN, ResponseParser};

fuzz_target!(|body: &[u8]| {
    let parser = ResponseParser::default();
    for (status, content_type) in [
        (StatusCode::OK, Some("application/json")),
        (
            StatusCode::BAD_REQUEST,
            Some("application/json;charset=UTF-8"),
        ),
        (StatusCode::UNAUTHORIZED, None),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("text/html")),
    ] {
        match parser.parse(status, content_type, body) {
            Ok(token) => {
                assert!(status.is_success(), "a token from a {status} response");
                let access_token = token.access_token().expose_secret();
                assert!(!access_token.is_empty());
                assert!(access_token.len() <= MAX_TOKEN_LEN);
                assert!(token.expires_in() <= MAX_EXPIRES_IN);
                assert!(!token.token_type().as_str().is_empty());
                let debug = format!("{token:?}{token:#?}");
                assert!(debug.contains("[redacted]"));
            }
            Err(err) => {
                assert!(
                    err.is_token_endpoint() ^ err.is_invalid_response(),
                    "one kind: {err:?}"
                );
                assert_eq!(err.status(), Some(status));
                if let Some(rfc) = err.token_endpoint_error() {
                    assert!(rfc.error().chars().count() <= 1024);
                    assert!(
                        rfc.error_description()
                            .is_none_or(|d| d.chars().count() <= 1024)
                    );
                    assert!(rfc.error_uri().is_none_or(|u| u.chars().count() <= 1024));
                }
                let _ = format!("{err} {err:?} {err:#?}");
            }
        }
    }
});
