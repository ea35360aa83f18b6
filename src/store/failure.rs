//! What the holder of the refresh lock leaves in the store when its fetch fails, so that
//! the rest of the fleet does not try the token endpoint again until the failure's hold
//! ends: about one token request per backoff step for the whole fleet during an outage.
//!
//! The value is JSON under `<token key>:failure`, with a TTL equal to its longer hold:
//! `{"v":1,"kind":"token_endpoint","error":"invalid_client","status":401,"retry_until_ms":...,"quiet_until_ms":...}`
//! with times in milliseconds since the Unix epoch. It holds the kind of the error, the RFC
//! 6749 section 5.2 `error` code and the HTTP status if there were any, and nothing else:
//! no secret, no token, no `error_description`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::error::{Error, TokenEndpointError, clip};

const VERSION: u32 = 1;
/// The most characters of an `error` code kept.
const CODE_LIMIT: usize = 64;
/// The largest failure value read, in bytes.
const MAX_VALUE_LEN: usize = 1024;

/// How long a failed fetch holds back the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Holds {
    /// For an instance with a valid token: the backoff step, or `Retry-After`.
    pub(crate) retry: Duration,
    /// For an instance without one: the failure window, or `Retry-After`.
    pub(crate) quiet: Duration,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    v: u32,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    retry_until_ms: u64,
    quiet_until_ms: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The value recording `error` and its TTL (the longer hold), or `None` if it is not worth
/// recording (a cancelled fetch, or no hold at all).
pub(crate) fn encode(error: &Error, holds: Holds, now: SystemTime) -> Option<(Vec<u8>, Duration)> {
    if error.is_cancelled() {
        return None;
    }
    let ttl = holds.retry.max(holds.quiet);
    if ttl < Duration::from_millis(1) {
        return None;
    }
    let (kind, code) = if let Some(e) = error.token_endpoint_error() {
        (
            "token_endpoint",
            Some(clip(e.error(), CODE_LIMIT).to_owned()),
        )
    } else if error.is_invalid_response() {
        ("invalid_response", None)
    } else if error.is_timeout() {
        ("timeout", None)
    } else if error.is_transport() {
        ("transport", None)
    } else {
        ("other", None)
    };
    let until =
        |d: Duration| unix_ms(now).saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let stored = Stored {
        v: VERSION,
        kind: kind.to_owned(),
        error: code,
        status: error.status().map(|s| s.as_u16()),
        retry_until_ms: until(holds.retry),
        quiet_until_ms: until(holds.quiet),
    };
    Some((serde_json::to_vec(&stored).ok()?, ttl))
}

/// The recorded error, for an instance that holds a valid token (`valid`) or not, if its
/// hold has not ended at `now`: with [`Error::retry_after`] set to what is left of the
/// hold. `None` if the hold is over or the value is not one this crate wrote.
pub(crate) fn decode(raw: &[u8], valid: bool, now: SystemTime) -> Option<Error> {
    if raw.len() > MAX_VALUE_LEN {
        return None;
    }
    let stored: Stored = serde_json::from_slice(raw).ok()?;
    if stored.v != VERSION {
        return None;
    }
    let until = if valid {
        stored.retry_until_ms
    } else {
        stored.quiet_until_ms
    };
    let left = Duration::from_millis(until.checked_sub(unix_ms(now)).filter(|ms| *ms > 0)?);
    let status = stored.status.and_then(|s| StatusCode::from_u16(s).ok());
    let error = match (stored.kind.as_str(), stored.error) {
        ("token_endpoint", Some(code)) => Error::token_endpoint(TokenEndpointError::new(
            status.unwrap_or(StatusCode::BAD_REQUEST),
            clip(&code, CODE_LIMIT),
            None,
            None,
        )),
        ("invalid_response", _) => Error::invalid_response(
            status.unwrap_or(StatusCode::OK),
            None,
            "not a token response (seen by another instance)",
            None,
        ),
        ("timeout", _) => Error::timeout(),
        ("transport", _) => {
            Error::transport("token endpoint unreachable (seen by another instance)")
        }
        _ => Error::other("the token source failed (seen by another instance)"),
    };
    Some(error.with_retry_after(left))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLDS: Holds = Holds {
        retry: Duration::from_secs(2),
        quiet: Duration::from_secs(5),
    };

    #[test]
    fn a_token_endpoint_error_round_trips_without_its_description() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let error = Error::token_endpoint(TokenEndpointError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            Some("client secret s3cr3t is wrong"),
            Some("https://idp/doc"),
        ));
        let (raw, ttl) = encode(&error, HOLDS, now).unwrap();
        assert_eq!(ttl, Duration::from_secs(5));
        let text = String::from_utf8(raw.clone()).unwrap();
        assert!(
            !text.contains("s3cr3t") && !text.contains("idp/doc"),
            "{text}"
        );
        let back = decode(&raw, false, now + Duration::from_secs(1)).unwrap();
        let e = back.token_endpoint_error().unwrap();
        assert_eq!(
            (e.status(), e.error()),
            (StatusCode::UNAUTHORIZED, "invalid_client")
        );
        assert_eq!(e.error_description(), None);
        assert_eq!(back.retry_after(), Some(Duration::from_secs(4)));
        let back = decode(&raw, true, now + Duration::from_secs(1)).unwrap();
        assert_eq!(back.retry_after(), Some(Duration::from_secs(1)));
        // The hold for an instance with a valid token is over at 2 s, the other at 5 s.
        assert!(decode(&raw, true, now + Duration::from_secs(2)).is_none());
        assert!(decode(&raw, false, now + Duration::from_secs(5)).is_none());
    }

    #[test]
    fn other_kinds_keep_their_kind_and_garbage_is_ignored() {
        let now = SystemTime::now();
        let timeout = encode(&Error::timeout(), HOLDS, now).unwrap().0;
        assert!(decode(&timeout, false, now).unwrap().is_timeout());
        let transport = encode(&Error::transport("refused"), HOLDS, now).unwrap().0;
        assert!(decode(&transport, false, now).unwrap().is_transport());
        let other = encode(&Error::other("x"), HOLDS, now).unwrap().0;
        assert!(decode(&other, false, now).unwrap().is_other());
        assert!(encode(&Error::cancelled(), HOLDS, now).is_none());
        let none = Holds {
            retry: Duration::ZERO,
            quiet: Duration::ZERO,
        };
        assert!(encode(&Error::timeout(), none, now).is_none());
        for raw in [&b"garbage"[..], b"{}", &[b' '; MAX_VALUE_LEN + 1]] {
            assert!(decode(raw, false, now).is_none());
        }
        let absurd = br#"{"v":1,"kind":"timeout","retry_until_ms":18446744073709551615,"quiet_until_ms":18446744073709551615}"#;
        assert!(decode(absurd, false, now).unwrap().is_timeout());
    }
}
