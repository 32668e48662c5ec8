//! WXBizDataCrypt: decryption (and, for the simulator, encryption) of the `encryptedData`
//! that `wx.getUserInfo` / `getPhoneNumber` return, and the `rawData` SHA-1 signature.
//!
//! Strict on purpose: CBC without a MAC means a wrong key "decrypts" to garbage, and about 1 in
//! 256 garbage outputs has plausible padding, so padding, JSON shape and `watermark.appid` are
//! all checked before anything is returned.

use aes::Aes128;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use cbc::cipher::{
    BlockModeDecrypt, BlockModeEncrypt, KeyIvInit,
    block_padding::{NoPadding, Pkcs7},
};
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type Aes128CbcDec = cbc::Decryptor<Aes128>;
type Aes128CbcEnc = cbc::Encryptor<Aes128>;

const BLOCK: usize = 16;

/// Why user data could not be decrypted or verified. [`WxBizError::code`] gives the official
/// demo's numbers. Display texts are short and never contain input material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WxBizError {
    /// -41001: the session key is not base64 of exactly 16 bytes.
    #[error("session key is not 16 bytes of base64")]
    IllegalAesKey,
    /// -41002: the iv is not base64 of exactly 16 bytes.
    #[error("iv is not 16 bytes of base64")]
    IllegalIv,
    /// -41003: the data does not decrypt to this app's user data. One variant for bad length,
    /// bad padding, bad JSON and foreign appid alike: telling them apart to a caller would be a
    /// padding oracle.
    #[error("encrypted data is not valid user data for this app")]
    IllegalBuffer,
    /// -41004: the encrypted data is not standard base64 (often a `+` turned into a space).
    #[error("encrypted data is not valid base64")]
    DecodeBase64,
    /// -41005: the `rawData` signature does not match (for callers of [`verify_signature`]).
    #[error("rawData signature does not match")]
    SignatureMismatch,
}

impl WxBizError {
    /// The official demo's error code.
    pub fn code(&self) -> i32 {
        match self {
            WxBizError::IllegalAesKey => -41001,
            WxBizError::IllegalIv => -41002,
            WxBizError::IllegalBuffer => -41003,
            WxBizError::DecodeBase64 => -41004,
            WxBizError::SignatureMismatch => -41005,
        }
    }
}

/// Decrypts `encryptedData` with the user's `session_key` and checks it belongs to
/// `expected_appid`. Returns the JSON object (`openId`, `unionId`, `nickName`, …, `watermark`).
///
/// All three inputs are standard base64 with padding, decoded strictly: whitespace (such as a
/// `+` that form decoding turned into a space) is an error, never silently dropped.
pub fn decrypt(
    session_key_b64: &str,
    encrypted_data_b64: &str,
    iv_b64: &str,
    expected_appid: &str,
) -> Result<Map<String, Value>, WxBizError> {
    let key = decode_16(session_key_b64).ok_or(WxBizError::IllegalAesKey)?;
    let iv = decode_16(iv_b64).ok_or(WxBizError::IllegalIv)?;
    let mut buf = STANDARD
        .decode(encrypted_data_b64)
        .map_err(|_| WxBizError::DecodeBase64)?;
    if buf.is_empty() || !buf.len().is_multiple_of(BLOCK) {
        return Err(WxBizError::IllegalBuffer);
    }

    let dec =
        Aes128CbcDec::new_from_slices(&key[..], &iv[..]).map_err(|_| WxBizError::IllegalAesKey)?;
    // NoPadding + our own check, so "strict PKCS#7" is spelled out here rather than depending
    // on how lenient a given block-padding release is.
    let padded = dec
        .decrypt_padded::<NoPadding>(&mut buf)
        .map_err(|_| WxBizError::IllegalBuffer)?;
    let plain = strip_pkcs7(padded).ok_or(WxBizError::IllegalBuffer)?;

    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(plain) else {
        return Err(WxBizError::IllegalBuffer);
    };
    let watermark_appid = map
        .get("watermark")
        .and_then(|w| w.get("appid"))
        .and_then(Value::as_str);
    match watermark_appid {
        Some(appid) if !appid.is_empty() && appid == expected_appid => Ok(map),
        _ => Err(WxBizError::IllegalBuffer),
    }
}

