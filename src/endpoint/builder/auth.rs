//! The client-authentication part of [`ClientCredentialsBuilder`]: the material of each
//! method (a signing key, an assertion file or closure, a client certificate, trust
//! anchors), and the checks that tie a method to its material.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use super::ClientCredentialsBuilder;
use crate::BoxError;
use crate::endpoint::ClientAuth;
use crate::endpoint::assertion::AssertionSource;
use crate::endpoint::mtls::ClientCertificate;
use crate::endpoint::signing_key::SigningKey;
use crate::error::Error;

impl ClientCredentialsBuilder {
    /// DPoP (RFC 9449): every token request carries a proof of `dpop`'s key (a new `jti`,
    /// `htm` `POST`, `htu` the token endpoint, the server's nonce once it sent one; a
    /// `400 use_dpop_nonce` is answered once with the nonce it carried), and the token
    /// must come back with `token_type` `DPoP` (an [`Error::is_invalid_response`]
    /// otherwise, unless [`Dpop::allowing_bearer_downgrade`](crate::endpoint::dpop::Dpop::allowing_bearer_downgrade)).
    /// Give the same `Dpop` to the [`DpopLayer`](crate::oauth::dpop::DpopLayer) below the
    /// `OAuthLayer`, which signs a proof for each API request. The key's thumbprint is in
    /// the cache key: instances share a token only if they share the key.
    pub fn dpop(mut self, dpop: crate::endpoint::dpop::Dpop) -> Self {
        self.dpop = Some(dpop);
        self
    }

    /// `private_key_jwt` (RFC 7523 section 2.2): every token request carries a new
    /// `client_assertion` signed with `key`, with `iss` = `sub` = the client id, `aud`
    /// (see [`assertion_audience`](Self::assertion_audience)), a random `jti`, `iat`, and
    /// `exp` = `iat` + [`assertion_lifetime`](Self::assertion_lifetime). Never cached or
    /// sent twice.
    pub fn private_key(mut self, key: SigningKey) -> Self {
        self.assertion = Some(AssertionSource::Key(key));
        self
    }

    /// `private_key_jwt` with an assertion the platform writes to a file and rotates
    /// (a Kubernetes projected service account token, Azure workload identity's
    /// `AZURE_FEDERATED_TOKEN_FILE`, a SPIFFE JWT-SVID): read anew at every token request
    /// (at most 64 KiB, trimmed), sent as `client_assertion`. If the server answers
    /// `invalid_client` and the file changed since it was read, it is read again and the
    /// request sent once more.
    ///
    /// A file that is missing, empty, unreadable, not a JWT or expired fails the token
    /// request with [`Error::is_client_assertion`], naming the path (never the content),
    /// and nothing is sent.
    pub fn client_assertion_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.assertion = Some(AssertionSource::File(path.into()));
        self
    }

    /// `private_key_jwt` with an assertion from a closure of yours (a cloud metadata
    /// endpoint, a secrets manager, a signer in an HSM), awaited at every token request.
    /// Its error fails the token request with [`Error::is_client_assertion`], as its
    /// source; so does a value that is not a JWT or has expired.
    pub fn client_assertion_fn<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, BoxError>> + Send + 'static,
    {
        self.assertion = Some(AssertionSource::Fn(Arc::new(move || Box::pin(f()))));
        self
    }

    /// The `aud` of client assertions signed here. Default: the authorization server's
    /// issuer identifier when [`discover`](Self::discover) read it, else the token
    /// endpoint URL (servers differ in which they want; OpenID Connect Core section 9
    /// says the token endpoint, RFC 7523bis the issuer).
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.assertion_audience = Some(audience.into());
        self
    }

    /// The lifetime of client assertions signed here: `exp` - `iat` (default
    /// [`DEFAULT_ASSERTION_LIFETIME`](crate::endpoint::DEFAULT_ASSERTION_LIFETIME), 60 seconds; at least 1 second, at most
    /// [`MAX_ASSERTION_LIFETIME`](crate::endpoint::MAX_ASSERTION_LIFETIME), 1 hour, or [`build`](Self::build) fails). Whole seconds.
    pub fn assertion_lifetime(mut self, lifetime: Duration) -> Self {
        self.assertion_lifetime = Some(lifetime);
        self
    }

    /// Trusts the CA certificates of this PEM bundle too, besides the platform's, for the
    /// token endpoint's (and discovery's) TLS: a private PKI. Calls add up. For the default
    /// HTTP client; with an [`http_client`](Self::http_client) of your own, add them to it
    /// (`reqwest::ClientBuilder::add_root_certificate`).
    pub fn add_root_certificate(mut self, pem_bundle: impl Into<Vec<u8>>) -> Self {
        self.roots.push(Arc::new(pem_bundle.into()));
        self
    }

    /// Mutual TLS (RFC 8705): token requests go over a TLS connection that presents this
    /// certificate chain (PEM, leaf first) and its private key (PEM), and carry the
    /// `client_id` in the form. Sets `tls_client_auth` unless
    /// [`auth_method`](Self::auth_method) says `self_signed_tls_client_auth`. With
    /// [`discover`](Self::discover), the server's `mtls_endpoint_aliases.token_endpoint`
    /// is used when it has one.
    ///
    /// Builds the default HTTP client with this identity; with an
    /// [`http_client`](Self::http_client) of your own, give the identity to it instead
    /// (`reqwest::ClientBuilder::identity`) and set the method with `auth_method`.
    pub fn client_certificate(
        mut self,
        certificate_chain_pem: impl Into<Vec<u8>>,
        private_key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.certificate = Some(ClientCertificate::new(
            certificate_chain_pem.into(),
            private_key_pem.into(),
        ));
        self
    }
}

