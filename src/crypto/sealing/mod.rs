//! Sealing of our own secrets (WeChat session keys at rest, secrets handed between roles) and
//! authentication tags over what one role tells another, under a master key, with rotation.
//!
//! Formats, both `<version>.<kid>.<base64url-nopad(nonce ‖ ciphertext ‖ tag16)>`:
//! - `v2`: XChaCha20-Poly1305 under an HKDF-SHA256 subkey of the master key, a fresh random
//!   192-bit nonce per seal. Random nonces that long have no practical budget: after 2^64 seals
//!   under one key the chance that any two share a nonce is about 2^-65 (birthday bound
//!   n²/2^193), while AES-GCM's 96-bit nonces reach 2^-33 at 2^32 seals.
//! - `v1`: AES-256-GCM under the master key's bytes, a random 96-bit nonce: safe for about
//!   2^32 seals per key. Always opened; written only while [`SealFormat::V1`] is configured,
//!   for a fleet that still runs builds reading only `v1` (a rolling upgrade).
//!
//! The key id lets a [`Keyring`] open texts sealed under an older master key after rotation
//! (new primary, old keys kept in `previous` until re-sealed). Each purpose has its own
//! associated data (AAD), so a text sealed for one purpose never opens for another.

mod key;

use aes_gcm::{
    Aes256Gcm,
    aead::{Aead, KeyInit, Nonce, Payload},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::XChaCha20Poly1305;
use serde::Deserialize;

pub use key::MasterKey;

const TAG_LEN: usize = 16;

/// What went wrong sealing or opening. Never carries key or plaintext material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not `v1|v2.<8 hex>.<base64url>` with room for a nonce and a tag, or not UTF-8 when a
    /// string was expected.
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

/// The format new texts are sealed in (`seal_format` in the settings). Both are always opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealFormat {
    /// AES-256-GCM, and the first formats of what is sealed: for a fleet that still runs
    /// builds that read only these (see `docs/security.md`, "Upgrading the seals").
    V1,
    /// XChaCha20-Poly1305, and the bound formats of codes, sessions and results.
    #[default]
    V2,
}

impl SealFormat {
    fn tag(self) -> &'static str {
        match self {
            SealFormat::V1 => "v1",
            SealFormat::V2 => "v2",
        }
    }

    fn nonce_len(self) -> usize {
        match self {
            SealFormat::V1 => 12,
            SealFormat::V2 => 24,
        }
    }

    /// The format of a sealed text, from its first part alone (not checked further).
    pub fn of(sealed: &str) -> Option<SealFormat> {
        match sealed.split('.').next() {
            Some("v1") => Some(SealFormat::V1),
            Some("v2") => Some(SealFormat::V2),
            _ => None,
        }
    }
}

/// The primary key (used to seal) and previous keys (only used to open), chosen by key id.
#[derive(Clone, Debug)]
pub struct Keyring {
    primary: MasterKey,
    previous: Vec<MasterKey>,
    writes: SealFormat,
}

impl Keyring {
    /// A ring that seals in the current format ([`SealFormat::V2`]).
    pub fn new(primary: MasterKey, previous: Vec<MasterKey>) -> Self {
        Self {
            primary,
            previous,
            writes: SealFormat::default(),
        }
    }

    /// The same ring, sealing in `format`.
    pub fn writing(self, format: SealFormat) -> Self {
        Self {
            writes: format,
            ..self
        }
    }

    /// The format [`Keyring::seal`] writes; also tells the callers which formats of their own
    /// records to write and accept (`V1`: the fleet may still run builds of the first formats).
    pub fn writes(&self) -> SealFormat {
        self.writes
    }

    /// The key id new texts are sealed under.
    /// The key new texts are sealed with (for keys derived from it: [`crate::crypto::LookupKey`]).
    pub(crate) fn primary(&self) -> &MasterKey {
        &self.primary
    }

    pub fn primary_key_id(&self) -> String {
        self.primary.key_id()
    }

