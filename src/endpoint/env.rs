//! [`ClientCredentials`] from environment variables: [`ClientCredentials::from_env`] and
//! [`ClientCredentials::builder_from_env`].

use std::ffi::OsString;

use super::auth::ClientAuth;
use super::builder::ClientCredentialsBuilder;
use super::client_credentials::ClientCredentials;
use super::signing_key::SigningKey;
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
    /// | `OAUTH_CLIENT_SECRET` | the client secret (required for the secret methods) |
    /// | `OAUTH_SCOPE` | scopes, space-separated (optional) |
    /// | `OAUTH_AUTH_METHOD` | an RFC 7591 name: `client_secret_basic`, `client_secret_post`, `client_secret_jwt`, `private_key_jwt`, `tls_client_auth`, `self_signed_tls_client_auth` (optional; see [`auth_method`](ClientCredentialsBuilder::auth_method) for the default) |
    /// | `OAUTH_PRIVATE_KEY_FILE` | `private_key_jwt`: a PEM or JWK private key file ([`SigningKey`]) |
    /// | `OAUTH_KEY_ID` | the `kid` of that key (optional) |
    /// | `OAUTH_KEY_ALGORITHM` | its algorithm, `PS256` say (optional; default from the key) |
    /// | `OAUTH_CLIENT_ASSERTION_FILE` | `private_key_jwt`: a file the platform writes the assertion to, read at every token request |
    /// | `AZURE_FEDERATED_TOKEN_FILE` | the same, when none of the secret, key, assertion file or certificate is set (Azure workload identity) |
    /// | `OAUTH_ASSERTION_AUDIENCE` | the `aud` of assertions signed here (optional) |
    /// | `OAUTH_CLIENT_CERTIFICATE_FILE`, `OAUTH_CLIENT_KEY_FILE` | mutual TLS (RFC 8705): the PEM certificate chain and its key |
    ///
    /// An empty variable counts as unset. Key and certificate files are read here; an
    /// assertion file at every token request. To find the token endpoint from `OAUTH_ISSUER`
    /// instead (RFC 8414 discovery, which needs a request), use
    /// [`builder_from_env`](ClientCredentials::builder_from_env) and
    /// [`discover`](ClientCredentialsBuilder::discover).
    ///
    /// # Errors
    /// [`Error::is_config`]: a required variable is missing or not UTF-8, `OAUTH_ISSUER` is
    /// set instead of `OAUTH_TOKEN_URL`, an unknown `OAUTH_AUTH_METHOD`, a key or
    /// certificate file that cannot be read or parsed (named by its variable and path,
    /// never quoted), or whatever
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
    builder = builder.client_id(required("CLIENT_ID")?);
    if let Some(scope) = var("SCOPE")? {
        builder = builder.scope(scope);
    }
    let auth = match var("AUTH_METHOD")? {
        Some(method) => Some(method.parse::<ClientAuth>().map_err(|_| {
            let names: Vec<&str> = ClientAuth::ALL.iter().map(|a| a.as_str()).collect();
            Error::config(format!(
                "{prefix}AUTH_METHOD must be one of {}",
                names.join(", ")
            ))
        })?),
        None => None,
    };
    let secret = var("CLIENT_SECRET")?;
    let key_file = var("PRIVATE_KEY_FILE")?;
    let mut assertion_file = var("CLIENT_ASSERTION_FILE")?;
    if key_file.is_some() && assertion_file.is_some() {
        return Err(Error::config(format!(
            "set {prefix}PRIVATE_KEY_FILE or {prefix}CLIENT_ASSERTION_FILE, not both"
        )));
    }
    let certificate = match (var("CLIENT_CERTIFICATE_FILE")?, var("CLIENT_KEY_FILE")?) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(Error::config(format!(
                "{prefix}CLIENT_CERTIFICATE_FILE and {prefix}CLIENT_KEY_FILE go together"
            )));
        }
    };
    // Azure workload identity's file, for a client configured with nothing else: a
    // secret or other material given with the prefix wins.
    if assertion_file.is_none()
        && key_file.is_none()
        && certificate.is_none()
        && secret.is_none()
        && matches!(auth, None | Some(ClientAuth::PrivateKeyJwt))
        && let Some(path) = get(AZURE_FEDERATED_TOKEN_FILE).filter(|p| !p.is_empty())
    {
        assertion_file = Some(path.into_string().map_err(|_| {
            Error::config(format!("{AZURE_FEDERATED_TOKEN_FILE} is not valid UTF-8"))
        })?);
    }
    let has_material = key_file.is_some() || assertion_file.is_some() || certificate.is_some();
    match secret {
        Some(secret) => builder = builder.client_secret(secret),
        None if auth.is_some_and(|a| !a.is_assertion() && !a.is_mutual_tls())
            || auth == Some(ClientAuth::ClientSecretJwt)
            || (auth.is_none() && !has_material) =>
        {
            return Err(Error::config(format!("{prefix}CLIENT_SECRET is not set")));
        }
        None => {}
    }
    if let Some(path) = key_file {
        let name = format!("{prefix}PRIVATE_KEY_FILE");
        let text = std::fs::read(&path)
            .map_err(|e| Error::config(format!("{name} `{path}` cannot be read: {e}")))?;
        let text = secrecy::zeroize::Zeroizing::new(text);
        let parsed = if text.trim_ascii_start().starts_with(b"{") {
            std::str::from_utf8(&text)
                .map_err(|_| Error::config(format!("{name} `{path}` is not UTF-8")))
                .and_then(SigningKey::from_jwk)
        } else {
            SigningKey::from_pem(&*text)
        };
        let mut key = parsed.map_err(|e| Error::config(format!("{name} `{path}`: {e}")))?;
        if let Some(algorithm) = var("KEY_ALGORITHM")? {
            key = key.with_algorithm(&algorithm)?;
        }
        if let Some(kid) = var("KEY_ID")? {
            key = key.with_key_id(kid);
        }
        builder = builder.private_key(key);
    }
    if let Some(path) = assertion_file {
        builder = builder.client_assertion_file(path);
    }
    if let Some((cert, key)) = certificate {
        let read = |suffix: &str, path: &str| {
            std::fs::read(path).map_err(|e| {
                Error::config(format!("{prefix}{suffix} `{path}` cannot be read: {e}"))
            })
        };
        builder = builder.client_certificate(
            read("CLIENT_CERTIFICATE_FILE", &cert)?,
            read("CLIENT_KEY_FILE", &key)?,
        );
    }
    if let Some(audience) = var("ASSERTION_AUDIENCE")? {
        builder = builder.assertion_audience(audience);
    }
    if let Some(auth) = auth {
        builder = builder.auth_method(auth);
    }
    Ok(builder)
}

