//! Metrics (feature `metrics`), through the [`metrics`](https://docs.rs/metrics) facade:
//! install any recorder (Prometheus, OpenTelemetry, StatsD...) and these appear.
//!
//! Every metric has the label `identity`: the token's
//! [name](crate::identity::Identity::name), never a token, secret or subject. Nothing is
//! recorded on the valid-token path of a request; only fetches, waits, rejections and store
//! calls are.
//!
//! | name | type | unit | labels | what |
//! |---|---|---|---|---|
//! | [`TOKEN_REQUESTS`] | counter | requests | `identity`, `outcome` | requests to the token source, by outcome: `ok`, an RFC 6749 section 5.2 error code (`invalid_client`, ...; codes outside the registered ones count as `token_endpoint_error`), `transport`, `timeout`, `invalid_response`, `other` |
//! | [`TOKEN_REQUEST_DURATION`] | histogram | seconds | `identity`, `outcome` | how long each took |
//! | [`WAITED_REQUESTS`] | counter | requests | `identity` | requests that had no valid token and waited for a fetch |
//! | [`WAIT_DURATION`] | histogram | seconds | `identity` | how long they waited |
//! | [`TOKEN_REMAINING`] | gauge | seconds | `identity` | remaining lifetime of the cached token, set when a token is stored and when the refresh timer wakes |
//! | [`REJECTIONS`] | counter | answers | `identity`, `outcome` | answers that rejected a token (a 401), by what followed: `replayed`, `not_replayable`, `backed_off`, `not_ours` (from another origin than the token was sent to) |
//! | [`STORE_CALLS`] | counter | calls | `identity`, `outcome` | shared-store reads and locks: `hit`, `miss`, `lock_taken`, `lock_waited`, `failed`, `timed_out` |
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! use metrics_util::debugging::DebuggingRecorder;
//! use std::time::Duration;
//! use tower_oauth::{source_fn, OAuthLayer, Token};
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || {
//!     let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//!     rt.block_on(async {
//!         let source = source_fn(|| async { Ok(Token::new("t", Duration::from_secs(60))) });
//!         let layer = OAuthLayer::builder(source).name("api").build();
//!         layer.cache().token().await.unwrap();
//!     });
//! });
//! let requests = snapshotter
//!     .snapshot()
//!     .into_vec()
//!     .into_iter()
//!     .filter(|(key, ..)| key.key().name() == tower_oauth::metrics::TOKEN_REQUESTS)
//!     .count();
//! assert_eq!(requests, 1);
//! # }
//! ```

#[cfg(feature = "metrics")]
use std::time::Duration;

use crate::error::Error;
use crate::identity::Identity;

/// Counter: requests to the token source, by `outcome`.
pub const TOKEN_REQUESTS: &str = "tower_oauth_token_requests_total";
/// Histogram, seconds: the duration of each request to the token source, by `outcome`.
pub const TOKEN_REQUEST_DURATION: &str = "tower_oauth_token_request_duration_seconds";
/// Counter: requests that waited for a token.
pub const WAITED_REQUESTS: &str = "tower_oauth_waited_requests_total";
/// Histogram, seconds: how long each of those waited.
pub const WAIT_DURATION: &str = "tower_oauth_wait_duration_seconds";
/// Gauge, seconds: the remaining lifetime of the cached token.
pub const TOKEN_REMAINING: &str = "tower_oauth_token_remaining_seconds";
/// Counter: answers that rejected a token, by what followed (`outcome`).
pub const REJECTIONS: &str = "tower_oauth_rejections_total";
/// Counter: shared-store calls, by `outcome`.
pub const STORE_CALLS: &str = "tower_oauth_store_calls_total";

/// The `outcome` label of a token request: bounded, never from the token.
pub(crate) fn outcome<T>(result: &Result<T, Error>) -> &'static str {
    let Err(error) = result else { return "ok" };
    if let Some(rfc) = error.token_endpoint_error() {
        return crate::error::KNOWN_CODES
            .iter()
            .find(|code| **code == rfc.error())
            .copied()
            .unwrap_or("token_endpoint_error");
    }
    if error.is_timeout() {
        "timeout"
    } else if error.is_transport() {
        "transport"
    } else if error.is_invalid_response() {
        "invalid_response"
    } else {
        "other"
    }
}

