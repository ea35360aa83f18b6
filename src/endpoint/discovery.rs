//! Finding the token endpoint from the issuer URL alone: authorization server metadata
//! (RFC 8414) and OpenID Connect Discovery 1.0.
//!
//! Most users go through [`ClientCredentialsBuilder::issuer`] and
//! [`ClientCredentialsBuilder::discover`]:
//!
//! ```no_run
//! use tower_oauth::{ClientCredentials, OAuthLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth::Error> {
//! let source = ClientCredentials::builder()
//!     .issuer("https://auth.example.com")
//!     .client_id("my-service")
//!     .client_secret(std::env::var("OAUTH_CLIENT_SECRET").unwrap_or_default())
//!     .scope("orders.read")
//!     .discover() // GET .../.well-known/oauth-authorization-server, then openid-configuration
//!     .await?
//!     .build()?;
//! let layer = OAuthLayer::new(source);
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! # What discovery does
//!
//! 1. The issuer URL must be `https` (plain `http` only to a loopback address, or after
//!    [`allow_insecure_http`](ClientCredentialsBuilder::allow_insecure_http)), with no
//!    query, fragment or user info (RFC 8414 section 2).
//! 2. It reads the RFC 8414 document first: for the issuer `https://as.example/tenant` that
//!    is `https://as.example/.well-known/oauth-authorization-server/tenant` (section 3.1).
//!    If that answers with an error status or with something that is not a JSON object, it
//!    reads the OpenID Connect document, `https://as.example/tenant/.well-known/openid-configuration`.
//! 3. The document's `issuer` must be the issuer URL (RFC 8414 section 3.3; a trailing `/`
//!    on one of them is tolerated), so that a document cannot send the client's secret to
//!    another server's token endpoint. A mismatch is an error, not a reason to try the
//!    other document.
//! 4. `token_endpoint` must be an absolute `https` URL without a fragment (plain `http` as
//!    for the issuer).
//! 5. Unless the builder was given an [`auth_method`](ClientCredentialsBuilder::auth_method),
//!    the method comes from `token_endpoint_auth_methods_supported`: `client_secret_basic`
//!    if listed (or if the list is absent, RFC 8414's default), else `client_secret_post`.
//!
//! Documents are read up to [`MAX_METADATA_LEN`] bytes. Whatever the server sends, the
//! result is a typed [`Error`] ([`Error::is_discovery`], or [`Error::is_config`] for an
//! unusable issuer URL), never a panic.

use std::fmt;
use std::time::Duration;

use http::StatusCode;
use http::header::ACCEPT;
use reqwest::Url;
use secrecy::zeroize::Zeroizing;
use serde_json::{Map, Value};

use super::client_credentials::{ClientAuth, ClientCredentialsBuilder};
use super::http::{ReadError, is_loopback, read_limited, status_and_content_type};
use crate::Error;

/// The largest metadata document read: 64 KiB.
pub const MAX_METADATA_LEN: usize = 64 * 1024;

/// The timeout of one metadata request made by [`AuthorizationServerMetadata::fetch`]:
/// 10 seconds.
pub const DEFAULT_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

const RFC8414_SUFFIX: &str = "/.well-known/oauth-authorization-server";
const OPENID_SUFFIX: &str = "/.well-known/openid-configuration";

/// An authorization server's metadata document (RFC 8414 section 2), checked: its `issuer`
/// is the one it was fetched for and its `token_endpoint` is an absolute URL.
///
/// Other members are available raw through [`get`](AuthorizationServerMetadata::get).
#[derive(Clone)]
pub struct AuthorizationServerMetadata {
    issuer: String,
    token_endpoint: Url,
    auth_methods: Option<Vec<String>>,
    document: Map<String, Value>,
    url: Option<Url>,
}

