//! The client-credentials grant (RFC 6749 section 4.4) over reqwest.
//!
//! ```no_run
//! use tower::ServiceBuilder;
//! use tower_oauth::{ClientAuth, ClientCredentials, OAuthLayer};
//!
//! # fn main() -> Result<(), tower_oauth::Error> {
//! let source = ClientCredentials::builder()
//!     .token_url("https://auth.example.com/oauth2/token")
//!     .client_id("my-service")
//!     .client_secret(std::env::var("OAUTH_CLIENT_SECRET").unwrap_or_default())
//!     .scope("orders.read")
//!     .audience("https://api.example.com")
//!     .auth_method(ClientAuth::ClientSecretBasic)
//!     .build()?;
//! let layer = OAuthLayer::new(source);
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! The token endpoint can also be found from the issuer URL alone, with
//! [`ClientCredentialsBuilder::issuer`] and [`ClientCredentialsBuilder::discover`] (RFC 8414
//! and OpenID Connect Discovery; see [`endpoint`](crate::endpoint)), and the whole
//! configuration read from `OAUTH_*` environment variables with
//! [`ClientCredentials::from_env`] or [`ClientCredentials::builder_from_env`].

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use reqwest::Url;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};

use super::http::{ReadError, is_loopback, read_limited, status_and_content_type};
use super::response::{ResponseParser, parse_retry_after, redact};
use crate::store::CacheKey;
use crate::{Error, Token, TokenSource};

/// How the client authenticates to the token endpoint (RFC 6749 section 2.3.1; names
/// from RFC 7591).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the client id and secret, each
    /// form-urlencoded before they are joined and base64-encoded, as RFC 6749 section
    /// 2.3.1 says. The default.
    #[default]
    ClientSecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// A [`TokenSource`] for the client-credentials grant (RFC 6749 section 4.4).
///
/// Each fetch is one `POST` of `grant_type=client_credentials` (with `scope`, `audience`,
/// `resource` (RFC 8707) and extra parameters as configured) to the token endpoint. The
/// response is read by a [`ResponseParser`]: at most 64 KiB, tolerant of `expires_in` as a
/// string, strict about everything else.
///
/// `Debug` shows the token URL, client id, scopes and method, never the secret.
#[derive(Clone)]
pub struct ClientCredentials {
    token_url: Url,
    client_id: String,
    client_secret: SecretString,
    auth: ClientAuth,
    /// `scope`, `audience`, `resource`... in order, without the credentials.
    params: Vec<(String, String)>,
    http: reqwest::Client,
    timeout: Duration,
    parser: ResponseParser,
}

impl ClientCredentials {
    /// A builder; `token_url` and `client_id` are required.
    pub fn builder() -> ClientCredentialsBuilder {
        ClientCredentialsBuilder::default()
    }

    /// The token endpoint.
    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client authentication method.
    pub fn auth_method(&self) -> ClientAuth {
        self.auth
    }

    /// The form parameters sent besides `grant_type` and the credentials, in order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The forms in which the credentials leave in a token request: the secret as it is,
    /// form-urlencoded (RFC 6749 section 2.3.1), and the `Basic` credentials (base64 of
    /// `urlencode(id):urlencode(secret)`). None of them may come back in an error.
    fn credential_forms(&self) -> [Zeroizing<String>; 3] {
        let secret = self.client_secret.expose_secret();
        let encoded: Zeroizing<String> =
            Zeroizing::new(form_urlencoded::byte_serialize(secret.as_bytes()).collect());
        let mut pair = Zeroizing::new(String::new());
        pair.extend(form_urlencoded::byte_serialize(self.client_id.as_bytes()));
        pair.push(':');
        pair.push_str(&encoded);
        let basic = Zeroizing::new(BASE64.encode(pair.as_bytes()));
        [Zeroizing::new(secret.to_owned()), encoded, basic]
    }