/// What followed a rejected token.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rejection {
    Replayed,
    NotReplayable,
    BackedOff,
    #[cfg_attr(not(feature = "follow-redirect"), allow(dead_code))]
    NotOurs,
}

/// The outcome of a store call.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StoreCall {
    Hit,
    Miss,
    LockTaken,
    LockWaited,
    Failed,
    TimedOut,
}

#[cfg(feature = "metrics")]
mod record {
    use super::*;

    fn name(identity: &Identity) -> String {
        identity.name().to_owned()
    }

    pub(crate) fn token_request(identity: &Identity, outcome: &'static str, took: Duration) {
        let labels = [
            ("identity", name(identity)),
            ("outcome", outcome.to_owned()),
        ];
        ::metrics::counter!(TOKEN_REQUESTS, &labels).increment(1);
        ::metrics::histogram!(TOKEN_REQUEST_DURATION, &labels).record(took.as_secs_f64());
    }

    pub(crate) fn waited(identity: &Identity, took: Duration) {
        let labels = [("identity", name(identity))];
        ::metrics::counter!(WAITED_REQUESTS, &labels).increment(1);
        ::metrics::histogram!(WAIT_DURATION, &labels).record(took.as_secs_f64());
    }

    pub(crate) fn remaining(identity: &Identity, left: Duration) {
        ::metrics::gauge!(TOKEN_REMAINING, "identity" => name(identity)).set(left.as_secs_f64());
    }

    pub(crate) fn rejection(identity: &Identity, what: Rejection) {
        let outcome = match what {
            Rejection::Replayed => "replayed",
            Rejection::NotReplayable => "not_replayable",
            Rejection::BackedOff => "backed_off",
            Rejection::NotOurs => "not_ours",
        };
        ::metrics::counter!(REJECTIONS, "identity" => name(identity), "outcome" => outcome)
            .increment(1);
    }

    pub(crate) fn store_call(identity: &Identity, what: StoreCall) {
        let outcome = match what {
            StoreCall::Hit => "hit",
            StoreCall::Miss => "miss",
            StoreCall::LockTaken => "lock_taken",
            StoreCall::LockWaited => "lock_waited",
            StoreCall::Failed => "failed",
            StoreCall::TimedOut => "timed_out",
        };
        ::metrics::counter!(STORE_CALLS, "identity" => name(identity), "outcome" => outcome)
            .increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
mod record {
    use super::*;
    use std::time::Duration;

    #[inline(always)]
    pub(crate) fn token_request(_: &Identity, _: &'static str, _: Duration) {}
    #[inline(always)]
    pub(crate) fn waited(_: &Identity, _: Duration) {}
    #[inline(always)]
    pub(crate) fn remaining(_: &Identity, _: Duration) {}
    #[inline(always)]
    pub(crate) fn rejection(_: &Identity, _: Rejection) {}
    #[inline(always)]
    pub(crate) fn store_call(_: &Identity, _: StoreCall) {}
}

pub(crate) use record::{rejection, remaining, store_call, token_request, waited};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TokenEndpointError;
    use http::StatusCode;

    #[test]
    fn outcomes_are_a_bounded_set() {
        assert_eq!(outcome(&Ok::<(), Error>(())), "ok");
        let rfc = |code: &str| {
            Err::<(), _>(Error::token_endpoint(TokenEndpointError::new(
                StatusCode::BAD_REQUEST,
                code,
                None,
                None,
            )))
        };
        assert_eq!(outcome(&rfc("invalid_client")), "invalid_client");
        assert_eq!(
            outcome(&rfc("made_up_by_the_server")),
            "token_endpoint_error"
        );
        assert_eq!(outcome(&Err::<(), _>(Error::transport("x"))), "transport");
        assert_eq!(outcome(&Err::<(), _>(Error::other("x"))), "other");
    }
}
