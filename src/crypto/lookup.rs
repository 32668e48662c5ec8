//! Keyed hashes for looking a secret value up without keeping it in the clear: a user's phone
//! number is stored sealed, and beside it `HMAC-SHA256(lookup key, …)`, so the database can
//! index it, tell two users with the same number apart from two with different ones, and find a
//! user by number — without a plaintext column.
//!
//! The lookup key is not an encryption key and is never rotated with the master key: a new one
//! would change every stored hash. It comes from the `lookup_key` setting; unset, it is derived
//! from the primary master key (HKDF), which is fine until that key is rotated — set
//! `lookup_key` to a key of its own before a rotation (`docs/security.md`).

use hmac::{Hmac, Mac};
use zeroize::Zeroizing;

use super::MasterKey;

const FROM_MASTER_INFO: &[u8] = b"wxlogin lookup key v1";

/// The key of every lookup hash. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct LookupKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LookupKey(<redacted>)")
    }
}

impl LookupKey {
    /// A key of its own (the `lookup_key` setting: 32 bytes, base64, as `wxlogin gen-key` makes).
    pub fn of(key: &MasterKey) -> Self {
        LookupKey(Zeroizing::new(key.bytes))
    }

    /// Derived from the primary master key, for deployments that set no `lookup_key`.
    pub fn derived_from(master: &MasterKey) -> Self {
        let mut out = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2_011::Sha256>::new(None, &master.bytes)
            .expand(FROM_MASTER_INFO, out.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        LookupKey(out)
    }

    /// `hex(HMAC-SHA256(key, label ‖ 0 ‖ part ‖ 0 ‖ …))`: the label keeps hashes of different
    /// kinds of values apart.
    pub fn hash(&self, label: &str, parts: &[&str]) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(self.0.as_ref())
            .expect("HMAC takes a key of any length");
        mac.update(label.as_bytes());
        for p in parts {
            mac.update(b"\0");
            mac.update(p.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_hash_is_stable_per_key_and_label_and_differs_otherwise() {
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        let ka = LookupKey::derived_from(&a);
        let h = ka.hash("phone", &["wx0123456789abcdef", "86", "13800000000"]);
        assert_eq!(h.len(), 64);
        assert_eq!(
            h,
            LookupKey::derived_from(&a).hash("phone", &["wx0123456789abcdef", "86", "13800000000"])
        );
        assert_ne!(
            h,
            LookupKey::derived_from(&b).hash("phone", &["wx0123456789abcdef", "86", "13800000000"])
        );
        assert_ne!(
            h,
            ka.hash("other", &["wx0123456789abcdef", "86", "13800000000"])
        );
        assert_ne!(
            h,
            ka.hash("phone", &["wx0123456789abcdef", "8613800000000"]),
            "parts are delimited"
        );
        assert_ne!(
            h,
            LookupKey::of(&a).hash("phone", &["wx0123456789abcdef", "86", "13800000000"]),
            "derived ≠ the key itself"
        );
        assert!(!h.contains("13800000000"));
    }
}
