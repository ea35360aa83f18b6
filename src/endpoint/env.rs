//! [`ClientCredentials`] from environment variables: [`ClientCredentials::from_env`] and
//! [`ClientCredentials::builder_from_env`].

use std::ffi::OsString;

use super::auth::ClientAuth;
use super::builder::ClientCredentialsBuilder;
use super::client_credentials::ClientCredentials;
use crate::error::Error;

/// The prefix of the variables [`ClientCredentials::from_env`] reads.
const DEFAULT_PREFIX: &str = "OAUTH_";

impl ClientCredentials {
    /// A source configured by environment variables:
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `OAUTH_TOKEN_URL` | the token endpoint (required) |
    /// | `OAUTH_CLIENT_ID` | the client id (required) |
    /// | `OAUTH_CLIENT_SECRET` | the client secret (required) |
    /// | `OAUTH_SCOPE` | scopes, space-separated (optional) |
    /// | `OAUTH_AUTH_METHOD` | `client_secret_basic` (default) or `client_secret_post` (optional) |
    ///
    /// An empty variable counts as unset. To find the token endpoint from `OAUTH_ISSUER`
    /// instead (RFC 8414 discovery, which needs a request), use
    /// [`builder_from_env`](ClientCredentials::builder_from_env) and
    /// [`discover`](ClientCredentialsBuilder::discover).
    ///
    /// # Errors
    /// [`Error::is_config`]: a required variable is missing or not UTF-8, `OAUTH_ISSUER` is
    /// set instead of `OAUTH_TOKEN_URL`, an unknown `OAUTH_AUTH_METHOD`, or whatever
    /// [`ClientCredentialsBuilder::build`] rejects. Messages name variables, never the
    /// secret's value.
    pub fn from_env() -> Result<ClientCredentials, Error> {
        ClientCredentials::builder_from_env(DEFAULT_PREFIX)?.build()
    }

    /// A builder preset from environment variables whose names start with `prefix`
    /// (`"OAUTH_"` for the variables of [`from_env`](ClientCredentials::from_env);
    /// `"BILLING_OAUTH_"` reads `BILLING_OAUTH_TOKEN_URL` and so on), for settings that
    /// have no variable ([`resource`](ClientCredentialsBuilder::resource),
    /// [`http_client`](ClientCredentialsBuilder::http_client)...) or for discovery.
    ///
    /// Besides the variables of [`from_env`](ClientCredentials::from_env) it reads
    /// `<prefix>ISSUER`: exactly one of `<prefix>TOKEN_URL` and `<prefix>ISSUER` must be
    /// set. With the issuer, call [`discover`](ClientCredentialsBuilder::discover) before
    /// [`build`](ClientCredentialsBuilder::build); `discover` leaves a builder with a
    /// token URL as it is, so `builder_from_env(..)?.discover().await?.build()` works with
    /// either.
    ///
    /// ```no_run
    /// use tower_oauth::ClientCredentials;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_oauth::Error> {
    /// let source = ClientCredentials::builder_from_env("OAUTH_")?
    ///     .resource("https://api.example.com")
    ///     .discover()
    ///     .await?
    ///     .build()?;
    /// # let _ = source;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::is_config`]: a required variable is missing or not UTF-8, both or neither
    /// of `<prefix>TOKEN_URL` and `<prefix>ISSUER`, an unknown `<prefix>AUTH_METHOD`.
    pub fn builder_from_env(prefix: &str) -> Result<ClientCredentialsBuilder, Error> {
        builder_from_vars(prefix, |name| std::env::var_os(name))
    }
}

