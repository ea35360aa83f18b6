//! What a shared store keeps for a token: JSON, optionally sealed with AES-256-GCM.
//!
//! Plain values are a JSON object:
//! `{"v":1,"access_token":"...","token_type":"Bearer","scope":"...","issued_at_ms":...,"expires_at_ms":...}`
//! with times in milliseconds since the Unix epoch. Sealed values are
//! `aes256gcm:v1:` followed by a random 12-byte nonce and the AES-256-GCM ciphertext of
//! that JSON with its 16-byte tag; the store key is the associated data, so a value
//! copied to another key does not decrypt.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::token::{MAX_EXPIRES_IN, MAX_TOKEN_LEN, Token, TokenType};

/// The largest stored value read, in bytes.
const MAX_VALUE_LEN: usize = 2 * MAX_TOKEN_LEN + 1024;
const VERSION: u32 = 1;
#[cfg(feature = "encryption")]
const SEALED: &[u8] = b"aes256gcm:v1:";
#[cfg(feature = "encryption")]
const NONCE_LEN: usize = 12;

#[derive(Serialize, Deserialize)]
struct Stored {
    v: u32,
    access_token: String,
    token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    issued_at_ms: u64,
    expires_at_ms: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The furthest a stored token's `issued_at` may be ahead of this instance's clock: one
/// day. Further ahead, the value is refused as unreadable (absurd times, or a clock that
/// is badly wrong somewhere).
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(24 * 3600);

/// When a stored token counts as issued: its `issued_at` (milliseconds since the Unix
/// epoch), or `now` if that is later than `now`. Never a panic, whatever the value and the
/// platform's range of `SystemTime`.
fn issued_at(ms: u64, now: SystemTime) -> Result<SystemTime, Error> {
    let absurd = || Error::store("stored token has an impossible issue time", None);
    let at = UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .ok_or_else(absurd)?;
    match at.duration_since(now) {
        Ok(ahead) if ahead > MAX_SKEW => Err(absurd()),
        Ok(_) => Ok(now),
        Err(_) => Ok(at),
    }
}

/// Turns tokens into stored values and back, sealing them if a key is set.
#[derive(Clone, Default)]
pub(crate) struct Codec {
    #[cfg(feature = "encryption")]
    pub(crate) key: Option<EncryptionKey>,
}

impl Codec {
    pub(crate) fn encrypts(&self) -> bool {
        #[cfg(feature = "encryption")]
        {
            self.key.is_some()
        }
        #[cfg(not(feature = "encryption"))]
        {
            false
        }
    }

    /// The stored value of `token` under `store_key`.
    pub(crate) fn encode(&self, token: &Token, store_key: &str) -> Result<Vec<u8>, Error> {
        let stored = Stored {
            v: VERSION,
            access_token: token.access_token().expose_secret().to_owned(),
            token_type: token.token_type().as_str().to_owned(),
            scope: token.scope().map(str::to_owned),
            issued_at_ms: unix_ms(token.issued_at()),
            expires_at_ms: unix_ms(token.expires_at()),
        };
        let json = serde_json::to_vec(&stored)
            .map_err(|_| Error::store("token cannot be serialized", None))?;
        #[cfg(feature = "encryption")]
        if let Some(key) = &self.key {
            return key.seal(&json, store_key);
        }
        let _ = store_key;
        Ok(json)
    }

    /// The token in a stored value.
    ///
    /// # Errors
    /// [`Error::is_store`]: the value is not one this crate wrote, is sealed with another
    /// key (or not sealed when it should be, or the other way round), or holds a token
    /// that cannot be used.
    pub(crate) fn decode(&self, raw: &[u8], store_key: &str) -> Result<Token, Error> {
        self.decode_at(raw, store_key, SystemTime::now())
    }