    async fn request_token(&self) -> Result<Token, Error> {
        let issued_at = SystemTime::now();
        let forms = self.credential_forms();
        let secrets = [forms[0].as_str(), forms[1].as_str(), forms[2].as_str()];
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(self.params.len() + 3);
        form.push(("grant_type", "client_credentials"));
        form.extend(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut request = self
            .http
            .post(self.token_url.clone())
            .timeout(self.timeout)
            .header(ACCEPT, "application/json");
        match self.auth {
            ClientAuth::ClientSecretBasic => {
                let value = Zeroizing::new(format!("Basic {}", &*forms[2]));
                let mut value = HeaderValue::from_str(&value)
                    .map_err(|_| Error::config("client credentials cannot be encoded"))?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", self.client_secret.expose_secret()));
            }
        }
        let body = serde_urlencoded::to_string(&form)
            .map_err(|_| Error::config("form parameters cannot be encoded"))?;
        let request = request
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        let mut response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                Error::timeout()
            } else {
                Error::transport(e.without_url())
            }
        })?;
        let (status, content_type) = status_and_content_type(&response);
        let content_type = content_type.map(|v| redact(v, &secrets).into_owned());
        // RFC 6585 section 4 (429) and RFC 9110 section 15.6.4 (503): the server may say
        // when to come back; the error carries it, whatever the body.
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now())),
            _ => None,
        };
        let with_retry_after = |error: Error| match retry_after {
            Some(delay) => error.with_retry_after(delay),
            None => error,
        };
        let limit = self.parser.body_limit();
        let too_large = || {
            with_retry_after(Error::invalid_response(
                status,
                content_type.as_deref(),
                "body over the size limit",
                None,
            ))
        };
        // Holds the access token until it is parsed: zeroed when dropped, on every path.
        let body = match read_limited(&mut response, limit).await {
            Ok(body) => body,
            Err(ReadError::TooLarge) => return Err(too_large()),
            Err(ReadError::Failed(e)) if e.is_timeout() => return Err(Error::timeout()),
            Err(ReadError::Failed(e)) => return Err(Error::transport(e.without_url())),
        };
        let token = self
            .parser
            .parse_redacting(status, content_type.as_deref(), &body, &secrets)
            .map_err(with_retry_after)?;
        tracing::debug!(
            target: "tower_oauth",
            %status,
            expires_in_secs = token.expires_in().as_secs(),
            "client credentials token issued"
        );
        Ok(token.with_issued_at(issued_at))
    }
}

impl TokenSource for ClientCredentials {
    fn fetch(&self) -> impl Future<Output = Result<Token, Error>> + Send {
        self.request_token()
    }

    /// SHA-256 of the token URL, the client id, a SHA-256 of the client secret, the scopes
    /// (sorted), and the other parameters (`audience`, `resource`...) sorted by name and
    /// value. The authentication method is left out: it does not change the token.
    fn cache_key(&self) -> Option<CacheKey> {
        let mut scopes: Vec<&str> = Vec::new();
        let mut params: Vec<(&str, &str)> = Vec::with_capacity(self.params.len());
        for (name, value) in &self.params {
            if name == "scope" {
                scopes.extend(value.split_ascii_whitespace());
            } else {
                params.push((name, value));
            }
        }
        scopes.sort_unstable();
        scopes.dedup();
        params.sort_unstable();
        let mut key = CacheKey::builder("client_credentials/v1")
            .field("token_url", self.token_url.as_str())
            .field("client_id", &self.client_id)
            .secret_field("client_secret", self.client_secret.expose_secret());
        for scope in scopes {
            key = key.field("scope", scope);
        }
        for (name, value) in params {
            key = key.field("param", name).field("value", value);
        }
        Some(key.build())
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("auth_method", &self.auth)
            .field("params", &ParamsDebug(&self.params))
            .finish_non_exhaustive()
    }
}

