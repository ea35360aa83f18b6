//! [`AuthorizationServerMetadata`]: fetching and checking an authorization server's
//! metadata document (RFC 8414, OpenID Connect Discovery 1.0).

use std::fmt;
use std::time::Duration;

use http::StatusCode;
use http::header::ACCEPT;
use reqwest::Url;
use secrecy::zeroize::Zeroizing;
use serde_json::{Map, Value};

use super::auth::ClientAuth;
use super::http::{
    DEFAULT_TIMEOUT, QUOTE_LIMIT, ReadError, read_limited, require_https_or_loopback,
    status_and_content_type,
};
use crate::error::{Error, clip};

/// The largest metadata document read: 64 KiB.
pub const MAX_METADATA_LEN: usize = 64 * 1024;

const RFC8414_SUFFIX: &str = "/.well-known/oauth-authorization-server";
const OPENID_SUFFIX: &str = "/.well-known/openid-configuration";

/// An authorization server's metadata document (RFC 8414 section 2), checked: its `issuer`
/// is the one it was fetched for and its `token_endpoint` is an absolute URL.
///
/// Other members are available raw through [`get`](AuthorizationServerMetadata::get).
/// Most users do not meet this type: [`ClientCredentialsBuilder::discover`] fetches it
/// and sets the token endpoint and the client authentication method it finds.
///
/// # What discovery does
///
/// 1. The issuer URL must be `https` (plain `http` only to a loopback address, or after
///    [`allow_insecure_http`](super::ClientCredentialsBuilder::allow_insecure_http)), with no
///    query, fragment or user info (RFC 8414 section 2).
/// 2. It reads the RFC 8414 document first: for the issuer `https://as.example/tenant` that
///    is `https://as.example/.well-known/oauth-authorization-server/tenant` (section 3.1).
///    If that answers with an error status or with something that is not a JSON object, it
///    reads the OpenID Connect document, `https://as.example/tenant/.well-known/openid-configuration`.
/// 3. The document's `issuer` must be the issuer URL (RFC 8414 section 3.3; a trailing `/`
///    on one of them is tolerated), so that a document cannot send the client's secret to
///    another server's token endpoint. A mismatch is an error, not a reason to try the
///    other document.
/// 4. `token_endpoint` must be an absolute `https` URL without a fragment (plain `http` as
///    for the issuer).
/// 5. [`ClientCredentialsBuilder::discover`] then takes the client authentication method
///    from `token_endpoint_auth_methods_supported`, unless one was set
///    ([`preferred_auth_method`](Self::preferred_auth_method)).
///
/// Documents are read up to [`MAX_METADATA_LEN`] bytes. Whatever the server sends, the
/// result is a typed [`Error`] ([`Error::is_discovery`], or [`Error::is_config`] for an
/// unusable issuer URL), never a panic.
///
/// [`ClientCredentialsBuilder::discover`]: super::ClientCredentialsBuilder::discover
#[derive(Clone)]
pub struct AuthorizationServerMetadata {
    issuer: String,
    token_endpoint: Url,
    auth_methods: Option<Vec<String>>,
    mtls_token_endpoint: Option<Url>,
    document: Map<String, Value>,
    url: Option<Url>,
}

impl AuthorizationServerMetadata {
    /// Fetches and checks the metadata of `issuer`, RFC 8414 document first, then the
    /// OpenID Connect one (see [what discovery does](Self#what-discovery-does)). The issuer
    /// and the token endpoint must be `https`, or plain `http` to a loopback address. Each
    /// request has a timeout of [`DEFAULT_TIMEOUT`] (10 seconds) and does not follow
    /// redirects unless `http` does.
    ///
    /// # Errors
    /// [`Error::is_config`] for an unusable issuer URL; [`Error::is_discovery`] if neither
    /// document can be read, or the one read is not usable.
    pub async fn fetch(
        http: &reqwest::Client,
        issuer: &str,
    ) -> Result<AuthorizationServerMetadata, Error> {
        Self::discover(http, issuer, false, DEFAULT_TIMEOUT).await
    }

