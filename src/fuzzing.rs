//! Entry points for the `fuzz/` crate (`cargo fuzz`): every parser of outside input, callable
//! on raw bytes without a server. Not an API: they exist so the fuzz targets reach code that
//! is private to its module, and each checks the invariants its parser promises.

use base64::{Engine as _, engine::general_purpose::STANDARD};

use crate::{
    crypto::wxbiz,
    ingress::{self, validate},
    wechat,
};

/// A WeChat code2Session answer: any status, any body. Never panics; a success always carries
/// a non-empty openid and session_key.
pub fn wechat_answer(status: u16, body: &[u8]) {
    let parsed = wechat::parse_answer(status, body);
    if let Ok(session) = &parsed.result {
        assert!(!session.openid.is_empty());
        assert!(!session.session_key.expose().is_empty());
        assert!((200..300).contains(&status));
    }
    if let Some(errmsg) = &parsed.errmsg {
        assert!(
            errmsg.chars().count() <= 200,
            "errmsg is capped for the logs"
        );
    }
}

/// A login body, as JSON (`form == false`) or a form, then the checks the handler applies.
pub fn login_body(form: bool, body: &[u8]) {
    let media = if form {
        ingress::fuzz::Media::Form
    } else {
        ingress::fuzz::Media::Json
    };
    if let Ok(login) = ingress::fuzz::parse_login(media, body)
        && let Some(serde_json::Value::String(code)) = &login.code
        && validate::is_plausible_code(code)
    {
        // Only such codes are ever sealed and published.
        assert!(code.is_ascii() && (8..=128).contains(&code.len()));
    }
}

/// The session key, iv and appid the decrypt targets use.
pub const FUZZ_SESSION_KEY: &str = "HyVFkGl5F5OQWJZZaNzBBg==";
pub const FUZZ_APPID: &str = "wx00000000000000a1";
pub const FUZZ_OPENID: &str = "oFuzz";

/// A decrypt request body as a client sends it, opened with a fixed session key.
pub fn decrypt_body(body: &[u8]) {
    if let Ok(req) = ingress::fuzz::parse_decrypt(body) {
        let opened = ingress::fuzz::open_decrypt(FUZZ_SESSION_KEY, &req, FUZZ_APPID, FUZZ_OPENID);
        if let Ok(data) = opened {
            assert_eq!(data["watermark"]["appid"], FUZZ_APPID);
        }
    }
}

/// Arbitrary plaintext encrypted as WeChat would, then decrypted: it must come back exactly
/// when it is a JSON object with this app's watermark (and, if it names one, this openid).
pub fn decrypt_plaintext(iv: [u8; 16], plaintext: &[u8]) {
    let encrypted = wxbiz::encrypt(FUZZ_SESSION_KEY, &iv, plaintext).expect("the key is valid");
    let req = ingress::fuzz::decrypt_request(encrypted, STANDARD.encode(iv));
    let opened = ingress::fuzz::open_decrypt(FUZZ_SESSION_KEY, &req, FUZZ_APPID, FUZZ_OPENID);
    let expected = match serde_json::from_slice::<serde_json::Value>(plaintext) {
        Ok(serde_json::Value::Object(map)) => {
            map.get("watermark").and_then(|w| w.get("appid"))
                == Some(&serde_json::Value::from(FUZZ_APPID))
                && map
                    .get("openId")
                    .and_then(serde_json::Value::as_str)
                    .is_none_or(|o| o == FUZZ_OPENID)
        }
        _ => false,
    };
    assert_eq!(opened.is_ok(), expected);
    if let Ok(data) = opened {
        assert_eq!(
            serde_json::Value::Object(data),
            serde_json::from_slice::<serde_json::Value>(plaintext).unwrap()
        );
    }
}
