//! The client certificate of mutual-TLS client authentication (RFC 8705 section 2):
//! a PEM certificate chain and its private key, checked, made into reqwest's identity.

use std::fmt;
use std::sync::Arc;

use secrecy::zeroize::Zeroizing;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// A certificate chain and its private key, as PEM.
#[derive(Clone)]
pub(crate) struct ClientCertificate {
    chain: Arc<Vec<u8>>,
    key: Arc<Zeroizing<Vec<u8>>>,
}

impl ClientCertificate {
    pub(crate) fn new(chain: Vec<u8>, key: Vec<u8>) -> ClientCertificate {
        ClientCertificate {
            chain: Arc::new(chain),
            key: Arc::new(Zeroizing::new(key)),
        }
    }

    /// reqwest's identity of the chain and key.
    ///
    /// # Errors
    /// [`Error::is_config`]: no `CERTIFICATE` in the chain, no private key in the key
    /// PEM, or a pair rustls does not take. Messages never quote either.
    pub(crate) fn identity(&self) -> Result<reqwest::Identity, Error> {
        let certificates = pem::parse_many(&*self.chain)
            .map_err(|_| Error::config("the client certificate chain is not PEM"))?;
        if !certificates.iter().any(|p| p.tag() == "CERTIFICATE") {
            return Err(Error::config(
                "the client certificate chain has no `BEGIN CERTIFICATE` block",
            ));
        }
        let keys = pem::parse_many(&**self.key)
            .map_err(|_| Error::config("the client certificate's private key is not PEM"))?;
        if !keys.iter().any(|p| p.tag().ends_with("PRIVATE KEY")) {
            return Err(Error::config(
                "the client certificate has no private key (a `BEGIN PRIVATE KEY`, \
                 `BEGIN EC PRIVATE KEY` or `BEGIN RSA PRIVATE KEY` block)",
            ));
        }
        let mut both = Zeroizing::new(Vec::with_capacity(self.key.len() + self.chain.len() + 1));
        both.extend_from_slice(&self.key);
        both.push(b'\n');
        both.extend_from_slice(&self.chain);
        reqwest::Identity::from_pem(&both)
            .map_err(|_| Error::config("the client certificate and key are not usable by rustls"))
    }

    /// SHA-256 of the certificate chain, hex: what tells two certificates apart in a cache
    /// key.
    pub(crate) fn digest(&self) -> String {
        hex::encode(Sha256::digest(&*self.chain))
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("chain_sha256", &self.digest())
            .field("private_key", &"[redacted]")
            .finish()
    }
}