    /// Seals `plaintext` under the primary key in the configured format, binding `aad` (e.g.
    /// `appid:openid`) so the text cannot be moved to another record.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> String {
        self.seal_as(self.writes, plaintext, aad)
    }

    /// [`Keyring::seal`] in a given format.
    ///
    /// # Panics
    /// If the OS RNG fails, or the plaintext exceeds the cipher's limit (64 GiB for AES-GCM,
    /// 256 GiB for XChaCha20-Poly1305).
    pub fn seal_as(&self, format: SealFormat, plaintext: &[u8], aad: &[u8]) -> String {
        let mut body = vec![0u8; format.nonce_len()];
        getrandom::fill(&mut body).expect("OS random number generator failed");
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        let ciphertext = crypt(format, &self.primary, &body, payload, true)
            .expect("sealing only fails for inputs over the cipher's limit");
        body.extend_from_slice(&ciphertext);
        format!(
            "{}.{}.{}",
            format.tag(),
            self.primary.kid,
            URL_SAFE_NO_PAD.encode(body)
        )
    }

    /// Opens a text sealed by [`Keyring::seal`] (either format) under any key of this ring,
    /// with the same `aad`.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let (format, kid, body) = parse(sealed)?;
        let mut candidates = std::iter::once(&self.primary)
            .chain(&self.previous)
            .filter(|k| k.kid == kid)
            .peekable();
        if candidates.peek().is_none() {
            return Err(SealError::UnknownKey {
                kid: kid.to_owned(),
            });
        }
        let (nonce, ciphertext) = body.split_at(format.nonce_len());
        let payload = || Payload {
            msg: ciphertext,
            aad,
        };
        // More than one candidate only on a 32-bit key id collision; try each.
        candidates
            .find_map(|key| crypt(format, key, nonce, payload(), false).ok())
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

    /// An authentication tag over `aad` (a `v2` seal of nothing): whoever lacks the master key
    /// cannot make one, and it verifies only for the same `aad`. Always `v2`: only builds that
    /// read `v2` look for tags.
    pub fn tag(&self, aad: &[u8]) -> String {
        self.seal_as(SealFormat::V2, b"", aad)
    }

    /// Checks a [`Keyring::tag`] over `aad`.
    pub fn verify_tag(&self, tag: &str, aad: &[u8]) -> Result<(), SealError> {
        if SealFormat::of(tag) != Some(SealFormat::V2) {
            return Err(SealError::Malformed);
        }
        match self.open(tag, aad)?.is_empty() {
            true => Ok(()),
            false => Err(SealError::Invalid),
        }
    }

    /// Whether `sealed` should be sealed again: under an older key (after rotation), or in an
    /// older format than the ring writes. Malformed texts answer `false`: [`Keyring::open`]
    /// will report them.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        parse(sealed).is_ok_and(|(format, kid, _)| {
            kid != self.primary.kid || (format == SealFormat::V1 && self.writes == SealFormat::V2)
        })
    }
}

/// Encrypts (`seal`) or decrypts one payload in `format` under `key`'s key for that format.
fn crypt(
    format: SealFormat,
    key: &MasterKey,
    nonce: &[u8],
    payload: Payload<'_, '_>,
    seal: bool,
) -> Result<Vec<u8>, SealError> {
    match format {
        SealFormat::V1 => {
            let cipher = Aes256Gcm::new(&key.bytes.into());
            let nonce = Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| SealError::Malformed)?;
            match seal {
                true => cipher.encrypt(&nonce, payload),
                false => cipher.decrypt(&nonce, payload),
            }
        }
        SealFormat::V2 => {
            let cipher = XChaCha20Poly1305::new(&key.v2.into());
            let nonce =
                Nonce::<XChaCha20Poly1305>::try_from(nonce).map_err(|_| SealError::Malformed)?;
            match seal {
                true => cipher.encrypt(&nonce, payload),
                false => cipher.decrypt(&nonce, payload),
            }
        }
    }
    .map_err(|_| SealError::Invalid)
}

/// Splits `<version>.<kid>.<body>` and decodes the body; checks only shape, never keys.
fn parse(sealed: &str) -> Result<(SealFormat, &str, Vec<u8>), SealError> {
    let mut parts = sealed.split('.');
    let (Some(version), Some(kid), Some(body), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SealError::Malformed);
    };
    let format = SealFormat::of(version).ok_or(SealError::Malformed)?;
    if !key::is_key_id(kid) {
        return Err(SealError::Malformed);
    }
    let body = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| SealError::Malformed)?;
    if body.len() < format.nonce_len() + TAG_LEN {
        return Err(SealError::Malformed);
    }
    Ok((format, kid, body))
}

#[cfg(test)]
mod tests;
