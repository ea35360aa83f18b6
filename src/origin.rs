//! Origins, and the attach policy: which requests get the token.
//!
//! A bearer token works for whoever holds it, so it should go only to the servers it was
//! issued for. With [`OAuthLayerBuilder::allowed_origins`](crate::OAuthLayerBuilder::allowed_origins)
//! the layer puts the token only on requests whose URI has one of the given origins
//! (scheme, host and port, RFC 6454); any other request is sent on untouched, without a
//! token and without fetching one, or, after
//! [`refuse_other_origins`](crate::OAuthLayerBuilder::refuse_other_origins), fails with an
//! [`Error`] for which [`Error::is_origin_refused`] is true.
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, header::AUTHORIZATION};
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_oauth::{source_fn, OAuthLayer, Origin, Token};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let layer = OAuthLayer::builder(source_fn(|| async {
//!     Ok(Token::new("s3cr3t", Duration::from_secs(3600)))
//! }))
//! .allowed_origins([Origin::parse("https://api.example.com")?])
//! .build();
//! let client = ServiceBuilder::new().layer(layer).service(service_fn(|req: Request<()>| async move {
//!     Ok::<_, BoxError>(Response::new(req.headers().contains_key(AUTHORIZATION)))
//! }));
//!
//! let to_api = Request::get("https://api.example.com/orders").body(())?;
//! assert!(client.clone().oneshot(to_api).await?.into_body());
//! let elsewhere = Request::get("https://cdn.example.net/logo.png").body(())?;
//! assert!(!client.oneshot(elsewhere).await?.into_body());
//! # Ok(())
//! # }
//! ```
//!
//! # What counts as the same origin
//!
//! The scheme (`http` or `https`, any case), the host (ASCII case-insensitive, compared as
//! written: `api.example.com.` with a trailing dot, an IP address for a name, or a
//! percent-encoded host are other origins) and the port, where a missing port is the
//! scheme's default (80, 443) and a port written with leading zeros (`:0443`) is another
//! origin. Anything that is not written the same way is not given the token: the
//! comparison fails closed. A user-info part of the URI (`https://user@host`) does not
//! change the origin. A request with a relative URI (no scheme and authority, as in
//! `Request::get("/path")`) has no origin, and is never given the token once
//! `allowed_origins` are set (hyper-util's client needs absolute URIs anyway).
//!
//! # Requests that already carry `Authorization`
//!
//! Whether or not origins are set, a request that already has an `Authorization` header is
//! sent as it is, without the layer's token and without fetching one: the caller chose
//! its credentials. [`overwrite_authorization`](crate::OAuthLayerBuilder::overwrite_authorization)
//! makes the layer replace the header instead (on allowed origins only).
//!
//! # Redirects
//!
//! Put `FollowRedirectLayer` (tower-http) *outside* `OAuthLayer`, and set the allowed
//! origins:
//!
//! ```text
//! ServiceBuilder::new()
//!     .layer(FollowRedirectLayer::new())   // follows redirects, each hop goes through...
//!     .layer(oauth_layer)                  // ...this layer, which checks the hop's origin
//!     .service(http_client)
//! ```
//!
//! Each hop then goes through this layer with the URI it is sent to, and a redirect to
//! another origin gets no token. In this order the allowed origins are what keeps the
//! token in: *without* them every hop gets the token, wherever the `Location` header
//! points.
//!
//! In the other order (`OAuthLayer` outside `FollowRedirectLayer`), this layer sees only
//! the first request, sets the token on it, and the redirect follower copies the request's
//! headers to every hop. tower-http's default policy (`policy::Standard`, whose
//! `FilterCredentials` part removes `Authorization`, `Cookie` and `Proxy-Authorization`
//! on a cross-origin hop) then drops the token at the first hop to another origin, and
//! it stays dropped; a custom policy without `FilterCredentials` (`Limited` alone,
//! `redirect_fn`, `FilterCredentials::block_none()`) sends the token to every hop, to any
//! origin, including `https` to `http` downgrades. The allowed origins cannot help in that
//! order, since the layer never sees the later hops.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{Request, Uri};

use crate::error::Error;

/// A web origin: scheme (`http` or `https`), host and port (RFC 6454).
///
/// ```
/// use tower_oauth::Origin;
///
/// let origin = Origin::parse("https://API.example.com").unwrap();
/// assert_eq!(origin.to_string(), "https://api.example.com:443");
/// assert!(origin.matches(&"https://api.example.com:443/v1?x=1".parse().unwrap()));
/// assert!(!origin.matches(&"http://api.example.com/v1".parse().unwrap()));
/// assert!(Origin::parse("https://api.example.com/v1").is_err()); // a path is not an origin
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    https: bool,
    /// `host:port`, lowercase, the host as `http::uri::Authority::host` gives it (IPv6 in
    /// brackets), the port always written.
    authority: Box<str>,
    /// The length of the host in `authority`.
    host_len: usize,
    port: u16,
}

impl Origin {
    /// Reads an origin: `scheme://host[:port]`, optionally with a trailing `/`.
    ///
    /// # Errors
    /// [`Error::is_config`] for anything else: no scheme, a scheme other than `http` or
    /// `https`, a user-info part, a path, a query.
    pub fn parse(origin: &str) -> Result<Origin, Error> {
        let bad = |why: &str| Error::config(format!("`{origin}` is not an origin: {why}"));
        let uri: Uri = origin.parse().map_err(|_| bad("not a URI"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(bad("expected scheme://host[:port]"));
        };
        if authority.as_str().contains('@') {
            return Err(bad("it has a user-info part"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("it has a path or a query"));
        }
        let https = is_https(scheme).ok_or_else(|| bad("the scheme is not http or https"))?;
        if authority.host().is_empty() {
            return Err(bad("no host"));
        }
        Ok(Origin::new(https, authority))
    }

    fn new(https: bool, authority: &http::uri::Authority) -> Origin {
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(default_port(https));
        Origin {
            https,
            authority: format!("{}:{port}", host.to_ascii_lowercase()).into_boxed_str(),
            host_len: host.len(),
            port,
        }
    }

    /// The origin of an absolute URI; `None` for a relative one or a scheme other than
    /// `http` and `https`.
    pub fn from_uri(uri: &Uri) -> Option<Origin> {
        let (https, authority) = uri_parts(uri)?;
        Some(Origin::new(https, authority))
    }

    /// Whether `uri` is for this origin. No allocation; a few string comparisons.
    ///
    /// The URI's `host[:port]` is compared as written, ignoring ASCII case, with the port
    /// left out or written as the scheme's default where this origin has that port: a port
    /// with leading zeros (`:0443`) does not match.
    #[inline]
    pub fn matches(&self, uri: &Uri) -> bool {
        let Some((https, authority)) = uri_parts(uri) else {
            return false;
        };
        if https != self.https {
            return false;
        }
        let authority = authority.as_str();
        if self.matches_host_port(authority) {
            return true;
        }
        // Rare: a user-info part, which is not part of the origin.
        match authority.rfind('@') {
            Some(at) => self.matches_host_port(&authority[at + 1..]),
            None => false,
        }
    }

    /// Whether `url` (a reqwest request's URL) is for this origin: its scheme, its host
    /// ignoring ASCII case, and its port or the scheme's default. No allocation.
    #[cfg(feature = "reqwest")]
    #[inline]
    pub fn matches_url(&self, url: &url::Url) -> bool {
        is_https(url.scheme()) == Some(self.https)
            && url.port_or_known_default() == Some(self.port)
            && url
                .host_str()
                .is_some_and(|host| host.eq_ignore_ascii_case(self.host()))
    }

    /// Whether a URI whose parts are [`target_of`] `uri` is for this origin: to compare one
    /// URI with several origins, its parts taken once.
    #[inline]
    pub(crate) fn matches_target(&self, (https, host_port): (bool, &str)) -> bool {
        https == self.https && self.matches_host_port(host_port)
    }

    #[inline]
    fn matches_host_port(&self, host_port: &str) -> bool {
        host_port.eq_ignore_ascii_case(&self.authority)
            || (self.port == default_port(self.https)
                && host_port.eq_ignore_ascii_case(self.host()))
    }

    /// `"https"` or `"http"`.
    pub fn scheme(&self) -> &str {
        if self.https { "https" } else { "http" }
    }

    /// The host, lowercase (an IPv6 address in brackets).
    pub fn host(&self) -> &str {
        &self.authority[..self.host_len]
    }

    /// The port, the scheme's default (80, 443) where none was given.
    pub fn port(&self) -> u16 {
        self.port
    }
}

fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

/// `Some(true)` for `https`, `Some(false)` for `http` (any case), `None` for any other
/// scheme.
#[inline]
fn is_https(scheme: &str) -> Option<bool> {
    if scheme.eq_ignore_ascii_case("https") {
        Some(true)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(false)
    } else {
        None
    }
}

/// Whether `uri` is `https`, and its `host[:port]` without user-info: what
/// [`Origin::matches_target`] compares. `None` for a relative URI or another scheme.
#[inline]
pub(crate) fn target_of(uri: &Uri) -> Option<(bool, &str)> {
    let (https, authority) = uri_parts(uri)?;
    let authority = authority.as_str();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    Some((https, host_port))
}

/// Whether the URI is `https` (or `http`), and its authority; `None` for relative URIs and
/// other schemes.
#[inline]
fn uri_parts(uri: &Uri) -> Option<(bool, &http::uri::Authority)> {
    let https = is_https(uri.scheme_str()?)?;
    Some((https, uri.authority()?))
}

impl FromStr for Origin {
    type Err = Error;

    fn from_str(s: &str) -> Result<Origin, Error> {
        Origin::parse(s)
    }
}

impl TryFrom<&str> for Origin {
    type Error = Error;

    fn try_from(s: &str) -> Result<Origin, Error> {
        Origin::parse(s)
    }
}

impl fmt::Display for Origin {
    /// `scheme://host:port`, always with the port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.authority)
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Origin({self})")
    }
}

/// Which requests get the token: the layer's origin and `Authorization` options
/// ([`allowed_origins`](crate::OAuthLayerBuilder::allowed_origins),
/// [`refuse_other_origins`](crate::OAuthLayerBuilder::refuse_other_origins),
/// [`overwrite_authorization`](crate::OAuthLayerBuilder::overwrite_authorization)).
///
/// Not "scope": in this crate that word is the OAuth scope of a token (RFC 6749 section 3.3).
#[derive(Clone, Default)]
pub(crate) struct AttachPolicy {
    /// `None`: every origin.
    origins: Option<Arc<[Origin]>>,
    refuse_others: bool,
    overwrite: bool,
}

/// What the layer does with one request.
pub(crate) enum Decision {
    /// Put the token on it (fetching one if need be).
    Attach,
    /// Send it on as it is: no token, no fetch.
    PassThrough,
    /// Fail it with [`Error::is_origin_refused`].
    Refuse,
}

impl AttachPolicy {
    pub(crate) fn add_origins(&mut self, origins: impl IntoIterator<Item = Origin>) {
        let mut all: Vec<Origin> = self.origins.as_deref().unwrap_or_default().to_vec();
        for origin in origins {
            if !all.contains(&origin) {
                all.push(origin);
            }
        }
        self.origins = Some(all.into());
    }

    pub(crate) fn refuse_others(&mut self) {
        self.refuse_others = true;
    }

    pub(crate) fn overwrite(&mut self) {
        self.overwrite = true;
    }

    /// Decides for one request. Without origins (the default) this is one pointer test
    /// and, unless `overwrite_authorization` is set, one look at the header map: a request
    /// without headers costs a length test, and only a request with headers pays for the
    /// `Authorization` lookup. The origin check is out of line.
    #[inline]
    pub(crate) fn decide<B>(&self, req: &Request<B>) -> Decision {
        if let Some(origins) = &self.origins {
            return self.decide_by_origin(origins, req);
        }
        self.decide_by_header(req)
    }

    /// [`decide`](Self::decide) for a reqwest request: its URL and its headers.
    #[cfg(feature = "reqwest-middleware")]
    #[inline]
    pub(crate) fn decide_url(&self, url: &url::Url, headers: &http::HeaderMap) -> Decision {
        if let Some(origins) = &self.origins
            && !origins.iter().any(|o| o.matches_url(url))
        {
            return self.other_origin();
        }
        self.decide_by_headers(headers)
    }

    /// The error for a refused reqwest request: names the URL's origin, nothing else of it.
    #[cfg(feature = "reqwest-middleware")]
    pub(crate) fn refusal_url(url: &url::Url) -> Error {
        let origin = match (
            is_https(url.scheme()),
            url.host_str(),
            url.port_or_known_default(),
        ) {
            (Some(https), Some(host), Some(port)) => {
                let scheme = if https { "https" } else { "http" };
                format!("{scheme}://{}:{port}", host.to_ascii_lowercase())
            }
            _ => "a URI of another scheme".to_owned(),
        };
        Error::origin_refused(origin)
    }

    fn other_origin(&self) -> Decision {
        if self.refuse_others {
            Decision::Refuse
        } else {
            Decision::PassThrough
        }
    }

    /// Attach, unless the request carries its own `Authorization` and overwrite is off.
    #[inline]
    fn decide_by_header<B>(&self, req: &Request<B>) -> Decision {
        self.decide_by_headers(req.headers())
    }

    #[inline]
    fn decide_by_headers(&self, headers: &http::HeaderMap) -> Decision {
        if self.overwrite || headers.is_empty() || !has_authorization(headers) {
            Decision::Attach
        } else {
            Decision::PassThrough
        }
    }

    /// The decision with allowed origins: their check first, then the header's.
    #[inline(never)]
    fn decide_by_origin<B>(&self, origins: &[Origin], req: &Request<B>) -> Decision {
        if !origins.iter().any(|o| o.matches(req.uri())) {
            return self.other_origin();
        }
        self.decide_by_header(req)
    }

    /// The error for a refused request: names the request's origin, nothing else of it.
    pub(crate) fn refusal<B>(req: &Request<B>) -> Error {
        let origin = match Origin::from_uri(req.uri()) {
            Some(origin) => origin.to_string(),
            None if req.uri().scheme().is_none() => "a relative URI".to_owned(),
            None => "a URI of another scheme".to_owned(),
        };
        Error::origin_refused(origin)
    }
}

impl fmt::Debug for AttachPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachPolicy")
            .field("allowed_origins", &self.origins.as_deref())
            .field("refuse_other_origins", &self.refuse_others)
            .field("overwrite_authorization", &self.overwrite)
            .finish()
    }
}

/// Whether `headers` has an `Authorization` field. A few fields are scanned (a comparison of
/// standard names each), which costs less than hashing the name; a larger map is looked up.
#[inline]
fn has_authorization(headers: &http::HeaderMap) -> bool {
    if headers.keys_len() <= 8 {
        headers.keys().any(|name| name == AUTHORIZATION)
    } else {
        headers.contains_key(AUTHORIZATION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_is_found_by_scan_and_by_lookup() {
        for fields in [0usize, 1, 3, 8, 9, 20] {
            let mut headers = http::HeaderMap::new();
            for i in 0..fields {
                let name = http::HeaderName::try_from(format!("x-field-{i}")).unwrap();
                headers.insert(name, http::HeaderValue::from_static("v"));
            }
            assert!(
                !has_authorization(&headers),
                "{fields} fields, none is Authorization"
            );
            headers.append(AUTHORIZATION, http::HeaderValue::from_static("Basic x"));
            assert!(
                has_authorization(&headers),
                "{fields} fields and Authorization"
            );
        }
    }

    #[test]
    fn targets_match_as_matches_does() {
        let origin = Origin::parse("https://api.test").unwrap();
        for (u, expected) in [
            ("https://api.test/x", true),
            ("https://API.test:443/x", true),
            ("https://user:pw@api.test/x", true),
            ("http://api.test/x", false),
            ("https://api.test:8443/x", false),
            ("https://other.test/x", false),
        ] {
            let parsed = uri(u);
            let target = target_of(&parsed).unwrap();
            assert_eq!(origin.matches_target(target), expected, "{u}");
            assert_eq!(origin.matches(&uri(u)), expected, "{u}");
        }
        assert_eq!(target_of(&uri("/relative")), None);
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn parse_normalises_and_rejects_what_is_not_an_origin() {
        let o = Origin::parse("HTTPS://Api.Example.COM/").unwrap();
        assert_eq!(
            (o.scheme(), o.host(), o.port()),
            ("https", "api.example.com", 443)
        );
        let o = Origin::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (o.scheme(), o.host(), o.port()),
            ("http", "127.0.0.1", 8080)
        );
        let o = Origin::parse("http://[::1]").unwrap();
        assert_eq!((o.host(), o.port()), ("[::1]", 80));
        assert_eq!(o, "http://[::1]:80".parse().unwrap());
        for bad in [
            "api.example.com",
            "/path",
            "ftp://a.example",
            "https://a.example/v1",
            "https://a.example?x=1",
            "https://user:pw@a.example",
            "",
            "https://",
        ] {
            let err = Origin::parse(bad).unwrap_err();
            assert!(err.is_config(), "{bad}: {err}");
        }
    }

    #[test]
    fn matches_compares_scheme_host_and_port_only() {
        let o = Origin::parse("https://api.example.com").unwrap();
        for yes in [
            "https://api.example.com",
            "https://api.example.com/a/b?c=d#e",
            "https://API.EXAMPLE.com:443/",
            "HTTPS://api.example.com/",
            "https://someone@api.example.com/x",
            "https://some:one@api.example.com:443/x",
        ] {
            assert!(o.matches(&uri(yes)), "{yes}");
        }
        for no in [
            "http://api.example.com/",
            "https://api.example.com:8443/",
            "https://api.example.com./",
            "https://api.example.com:0443/",
            "https://api.example.com@evil.example/",
            "https://api.example.com:443@evil.example/",
            "https://evil.example/api.example.com",
            "https://api.example.com.evil.example/",
            "https://evil.example/?https://api.example.com",
            "/relative",
            "ws://api.example.com/",
        ] {
            assert!(!o.matches(&uri(no)), "{no}");
        }
        let o = Origin::parse("http://[::1]:8080").unwrap();
        assert!(o.matches(&uri("http://[::1]:8080/x")));
        assert!(!o.matches(&uri("http://[::1]/x")));
    }

    /// A reqwest request's URL gets the decision its `http::Uri` gets.
    #[cfg(feature = "reqwest-middleware")]
    #[test]
    fn url_decisions_agree_with_uri_decisions() {
        let mut policy = AttachPolicy::default();
        policy.add_origins([
            Origin::parse("https://a.example").unwrap(),
            Origin::parse("http://[::1]:8080").unwrap(),
        ]);
        let cases = [
            "https://a.example/x",
            "https://A.Example:443/x?q=1",
            "https://user:pw@a.example/x",
            "http://a.example/x",
            "https://a.example:8443/x",
            "https://b.example/x",
            "http://[::1]:8080/x",
            "http://[::1]/x",
        ];
        let name = |d: Decision| match d {
            Decision::Attach => "attach",
            Decision::PassThrough => "pass",
            Decision::Refuse => "refuse",
        };
        for refuse in [false, true] {
            if refuse {
                policy.refuse_others();
            }
            for case in cases {
                let by_uri = name(policy.decide(&Request::get(case).body(()).unwrap()));
                let url = url::Url::parse(case).unwrap();
                let by_url = name(policy.decide_url(&url, &http::HeaderMap::new()));
                assert_eq!(by_url, by_uri, "{case}");
            }
        }
        let url = url::Url::parse("https://B.example:8443/secret?token=x").unwrap();
        let refusal = AttachPolicy::refusal_url(&url).to_string();
        assert!(refusal.contains("https://b.example:8443"), "{refusal}");
        assert!(
            !refusal.contains("secret") && !refusal.contains("token=x"),
            "{refusal}"
        );
    }

    #[test]
    fn decisions() {
        let req = |u: &str, auth: bool| {
            let mut b = Request::get(u);
            if auth {
                b = b.header(AUTHORIZATION, "Basic xyz");
            }
            b.body(()).unwrap()
        };
        let decide = |policy: &AttachPolicy, u: &str, auth: bool| match policy.decide(&req(u, auth))
        {
            Decision::Attach => "attach",
            Decision::PassThrough => "pass",
            Decision::Refuse => "refuse",
        };

        let mut policy = AttachPolicy::default();
        assert_eq!(decide(&policy, "https://any.example/", false), "attach");
        assert_eq!(decide(&policy, "/relative", false), "attach");
        assert_eq!(decide(&policy, "https://any.example/", true), "pass");
        // Other headers, no Authorization: the lookup runs and finds nothing.
        let with_headers = Request::post("https://any.example/")
            .header("content-type", "application/json")
            .header("accept", "*/*")
            .body(())
            .unwrap();
        assert!(matches!(policy.decide(&with_headers), Decision::Attach));
        policy.overwrite();
        assert_eq!(decide(&policy, "https://any.example/", true), "attach");

        let mut policy = AttachPolicy::default();
        policy.add_origins([Origin::parse("https://a.example").unwrap()]);
        policy.add_origins([
            Origin::parse("https://b.example:8443").unwrap(),
            Origin::parse("https://a.example:443").unwrap(),
        ]);
        assert_eq!(policy.origins.as_deref().unwrap().len(), 2);
        assert_eq!(decide(&policy, "https://a.example/x", false), "attach");
        assert_eq!(decide(&policy, "https://b.example:8443/x", false), "attach");
        assert_eq!(decide(&policy, "https://b.example/x", false), "pass");
        assert_eq!(decide(&policy, "/relative", false), "pass");
        assert_eq!(decide(&policy, "https://a.example/x", true), "pass");
        policy.refuse_others();
        assert_eq!(decide(&policy, "https://c.example/x", false), "refuse");
        assert_eq!(decide(&policy, "https://c.example/x", true), "refuse");
        assert_eq!(decide(&policy, "https://a.example/x", true), "pass");

        let mut nothing = AttachPolicy::default();
        nothing.add_origins([]);
        assert_eq!(decide(&nothing, "https://a.example/", false), "pass");
    }

    #[test]
    fn refusal_names_the_origin_only() {
        let req = Request::get("https://other.example:8443/secret/path?token=abc")
            .body(())
            .unwrap();
        let err = AttachPolicy::refusal(&req);
        assert!(err.is_origin_refused());
        let text = format!("{err} {err:?}");
        assert!(text.contains("https://other.example:8443"), "{text}");
        assert!(!text.contains("secret") && !text.contains("abc"), "{text}");
        let relative = AttachPolicy::refusal(&Request::get("/x").body(()).unwrap());
        assert!(relative.to_string().contains("relative"), "{relative}");
    }
}
