//! The name a token goes by in errors, log lines and metrics.
//!
//! Every [`Error`](crate::Error) of a failed token fetch, every log line about it and
//! (feature `metrics`) every metric carries the [`Identity`] of the token: a short, stable,
//! non-secret name, and the origin of its token endpoint (`scheme://host:port`, never a
//! path, query or user-info). A layer takes it from its token source
//! ([`TokenSource::identity`](crate::TokenSource::identity); for
//! [`ClientCredentials`](crate::ClientCredentials): `client_id@host` of the token URL) unless
//! [`OAuthLayerBuilder::name`](crate::OAuthLayerBuilder::name) sets the name.
//!
//! ```
//! use tower_oauth::identity::Identity;
//!
//! let id = Identity::new("billing-api")
//!     .with_token_endpoint("https://user:pw@idp.example.com/oauth2/token?x=1");
//! assert_eq!(id.name(), "billing-api");
//! assert_eq!(id.token_endpoint(), Some("https://idp.example.com"));
//! assert_eq!(id.to_string(), "billing-api (token endpoint https://idp.example.com)");
//! ```

use std::fmt;
use std::sync::Arc;

use http::Uri;

/// The name used when neither the source nor the layer gives one.
pub const DEFAULT_NAME: &str = "token";

/// The most characters of a name that are kept; longer names are cut at a character
/// boundary.
pub const NAME_LIMIT: usize = 64;

/// What a token is called in errors, log lines and metric labels. Cheap to clone.
///
/// Holds no secret: a name (at most [`NAME_LIMIT`] characters; control characters are
/// replaced by `?`) and, if known, the token endpoint's origin.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    name: Arc<str>,
    token_endpoint: Option<Arc<str>>,
}

impl Identity {
    /// An identity with this name and no token endpoint.
    pub fn new(name: impl AsRef<str>) -> Identity {
        let name: String = name
            .as_ref()
            .chars()
            .take(NAME_LIMIT)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let name = if name.is_empty() {
            DEFAULT_NAME.into()
        } else {
            name
        };
        Identity {
            name: name.into(),
            token_endpoint: None,
        }
    }

    /// The same name, with the origin of `url` as the token endpoint. Only the scheme, host
    /// and port of `url` are kept; a `url` that is not absolute leaves the endpoint unset.
    pub fn with_token_endpoint(mut self, url: &str) -> Identity {
        self.token_endpoint = origin_of(url).map(Arc::from);
        self
    }

    /// The same endpoint, with another name.
    pub(crate) fn renamed(&self, name: &str) -> Identity {
        Identity {
            token_endpoint: self.token_endpoint.clone(),
            ..Identity::new(name)
        }
    }

    /// The name, as set: for example `client-a@idp.example.com` or `billing-api`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The token endpoint's origin, `scheme://host[:port]`, if known.
    pub fn token_endpoint(&self) -> Option<&str> {
        self.token_endpoint.as_deref()
    }
}

impl Default for Identity {
    fn default() -> Self {
        Identity::new(DEFAULT_NAME)
    }
}

fn origin_of(url: &str) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let host = uri.host()?;
    Some(match uri.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(endpoint) = &self.token_endpoint {
            write!(f, " (token endpoint {endpoint})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("token_endpoint", &self.token_endpoint)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_origin_of_the_endpoint_is_kept() {
        let id = Identity::new("a").with_token_endpoint("http://u:p@127.0.0.1:8080/t?secret=1");
        assert_eq!(id.token_endpoint(), Some("http://127.0.0.1:8080"));
        assert_eq!(
            Identity::new("a")
                .with_token_endpoint("/relative")
                .token_endpoint(),
            None
        );
    }

    #[test]
    fn names_are_bounded_and_printable() {
        assert_eq!(Identity::new("").name(), DEFAULT_NAME);
        assert_eq!(Identity::new("a\nb").name(), "a?b");
        assert_eq!(
            Identity::new("é".repeat(100)).name().chars().count(),
            NAME_LIMIT
        );
        let renamed = Identity::new("x")
            .with_token_endpoint("https://idp.test")
            .renamed("y");
        assert_eq!(renamed.to_string(), "y (token endpoint https://idp.test)");
    }
}