impl AuthorizationServerMetadata {
    /// Fetches and checks the metadata of `issuer`, RFC 8414 document first, then the
    /// OpenID Connect one (see the [module docs](self)). The issuer and the token endpoint
    /// must be `https`, or plain `http` to a loopback address. Each request has a timeout
    /// of [`DEFAULT_DISCOVERY_TIMEOUT`] and does not follow redirects unless `http` does.
    ///
    /// # Errors
    /// [`Error::is_config`] for an unusable issuer URL; [`Error::is_discovery`] if neither
    /// document can be read, or the one read is not usable.
    pub async fn fetch(
        http: &reqwest::Client,
        issuer: &str,
    ) -> Result<AuthorizationServerMetadata, Error> {
        discover(http, issuer, false, DEFAULT_DISCOVERY_TIMEOUT).await
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
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(bad("metadata document is not a JSON object".into())),
            Err(e) => {
                return Err(Error::discovery(
                    None,
                    "metadata document is not JSON",
                    Some(e.into()),
                ));
            }
        };
        let meta_issuer = match document.get("issuer") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(bad("metadata `issuer` is not a string".into())),
            None => return Err(bad("metadata has no `issuer`".into())),
        };
        if strip_slash(&meta_issuer) != strip_slash(issuer) {
            return Err(bad(format!(
                "metadata names the issuer `{}`, not `{issuer}` (RFC 8414 section 3.3)",
                clip(&meta_issuer)
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
                clip(token_endpoint)
            ))
        })?;
        if !matches!(token_endpoint.scheme(), "https" | "http")
            || token_endpoint.fragment().is_some()
            || token_endpoint.host().is_none()
        {
            return Err(bad(format!(
                "metadata `token_endpoint` `{}` is not an http(s) URL without a fragment",
                clip(token_endpoint.as_str())
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
        Ok(AuthorizationServerMetadata {
            issuer: meta_issuer,
            token_endpoint,
            auth_methods,
            document,
            url: None,
        })
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
        let Some(methods) = &self.auth_methods else {
            return Some(ClientAuth::ClientSecretBasic);
        };
        if methods.iter().any(|m| m == "client_secret_basic") {
            Some(ClientAuth::ClientSecretBasic)
        } else if methods.iter().any(|m| m == "client_secret_post") {
            Some(ClientAuth::ClientSecretPost)
        } else {
            None
        }
    }

    /// Whether the server lists `method` in `token_endpoint_auth_methods_supported`
    /// (`true` for `client_secret_basic` when there is no list).
    pub fn supports_auth_method(&self, method: ClientAuth) -> bool {
        let name = auth_method_name(method);
        match &self.auth_methods {
            None => method == ClientAuth::ClientSecretBasic,
            Some(methods) => methods.iter().any(|m| m == name),
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

pub(crate) fn auth_method_name(method: ClientAuth) -> &'static str {
    match method {
        ClientAuth::ClientSecretBasic => "client_secret_basic",
        ClientAuth::ClientSecretPost => "client_secret_post",
    }
}

impl ClientCredentialsBuilder {
    /// Reads the token endpoint, and the client authentication method unless one was set,
    /// from the metadata of the [`issuer`](Self::issuer) (RFC 8414, then OpenID Connect
    /// Discovery; see the [`endpoint`](crate::endpoint) module), and sets them on the
    /// builder. One or two `GET` requests with the builder's
    /// [`http_client`](Self::http_client) (or a new one that does not follow redirects,
    /// which [`build`](Self::build) then uses) and [`timeout`](Self::timeout).
    ///
    /// Without an issuer, with a [`token_url`](Self::token_url) set, there is nothing to
    /// discover and the builder comes back unchanged, so that code reading either from its
    /// configuration can always call `discover().await?.build()`.
    ///
    /// # Errors
    /// [`Error::is_config`]: neither or both of issuer and token URL set, an issuer that is
    /// not an `https` URL (plain `http` to loopback or with
    /// [`allow_insecure_http`](Self::allow_insecure_http)), a reqwest client that cannot be
    /// built. [`Error::is_discovery`]: no readable metadata, a document for another issuer,
    /// a missing or unusable `token_endpoint`, a token endpoint that breaks the `https`
    /// rule, or no supported client authentication method.
    pub async fn discover(self) -> Result<Self, Error> {
        let Some(issuer) = self.issuer_url().map(str::to_owned) else {
            return if self.has_token_url() {
                Ok(self)
            } else {
                Err(Error::config(
                    "set the issuer (to discover the token endpoint) or the token_url",
                ))
            };
        };
        if self.has_token_url() {
            return Err(Error::config(
                "token_url is already set (with token_url() or an earlier discover()): \
                 set the issuer or the token_url, not both",
            ));
        }
        let http = self.http_or_default()?;
        let metadata = discover(
            &http,
            &issuer,
            self.insecure_http_allowed(),
            self.timeout_or_default(),
        )
        .await?;
        let auth = match self.explicit_auth_method() {
            Some(auth) => {
                if !metadata.supports_auth_method(auth) {
                    tracing::warn!(
                        target: "tower_oauth",
                        issuer = %issuer,
                        method = auth_method_name(auth),
                        "the server's metadata does not list the configured client authentication method"
                    );
                }
                auth
            }
            None => metadata.preferred_auth_method().ok_or_else(|| {
                Error::discovery(
                    None,
                    format!(
                        "the token endpoint supports neither client_secret_basic nor \
                         client_secret_post (it lists: {})",
                        clip(
                            &metadata
                                .token_endpoint_auth_methods_supported()
                                .unwrap_or_default()
                                .join(", ")
                        )
                    ),
                    None,
                )
            })?,
        };
        tracing::debug!(
            target: "tower_oauth",
            issuer = %issuer,
            token_endpoint = %metadata.token_endpoint(),
            method = auth_method_name(auth),
            "token endpoint discovered"
        );
        Ok(self
            .discovered(metadata.token_endpoint().as_str(), auth)
            .http_client(http))
    }
}

/// Fetches and checks the metadata of `issuer`; see the module docs.
pub(crate) async fn discover(
    http: &reqwest::Client,
    issuer: &str,
    allow_insecure_http: bool,
    timeout: Duration,
) -> Result<AuthorizationServerMetadata, Error> {
    let issuer_url = check_issuer(issuer, allow_insecure_http)?;
    let mut failures = Vec::with_capacity(2);
    for url in metadata_urls(&issuer_url) {
        let fetched = get_document(http, &url, timeout).await?;
        let usable = fetched.status.is_success()
            && matches!(
                serde_json::from_slice::<Value>(&fetched.body),
                Ok(Value::Object(_))
            );
        if !usable {
            let what = if fetched.status.is_success() {
                format!(
                    "{} with no JSON object{}",
                    fetched.status,
                    fetched
                        .content_type
                        .as_deref()
                        .map(|ct| format!(" ({})", clip(ct)))
                        .unwrap_or_default()
                )
            } else {
                fetched.status.to_string()
            };
            failures.push((url, fetched.status, what));
            continue;
        }
        let mut metadata =
            AuthorizationServerMetadata::parse(issuer, &fetched.body).map_err(|e| {
                Error::discovery(
                    Some(fetched.status),
                    format!("{url}: {}", reason_of(&e)),
                    None,
                )
            })?;
        check_endpoint(&metadata.token_endpoint, allow_insecure_http).map_err(|reason| {
            Error::discovery(
                Some(fetched.status),
                format!("{url}: token_endpoint {reason}"),
                None,
            )
        })?;
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

/// The text after "discovery failed: " of a discovery error.
fn reason_of(e: &Error) -> String {
    let text = e.to_string();
    text.strip_prefix("discovery failed: ")
        .unwrap_or(&text)
        .to_owned()
}

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
    let url = Url::parse(issuer)
        .map_err(|e| Error::config(format!("issuer `{}` is not a URL: {e}", clip(issuer))))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(
            "the issuer URL must not have a query or fragment (RFC 8414 section 2)",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config("the issuer URL must not have user info"));
    }
    check_endpoint(&url, allow_insecure_http)
        .map_err(|reason| Error::config(format!("issuer {reason}")))?;
    Ok(url)
}

/// The https-or-loopback rule of the crate: `Err` says why the URL breaks it.
fn check_endpoint(url: &Url, allow_insecure_http: bool) -> Result<(), String> {
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if url.host().is_some() && (allow_insecure_http || is_loopback(url)) => Ok(()),
        "http" => Err(format!(
            "`{}` must be https (plain http is allowed only to loopback addresses, or with \
             allow_insecure_http())",
            clip(url.as_str())
        )),
        other => Err(format!(
            "`{}` has scheme `{other}`, not https",
            clip(url.as_str())
        )),
    }
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

/// Server-provided text in an error message: at most 200 characters.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(200).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
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
