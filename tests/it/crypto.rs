//! WXBizDataCrypt through its public API: the official demo's vectors, round trips with
//! `encrypt`, and every error code. (Sealing is tested in `src/crypto/sealing/tests.rs`.)

use base64::{Engine as _, engine::general_purpose::STANDARD};
use wxlogin::crypto::{
    WxBizError,
    wxbiz::{self, decrypt, encrypt, sign_raw_data, verify_signature},
};

// The official WXBizDataCrypt demo (all language versions ship the same sample).
const DEMO_APPID: &str = "wx4f4bc4dec97d474b";
const DEMO_SESSION_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
const DEMO_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
const DEMO_DATA: &str = concat!(
    "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC",
    "+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poO",
    "FtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8",
    "xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB",
    "6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJd",
    "NiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOy",
    "uxINew==",
);

const SIGN_RAW_DATA: &str = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
const SIGN_SESSION_KEY: &str = "HyVFkGl5F5OQWJZZaNzBBg==";
const SIGN_EXPECTED: &str = "75e81ceda165f4ffa64f4068af58c64b8f54b88c";

const IV: [u8; 16] = *b"0123456789abcdef";

fn user_json(appid: &str) -> String {
    format!(
        r#"{{"openId":"oUser1","nickName":"Band","gender":1,"watermark":{{"timestamp":1477314187,"appid":"{appid}"}}}}"#
    )
}

fn iv_b64() -> String {
    STANDARD.encode(IV)
}

// ---------- WXBizDataCrypt ----------

#[test]
fn the_official_demo_sample_decrypts_to_its_user() {
    let user = decrypt(DEMO_SESSION_KEY, DEMO_DATA, DEMO_IV, DEMO_APPID).unwrap();
    assert_eq!(user["openId"], "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
    assert_eq!(user["nickName"], "Band");
    assert_eq!(user["watermark"]["appid"], DEMO_APPID);
}

#[test]
fn the_official_demo_sample_is_refused_for_another_appid() {
    let err = decrypt(DEMO_SESSION_KEY, DEMO_DATA, DEMO_IV, "wx0000000000000000").unwrap_err();
    assert_eq!(err, WxBizError::IllegalBuffer);
    assert_eq!(err.code(), -41003);
}

#[test]
fn what_encrypt_produces_decrypt_returns() {
    let data = encrypt(DEMO_SESSION_KEY, &IV, user_json("wxapp").as_bytes()).unwrap();
    let user = decrypt(DEMO_SESSION_KEY, &data, &iv_b64(), "wxapp").unwrap();
    assert_eq!(user["openId"], "oUser1");
    assert_eq!(user["gender"], 1);
}

#[test]
fn encrypt_matches_the_official_ciphertext_for_the_official_plaintext() {
    let user = decrypt(DEMO_SESSION_KEY, DEMO_DATA, DEMO_IV, DEMO_APPID).unwrap();
    // Re-encrypting the exact decrypted bytes must give back WeChat's ciphertext.
    let key = STANDARD.decode(DEMO_SESSION_KEY).unwrap();
    let iv: [u8; 16] = STANDARD.decode(DEMO_IV).unwrap().try_into().unwrap();
    let plain = raw_plaintext(&key, &iv, DEMO_DATA);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&plain).unwrap(),
        serde_json::Value::Object(user)
    );
    assert_eq!(encrypt(DEMO_SESSION_KEY, &iv, &plain).unwrap(), DEMO_DATA);
}

/// Plain AES-128-CBC + PKCS#7 decryption with no checks, to get the exact demo bytes.
fn raw_plaintext(key: &[u8], iv: &[u8; 16], data_b64: &str) -> Vec<u8> {
    use cbc::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
    cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
        .unwrap()
        .decrypt_padded_vec::<Pkcs7>(&STANDARD.decode(data_b64).unwrap())
        .unwrap()
}