    /// Checks a metadata document (the body of a metadata response) for `issuer`: a JSON
    /// object whose `issuer` is `issuer`, with an absolute `token_endpoint` URL. Does not
    /// apply the https rule (see [`fetch`](Self::fetch)).
    ///
    /// # Errors
    /// [`Error::is_discovery`]: not a JSON object, over [`MAX_METADATA_LEN`], another
    /// issuer, no `token_endpoint` or one that is not an absolute `http(s)` URL without a
    /// fragment, a `token_endpoint_auth_methods_supported` that is not a list of strings.
    pub fn parse(issuer: &str, body: &[u8]) -> Result<AuthorizationServerMetadata, Error> {
        let bad = |reason: String| Error::discovery(None, reason, None);
        if body.len() > MAX_METADATA_LEN {
            return Err(bad("metadata document over the size limit".into()));
        }
        let document = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(document)) => document,
            Ok(_) => return Err(bad("metadata document is not a JSON object".into())),
            Err(e) => {
                return Err(Error::discovery(
                    None,
                    "metadata document is not JSON",
                    Some(e.into()),
                ));
            }
        };
        Self::from_document(issuer, document).map_err(bad)
    }

    /// Checks a document that is a JSON object (see [`parse`](Self::parse)); `Err` says
    /// why it is not usable, for the caller to make its error from.
    fn from_document(
        issuer: &str,
        document: Map<String, Value>,
    ) -> Result<AuthorizationServerMetadata, String> {
        let bad = |reason: String| reason;
        let meta_issuer = match document.get("issuer") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(bad("metadata `issuer` is not a string".into())),
            None => return Err(bad("metadata has no `issuer`".into())),
        };
        if strip_slash(&meta_issuer) != strip_slash(issuer) {
            return Err(bad(format!(
                "metadata names the issuer `{}`, not `{}` (RFC 8414 section 3.3)",
                clip(&meta_issuer, QUOTE_LIMIT),
                clip(issuer, QUOTE_LIMIT)
            )));
        }
        let token_endpoint = match document.get("token_endpoint") {
            Some(Value::String(s)) => s,
            Some(_) => return Err(bad("metadata `token_endpoint` is not a string".into())),
            None => return Err(bad("metadata has no `token_endpoint`".into())),
        };
        let token_endpoint = Url::parse(token_endpoint).map_err(|e| {
            bad(format!(
                "metadata `token_endpoint` `{}` is not an absolute URL: {e}",
                clip(token_endpoint, QUOTE_LIMIT)
            ))
        })?;
        if !matches!(token_endpoint.scheme(), "https" | "http")
            || token_endpoint.fragment().is_some()
            || token_endpoint.host().is_none()
        {
            return Err(bad(format!(
                "metadata `token_endpoint` `{}` is not an http(s) URL without a fragment",
                clip(token_endpoint.as_str(), QUOTE_LIMIT)
            )));
        }
        let auth_methods = match document.get("token_endpoint_auth_methods_supported") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        bad(
                            "metadata `token_endpoint_auth_methods_supported` has a non-string"
                                .into(),
                        )
                    })?,
            ),
            Some(_) => {
                return Err(bad(
                    "metadata `token_endpoint_auth_methods_supported` is not a list".into(),
                ));
            }
        };
        // RFC 8705 section 5; an alias that is not an https URL is left out (the token
        // endpoint is used instead).
        let mtls_token_endpoint = document
            .get("mtls_endpoint_aliases")
            .and_then(|aliases| aliases.get("token_endpoint"))
            .and_then(Value::as_str)
            .and_then(|url| Url::parse(url).ok())
            .filter(|url| url.scheme() == "https" && url.fragment().is_none());
        Ok(AuthorizationServerMetadata {
            issuer: meta_issuer,
            token_endpoint,
            auth_methods,
            mtls_token_endpoint,
            document,
            url: None,
        })
    }

    /// Fetches and checks the metadata of `issuer` with the https rule relaxed by
    /// `allow_insecure_http` and a `timeout` per request: [`fetch`](Self::fetch) with the
    /// settings of a [`ClientCredentialsBuilder`](super::ClientCredentialsBuilder).
    pub(super) async fn discover(
        http: &reqwest::Client,
        issuer: &str,
        allow_insecure_http: bool,
        timeout: Duration,
    ) -> Result<AuthorizationServerMetadata, Error> {
        let issuer_url = check_issuer(issuer, allow_insecure_http)?;
        let mut failures = Vec::with_capacity(2);
        for url in metadata_urls(&issuer_url) {
            let fetched = get_document(http, &url, timeout).await?;
            // Parsed once: a JSON object is checked, anything else sends us to the next URL.
            let document = if fetched.status.is_success() {
                serde_json::from_slice::<Value>(&fetched.body).ok()
            } else {
                None
            };
            let Some(Value::Object(document)) = document else {
                let what = if fetched.status.is_success() {
                    format!(
                        "{} with no JSON object{}",
                        fetched.status,
                        fetched
                            .content_type
                            .as_deref()
                            .map(|ct| format!(" ({})", clip(ct, QUOTE_LIMIT)))
                            .unwrap_or_default()
                    )
                } else {
                    fetched.status.to_string()
                };
                failures.push((url, fetched.status, what));
                continue;
            };
            let unusable = |reason: String| {
                Error::discovery(Some(fetched.status), format!("{url}: {reason}"), None)
            };
            let mut metadata = Self::from_document(issuer, document).map_err(unusable)?;
            require_https_or_loopback(&metadata.token_endpoint, allow_insecure_http)
                .map_err(|reason| unusable(format!("token_endpoint {reason}")))?;
            metadata.url = Some(url);
            return Ok(metadata);
        }
        let status = failures.last().map(|(_, status, _)| *status);
        let tried = failures
            .iter()
            .map(|(url, _, what)| format!("{url} ({what})"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(Error::discovery(
            status,
            format!("no metadata document at {tried}"),
            None,
        ))
    }

    /// The `issuer`, as the document wrote it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `token_endpoint`.
    pub fn token_endpoint(&self) -> &Url {
        &self.token_endpoint
    }

    /// `token_endpoint_auth_methods_supported`, if the document has it (RFC 8414 says an
    /// absent list means `client_secret_basic` only).
    pub fn token_endpoint_auth_methods_supported(&self) -> Option<&[String]> {
        self.auth_methods.as_deref()
    }

    /// The client authentication this crate would use with this server: `client_secret_basic`
    /// if listed (or if there is no list), else `client_secret_post`; `None` if the server
    /// lists neither.
    pub fn preferred_auth_method(&self) -> Option<ClientAuth> {
        [ClientAuth::ClientSecretBasic, ClientAuth::ClientSecretPost]
            .into_iter()
            .find(|&method| self.supports_auth_method(method))
    }

    /// The first of `methods` the server supports.
    pub(crate) fn first_supported(&self, methods: &[ClientAuth]) -> Option<ClientAuth> {
        methods
            .iter()
            .copied()
            .find(|&method| self.supports_auth_method(method))
    }

    /// `mtls_endpoint_aliases.token_endpoint` (RFC 8705 section 5), if the document has
    /// one that is an `https` URL: where mutual-TLS clients send token requests.
    pub fn mtls_token_endpoint(&self) -> Option<&Url> {
        self.mtls_token_endpoint.as_ref()
    }

    /// Whether the server lists `method` in `token_endpoint_auth_methods_supported`
    /// (`true` for `client_secret_basic` when there is no list).
    pub fn supports_auth_method(&self, method: ClientAuth) -> bool {
        match &self.auth_methods {
            None => method == ClientAuth::ClientSecretBasic,
            Some(methods) => methods.iter().any(|m| m == method.as_str()),
        }
    }

    /// Any member of the document, raw: `introspection_endpoint`, `revocation_endpoint`,
    /// `scopes_supported`, `grant_types_supported`...
    pub fn get(&self, member: &str) -> Option<&Value> {
        self.document.get(member)
    }

    /// A member that is a string, e.g. `introspection_endpoint`.
    pub fn get_str(&self, member: &str) -> Option<&str> {
        self.document.get(member).and_then(Value::as_str)
    }

    /// Where the document was read from (`None` if it was [`parse`](Self::parse)d).
    pub fn url(&self) -> Option<&Url> {
        self.url.as_ref()
    }
}

impl fmt::Debug for AuthorizationServerMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationServerMetadata")
            .field("issuer", &self.issuer)
            .field("token_endpoint", &self.token_endpoint.as_str())
            .field("token_endpoint_auth_methods_supported", &self.auth_methods)
            .field("url", &self.url.as_ref().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

/// A metadata response, read within [`MAX_METADATA_LEN`].
struct Fetched {
    status: StatusCode,
    content_type: Option<String>,
    body: Zeroizing<Vec<u8>>,
}

async fn get_document(
    http: &reqwest::Client,
    url: &Url,
    timeout: Duration,
) -> Result<Fetched, Error> {
    let failed = |e: reqwest::Error| {
        let what = if e.is_timeout() {
            "timed out"
        } else {
            "failed"
        };
        Error::discovery(
            None,
            format!("metadata request to {url} {what}"),
            Some(e.without_url().into()),
        )
    };
    let mut response = http
        .get(url.clone())
        .timeout(timeout)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .map_err(failed)?;
    let (status, content_type) = status_and_content_type(&response);
    let content_type = content_type.map(str::to_owned);
    let too_large = || {
        Error::discovery(
            Some(status),
            format!("{url}: metadata document over the size limit ({MAX_METADATA_LEN} bytes)"),
            None,
        )
    };
    let body = match read_limited(&mut response, MAX_METADATA_LEN).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => return Err(too_large()),
        Err(ReadError::Failed(e)) => return Err(failed(e)),
    };
    Ok(Fetched {
        status,
        content_type,
        body,
    })
}

/// Parses and checks an issuer URL (RFC 8414 section 2).
fn check_issuer(issuer: &str, allow_insecure_http: bool) -> Result<Url, Error> {
    let url = Url::parse(issuer).map_err(|e| {
        Error::config(format!(
            "issuer `{}` is not a URL: {e}",
            clip(issuer, QUOTE_LIMIT)
        ))
    })?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(
            "the issuer URL must not have a query or fragment (RFC 8414 section 2)",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config("the issuer URL must not have user info"));
    }
    require_https_or_loopback(&url, allow_insecure_http)
        .map_err(|reason| Error::config(format!("issuer {reason}")))?;
    Ok(url)
}

