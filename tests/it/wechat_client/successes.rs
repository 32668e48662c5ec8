//! Successes: a session with or without unionid, a stable openid, a session_key that opens
//! the user's data, and errcode 0 with extra fields.

use wxlogin::crypto::wxbiz;

use super::{APPID, BOUND_APPID, harness, secret};

#[tokio::test]
async fn a_fresh_code_gives_a_session_without_unionid_for_an_unbound_app() {
    let h = harness().await;
    let session = h.exchange(&h.code(APPID, "alice").await).await.unwrap();
    assert!(!session.openid.is_empty());
    assert_eq!(session.unionid, None);
    assert_eq!(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            session.session_key.expose()
        )
        .unwrap()
        .len(),
        16
    );
}

#[tokio::test]
async fn a_fresh_code_gives_a_unionid_for_an_app_bound_to_the_open_platform() {
    let h = harness().await;
    let code = h.code(BOUND_APPID, "alice").await;
    let session = h
        .client
        .code2session(BOUND_APPID, &secret(), &code)
        .await
        .unwrap();
    assert!(session.unionid.is_some_and(|u| !u.is_empty()));
}

#[tokio::test]
async fn the_same_user_keeps_the_same_openid_across_logins() {
    let h = harness().await;
    let first = h.exchange(&h.code(APPID, "alice").await).await.unwrap();
    let second = h.exchange(&h.code(APPID, "alice").await).await.unwrap();
    let other = h.exchange(&h.code(APPID, "bob").await).await.unwrap();
    assert_eq!(first.openid, second.openid);
    assert_ne!(first.openid, other.openid);
}

#[tokio::test]
async fn the_session_key_decrypts_the_users_data_and_verifies_its_signature() {
    let h = harness().await;
    let session = h.exchange(&h.code(APPID, "alice").await).await.unwrap();
    let info = h.control.user_info(APPID, "alice").await.unwrap();
    let key = session.session_key.expose();
    let user = wxbiz::decrypt(key, &info.encrypted_data, &info.iv, APPID).unwrap();
    assert_eq!(user["openId"], session.openid.as_str());
    assert!(wxbiz::verify_signature(
        &info.raw_data,
        key,
        &info.signature
    ));
}

#[tokio::test]
async fn errcode_zero_with_extra_fields_is_a_success() {
    let h = harness().await;
    let body = r#"{"errcode":0,"errmsg":"ok","openid":"oX","session_key":"a2V5a2V5a2V5a2V5a2V5aw==","expires_in":7200,"new_field":{"x":[1,2]}}"#;
    let session = h.answer(body).await.unwrap();
    assert_eq!(session.openid, "oX");
    assert_eq!(session.unionid, None);
}
