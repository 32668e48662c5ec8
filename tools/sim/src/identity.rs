//! What the simulated WeChat makes up: codes, session keys and request ids (random), openids
//! and unionids (derived by hashing, so they are stable across calls and restarts), and the
//! user profile that `/sim/userinfo` encrypts.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use rand::{Rng, distr::Alphanumeric};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// A `wx.login()` code: 32 chars of `[0-9A-Za-z]`, as seen in the wild.
pub(crate) fn new_code() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// A fresh session_key: base64 of 16 random bytes (24 chars).
pub(crate) fn new_session_key() -> String {
    STANDARD.encode(rand::random::<[u8; 16]>())
}

/// A request id in today's `rid: xxxxxxxx-xxxxxxxx-xxxxxxxx` shape; only for logs.
pub(crate) fn new_rid() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let (a, b): (u32, u32) = rand::random();
    format!("{secs:08x}-{a:08x}-{b:08x}")
}

/// 28 chars starting with `o`, like WeChat's ids: `o` + 27 chars of base64url of a digest.
fn id28(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefixed so that ("ab","c") and ("a","bc") differ.
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let enc = URL_SAFE_NO_PAD.encode(h.finalize());
    format!("o{}", &enc[..27])
}

/// Stable per (appid, user): the same person has a different openid in every app.
pub(crate) fn openid(appid: &str, user: &str) -> String {
    id28(&["wxlogin-sim openid", appid, user])
}

/// Stable per user across apps (WeChat: across the apps of one Open Platform account).
pub(crate) fn unionid(user: &str) -> String {
    id28(&["wxlogin-sim unionid", user])
}

/// The part of the profile that WeChat sends in clear as `rawData` (field order matters: the
/// signature is over these exact bytes).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawProfile {
    pub nick_name: String,
    pub gender: u8,
    pub language: &'static str,
    pub city: &'static str,
    pub province: &'static str,
    pub country: &'static str,
    pub avatar_url: String,
}

/// A deterministic profile for a simulated user, so tests can predict it.
pub(crate) fn raw_profile(user: &str) -> RawProfile {
    let digest = Sha256::digest(user.as_bytes());
    RawProfile {
        nick_name: user.to_owned(),
        gender: digest[0] % 3,
        language: "zh_CN",
        city: "Guangzhou",
        province: "Guangdong",
        country: "CN",
        avatar_url: format!(
            "https://thirdwx.qlogo.cn/mmopen/vi_32/{}/132",
            URL_SAFE_NO_PAD.encode(&digest[..24])
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_32_alphanumeric_chars() {
        let c = new_code();
        assert_eq!(c.len(), 32);
        assert!(c.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(c, new_code());
    }

    #[test]
    fn session_keys_decode_to_16_bytes() {
        let k = new_session_key();
        assert_eq!(k.len(), 24);
        assert_eq!(STANDARD.decode(k).unwrap().len(), 16);
    }

    #[test]
    fn openids_are_stable_per_app_and_differ_between_apps() {
        let a = openid("wxa", "alice");
        assert_eq!(a, openid("wxa", "alice"));
        assert_ne!(a, openid("wxb", "alice"));
        assert_ne!(a, openid("wxa", "bob"));
        assert_eq!(a.len(), 28);
        assert!(a.starts_with('o'));
        assert_eq!(unionid("alice").len(), 28);
        assert_ne!(unionid("alice"), unionid("bob"));
    }
}