/// The RFC 8414 and OpenID Connect metadata URLs of an issuer, in that order.
fn metadata_urls(issuer: &Url) -> [Url; 2] {
    let path = issuer.path().trim_end_matches('/');
    let mut rfc8414 = issuer.clone();
    rfc8414.set_path(&format!("{RFC8414_SUFFIX}{path}"));
    let mut openid = issuer.clone();
    openid.set_path(&format!("{path}{OPENID_SUFFIX}"));
    [rfc8414, openid]
}

fn strip_slash(s: &str) -> &str {
    s.strip_suffix('/').unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(issuer: &str, token_endpoint: &str, extra: &str) -> Vec<u8> {
        format!(r#"{{"issuer":"{issuer}","token_endpoint":"{token_endpoint}"{extra}}}"#)
            .into_bytes()
    }

    #[test]
    fn well_known_urls_follow_rfc8414_and_openid() {
        let urls =
            |issuer: &str| metadata_urls(&Url::parse(issuer).unwrap()).map(|u| u.to_string());
        assert_eq!(
            urls("https://as.example"),
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            urls("https://as.example/tenant/x/"),
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant/x",
                "https://as.example/tenant/x/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            urls("http://127.0.0.1:8080"),
            [
                "http://127.0.0.1:8080/.well-known/oauth-authorization-server",
                "http://127.0.0.1:8080/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn parse_reads_a_good_document() {
        let body = doc(
            "https://as.example",
            "https://as.example/oauth/token",
            r#","token_endpoint_auth_methods_supported":["private_key_jwt","client_secret_post"],"introspection_endpoint":"https://as.example/i""#,
        );
        let m = AuthorizationServerMetadata::parse("https://as.example/", &body).unwrap();
        assert_eq!(m.issuer(), "https://as.example");
        assert_eq!(
            m.token_endpoint().as_str(),
            "https://as.example/oauth/token"
        );
        assert_eq!(
            m.preferred_auth_method(),
            Some(ClientAuth::ClientSecretPost)
        );
        assert!(!m.supports_auth_method(ClientAuth::ClientSecretBasic));
        assert_eq!(
            m.get_str("introspection_endpoint"),
            Some("https://as.example/i")
        );
        assert_eq!(m.url(), None);
    }

    #[test]
    fn no_auth_method_list_means_basic() {
        let m = AuthorizationServerMetadata::parse(
            "https://as.example",
            &doc("https://as.example", "https://as.example/t", ""),
        )
        .unwrap();
        assert_eq!(m.token_endpoint_auth_methods_supported(), None);
        assert_eq!(
            m.preferred_auth_method(),
            Some(ClientAuth::ClientSecretBasic)
        );
        assert!(m.supports_auth_method(ClientAuth::ClientSecretBasic));
        assert!(!m.supports_auth_method(ClientAuth::ClientSecretPost));

        let m = AuthorizationServerMetadata::parse(
            "https://as.example",
            &doc(
                "https://as.example",
                "https://as.example/t",
                r#","token_endpoint_auth_methods_supported":["private_key_jwt"]"#,
            ),
        )
        .unwrap();
        assert_eq!(m.preferred_auth_method(), None);
    }

    #[test]
    fn parse_rejects_bad_documents_with_typed_errors() {
        let issuer = "https://as.example";
        let long = "x".repeat(MAX_METADATA_LEN);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("not json", b"<html>hello</html>".to_vec()),
            ("array", b"[1,2,3]".to_vec()),
            ("empty", Vec::new()),
            (
                "another issuer",
                doc("https://evil.example", "https://evil.example/t", ""),
            ),
            (
                "issuer with a path",
                doc("https://as.example/other", "https://as.example/t", ""),
            ),
            (
                "no issuer",
                br#"{"token_endpoint":"https://as.example/t"}"#.to_vec(),
            ),
            (
                "issuer not a string",
                br#"{"issuer":7,"token_endpoint":"https://as.example/t"}"#.to_vec(),
            ),
            (
                "no token endpoint",
                br#"{"issuer":"https://as.example"}"#.to_vec(),
            ),
            (
                "token endpoint not a string",
                br#"{"issuer":"https://as.example","token_endpoint":["x"]}"#.to_vec(),
            ),
            ("relative token endpoint", doc(issuer, "/token", "")),
            ("token endpoint ftp", doc(issuer, "ftp://as.example/t", "")),
            (
                "token endpoint fragment",
                doc(issuer, "https://as.example/t#f", ""),
            ),
            (
                "methods not a list",
                doc(
                    issuer,
                    "https://as.example/t",
                    r#","token_endpoint_auth_methods_supported":"client_secret_basic""#,
                ),
            ),
            (
                "methods with a number",
                doc(
                    issuer,
                    "https://as.example/t",
                    r#","token_endpoint_auth_methods_supported":["client_secret_basic",1]"#,
                ),
            ),
            (
                "over the limit",
                doc(issuer, "https://as.example/t", &format!(r#","x":"{long}""#)),
            ),
        ];
        for (name, body) in cases {
            let err = AuthorizationServerMetadata::parse(issuer, &body)
                .err()
                .unwrap_or_else(|| panic!("{name}: accepted"));
            assert!(err.is_discovery(), "{name}: {err:?}");
        }
    }

    #[test]
    fn error_messages_clip_what_the_server_sent() {
        let evil = format!("https://evil.example/{}", "a".repeat(10_000));
        let err = AuthorizationServerMetadata::parse(
            "https://as.example",
            &doc(&evil, "https://as.example/t", ""),
        )
        .unwrap_err();
        assert!(err.to_string().len() < 1_000, "{}", err.to_string().len());
    }

    #[test]
    fn issuer_urls_are_checked() {
        for ok in [
            "https://as.example",
            "https://as.example/tenant",
            "http://127.0.0.1:9000",
            "http://localhost:9000/x",
            "http://[::1]:9000",
        ] {
            assert!(check_issuer(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://as.example",
            "ftp://as.example",
            "https://as.example?x=1",
            "https://as.example#f",
            "https://user:pw@as.example",
            "as.example",
            "",
        ] {
            let err = check_issuer(bad, false).unwrap_err();
            assert!(err.is_config(), "{bad}: {err:?}");
            assert!(!err.to_string().contains("pw"), "{err}");
        }
        assert!(check_issuer("http://as.example", true).is_ok());
    }
}
