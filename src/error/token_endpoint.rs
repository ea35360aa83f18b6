//! [`TokenEndpointError`]: an error response of the token endpoint (RFC 6749 section 5.2).

use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;

use super::clip;

/// An error response of the token endpoint (RFC 6749 section 5.2), with its HTTP status.
///
/// `error` is the ASCII error code (`invalid_request`, `invalid_client`, `invalid_grant`,
/// `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`, or an extension);
/// `error_description` and `error_uri` are the server's optional human-readable text and
/// link. Each is kept to at most 1,024 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEndpointError {
    pub(super) status: StatusCode,
    error: String,
    error_description: Option<String>,
    error_uri: Option<String>,
}

/// The most characters an error keeps of an RFC 6749 error field.
pub(super) const FIELD_LIMIT: usize = 1024;

impl TokenEndpointError {
    /// Builds one; each text is clipped to 1,024 characters.
    pub fn new(
        status: StatusCode,
        error: &str,
        error_description: Option<&str>,
        error_uri: Option<&str>,
    ) -> TokenEndpointError {
        TokenEndpointError {
            status,
            error: clip(error, FIELD_LIMIT).to_owned(),
            error_description: error_description.map(|d| clip(d, FIELD_LIMIT).to_owned()),
            error_uri: error_uri.map(|u| clip(u, FIELD_LIMIT).to_owned()),
        }
    }

    /// The HTTP status the token endpoint answered with (400 or 401 per RFC 6749; some
    /// servers send others, even 200).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `error` code, e.g. `invalid_client`.
    pub fn error(&self) -> &str {
        &self.error
    }

    /// The `error_description`, if given.
    pub fn error_description(&self) -> Option<&str> {
        self.error_description.as_deref()
    }

    /// The `error_uri`, if given.
    pub fn error_uri(&self) -> Option<&str> {
        self.error_uri.as_deref()
    }
}

impl fmt::Display for TokenEndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.error, self.status)?;
        if let Some(d) = &self.error_description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl StdError for TokenEndpointError {}

/// The error codes of RFC 6749 section 5.2 and of the extensions this crate speaks
/// (RFC 8707, 9449), kept as metric label values (others are `token_endpoint_error`, so that a
/// token endpoint cannot make the label set grow) and never redacted: a registered code
/// is not an echo of a credential.
pub(crate) const KNOWN_CODES: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "invalid_dpop_proof",
    "use_dpop_nonce",
    "temporarily_unavailable",
    "server_error",
];
