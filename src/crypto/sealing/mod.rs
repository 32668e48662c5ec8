//! Sealing of our own secrets (WeChat session keys at rest, secrets handed between roles) under
//! a master key, with rotation.
//!
//! Format: `v1.<kid>.<base64url-nopad(nonce12 ‖ ciphertext ‖ tag16)>`, AES-256-GCM, a fresh
//! random 96-bit nonce per seal. The key id lets a [`Keyring`] open texts sealed under an older
//! master key after rotation (new primary, old keys kept in `previous` until re-sealed).
//! Random nonces are safe for about 2^32 seals per key; rotate well before that.

use std::fmt;

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KID_LEN: usize = 8;
/// Domain separation, so the key id can never be mistaken for any other hash of the key.
const KID_CONTEXT: &[u8] = b"wxlogin-master-key-id";

/// What went wrong sealing or opening. Never carries key or plaintext material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not `v1.<8 hex>.<base64url>` with room for a nonce and a tag, or not UTF-8 when a string
    /// was expected.
    #[error("sealed text is malformed")]
    Malformed,
    /// Sealed under a key this keyring does not hold (rotated out, or another deployment's).
    #[error("sealed under unknown master key {kid}")]
    UnknownKey { kid: String },
    /// Authentication failed: tampered text, wrong associated data, or a key id collision.
    #[error("sealed text failed authentication")]
    Invalid,
    /// A master key that is not base64 of exactly 32 bytes.
    #[error("master key must be base64 of exactly 32 bytes")]
    BadKey,
}

/// A 256-bit master key. Wiped from memory on drop; `Debug` shows only its key id.
#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; 32],
    kid: String,
}

impl MasterKey {
    /// Parses standard base64 (padding required) of exactly 32 bytes. Surrounding whitespace is
    /// ignored because keys usually come from files or environment variables with a newline.
    pub fn from_base64(b64: &str) -> Result<Self, SealError> {
        let decoded = Zeroizing::new(STANDARD.decode(b64.trim()).map_err(|_| SealError::BadKey)?);
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| SealError::BadKey)?;
        Ok(Self::from_bytes(bytes))
    }

    /// A fresh key from the operating system's random number generator.
    ///
    /// # Panics
    /// If the OS RNG fails: no key at all is better than a weak one.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("OS random number generator failed");
        Self::from_bytes(bytes)
    }

    fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(KID_CONTEXT)
            .chain_update(bytes)
            .finalize();
        let mut kid = hex::encode(digest);
        kid.truncate(KID_LEN);
        Self { bytes, kid }
    }

    /// Standard base64, the form [`MasterKey::from_base64`] reads. Handle the result as a secret.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// First 8 hex digits of sha256("wxlogin-master-key-id" ‖ key): names the key in sealed
    /// texts and logs without revealing it.
    pub fn key_id(&self) -> String {
        self.kid.clone()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.bytes.into())
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("kid", &self.kid).finish()
    }
}

/// The primary key (used to seal) and previous keys (only used to open), chosen by key id.
#[derive(Clone, Debug)]
pub struct Keyring {
    primary: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(primary: MasterKey, previous: Vec<MasterKey>) -> Self {
        Self { primary, previous }
    }

    /// The key id new texts are sealed under.
    pub fn primary_key_id(&self) -> String {
        self.primary.key_id()
    }

    /// Seals `plaintext` under the primary key, binding `aad` (e.g. `appid:openid`) so the text
    /// cannot be moved to another record.
    ///
    /// # Panics
    /// If the OS RNG fails, or the plaintext exceeds AES-GCM's 64 GiB limit.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("OS random number generator failed");
        let ciphertext = self
            .primary
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM only fails for inputs over 64 GiB");
        let mut body = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&ciphertext);
        format!(
            "{VERSION}.{}.{}",
            self.primary.kid,
            URL_SAFE_NO_PAD.encode(body)
        )
    }

    /// Opens a text sealed by [`Keyring::seal`] under any key of this ring, with the same `aad`.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let (kid, body) = parse(sealed)?;
        let mut candidates = std::iter::once(&self.primary)
            .chain(&self.previous)
            .filter(|k| k.kid == kid)
            .peekable();
        if candidates.peek().is_none() {
            return Err(SealError::UnknownKey {
                kid: kid.to_owned(),
            });
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        // More than one candidate only on a 32-bit key id collision; try each.
        candidates
            .find_map(|key| {
                key.cipher()
                    .decrypt(
                        &Nonce::from(nonce),
                        Payload {
                            msg: ciphertext,
                            aad,
                        },
                    )
                    .ok()
            })
            .ok_or(SealError::Invalid)
    }

    /// [`Keyring::seal`] for text.
    pub fn seal_str(&self, plaintext: &str, aad: &[u8]) -> String {
        self.seal(plaintext.as_bytes(), aad)
    }

    /// [`Keyring::open`] for text sealed with [`Keyring::seal_str`].
    pub fn open_string(&self, sealed: &str, aad: &[u8]) -> Result<String, SealError> {
        String::from_utf8(self.open(sealed, aad)?).map_err(|_| SealError::Malformed)
    }

    /// Whether `sealed` was sealed under an older key and should be re-sealed (after rotation).
    /// Malformed texts answer `false`: [`Keyring::open`] will report them.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        parse(sealed).is_ok_and(|(kid, _)| kid != self.primary.kid)
    }
}

/// Splits `v1.<kid>.<body>` and decodes the body; checks only shape, never keys.
fn parse(sealed: &str) -> Result<(&str, Vec<u8>), SealError> {
    let mut parts = sealed.split('.');
    let (Some(version), Some(kid), Some(body), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SealError::Malformed);
    };
    let kid_ok = kid.len() == KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if version != VERSION || !kid_ok {
        return Err(SealError::Malformed);
    }
    let body = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| SealError::Malformed)?;
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(SealError::Malformed);
    }
    Ok((kid, body))
}

#[cfg(test)]
mod tests;
