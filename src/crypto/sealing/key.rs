//! The master key: parsing, generation, its key id, and the per-format keys derived from it.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::SealError;

const KID_LEN: usize = 8;
/// Domain separation, so the key id can never be mistaken for any other hash of the key.
const KID_CONTEXT: &[u8] = b"wxlogin-master-key-id";
/// HKDF `info` of the v2 (XChaCha20-Poly1305) key: v1 (AES-256-GCM) uses the master key's
/// bytes as they are, and no key is ever used by two algorithms.
const V2_KEY_INFO: &[u8] = b"wxlogin seal v2 xchacha20-poly1305";

/// A 256-bit master key. Wiped from memory on drop; `Debug` shows only its key id.
#[derive(Clone)]
pub struct MasterKey {
    /// The key as configured; also the AES-256-GCM key of `v1` texts.
    pub(in crate::crypto) bytes: [u8; 32],
    /// HKDF-SHA256 of `bytes` for `v2` texts.
    pub(super) v2: [u8; 32],
    pub(super) kid: String,
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
        let mut v2 = [0u8; 32];
        hkdf::Hkdf::<sha2_011::Sha256>::new(None, &bytes)
            .expand(V2_KEY_INFO, &mut v2)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self { bytes, v2, kid }
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
}

/// Whether `kid` has the shape of a key id (8 lower-case hex digits).
pub(super) fn is_key_id(kid: &str) -> bool {
    kid.len() == KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
        self.v2.zeroize();
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("kid", &self.kid).finish()
    }
}