impl ClientCredentialsBuilder {
    /// The methods to choose from when none was set, in order, by the material given.
    pub(super) fn default_auth_methods(&self) -> &'static [ClientAuth] {
        if self.assertion.is_some() {
            &[ClientAuth::PrivateKeyJwt]
        } else if self.certificate.is_some() {
            &[
                ClientAuth::TlsClientAuth,
                ClientAuth::SelfSignedTlsClientAuth,
            ]
        } else {
            &[ClientAuth::ClientSecretBasic, ClientAuth::ClientSecretPost]
        }
    }

    /// The TLS client identity of [`client_certificate`](Self::client_certificate).
    pub(super) fn identity(&self) -> Result<Option<reqwest::Identity>, Error> {
        self.certificate
            .as_ref()
            .map(ClientCertificate::identity)
            .transpose()
    }

    /// The trust anchors of [`add_root_certificate`](Self::add_root_certificate).
    pub(super) fn root_certificates(&self) -> Result<Vec<reqwest::Certificate>, Error> {
        let mut roots = Vec::new();
        for bundle in &self.roots {
            let certificates = reqwest::Certificate::from_pem_bundle(bundle)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    Error::config("add_root_certificate: not a PEM bundle of certificates")
                })?;
            roots.extend(certificates);
        }
        Ok(roots)
    }

    /// The assertion source `auth` needs, checked against the material given.
    pub(super) fn checked_assertion(
        &self,
        auth: ClientAuth,
        client_secret: &SecretString,
    ) -> Result<Option<AssertionSource>, Error> {
        use secrecy::ExposeSecret as _;
        let conflict = |what: &str| {
            Error::config(format!(
                "{what} is set, but the client authentication method is {auth}"
            ))
        };
        match auth {
            ClientAuth::PrivateKeyJwt => match &self.assertion {
                Some(source) => Ok(Some(source.clone())),
                None => Err(Error::config(
                    "private_key_jwt needs private_key(), client_assertion_file() or \
                     client_assertion_fn()",
                )),
            },
            _ if self.assertion.is_some() => Err(conflict(
                "a client assertion (private_key, client_assertion_file or client_assertion_fn)",
            )),
            ClientAuth::ClientSecretJwt if client_secret.expose_secret().is_empty() => Err(
                Error::config("client_secret_jwt needs a client_secret to sign with"),
            ),
            ClientAuth::ClientSecretJwt => Ok(Some(AssertionSource::Secret(client_secret.clone()))),
            _ if self.certificate.is_some() && !auth.is_mutual_tls() => {
                Err(conflict("client_certificate"))
            }
            _ => Ok(None),
        }
    }
}
