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
/// assert!("private_key_jwt".parse::<ClientAuth>().unwrap_err().is_config());
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
}

impl ClientAuth {
    /// Every method this crate implements, in its order of preference.
    const ALL: [ClientAuth; 2] = [ClientAuth::ClientSecretBasic, ClientAuth::ClientSecretPost];

    /// The RFC 7591 name: `client_secret_basic` or `client_secret_post`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ClientAuth::ClientSecretBasic => "client_secret_basic",
            ClientAuth::ClientSecretPost => "client_secret_post",
        }
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
    /// [`Error::is_config`] for any other name (`private_key_jwt`, `none`, a typo...).
    fn from_str(name: &str) -> Result<ClientAuth, Error> {
        ClientAuth::ALL
            .into_iter()
            .find(|auth| auth.as_str() == name)
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown client authentication method `{}`: this crate implements {} and {}",
                    clip(name, 64),
                    ClientAuth::ClientSecretBasic,
                    ClientAuth::ClientSecretPost,
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
        for bad in [
            "",
            "Client_Secret_Basic",
            "client_secret_jwt",
            " client_secret_post",
        ] {
            assert!(
                bad.parse::<ClientAuth>().unwrap_err().is_config(),
                "{bad:?}"
            );
        }
    }
}