/// Builds a [`ClientCredentials`]. Made by [`ClientCredentials::builder`].
#[derive(Default)]
pub struct ClientCredentialsBuilder {
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    auth: ClientAuth,
    scopes: Vec<String>,
    params: Vec<(String, String)>,
    http: Option<reqwest::Client>,
    parser: ResponseParser,
    timeout: Option<Duration>,
    allow_insecure_http: bool,
    /// For [`discover`](Self::discover) (in `discovery.rs`).
    issuer: Option<String>,
    /// Whether [`auth_method`](Self::auth_method) was called; discovery then keeps it.
    auth_set: bool,
}

impl ClientCredentialsBuilder {
    /// The token endpoint URL (required). It must be `https`, except on a loopback address
    /// (`127.0.0.0/8`, `::1`, `localhost`) or after
    /// [`allow_insecure_http`](Self::allow_insecure_http).
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// The client id (required).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The client secret. Kept in a [`SecretString`]; never logged or shown.
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(SecretString::from(secret.into()));
        self
    }

    /// Adds scopes (RFC 6749 section 3.3): one or more, space-separated. Calls add up;
    /// the request carries them joined by spaces, in order, without duplicates.
    pub fn scope(mut self, scope: impl AsRef<str>) -> Self {
        for s in scope.as_ref().split_ascii_whitespace() {
            if !self.scopes.iter().any(|have| have == s) {
                self.scopes.push(s.to_owned());
            }
        }
        self
    }

    /// Sets the `audience` parameter (used by Auth0, Okta and others to pick the API).
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.param("audience", audience)
    }

    /// Adds a `resource` parameter (RFC 8707 resource indicator). Calls add up.
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.param("resource", resource)
    }

    /// Adds any other form parameter to the token request. Calls add up. `grant_type`,
    /// `client_id` and `client_secret` cannot be set this way ([`build`](Self::build)
    /// fails).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The client authentication method (default [`ClientAuth::ClientSecretBasic`]).
    pub fn auth_method(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self.auth_set = true;
        self
    }

    /// The issuer URL of the authorization server (RFC 8414 section 2), to find the token
    /// endpoint with [`discover`](Self::discover) instead of setting
    /// [`token_url`](Self::token_url). The same `https` rule applies to it as to the token
    /// URL.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The reqwest client to send token requests with (default: a new one with a 10
    /// second timeout that does not follow redirects).
    ///
    /// Build yours with `.redirect(reqwest::redirect::Policy::none())` too: with reqwest's
    /// default policy a `307`/`308` from the token endpoint makes the client send the
    /// request, credentials included, to wherever the redirect points.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The timeout of one token request (default 10 seconds); applies to the default
    /// client and per request to a client given with [`http_client`](Self::http_client).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The lifetime of a token whose response gives no `expires_in` (default 300 seconds).
    pub fn default_expires_in(mut self, lifetime: Duration) -> Self {
        self.parser = self.parser.default_expires_in(lifetime);
        self
    }

    /// Allows a plain `http` token URL to a host that is not loopback. Client secrets and
    /// tokens then cross the network in clear text: only for test set-ups.
    pub fn allow_insecure_http(mut self) -> Self {
        self.allow_insecure_http = true;
        self
    }

    /// Checks the configuration and builds the source.
    ///
    /// # Errors
    /// [`Error::is_config`]: no token URL or client id, a URL that does not parse, an
    /// `http` URL to a non-loopback host without
    /// [`allow_insecure_http`](Self::allow_insecure_http), a reserved parameter name, or a
    /// reqwest client that cannot be built.
    pub fn build(self) -> Result<ClientCredentials, Error> {
        let raw_url = self.token_url.ok_or_else(|| {
            Error::config(if self.issuer.is_some() {
                "the issuer is set but no token_url: call discover().await before build()"
            } else {
                "token_url is required"
            })
        })?;
        let token_url = Url::parse(&raw_url)
            .map_err(|e| Error::config(format!("token_url is not a URL: {e}")))?;
        if !token_url.username().is_empty() || token_url.password().is_some() {
            return Err(Error::config(
                "token_url has credentials in it: give them with client_id() and \
                 client_secret(), not in the URL",
            ));
        }
        match token_url.scheme() {
            "https" => {}
            "http" if self.allow_insecure_http || is_loopback(&token_url) => {}
            "http" => {
                return Err(Error::config(format!(
                    "token_url must be https: `{}` would send the client secret in clear text \
                     (plain http is allowed only to loopback addresses, or with allow_insecure_http())",
                    token_url.host_str().unwrap_or_default()
                )));
            }
            other => {
                return Err(Error::config(format!(
                    "token_url has scheme `{other}`, not https"
                )));
            }
        }
        let client_id = self
            .client_id
            .ok_or_else(|| Error::config("client_id is required"))?;
        for (name, _) in &self.params {
            if matches!(
                name.as_str(),
                "grant_type" | "client_id" | "client_secret" | "scope"
            ) {
                return Err(Error::config(format!(
                    "parameter `{name}` is set by the builder, not with param()"
                )));
            }
        }
        let mut params = Vec::with_capacity(self.params.len() + 1);
        if !self.scopes.is_empty() {
            params.push(("scope".to_owned(), self.scopes.join(" ")));
        }
        params.extend(self.params);
        let timeout = self.timeout.unwrap_or(Duration::from_secs(10));
        let http = match self.http {
            Some(client) => client,
            None => reqwest::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| Error::config(format!("HTTP client: {e}")))?,
        };
        Ok(ClientCredentials {
            token_url,
            client_id,
            client_secret: self
                .client_secret
                .unwrap_or_else(|| SecretString::from(String::new())),
            auth: self.auth,
            params,
            http,
            timeout,
            parser: self.parser,
        })
    }
}

