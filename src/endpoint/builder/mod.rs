//! [`ClientCredentialsBuilder`]: the configuration of a [`ClientCredentials`], checked by
//! [`build`](ClientCredentialsBuilder::build), with the token endpoint found by
//! [`discover`](ClientCredentialsBuilder::discover) where only the issuer is known.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;

use super::assertion::{AssertionSource, DEFAULT_ASSERTION_LIFETIME, MAX_ASSERTION_LIFETIME};
use super::auth::ClientAuth;
use super::client_credentials::{ClientCredentials, ParamsDebug};
use super::discovery::AuthorizationServerMetadata;
use super::http::{DEFAULT_TIMEOUT, QUOTE_LIMIT, default_client, require_https_or_loopback};
use super::mtls::ClientCertificate;
use super::response::ResponseParser;
use crate::error::{Error, clip};

mod auth;

impl ClientCredentials {
    /// A builder; `token_url` (or an `issuer` to [`discover`](ClientCredentialsBuilder::discover)
    /// it from) and `client_id` are required.
    pub fn builder() -> ClientCredentialsBuilder {
        ClientCredentialsBuilder::default()
    }
}

/// Builds a [`ClientCredentials`]. Made by [`ClientCredentials::builder`].
///
/// `Clone`, so that sources that differ in one setting (scopes, audience) are built from one
/// base; [`set_scope`](Self::set_scope) replaces the scopes where [`scope`](Self::scope) adds:
///
/// ```
/// use tower_oauth::ClientCredentials;
///
/// let base = ClientCredentials::builder()
///     .token_url("https://idp.example.com/oauth2/token")
///     .client_id("billing")
///     .client_secret("s3cr3t")
///     .scope("invoices.read");
/// let reader = base.clone().build()?;
/// let writer = base.set_scope("invoices.write").build()?;
/// # let _ = (reader, writer);
/// # Ok::<(), tower_oauth::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct ClientCredentialsBuilder {
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    /// Set by [`auth_method`](Self::auth_method) or [`discover`](Self::discover). `None`
    /// means the default, `client_secret_basic`, and lets `discover` choose.
    auth: Option<ClientAuth>,
    scopes: Vec<String>,
    params: Vec<(String, String)>,
    http: Option<reqwest::Client>,
    parser: ResponseParser,
    timeout: Option<Duration>,
    allow_insecure_http: bool,
    /// For [`discover`](Self::discover).
    issuer: Option<String>,
    /// The `issuer` of the metadata [`discover`](Self::discover) read: the default
    /// audience of client assertions.
    discovered_issuer: Option<String>,
    assertion: Option<AssertionSource>,
    assertion_audience: Option<String>,
    assertion_lifetime: Option<Duration>,
    certificate: Option<ClientCertificate>,
    /// PEM bundles of extra trust anchors for the default HTTP client.
    roots: Vec<Arc<Vec<u8>>>,
    dpop: Option<super::dpop::Dpop>,
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

    /// Replaces the scopes set so far with these (one or more, space-separated; an empty
    /// string leaves none, and the request then carries no `scope`).
    pub fn set_scope(mut self, scope: impl AsRef<str>) -> Self {
        self.scopes.clear();
        self.scope(scope)
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

    /// The client authentication method. Unless set: `private_key_jwt` with a
    /// [`private_key`](Self::private_key), [`client_assertion_file`](Self::client_assertion_file)
    /// or [`client_assertion_fn`](Self::client_assertion_fn); `tls_client_auth` with a
    /// [`client_certificate`](Self::client_certificate); else `client_secret_basic`
    /// (or what [`discover`](Self::discover) finds). [`ClientAuth::ClientSecretJwt`] is
    /// used only when set here.
    pub fn auth_method(mut self, auth: ClientAuth) -> Self {
        self.auth = Some(auth);
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

    /// The reqwest client to send token requests with (default: a new one with a
    /// [`DEFAULT_TIMEOUT`] (10 seconds) timeout that does not follow redirects).
    ///
    /// Build yours with `.redirect(reqwest::redirect::Policy::none())` too: with reqwest's
    /// default policy a `307`/`308` from the token endpoint makes the client send the
    /// request, credentials included, to wherever the redirect points.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The timeout of one token request, and of one metadata request of
    /// [`discover`](Self::discover) (default [`DEFAULT_TIMEOUT`], 10 seconds); applies to the default
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

    /// Reads the token endpoint, and the client authentication method unless one was set,
    /// from the metadata of the [`issuer`](Self::issuer) (RFC 8414, then OpenID Connect
    /// Discovery; see [`AuthorizationServerMetadata`]), and sets them on the builder. One or
    /// two `GET` requests with the builder's [`http_client`](Self::http_client) (or a new
    /// one that does not follow redirects, with the builder's TLS settings) and
    /// [`timeout`](Self::timeout).
    ///
    /// Unless [`auth_method`](Self::auth_method) was called, the method is
    /// `client_secret_basic` if the server lists it in
    /// `token_endpoint_auth_methods_supported` (or has no list, RFC 8414's default), else
    /// `client_secret_post`. A method that was set is kept, with a warning if the server
    /// does not list it.
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
    pub async fn discover(mut self) -> Result<Self, Error> {
        let Some(issuer) = self.issuer.clone() else {
            return if self.token_url.is_some() {
                Ok(self)
            } else {
                Err(Error::config(
                    "set the issuer (to discover the token endpoint) or the token_url",
                ))
            };
        };
        if self.token_url.is_some() {
            return Err(Error::config(
                "token_url is already set (with token_url() or an earlier discover()): \
                 set the issuer or the token_url, not both",
            ));
        }
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let http = match self.http.clone() {
            Some(http) => http,
            None => default_client(timeout, self.identity()?, self.root_certificates()?)?,
        };
        let metadata = AuthorizationServerMetadata::discover(
            &http,
            &issuer,
            self.allow_insecure_http,
            timeout,
        )
        .await?;
        let auth = match self.auth {
            Some(auth) => {
                if !metadata.supports_auth_method(auth) {
                    tracing::warn!(
                        target: "tower_oauth",
                        issuer = %issuer,
                        method = auth.as_str(),
                        "the server's metadata does not list the configured client authentication method"
                    );
                }
                auth
            }
            None => {
                let candidates = self.default_auth_methods();
                metadata.first_supported(candidates).ok_or_else(|| {
                    let listed = metadata
                        .token_endpoint_auth_methods_supported()
                        .unwrap_or_default()
                        .join(", ");
                    let wanted: Vec<&str> = candidates.iter().map(|a| a.as_str()).collect();
                    Error::discovery(
                        None,
                        format!(
                            "the token endpoint supports none of {} (it lists: {})",
                            wanted.join(", "),
                            clip(&listed, QUOTE_LIMIT)
                        ),
                        None,
                    )
                })?
            }
        };
        let token_endpoint = match metadata.mtls_token_endpoint() {
            Some(alias) if auth.is_mutual_tls() => alias.clone(),
            _ => metadata.token_endpoint().clone(),
        };
        tracing::debug!(
            target: "tower_oauth",
            issuer = %issuer,
            token_endpoint = %token_endpoint,
            method = auth.as_str(),
            "token endpoint discovered"
        );
        self.token_url = Some(token_endpoint.as_str().to_owned());
        self.discovered_issuer = Some(metadata.issuer().to_owned());
        self.auth = Some(auth);
        Ok(self)
    }

    /// Checks the configuration and builds the source.
    ///
    /// # Errors
    /// [`Error::is_config`]: no token URL or client id, a URL that does not parse, an
    /// `http` URL to a non-loopback host without
    /// [`allow_insecure_http`](Self::allow_insecure_http), a reserved parameter name, a
    /// reqwest client that cannot be built; an authentication method without its
    /// material (`private_key_jwt` without a key, file or closure, `client_secret_jwt`
    /// without a secret, mutual TLS without a certificate) or with another method's; a
    /// certificate PEM without a certificate or without its key; an
    /// [`assertion_lifetime`](Self::assertion_lifetime) out of range.
    pub fn build(self) -> Result<ClientCredentials, Error> {
        let auth = self.auth.unwrap_or_else(|| self.default_auth_methods()[0]);
        let client_secret = self
            .client_secret
            .clone()
            .unwrap_or_else(|| SecretString::from(String::new()));
        let assertion = self.checked_assertion(auth, &client_secret)?;
        let identity = self.identity()?;
        let roots = self.root_certificates()?;
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
        require_https_or_loopback(&token_url, self.allow_insecure_http)
            .map_err(|reason| Error::config(format!("token_url {reason}")))?;
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
        let lifetime = self
            .assertion_lifetime
            .unwrap_or(DEFAULT_ASSERTION_LIFETIME);
        if lifetime < Duration::from_secs(1) || lifetime > MAX_ASSERTION_LIFETIME {
            return Err(Error::config(format!(
                "assertion_lifetime must be from 1 second to {} seconds, not {lifetime:?}",
                MAX_ASSERTION_LIFETIME.as_secs()
            )));
        }
        if auth.is_mutual_tls() && identity.is_none() && self.http.is_none() {
            return Err(Error::config(format!(
                "{auth} needs client_certificate() (or an http_client() with the identity)"
            )));
        }
        if (identity.is_some() || !roots.is_empty()) && self.http.is_some() {
            return Err(Error::config(
                "client_certificate() and add_root_certificate() set up the default HTTP \
                 client: with http_client(), give them to your reqwest::ClientBuilder",
            ));
        }
        let assertion_audience = self
            .assertion_audience
            .or(self.discovered_issuer)
            .unwrap_or_else(|| token_url.as_str().to_owned());
        let mut params = Vec::with_capacity(self.params.len() + 1);
        if !self.scopes.is_empty() {
            params.push(("scope".to_owned(), self.scopes.join(" ")));
        }
        params.extend(self.params);
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let http = match self.http {
            Some(http) => http,
            None => default_client(timeout, identity, roots)?,
        };
        Ok(ClientCredentials {
            token_url,
            client_id,
            client_secret,
            auth,
            params,
            http,
            timeout,
            parser: self.parser,
            assertion,
            assertion_audience,
            assertion_lifetime: lifetime,
            certificate_digest: self.certificate.as_ref().map(ClientCertificate::digest),
            dpop: self.dpop,
        })
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
            .field("assertion", &self.assertion)
            .field("client_certificate", &self.certificate)
            .field("scopes", &self.scopes)
            .field("params", &ParamsDebug(&self.params))
            .finish_non_exhaustive()
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

#[cfg(test)]
mod tests {
    use crate::{ClientCredentials, TokenSource};

    fn scope_of(source: &ClientCredentials) -> Option<&str> {
        source
            .params()
            .iter()
            .find(|(name, _)| name == "scope")
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn a_cloned_builder_with_other_scopes_makes_another_token() {
        let base = ClientCredentials::builder()
            .token_url("https://idp.test/token")
            .client_id("c")
            .client_secret("s")
            .scope("a b");
        let added = base.clone().scope("c").build().unwrap();
        let replaced = base.clone().set_scope("c").build().unwrap();
        let none = base.clone().set_scope("").build().unwrap();
        let same = base.build().unwrap();
        assert_eq!(scope_of(&added), Some("a b c"));
        assert_eq!(scope_of(&replaced), Some("c"));
        assert_eq!(scope_of(&none), None);
        assert_eq!(scope_of(&same), Some("a b"));
        assert_ne!(replaced.cache_key(), same.cache_key());
    }
}