/// Encrypts `plaintext` the way WeChat does (AES-128-CBC, PKCS#7) and returns standard base64.
/// The simulator uses it to play `wx.getUserInfo`; production code only decrypts.
pub fn encrypt(
    session_key_b64: &str,
    iv: &[u8; 16],
    plaintext: &[u8],
) -> Result<String, WxBizError> {
    let key = decode_16(session_key_b64).ok_or(WxBizError::IllegalAesKey)?;
    let enc = Aes128CbcEnc::new_from_slices(&key[..], iv).map_err(|_| WxBizError::IllegalAesKey)?;
    Ok(STANDARD.encode(enc.encrypt_padded_vec::<Pkcs7>(plaintext)))
}

/// `hex(sha1(rawData + session_key))`, with the session key as the base64 string WeChat sent
/// (not its decoded bytes): that is how WeChat computes `signature`.
pub fn sign_raw_data(raw_data: &str, session_key_b64: &str) -> String {
    hex::encode(raw_signature(raw_data, session_key_b64))
}

/// Checks a `rawData` signature in constant time. Accepts upper- or lower-case hex; anything
/// that is not 40 hex digits is simply a mismatch.
pub fn verify_signature(raw_data: &str, session_key_b64: &str, signature_hex: &str) -> bool {
    let Ok(given) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let expected = raw_signature(raw_data, session_key_b64);
    // ct_eq on slices of different lengths is false without looking at the contents; the
    // length itself is public (always 20), so nothing leaks.
    expected.as_slice().ct_eq(&given).into()
}

fn raw_signature(raw_data: &str, session_key_b64: &str) -> [u8; 20] {
    Sha1::new()
        .chain_update(raw_data.as_bytes())
        .chain_update(session_key_b64.as_bytes())
        .finalize()
        .into()
}

/// Strict standard base64 of exactly 16 bytes; the decoded key is wiped when dropped.
fn decode_16(b64: &str) -> Option<Zeroizing<[u8; 16]>> {
    let bytes = Zeroizing::new(STANDARD.decode(b64).ok()?);
    let mut out = Zeroizing::new([0u8; 16]);
    if bytes.len() != out.len() {
        return None;
    }
    out.copy_from_slice(&bytes);
    Some(out)
}

/// Strict PKCS#7 for 16-byte blocks: the last byte n is 1..=16 and the last n bytes all equal n.
fn strip_pkcs7(data: &[u8]) -> Option<&[u8]> {
    let n = usize::from(*data.last()?);
    if n == 0 || n > BLOCK || n > data.len() {
        return None;
    }
    let (body, pad) = data.split_at(data.len() - n);
    pad.iter().all(|&b| usize::from(b) == n).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_pkcs7_accepts_full_and_partial_padding() {
        assert_eq!(strip_pkcs7(b"abc\x01"), Some(&b"abc"[..]));
        assert_eq!(strip_pkcs7(&[16u8; 16]), Some(&b""[..]));
        assert_eq!(
            strip_pkcs7(b"abcdefghijklm\x03\x03\x03"),
            Some(&b"abcdefghijklm"[..])
        );
    }

    #[test]
    fn strict_pkcs7_rejects_zero_oversized_and_mixed_padding() {
        assert_eq!(strip_pkcs7(b"abc\x00"), None);
        assert_eq!(strip_pkcs7(&[17u8; 32]), None);
        assert_eq!(strip_pkcs7(b"abcdefghijklm\x02\x03\x03"), None);
        assert_eq!(strip_pkcs7(b""), None);
    }

    #[test]
    fn a_key_of_15_or_17_bytes_is_not_a_session_key() {
        assert!(decode_16(&STANDARD.encode([0u8; 15])).is_none());
        assert!(decode_16(&STANDARD.encode([0u8; 17])).is_none());
        assert!(decode_16(&STANDARD.encode([7u8; 16])).is_some());
    }
}
