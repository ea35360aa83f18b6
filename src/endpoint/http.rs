//! What the token source and discovery share about the HTTP they speak with reqwest: the
//! default timeout and client, the https-or-loopback rule for the URLs they send secrets
//! to, and reading a response within a size limit.

use std::net::IpAddr;
use std::time::Duration;

use http::StatusCode;
use http::header::CONTENT_TYPE;
use reqwest::Url;
use secrecy::zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, clip};

/// The timeout of one request of the token-endpoint client, a token request or a metadata
/// request, unless one is set: 10 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most characters of a URL or of a server's text quoted in an error message.
pub(crate) const QUOTE_LIMIT: usize = 200;

/// A reqwest client with `timeout` that does not follow redirects, so that a `307`/`308`
/// cannot send a request, credentials included, anywhere else; with a TLS client
/// `identity` for mutual TLS (RFC 8705) and extra trust anchors `roots`.
///
/// # Errors
/// [`Error::is_config`] if reqwest cannot build it (no TLS backend).
pub(crate) fn default_client(
    timeout: Duration,
    identity: Option<reqwest::Identity>,
    roots: Vec<reqwest::Certificate>,
) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    for root in roots {
        builder = builder.add_root_certificate(root);
    }
    builder
        .build()
        .map_err(|e| Error::config(format!("HTTP client: {e}")))
}

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

/// The crate's rule for every URL a client secret goes to (token URL, issuer, discovered
/// token endpoint): `https`, or plain `http` to a loopback host or after
/// `allow_insecure_http()`. `Err` says why `url` breaks it, naming only its host, for the
/// caller to put after the URL's name ("token_url must be https: ...").
pub(crate) fn require_https_or_loopback(
    url: &Url,
    allow_insecure_http: bool,
) -> Result<(), String> {
    let host = url.host_str().unwrap_or_default();
    match url.scheme() {
        "https" | "http" if url.host().is_none() => Err("has no host".to_owned()),
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "must be https: `{}` would send the client secret in clear text (plain http is \
             allowed only to loopback addresses, or with allow_insecure_http())",
            clip(host, QUOTE_LIMIT)
        )),
        other => Err(format!(
            "has scheme `{}`, not https",
            clip(other, QUOTE_LIMIT)
        )),
    }
}

/// A response's status and `Content-Type` (if it is text).
pub(crate) fn status_and_content_type(response: &reqwest::Response) -> (StatusCode, Option<&str>) {
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    (response.status(), content_type)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_or_loopback() {
        let check = |url: &str, insecure: bool| {
            require_https_or_loopback(&Url::parse(url).unwrap(), insecure)
        };
        for ok in [
            "https://as.example/t",
            "http://127.0.0.1:8080/t",
            "http://127.1.2.3/t",
            "http://localhost/t",
            "http://LOCALHOST:9/t",
            "http://[::1]:9000/t",
        ] {
            assert_eq!(check(ok, false), Ok(()), "{ok}");
        }
        let err = check("http://as.example/t", false).unwrap_err();
        assert!(
            err.starts_with("must be https") && err.contains("`as.example`"),
            "{err}"
        );
        assert_eq!(check("http://as.example/t", true), Ok(()));
        let err = check("ftp://as.example/t", true).unwrap_err();
        assert_eq!(err, "has scheme `ftp`, not https");
        assert!(check("file:///etc/passwd", true).is_err());
    }
}
