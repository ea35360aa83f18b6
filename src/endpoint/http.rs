//! What the token source and discovery share about the HTTP they speak with reqwest:
//! the loopback test for plain-`http` URLs, and reading a response within a size limit.

use std::net::IpAddr;

use http::StatusCode;
use http::header::CONTENT_TYPE;
use reqwest::Url;
use secrecy::zeroize::{Zeroize, Zeroizing};

/// A URL whose host is `localhost` or a loopback address (`127.0.0.0/8`, `::1`): the only
/// hosts plain `http` is allowed to without `allow_insecure_http()`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// A response's status and `Content-Type` (if it is text).
pub(crate) fn status_and_content_type(response: &reqwest::Response) -> (StatusCode, Option<&str>) {
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    (status, content_type)
}

/// Why a body could not be read.
pub(crate) enum ReadError {
    /// Over the limit, by its `Content-Length` or by what arrived.
    TooLarge,
    /// The connection failed or timed out while the body came in.
    Failed(reqwest::Error),
}

/// Reads a response body of at most `limit` bytes. A body announced or found larger is
/// refused without reading the rest. The buffer is zeroed when dropped and whenever it
/// grows, since it may hold an access token.
pub(crate) async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Failed)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        if body.capacity() < body.len() + chunk.len() {
            // Grow by hand so the old buffer is zeroed, not just freed.
            let mut bigger = Vec::with_capacity((body.len() + chunk.len()).max(2 * body.len()));
            bigger.extend_from_slice(&body);
            body.zeroize();
            *body = bigger;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