#[test]
fn a_session_key_that_is_not_16_bytes_gives_41001() {
    let data = encrypt(DEMO_SESSION_KEY, &IV, user_json("wxapp").as_bytes()).unwrap();
    for key in [
        STANDARD.encode([1u8; 15]),
        STANDARD.encode([1u8; 24]),
        String::new(),
        "not base64!".to_owned(),
    ] {
        let err = decrypt(&key, &data, &iv_b64(), "wxapp").unwrap_err();
        assert_eq!(err, WxBizError::IllegalAesKey, "key {key:?}");
        assert_eq!(err.code(), -41001);
    }
    assert_eq!(
        encrypt(&STANDARD.encode([1u8; 32]), &IV, b"x")
            .unwrap_err()
            .code(),
        -41001
    );
}

#[test]
fn an_iv_that_is_not_16_bytes_gives_41002() {
    let data = encrypt(DEMO_SESSION_KEY, &IV, user_json("wxapp").as_bytes()).unwrap();
    for iv in [STANDARD.encode([1u8; 12]), String::new(), "%%%".to_owned()] {
        let err = decrypt(DEMO_SESSION_KEY, &data, &iv, "wxapp").unwrap_err();
        assert_eq!(err, WxBizError::IllegalIv, "iv {iv:?}");
        assert_eq!(err.code(), -41002);
    }
}

#[test]
fn data_that_is_not_base64_gives_41004() {
    let err = decrypt(DEMO_SESSION_KEY, "@@not-base64@@", DEMO_IV, DEMO_APPID).unwrap_err();
    assert_eq!(err, WxBizError::DecodeBase64);
    assert_eq!(err.code(), -41004);
}

#[test]
fn a_plus_turned_into_a_space_fails_cleanly_instead_of_decrypting_garbage() {
    // The demo data contains '+' several times; form decoding turns each into ' '.
    let mangled = DEMO_DATA.replace('+', " ");
    assert_ne!(mangled, DEMO_DATA);
    let err = decrypt(DEMO_SESSION_KEY, &mangled, DEMO_IV, DEMO_APPID).unwrap_err();
    assert_eq!(err.code(), -41004);
    // In the key or the iv it is their own error, not a panic.
    let key_with_space = "tiihtNczf5v6AKRyjwEUhQ==".replace('5', " ");
    assert_eq!(
        decrypt(&key_with_space, DEMO_DATA, DEMO_IV, DEMO_APPID)
            .unwrap_err()
            .code(),
        -41001
    );
    let iv = STANDARD.encode([0xfbu8; 16]); // "+/v7..." style: contains '+'
    assert!(iv.contains('+'));
    assert_eq!(
        decrypt(
            DEMO_SESSION_KEY,
            DEMO_DATA,
            &iv.replace('+', " "),
            DEMO_APPID
        )
        .unwrap_err()
        .code(),
        -41002
    );
}

#[test]
fn empty_or_truncated_data_gives_41003() {
    let full = STANDARD.decode(DEMO_DATA).unwrap();
    for bytes in [
        &full[..0],
        &full[..full.len() - 1],
        &full[..15],
        &full[..full.len() - 16],
    ] {
        let data = STANDARD.encode(bytes);
        let err = decrypt(DEMO_SESSION_KEY, &data, DEMO_IV, DEMO_APPID).unwrap_err();
        assert_eq!(err.code(), -41003, "length {}", bytes.len());
    }
}

#[test]
fn the_wrong_session_key_gives_41003() {
    let data = encrypt(DEMO_SESSION_KEY, &IV, user_json("wxapp").as_bytes()).unwrap();
    // Many keys, because about 1 in 256 wrong keys yields plausible padding; the JSON and appid
    // checks must catch those too.
    for i in 0..=255u8 {
        let key = STANDARD.encode([i; 16]);
        let err = decrypt(&key, &data, &iv_b64(), "wxapp").unwrap_err();
        assert_eq!(err, WxBizError::IllegalBuffer, "key byte {i}");
    }
}

