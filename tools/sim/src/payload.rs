//! What WeChat does to a user's profile before `wx.getUserInfo()` hands it to the mini program:
//! AES-128-CBC with PKCS#7 under the session key, and `signature = hex(sha1(rawData +
//! session_key))`. Written here from WeChat's description, not shared with wxlogin's decryption
//! (`wxlogin::crypto::wxbiz`), so that a mistake made on one side is caught by the other.

use base64::{Engine, engine::general_purpose::STANDARD};
use cbc::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use sha1::{Digest, Sha1};

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;

/// `base64(AES-128-CBC(session_key, iv, PKCS#7(plaintext)))`, the `encryptedData` field.
/// `None` if the session key is not the base64 of 16 bytes.
pub fn encrypt(session_key_b64: &str, iv: &[u8; 16], plaintext: &[u8]) -> Option<String> {
    let key: [u8; 16] = STANDARD.decode(session_key_b64).ok()?.try_into().ok()?;
    let enc = Aes128CbcEnc::new_from_slices(&key, iv).ok()?;
    Some(STANDARD.encode(enc.encrypt_padded_vec::<Pkcs7>(plaintext)))
}

/// `hex(sha1(rawData + session_key))`, the session key taken as the base64 text WeChat sent.
pub fn sign(raw_data: &str, session_key_b64: &str) -> String {
    let digest = Sha1::new()
        .chain_update(raw_data.as_bytes())
        .chain_update(session_key_b64.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // That the cipher is WeChat's is checked where it matters: wxlogin's tests decrypt what
    // this encrypts, with their own code, and check that code against WeChat's official vectors.
    #[test]
    fn a_key_that_is_not_16_bytes_is_refused() {
        assert!(encrypt("c2hvcnQ=", &[0; 16], b"x").is_none());
        let key = STANDARD.encode([7u8; 16]);
        let out = STANDARD
            .decode(encrypt(&key, &[0; 16], b"").unwrap())
            .unwrap();
        assert_eq!(out.len(), 16, "an empty plaintext is one block of padding");
    }

    #[test]
    fn the_signature_is_lowercase_hex_of_sha1() {
        // sha1("abc") is a well-known vector.
        assert_eq!(sign("a", "bc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