/// The file Azure workload identity projects the federated token into.
const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";

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
        bad_method.push(("OAUTH_AUTH_METHOD", "private_key"));
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

    fn key_path(name: &str) -> String {
        format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn key_and_assertion_files_select_private_key_jwt_without_a_secret() {
        let base = [
            ("OAUTH_TOKEN_URL", "https://as.example/token"),
            ("OAUTH_CLIENT_ID", "svc"),
        ];
        for key in ["p256.pem", "p256.jwk.json"] {
            let path = key_path(key);
            let mut pairs = base.to_vec();
            pairs.extend([
                ("OAUTH_PRIVATE_KEY_FILE", path.as_str()),
                ("OAUTH_KEY_ID", "k1"),
            ]);
            let source = build("OAUTH_", &pairs).unwrap();
            assert_eq!(source.auth_method(), ClientAuth::PrivateKeyJwt, "{key}");
        }
        let path = key_path("rsa.pem");
        let mut pairs = base.to_vec();
        pairs.extend([
            ("OAUTH_PRIVATE_KEY_FILE", path.as_str()),
            ("OAUTH_KEY_ALGORITHM", "ES256"),
        ]);
        assert!(build("OAUTH_", &pairs).unwrap_err().is_config());

        let mut pairs = base.to_vec();
        pairs.push(("OAUTH_CLIENT_ASSERTION_FILE", "/var/run/secrets/token"));
        let source = build("OAUTH_", &pairs).unwrap();
        assert_eq!(source.auth_method(), ClientAuth::PrivateKeyJwt);

        // Azure's file, only when nothing else is configured.
        let mut pairs = base.to_vec();
        pairs.push(("AZURE_FEDERATED_TOKEN_FILE", "/var/run/azure/token"));
        let source = build("OAUTH_", &pairs).unwrap();
        assert_eq!(source.auth_method(), ClientAuth::PrivateKeyJwt);
        pairs.push(("OAUTH_CLIENT_SECRET", "s"));
        let source = build("OAUTH_", &pairs).unwrap();
        assert_eq!(source.auth_method(), ClientAuth::ClientSecretBasic);

        // Neither a secret nor material.
        let err = build("OAUTH_", &base).unwrap_err();
        assert!(err.to_string().contains("OAUTH_CLIENT_SECRET"), "{err}");
    }

    #[test]
    fn unreadable_or_conflicting_files_are_config_errors_naming_the_variable() {
        let base = [
            ("OAUTH_TOKEN_URL", "https://as.example/token"),
            ("OAUTH_CLIENT_ID", "svc"),
        ];
        let mut pairs = base.to_vec();
        pairs.push(("OAUTH_PRIVATE_KEY_FILE", "/no/such/key.pem"));
        let err = build("OAUTH_", &pairs).unwrap_err();
        assert!(
            err.is_config()
                && err
                    .to_string()
                    .contains("OAUTH_PRIVATE_KEY_FILE `/no/such/key.pem`"),
            "{err}"
        );
        let mut pairs = base.to_vec();
        pairs.extend([
            ("OAUTH_PRIVATE_KEY_FILE", "/a"),
            ("OAUTH_CLIENT_ASSERTION_FILE", "/b"),
        ]);
        assert!(
            build("OAUTH_", &pairs)
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        let mut pairs = base.to_vec();
        pairs.push(("OAUTH_CLIENT_CERTIFICATE_FILE", "/a"));
        assert!(
            build("OAUTH_", &pairs)
                .unwrap_err()
                .to_string()
                .contains("go together")
        );
    }
}