/// What [`discover`](ClientCredentialsBuilder::discover) (in `discovery.rs`) reads and
/// sets.
impl ClientCredentialsBuilder {
    pub(crate) fn issuer_url(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    pub(crate) fn has_token_url(&self) -> bool {
        self.token_url.is_some()
    }

    pub(crate) fn explicit_auth_method(&self) -> Option<ClientAuth> {
        self.auth_set.then_some(self.auth)
    }

    pub(crate) fn insecure_http_allowed(&self) -> bool {
        self.allow_insecure_http
    }

    pub(crate) fn timeout_or_default(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(10))
    }

    /// The client given with `http_client`, or the default one `build` would make.
    pub(crate) fn http_or_default(&self) -> Result<reqwest::Client, Error> {
        match &self.http {
            Some(client) => Ok(client.clone()),
            None => reqwest::Client::builder()
                .timeout(self.timeout_or_default())
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| Error::config(format!("HTTP client: {e}"))),
        }
    }

    /// Sets what discovery found; the auth method only if none was set.
    pub(crate) fn discovered(mut self, token_url: &str, auth: ClientAuth) -> Self {
        self.token_url = Some(token_url.to_owned());
        if !self.auth_set {
            self.auth = auth;
        }
        self
    }
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field(
                "token_url",
                &self.token_url.as_deref().map(without_userinfo),
            )
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("auth_method", &self.auth)
            .field("scopes", &self.scopes)
            .field("params", &ParamsDebug(&self.params))
            .finish_non_exhaustive()
    }
}

/// `Debug` of form parameters: the values of `scope`, `audience` and `resource` are shown;
/// any other value is redacted, as a parameter set with `param()` may be a credential
/// (`client_assertion`, say).
struct ParamsDebug<'a>(&'a [(String, String)]);

impl fmt::Debug for ParamsDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (name, value) in self.0 {
            let shown = match name.as_str() {
                "scope" | "audience" | "resource" => value.as_str(),
                _ => "[redacted]",
            };
            list.entry(&(name, shown));
        }
        list.finish()
    }
}

/// A URL for `Debug`: any `user:password@` cut out (`build()` refuses such a URL, but the
/// builder holds it as given until then).
fn without_userinfo(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "[unparsable URL]".to_owned(),
    }
}
