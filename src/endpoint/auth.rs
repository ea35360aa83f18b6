//! How the client authenticates to the token endpoint, by its RFC 7591 name.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, clip};

/// How the client authenticates to the token endpoint (RFC 6749 section 2.3.1; names
/// from RFC 7591 section 2, as servers list them in `token_endpoint_auth_methods_supported`,
/// RFC 8414 section 2).
///
/// [`as_str`](ClientAuth::as_str) and [`Display`](fmt::Display) give the RFC 7591 name;
/// [`FromStr`] reads it back:
///
/// ```
/// use tower_oauth::ClientAuth;
///
/// let auth: ClientAuth = "client_secret_post".parse()?;
/// assert_eq!(auth, ClientAuth::ClientSecretPost);
/// assert_eq!(ClientAuth::default().as_str(), "client_secret_basic");
/// assert_eq!("private_key_jwt".parse::<ClientAuth>()?, ClientAuth::PrivateKeyJwt);
/// assert!("none".parse::<ClientAuth>().unwrap_err().is_config());
/// # Ok::<(), tower_oauth::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the client id and secret, each
    /// form-urlencoded before they are joined and base64-encoded, as RFC 6749 section
    /// 2.3.1 says. The default.
    #[default]
    ClientSecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// `client_secret_jwt`: a JWT signed HS256 with the client secret, as
    /// `client_assertion` (RFC 7523 section 2.2, OpenID Connect Core section 9).
    ClientSecretJwt,
    /// `private_key_jwt`: a JWT signed with the client's private key
    /// ([`private_key`](crate::endpoint::ClientCredentialsBuilder::private_key)), or one the
    /// platform hands the workload ([`client_assertion_file`](crate::endpoint::ClientCredentialsBuilder::client_assertion_file),
    /// [`client_assertion_fn`](crate::endpoint::ClientCredentialsBuilder::client_assertion_fn)), as
    /// `client_assertion` (RFC 7523 section 2.2).
    PrivateKeyJwt,
    /// `tls_client_auth`: mutual TLS with a certificate from a PKI the server trusts, the
    /// `client_id` in the form (RFC 8705 section 2.1).
    TlsClientAuth,
    /// `self_signed_tls_client_auth`: mutual TLS with a self-signed certificate the client
    /// registered, the `client_id` in the form (RFC 8705 section 2.2).
    SelfSignedTlsClientAuth,
}

impl ClientAuth {
    /// Every method this crate implements, in its order of preference.
    pub(crate) const ALL: [ClientAuth; 6] = [
        ClientAuth::ClientSecretBasic,
        ClientAuth::ClientSecretPost,
        ClientAuth::ClientSecretJwt,
        ClientAuth::PrivateKeyJwt,
        ClientAuth::TlsClientAuth,
        ClientAuth::SelfSignedTlsClientAuth,
    ];

    /// The RFC 7591 name: `client_secret_basic`, `client_secret_post`,
    /// `client_secret_jwt`, `private_key_jwt`, `tls_client_auth` or
    /// `self_signed_tls_client_auth`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ClientAuth::ClientSecretBasic => "client_secret_basic",
            ClientAuth::ClientSecretPost => "client_secret_post",
            ClientAuth::ClientSecretJwt => "client_secret_jwt",
            ClientAuth::PrivateKeyJwt => "private_key_jwt",
            ClientAuth::TlsClientAuth => "tls_client_auth",
            ClientAuth::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }

    /// Whether the client proves itself with mutual TLS (RFC 8705).
    pub const fn is_mutual_tls(self) -> bool {
        matches!(
            self,
            ClientAuth::TlsClientAuth | ClientAuth::SelfSignedTlsClientAuth
        )
    }

    /// Whether the client sends a `client_assertion` (RFC 7523 section 2.2).
    pub const fn is_assertion(self) -> bool {
        matches!(
            self,
            ClientAuth::ClientSecretJwt | ClientAuth::PrivateKeyJwt
        )
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ClientAuth {
    type Err = Error;

    /// Reads an RFC 7591 name, exactly as [`as_str`](ClientAuth::as_str) writes it.
    ///
    /// # Errors
    /// [`Error::is_config`] for any other name (`none`, a typo...).
    fn from_str(name: &str) -> Result<ClientAuth, Error> {
        ClientAuth::ALL
            .into_iter()
            .find(|auth| auth.as_str() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = ClientAuth::ALL.iter().map(|a| a.as_str()).collect();
                Error::config(format!(
                    "unknown client authentication method `{}`: this crate implements {}",
                    clip(name, 64),
                    names.join(", "),
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for auth in ClientAuth::ALL {
            assert_eq!(auth.as_str().parse::<ClientAuth>().unwrap(), auth);
            assert_eq!(auth.to_string(), auth.as_str());
        }
        for bad in ["", "Client_Secret_Basic", "none", " client_secret_post"] {
            assert!(
                bad.parse::<ClientAuth>().unwrap_err().is_config(),
                "{bad:?}"
            );
        }
    }
}