#[test]
fn the_wrong_iv_gives_41003() {
    let data = encrypt(DEMO_SESSION_KEY, &IV, user_json("wxapp").as_bytes()).unwrap();
    let err = decrypt(
        DEMO_SESSION_KEY,
        &data,
        &STANDARD.encode([9u8; 16]),
        "wxapp",
    )
    .unwrap_err();
    assert_eq!(err.code(), -41003);
}

#[test]
fn a_watermark_of_another_appid_gives_41003() {
    let data = encrypt(DEMO_SESSION_KEY, &IV, user_json("wxother").as_bytes()).unwrap();
    assert_eq!(
        decrypt(DEMO_SESSION_KEY, &data, &iv_b64(), "wxapp")
            .unwrap_err()
            .code(),
        -41003
    );
}

#[test]
fn plaintext_without_a_watermark_or_not_an_object_gives_41003() {
    for plain in [
        r#"{"openId":"x"}"#,
        r#"["watermark"]"#,
        "not json",
        r#"{"watermark":{"appid":7}}"#,
    ] {
        let data = encrypt(DEMO_SESSION_KEY, &IV, plain.as_bytes()).unwrap();
        let err = decrypt(DEMO_SESSION_KEY, &data, &iv_b64(), "wxapp").unwrap_err();
        assert_eq!(err.code(), -41003, "plaintext {plain:?}");
    }
}

#[test]
fn every_error_has_its_official_code_and_a_short_display() {
    let all = [
        (WxBizError::IllegalAesKey, -41001),
        (WxBizError::IllegalIv, -41002),
        (WxBizError::IllegalBuffer, -41003),
        (WxBizError::DecodeBase64, -41004),
        (WxBizError::SignatureMismatch, -41005),
    ];
    for (err, code) in all {
        assert_eq!(err.code(), code);
        let shown = err.to_string();
        assert!(!shown.is_empty() && shown.len() < 80, "{shown:?}");
    }
}

#[test]
fn errors_never_echo_the_session_key() {
    let key = STANDARD.encode(*b"SECRET-CANARY-7f"); // 16 bytes: a valid key
    let data = encrypt(&key, &IV, b"{}").unwrap();
    let err = decrypt(&key, &data, &iv_b64(), "wxapp").unwrap_err();
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(
            !shown.contains(&key) && !shown.contains("CANARY"),
            "{shown}"
        );
    }
}

#[test]
fn the_official_raw_data_signature_vector_holds() {
    assert_eq!(
        sign_raw_data(SIGN_RAW_DATA, SIGN_SESSION_KEY),
        SIGN_EXPECTED
    );
    assert!(verify_signature(
        SIGN_RAW_DATA,
        SIGN_SESSION_KEY,
        SIGN_EXPECTED
    ));
    assert!(verify_signature(
        SIGN_RAW_DATA,
        SIGN_SESSION_KEY,
        &SIGN_EXPECTED.to_uppercase()
    ));
}

#[test]
fn a_wrong_or_garbled_signature_does_not_verify() {
    let mut flipped = SIGN_EXPECTED.to_owned();
    flipped.replace_range(0..1, "8");
    for sig in [
        flipped.as_str(),
        "",
        "zz",
        &SIGN_EXPECTED[..38],
        "75e81ceda165f4ffa64f4068af58c64b8f54b88c00",
    ] {
        assert!(
            !verify_signature(SIGN_RAW_DATA, SIGN_SESSION_KEY, sig),
            "{sig:?}"
        );
    }
    assert!(!verify_signature("{}", SIGN_SESSION_KEY, SIGN_EXPECTED));
    assert!(!verify_signature(
        SIGN_RAW_DATA,
        DEMO_SESSION_KEY,
        SIGN_EXPECTED
    ));
    assert_eq!(wxbiz::WxBizError::SignatureMismatch.code(), -41005);
}