/// [`ClientCredentials::builder_from_env`] over any variable lookup, for tests.
pub(crate) fn builder_from_vars(
    prefix: &str,
    get: impl Fn(&str) -> Option<OsString>,
) -> Result<ClientCredentialsBuilder, Error> {
    let var = |suffix: &str| -> Result<Option<String>, Error> {
        let name = format!("{prefix}{suffix}");
        match get(&name) {
            None => Ok(None),
            Some(value) if value.is_empty() => Ok(None),
            Some(value) => value
                .into_string()
                .map(Some)
                .map_err(|_| Error::config(format!("{name} is not valid UTF-8"))),
        }
    };
    let required = |suffix: &str| -> Result<String, Error> {
        var(suffix)?.ok_or_else(|| Error::config(format!("{prefix}{suffix} is not set")))
    };

    let mut builder = ClientCredentials::builder();
    builder = match (var("TOKEN_URL")?, var("ISSUER")?) {
        (Some(url), None) => builder.token_url(url),
        (None, Some(issuer)) => builder.issuer(issuer),
        (Some(_), Some(_)) => {
            return Err(Error::config(format!(
                "set {prefix}TOKEN_URL or {prefix}ISSUER, not both"
            )));
        }
        (None, None) => {
            return Err(Error::config(format!(
                "{prefix}TOKEN_URL (or {prefix}ISSUER, for discovery) is not set"
            )));
        }
    };
    builder = builder
        .client_id(required("CLIENT_ID")?)
        .client_secret(required("CLIENT_SECRET")?);
    if let Some(scope) = var("SCOPE")? {
        builder = builder.scope(scope);
    }
    if let Some(method) = var("AUTH_METHOD")? {
        let auth = method.parse::<ClientAuth>().map_err(|_| {
            Error::config(format!(
                "{prefix}AUTH_METHOD must be {} or {}",
                ClientAuth::ClientSecretBasic,
                ClientAuth::ClientSecretPost
            ))
        })?;
        builder = builder.auth_method(auth);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn build(prefix: &str, pairs: &[(&str, &str)]) -> Result<ClientCredentials, Error> {
        builder_from_vars(prefix, vars(pairs))?.build()
    }

    #[test]
    fn reads_the_four_variables() {
        let source = build(
            "OAUTH_",
            &[
                ("OAUTH_TOKEN_URL", "https://as.example/token"),
                ("OAUTH_CLIENT_ID", "svc"),
                ("OAUTH_CLIENT_SECRET", "hunter2"),
                ("OAUTH_SCOPE", "api.read  api.write"),
            ],
        )
        .unwrap();
        assert_eq!(source.token_url().as_str(), "https://as.example/token");
        assert_eq!(source.client_id(), "svc");
        assert_eq!(source.auth_method(), ClientAuth::ClientSecretBasic);
        assert_eq!(
            source.params(),
            &[("scope".to_owned(), "api.read api.write".to_owned())]
        );
        assert!(!format!("{source:?}").contains("hunter2"));
    }

    #[test]
    fn scope_and_auth_method_are_optional_and_empty_means_unset() {
        let source = build(
            "OAUTH_",
            &[
                ("OAUTH_TOKEN_URL", "https://as.example/token"),
                ("OAUTH_CLIENT_ID", "svc"),
                ("OAUTH_CLIENT_SECRET", "s"),
                ("OAUTH_SCOPE", ""),
                ("OAUTH_AUTH_METHOD", "client_secret_post"),
            ],
        )
        .unwrap();
        assert!(source.params().is_empty());
        assert_eq!(source.auth_method(), ClientAuth::ClientSecretPost);
    }

    #[test]
    fn prefix_selects_the_variables() {
        let source = build(
            "BILLING_OAUTH_",
            &[
                ("OAUTH_TOKEN_URL", "https://wrong.example/token"),
                ("BILLING_OAUTH_TOKEN_URL", "https://billing.example/token"),
                ("BILLING_OAUTH_CLIENT_ID", "billing"),
                ("BILLING_OAUTH_CLIENT_SECRET", "s"),
            ],
        )
        .unwrap();
        assert_eq!(source.token_url().host_str(), Some("billing.example"));
        assert_eq!(source.client_id(), "billing");
    }

    #[test]
    fn missing_and_bad_variables_are_config_errors_naming_the_variable() {
        let full = [
            ("OAUTH_TOKEN_URL", "https://as.example/token"),
            ("OAUTH_CLIENT_ID", "svc"),
            ("OAUTH_CLIENT_SECRET", "top-secret-value"),
        ];
        for missing in ["OAUTH_TOKEN_URL", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET"] {
            let pairs: Vec<_> = full
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = build("OAUTH_", &pairs).unwrap_err();
            assert!(err.is_config(), "{missing}: {err:?}");
            assert!(err.to_string().contains(missing), "{err}");
            assert!(!err.to_string().contains("top-secret-value"), "{err}");
        }
        let mut bad_method = full.to_vec();
        bad_method.push(("OAUTH_AUTH_METHOD", "private_key_jwt"));
        let err = build("OAUTH_", &bad_method).unwrap_err();
        assert!(err.to_string().contains("OAUTH_AUTH_METHOD"), "{err}");

        let mut both = full.to_vec();
        both.push(("OAUTH_ISSUER", "https://as.example"));
        let err = build("OAUTH_", &both).unwrap_err();
        assert!(
            err.is_config() && err.to_string().contains("not both"),
            "{err}"
        );

        let mut http = full.to_vec();
        http[0] = ("OAUTH_TOKEN_URL", "http://as.example/token");
        assert!(build("OAUTH_", &http).unwrap_err().is_config());
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_is_a_config_error() {
        use std::os::unix::ffi::OsStringExt;
        let get = |name: &str| match name {
            "OAUTH_TOKEN_URL" => Some(OsString::from("https://as.example/token")),
            "OAUTH_CLIENT_ID" => Some(OsString::from_vec(vec![0xff, 0xfe])),
            "OAUTH_CLIENT_SECRET" => Some(OsString::from("x")),
            _ => None,
        };
        let err = builder_from_vars("OAUTH_", get).unwrap_err();
        assert!(
            err.is_config() && err.to_string().contains("OAUTH_CLIENT_ID"),
            "{err}"
        );
    }

    #[test]
    fn issuer_needs_discovery_before_build() {
        let builder = builder_from_vars(
            "OAUTH_",
            vars(&[
                ("OAUTH_ISSUER", "https://as.example"),
                ("OAUTH_CLIENT_ID", "svc"),
                ("OAUTH_CLIENT_SECRET", "s"),
            ]),
        )
        .unwrap();
        let debug = format!("{builder:?}");
        assert!(
            debug.contains(r#"issuer: Some("https://as.example")"#),
            "{debug}"
        );
        let err = builder.build().unwrap_err();
        assert!(
            err.is_config() && err.to_string().contains("discover"),
            "{err}"
        );
    }
}
