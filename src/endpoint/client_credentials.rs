//! [`ClientCredentials`], the client-credentials grant (RFC 6749 section 4.4) over reqwest,
//! and its [`TokenSource`] implementation: one token request, its response read within
//! limits, echoed credentials cut out of any error.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use reqwest::Url;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};

use super::assertion::{Assertion, AssertionSource, JWT_BEARER};
use super::auth::ClientAuth;
use super::http::{ReadError, read_limited, status_and_content_type};
use super::response::{ResponseParser, parse_retry_after, redact};
use crate::error::Error;
use crate::identity::Identity;
use crate::key::CacheKey;
use crate::source::TokenSource;
use crate::token::Token;

/// A [`TokenSource`] for the client-credentials grant (RFC 6749 section 4.4).
///
/// Made by [`ClientCredentials::builder`] (or
/// [`from_env`](ClientCredentials::from_env)).
///
/// Each fetch is one `POST` of `grant_type=client_credentials` (with `scope`, `audience`,
/// `resource` (RFC 8707) and extra parameters as configured) to the token endpoint. The
/// response is read by a [`ResponseParser`]: at most 64 KiB, tolerant of `expires_in` as a
/// string, strict about everything else.
///
/// `Debug` shows the token URL, client id, scopes and method, never the secret.
#[derive(Clone)]
pub struct ClientCredentials {
    // Set by `ClientCredentialsBuilder::build`, the only way to make one.
    pub(super) token_url: Url,
    pub(super) client_id: String,
    pub(super) client_secret: SecretString,
    pub(super) auth: ClientAuth,
    /// `scope`, `audience`, `resource`... in order, without the credentials.
    pub(super) params: Vec<(String, String)>,
    pub(super) http: reqwest::Client,
    pub(super) timeout: Duration,
    pub(super) parser: ResponseParser,
    /// For `private_key_jwt` and `client_secret_jwt`.
    pub(super) assertion: Option<AssertionSource>,
    /// The `aud` of assertions signed here.
    pub(super) assertion_audience: String,
    pub(super) assertion_lifetime: Duration,
    /// SHA-256 of the mutual-TLS certificate chain, hex.
    pub(super) certificate_digest: Option<String>,
    /// DPoP proofs on token requests (RFC 9449).
    pub(super) dpop: Option<super::dpop::Dpop>,
}

impl ClientCredentials {
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

    /// The `aud` of client assertions signed here: the issuer or the token endpoint, or
    /// what [`assertion_audience`](super::ClientCredentialsBuilder::assertion_audience)
    /// set.
    pub fn assertion_audience(&self) -> &str {
        &self.assertion_audience
    }

    /// One token request; for an assertion file that changed after an `invalid_client`,
    /// one more with the file read again.
    async fn request_token(&self) -> Result<Token, Error> {
        self.request_grant(&[("grant_type", "client_credentials")], &[])
            .await
    }

    /// One token request of `grant` (its `grant_type` and parameters, before the source's
    /// `scope`, `audience`, `resource`...), with this source's client authentication;
    /// `secrets` (a subject token...) are cut out of any error like the credentials.
    pub(crate) async fn request_grant(
        &self,
        grant: &[(&str, &str)],
        secrets: &[&str],
    ) -> Result<Token, Error> {
        let is = |e: &Error, code: &str| {
            e.token_endpoint_error()
                .is_some_and(|rfc| rfc.error() == code)
        };
        let mut assertion = self.new_assertion().await?;
        let (mut nonce_retried, mut file_retried) = (false, false);
        loop {
            match self.request_with(grant, secrets, assertion.as_ref()).await {
                // RFC 9449 section 8: the server wants its nonce in the proof; the answer
                // carried it, and it is held now. Once per token request.
                Err(e) if !nonce_retried && self.dpop.is_some() && is(&e, "use_dpop_nonce") => {
                    nonce_retried = true;
                    tracing::debug!(
                        target: "tower_oauth",
                        "use_dpop_nonce: sending the token request again with the server's nonce"
                    );
                }
                Err(e)
                    if !file_retried
                        && is(&e, "invalid_client")
                        && self.assertion.as_ref().is_some_and(|source| {
                            source
                                .file_changed_since(assertion.as_ref().and_then(|a| a.file_digest))
                        }) =>
                {
                    file_retried = true;
                    tracing::info!(
                        target: "tower_oauth",
                        "invalid_client, and the assertion file changed since it was read: \
                         sending the new assertion"
                    );
                }
                result => return result,
            }
            // A new assertion for the new request: never one sent twice.
            assertion = self.new_assertion().await?;
        }
    }

    /// The `htu` and the origin key of the token endpoint, for DPoP proofs.
    fn dpop_target(&self) -> Option<(String, String)> {
        let uri: http::Uri = self.token_url.as_str().parse().ok()?;
        Some((super::dpop::htu(&uri)?, super::dpop::origin_of(&uri)?))
    }

    async fn new_assertion(&self) -> Result<Option<Assertion>, Error> {
        match &self.assertion {
            Some(source) => Ok(Some(
                source
                    .make(
                        &self.client_id,
                        &self.assertion_audience,
                        self.assertion_lifetime,
                    )
                    .await?,
            )),
            None => Ok(None),
        }
    }