    /// [`decode`](Codec::decode) with the wall clock at `now`. A token issued after `now`
    /// (another instance's clock is ahead) counts as issued at `now`, so it is used at most
    /// for its own lifetime from now; one issued more than [`MAX_SKEW`] after `now`, or
    /// with a time that is not representable, is unreadable.
    pub(crate) fn decode_at(
        &self,
        raw: &[u8],
        store_key: &str,
        now: SystemTime,
    ) -> Result<Token, Error> {
        if raw.len() > MAX_VALUE_LEN {
            return Err(Error::store("stored value is too large", None));
        }
        #[cfg(feature = "encryption")]
        let opened;
        #[cfg(feature = "encryption")]
        let raw = match (&self.key, raw.strip_prefix(SEALED)) {
            (Some(key), Some(sealed)) => {
                opened = key.open(sealed, store_key)?;
                &opened[..]
            }
            (Some(_), None) => {
                return Err(Error::store(
                    "stored token is not encrypted, but an encryption key is set",
                    None,
                ));
            }
            (None, Some(_)) => {
                return Err(Error::store(
                    "stored token is encrypted, but no encryption key is set",
                    None,
                ));
            }
            (None, None) => raw,
        };
        let _ = store_key;
        let stored: Stored = serde_json::from_slice(raw)
            .map_err(|_| Error::store("stored value is not a token this crate wrote", None))?;
        if stored.v != VERSION {
            return Err(Error::store("stored value has an unknown version", None));
        }
        if stored.access_token.is_empty() || stored.access_token.len() > MAX_TOKEN_LEN {
            return Err(Error::store(
                "stored access token is empty or too long",
                None,
            ));
        }
        let lifetime = stored
            .expires_at_ms
            .checked_sub(stored.issued_at_ms)
            .map(Duration::from_millis)
            .filter(|l| *l <= MAX_EXPIRES_IN)
            .ok_or_else(|| Error::store("stored token has an impossible lifetime", None))?;
        let issued_at = issued_at(stored.issued_at_ms, now)?;
        let token_type = TokenType::parse(&stored.token_type);
        let token = Token::new(stored.access_token, lifetime)
            .with_token_type(token_type)
            .with_issued_at(issued_at);
        let token = match stored.scope {
            Some(scope) => token.with_scope(scope),
            None => token,
        };
        // Checked here, not only when the cache takes it, so that a bad stored value
        // counts as unreadable (the instance fetches its own) rather than failing requests.
        token
            .header_value()
            .map_err(|_| Error::store("stored token cannot go into an HTTP header", None))?;
        Ok(token)
    }
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("encrypted", &self.encrypts())
            .finish()
    }
}

#[cfg(feature = "encryption")]
pub use sealed::EncryptionKey;

#[cfg(feature = "encryption")]
mod sealed {
    use std::fmt;
    use std::sync::Arc;

    use aes_gcm::aead::{Aead, Payload};
    use aes_gcm::{Aes256Gcm, KeyInit, Nonce};

    use super::{NONCE_LEN, SEALED};
    use crate::error::Error;

    /// A 256-bit key that seals the tokens kept in a shared store with AES-256-GCM, so a
    /// dump of the store does not hand out bearer tokens.
    ///
    /// Every instance that shares the tokens must have the same key. Each value is sealed
    /// with a fresh random 96-bit nonce, and bound to its store key (associated data). A
    /// value that does not open with the key (another key, tampering) is an
    /// [`Error::is_store`] error; the instance then fetches a token of its own and
    /// overwrites the value.
    ///
    /// `Debug` never shows the key.
    ///
    /// ```
    /// use tower_oauth::store::{EncryptionKey, StoreOptions};
    ///
    /// // In production: 32 random bytes from a secret manager, e.g. as 64 hex digits.
    /// let key = EncryptionKey::from_hex(&"4f".repeat(32))?;
    /// let options = StoreOptions::new().encryption_key(key);
    /// # let _ = options;
    /// # Ok::<(), tower_oauth::Error>(())
    /// ```
    #[derive(Clone)]
    #[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
    pub struct EncryptionKey {
        cipher: Arc<Aes256Gcm>,
    }

    impl EncryptionKey {
        /// A key from 32 bytes.
        pub fn from_bytes(key: [u8; 32]) -> EncryptionKey {
            EncryptionKey {
                cipher: Arc::new(Aes256Gcm::new(&key.into())),
            }
        }

