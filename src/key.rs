//! The identity of a token: what makes two sources get the same token, hashed.
//!
//! A [`CacheKey`] names a token in a shared [`TokenStore`](crate::store::TokenStore).
//! [`TokenSource`](crate::TokenSource)s give theirs from
//! [`cache_key`](crate::TokenSource::cache_key); the store module re-exports both types,
//! so `tower_oauth::store::CacheKey` is the same type.
//!
//! ```
//! use tower_oauth::key::CacheKey;
//!
//! let key = CacheKey::builder("vault")
//!     .field("path", "secret/data/api")
//!     .secret_field("role_secret", "s3cr3t")
//!     .build();
//! assert_eq!(key, tower_oauth::store::CacheKey::builder("vault")
//!     .field("path", "secret/data/api")
//!     .secret_field("role_secret", "s3cr3t")
//!     .build());
//! ```

use std::fmt;

use sha2::{Digest, Sha256};

/// The identity of the tokens a [`TokenSource`](crate::TokenSource) fetches, hashed with
/// SHA-256: the name of the entry in a shared [`TokenStore`](crate::store::TokenStore).
///
/// Two sources with the same `CacheKey` share one token in the store; two sources that
/// differ in anything that makes the token what it is (token URL, client, secret, scopes,
/// audience, resources, other parameters) must have different keys.
/// [`ClientCredentials`](crate::ClientCredentials) makes its own; for a source of your own,
/// build one with [`CacheKey::builder`] and return it from
/// [`TokenSource::cache_key`](crate::TokenSource::cache_key), or pass it to
/// [`StoreOptions::key`](crate::store::StoreOptions::key).
///
/// A key holds only the digest: no secret can be read back from it. Fields are hashed
/// length-prefixed, so `("ab", "c")` and `("a", "bc")` never collide.
///
/// ```
/// use tower_oauth::key::CacheKey;
///
/// let a = CacheKey::builder("vault").field("path", "secret/data/api").build();
/// let b = CacheKey::builder("vault").field("path", "secret/data/other").build();
/// assert_ne!(a, b);
/// assert_eq!(a.to_hex().len(), 64);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey {
    digest: [u8; 32],
}

impl CacheKey {
    /// Starts a key for sources of kind `kind` (e.g. `"client_credentials"`): keys of
    /// different kinds never collide.
    pub fn builder(kind: &str) -> CacheKeyBuilder {
        CacheKeyBuilder {
            hasher: Sha256::new(),
        }
        .field("kind", kind)
    }

    /// The SHA-256 digest, 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The digest as 64 lowercase hex digits: the part of the store key after the prefix.
    pub fn to_hex(&self) -> String {
        hex::encode(self.digest)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.to_hex())
    }
}

/// Builds a [`CacheKey`] from named fields. Made by [`CacheKey::builder`].
#[derive(Clone)]
pub struct CacheKeyBuilder {
    hasher: Sha256,
}

impl CacheKeyBuilder {
    /// Adds a field. Order matters: sort fields whose order does not change the token
    /// (scopes, say) before adding them.
    pub fn field(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref();
        self.hasher.update((name.len() as u64).to_be_bytes());
        self.hasher.update(name.as_bytes());
        self.hasher.update((value.len() as u64).to_be_bytes());
        self.hasher.update(value);
        self
    }

    /// Adds a secret as its SHA-256 digest, so that the secret itself is never hashed
    /// into the key together with guessable fields in the clear.
    pub fn secret_field(self, name: &str, secret: impl AsRef<[u8]>) -> Self {
        let digest = Sha256::digest(secret.as_ref());
        self.field(name, digest)
    }

    /// The key.
    pub fn build(self) -> CacheKey {
        CacheKey {
            digest: self.hasher.finalize().into(),
        }
    }
}

impl fmt::Debug for CacheKeyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheKeyBuilder").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed() {
        let a = CacheKey::builder("k").field("ab", "c").build();
        let b = CacheKey::builder("k").field("a", "bc").build();
        assert_ne!(a, b);
        let c = CacheKey::builder("k").field("x", "yz").build();
        let d = CacheKey::builder("k")
            .field("x", "y")
            .field("", "z")
            .build();
        assert_ne!(c, d);
    }

    #[test]
    fn same_fields_same_key_and_kind_matters() {
        let a = CacheKey::builder("k").field("x", "1").build();
        assert_eq!(a, CacheKey::builder("k").field("x", "1").build());
        assert_ne!(a, CacheKey::builder("j").field("x", "1").build());
        assert_eq!(a.to_hex().len(), 64);
        assert!(format!("{a:?}").contains(&a.to_hex()));
    }

    #[test]
    fn secret_field_differs_from_plain_field() {
        let a = CacheKey::builder("k").secret_field("s", "pw").build();
        let b = CacheKey::builder("k").field("s", "pw").build();
        assert_ne!(a, b);
        assert_ne!(a, CacheKey::builder("k").secret_field("s", "pw2").build());
    }
}