    async fn request_with(
        &self,
        grant: &[(&str, &str)],
        grant_secrets: &[&str],
        assertion: Option<&Assertion>,
    ) -> Result<Token, Error> {
        let issued_at = SystemTime::now();
        let forms = self.credential_forms();
        let mut secrets = vec![forms[0].as_str(), forms[1].as_str(), forms[2].as_str()];
        if let Some(assertion) = assertion {
            secrets.push(assertion.value.as_str());
        }
        secrets.extend_from_slice(grant_secrets);
        secrets.retain(|s| !s.is_empty());
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(self.params.len() + 3);
        form.extend_from_slice(grant);
        form.extend(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut request = self
            .http
            .post(self.token_url.clone())
            .timeout(self.timeout)
            .header(ACCEPT, "application/json");
        let dpop_target = self.dpop.as_ref().and_then(|_| self.dpop_target());
        if let (Some(dpop), Some((htu, origin))) = (&self.dpop, &dpop_target) {
            let nonce = dpop.nonce(origin);
            let proof = dpop
                .key()
                .proof(&http::Method::POST, htu, None, nonce.as_deref())?;
            request = request.header("DPoP", proof);
        }
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
            ClientAuth::ClientSecretJwt | ClientAuth::PrivateKeyJwt => {
                let assertion = assertion.ok_or_else(|| {
                    Error::client_assertion("no client assertion for a JWT method", None)
                })?;
                form.push(("client_id", &self.client_id));
                form.push(("client_assertion_type", JWT_BEARER));
                form.push(("client_assertion", &assertion.value));
            }
            // RFC 8705 section 2: the TLS connection authenticates; the id is in the form.
            ClientAuth::TlsClientAuth | ClientAuth::SelfSignedTlsClientAuth => {
                form.push(("client_id", &self.client_id));
            }
        }
        let body = Zeroizing::new(
            serde_urlencoded::to_string(&form)
                .map_err(|_| Error::config("form parameters cannot be encoded"))?,
        );
        let request = request
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.as_bytes().to_vec());
        let mut response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                Error::timeout_of("ClientCredentialsBuilder::timeout", self.timeout)
            } else {
                Error::transport(e.without_url())
            }
        })?;
        if let (Some(dpop), Some((_, origin))) = (&self.dpop, &dpop_target) {
            dpop.record_nonce(origin, response.headers());
        }
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
            Err(ReadError::Failed(e)) if e.is_timeout() => {
                return Err(Error::timeout_of(
                    "ClientCredentialsBuilder::timeout",
                    self.timeout,
                ));
            }
            Err(ReadError::Failed(e)) => return Err(Error::transport(e.without_url())),
        };
        let token = self
            .parser
            .parse_redacting(status, content_type.as_deref(), &body, &secrets)
            .map_err(with_retry_after)?;
        // RFC 9449 section 5: a DPoP token request gets a `DPoP` token; a server that
        // ignored the proof answers `Bearer`.
        if let Some(dpop) = &self.dpop
            && token.token_type() != &crate::token::TokenType::DPOP
            && !dpop.allows_bearer_downgrade()
        {
            return Err(Error::invalid_response(
                status,
                content_type.as_deref(),
                "the token endpoint answered a DPoP token request with a token_type other \
                 than DPoP (Dpop::allowing_bearer_downgrade accepts that)",
                None,
            ));
        }
        tracing::debug!(
            target: "tower_oauth",
            %status,
            expires_in_secs = token.expires_in().as_secs(),
            "token issued"
        );
        Ok(token.with_issued_at(issued_at))
    }
}

impl TokenSource for ClientCredentials {
    fn fetch(&self) -> impl Future<Output = Result<Token, Error>> + Send {
        self.request_token()
    }

    /// `client_id@host` of the token URL, with the token URL's origin.
    fn identity(&self) -> Option<Identity> {
        let host = self.token_url.host_str().unwrap_or_default();
        Some(
            Identity::new(format!("{}@{host}", self.client_id))
                .with_token_endpoint(self.token_url.as_str()),
        )
    }

    /// SHA-256 of the token URL, the client id, a SHA-256 of the client secret, the scopes
    /// (sorted), and the other parameters (`audience`, `resource`...) sorted by name and
    /// value; for `private_key_jwt` the RFC 7638 thumbprint of the key (or the path of the
    /// assertion file), for mutual TLS a SHA-256 of the certificate chain, so that two
    /// identities never share a token. The shared-secret methods are left out: they do
    /// not change the token.
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
        if let Some(source) = &self.assertion {
            let (name, value) = source.key_material();
            key = key.field(name, &value);
        }
        if let Some(digest) = &self.certificate_digest {
            key = key.field("client_certificate_sha256", digest);
        }
        if let Some(dpop) = &self.dpop {
            key = key.field("dpop_jkt", dpop.key().thumbprint());
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
            .field("assertion", &self.assertion)
            .field("dpop", &self.dpop)
            .field("params", &ParamsDebug(&self.params))
            .finish_non_exhaustive()
    }
}

/// `Debug` of form parameters: the values of `scope`, `audience` and `resource` are shown;
/// any other value is redacted, as a parameter set with `param()` may be a credential
/// (`client_assertion`, say).
pub(super) struct ParamsDebug<'a>(pub(super) &'a [(String, String)]);

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