        /// A key from a slice of 32 bytes.
        ///
        /// # Errors
        /// [`Error::is_config`] if the slice is not 32 bytes long.
        pub fn from_slice(key: &[u8]) -> Result<EncryptionKey, Error> {
            let key: [u8; 32] = key
                .try_into()
                .map_err(|_| Error::config("an encryption key is 32 bytes"))?;
            Ok(EncryptionKey::from_bytes(key))
        }

        /// A key from 64 hex digits.
        ///
        /// # Errors
        /// [`Error::is_config`] if the text is not 64 hex digits.
        pub fn from_hex(key: &str) -> Result<EncryptionKey, Error> {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(key.trim(), &mut bytes)
                .map_err(|_| Error::config("an encryption key in hex is 64 hex digits"))?;
            Ok(EncryptionKey::from_bytes(bytes))
        }

        pub(super) fn seal(&self, plain: &[u8], store_key: &str) -> Result<Vec<u8>, Error> {
            let mut nonce = [0u8; NONCE_LEN];
            getrandom::fill(&mut nonce)
                .map_err(|_| Error::store("no randomness for a nonce", None))?;
            let sealed = self
                .cipher
                .encrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: plain,
                        aad: store_key.as_bytes(),
                    },
                )
                .map_err(|_| Error::store("token cannot be encrypted", None))?;
            let mut value = Vec::with_capacity(SEALED.len() + NONCE_LEN + sealed.len());
            value.extend_from_slice(SEALED);
            value.extend_from_slice(&nonce);
            value.extend_from_slice(&sealed);
            Ok(value)
        }

        pub(super) fn open(&self, sealed: &[u8], store_key: &str) -> Result<Vec<u8>, Error> {
            let wrong = || {
                Error::store(
                    "stored token cannot be decrypted (another encryption key?)",
                    None,
                )
            };
            if sealed.len() < NONCE_LEN {
                return Err(wrong());
            }
            let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
            let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| wrong())?;
            self.cipher
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: store_key.as_bytes(),
                    },
                )
                .map_err(|_| wrong())
        }
    }

    impl fmt::Debug for EncryptionKey {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("EncryptionKey([redacted])")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        Token::new("tok-123", Duration::from_secs(600))
            .with_scope("a b")
            .with_token_type(TokenType::DPOP)
    }

    #[test]
    fn plain_round_trip_keeps_expiry_type_and_scope() {
        let codec = Codec::default();
        let t = token();
        let raw = codec.encode(&t, "k").unwrap();
        let back = codec.decode(&raw, "k").unwrap();
        assert_eq!(back.access_token().expose_secret(), "tok-123");
        assert_eq!(back.token_type(), &TokenType::DPOP);
        assert_eq!(back.scope(), Some("a b"));
        assert_eq!(back.expires_in(), Duration::from_secs(600));
        assert_eq!(unix_ms(back.expires_at()), unix_ms(t.expires_at()));
    }

    #[test]
    fn garbage_is_a_store_error() {
        let codec = Codec::default();
        for raw in [
            &b"not json"[..],
            b"{}",
            br#"{"v":2,"access_token":"a","token_type":"Bearer","issued_at_ms":1,"expires_at_ms":2}"#,
            br#"{"v":1,"access_token":"","token_type":"Bearer","issued_at_ms":1,"expires_at_ms":2}"#,
            br#"{"v":1,"access_token":"a","token_type":"Bearer","issued_at_ms":5,"expires_at_ms":2}"#,
            br#"{"v":1,"access_token":"a\nb","token_type":"Bearer","issued_at_ms":1,"expires_at_ms":2}"#,
        ] {
            let err = codec.decode(raw, "k").unwrap_err();
            assert!(err.is_store(), "{err}");
        }
        let huge = vec![b'{'; MAX_VALUE_LEN + 1];
        assert!(codec.decode(&huge, "k").unwrap_err().is_store());
    }

    fn stored(issued_at_ms: u64, expires_at_ms: u64) -> Vec<u8> {
        format!(
            r#"{{"v":1,"access_token":"a","token_type":"Bearer","issued_at_ms":{issued_at_ms},"expires_at_ms":{expires_at_ms}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_token_issued_in_the_future_is_used_for_its_lifetime_from_now() {
        let codec = Codec::default();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now_ms = unix_ms(now);
        // Issued an hour ahead of this clock, for 10 minutes.
        let raw = stored(now_ms + 3_600_000, now_ms + 3_600_000 + 600_000);
        let token = codec.decode_at(&raw, "k", now).unwrap();
        assert_eq!(token.issued_at(), now);
        assert_eq!(token.expires_at(), now + Duration::from_secs(600));
        assert_eq!(
            token.usable_for(Duration::ZERO, now),
            Duration::from_secs(600)
        );
        // Issued in the past: kept as is.
        let raw = stored(now_ms - 60_000, now_ms + 540_000);
        let token = codec.decode_at(&raw, "k", now).unwrap();
        assert_eq!(token.issued_at(), now - Duration::from_secs(60));
        assert_eq!(token.expires_at(), now + Duration::from_secs(540));
    }

    #[test]
    fn absurd_times_are_a_store_error_never_a_panic() {
        let codec = Codec::default();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now_ms = unix_ms(now);
        let skew = MAX_SKEW.as_millis() as u64;
        for (issued, expires) in [
            (u64::MAX, u64::MAX),
            (u64::MAX - 1, u64::MAX),
            (u64::MAX / 2, u64::MAX / 2 + 1000),
            (now_ms + skew + 1, now_ms + skew + 1001),
            (0, u64::MAX),
        ] {
            let err = codec
                .decode_at(&stored(issued, expires), "k", now)
                .unwrap_err();
            assert!(err.is_store(), "{err}");
        }
        // Right at the edge of the skew allowed: read, and issued now.
        let raw = stored(now_ms + skew, now_ms + skew + 1000);
        assert_eq!(codec.decode_at(&raw, "k", now).unwrap().issued_at(), now);
        // Issued at the epoch, expired long ago: readable (and not usable).
        let token = codec.decode_at(&stored(0, 1000), "k", now).unwrap();
        assert!(token.usable_for(Duration::ZERO, now).is_zero());
    }

    #[cfg(feature = "encryption")]
    #[test]
    fn sealed_values_need_the_same_key_and_store_key() {
        let k1 = Codec {
            key: Some(EncryptionKey::from_bytes([1; 32])),
        };
        let k2 = Codec {
            key: Some(EncryptionKey::from_bytes([2; 32])),
        };
        let plain = Codec::default();
        let raw = k1.encode(&token(), "k").unwrap();
        assert!(raw.starts_with(SEALED));
        assert!(
            !raw.windows(7).any(|w| w == b"tok-123"),
            "no token in clear"
        );
        assert_ne!(
            raw,
            k1.encode(&token(), "k").unwrap(),
            "fresh nonce each time"
        );
        assert_eq!(
            k1.decode(&raw, "k").unwrap().access_token().expose_secret(),
            "tok-123"
        );
        let wrong = k2.decode(&raw, "k").unwrap_err();
        assert!(wrong.is_store());
        assert!(!format!("{wrong} {wrong:?}").contains("tok-123"));
        assert!(k1.decode(&raw, "other-key").unwrap_err().is_store());
        assert!(plain.decode(&raw, "k").unwrap_err().is_store());
        let clear = plain.encode(&token(), "k").unwrap();
        assert!(k1.decode(&clear, "k").unwrap_err().is_store());
        let mut tampered = raw.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(k1.decode(&tampered, "k").unwrap_err().is_store());
        assert!(k1.decode(SEALED, "k").unwrap_err().is_store());
    }

    #[cfg(feature = "encryption")]
    #[test]
    fn key_constructors_check_length_and_hide_the_key() {
        assert!(EncryptionKey::from_slice(&[0; 31]).unwrap_err().is_config());
        assert!(EncryptionKey::from_hex("abcd").unwrap_err().is_config());
        let key = EncryptionKey::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(format!("{key:?}"), "EncryptionKey([redacted])");
    }
}
