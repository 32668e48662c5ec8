//! `GET /v1/session-key` through the workers (`wxa/checksession`), an operator's reset
//! (`wxlogin session-key reset`, `wxa/resetusersessionkey`) reaching the user's row, `/v1/decrypt`
//! answering `409 87009` once the key is known replaced, and the company's services having a
//! body signed with the user's newest key over NATS.

use super::login;
use crate::helpers::{APPID, Db, Options, spawn_app};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use wxlogin::{
    app::session_key::{self, SessionKeyCommand},
    contract::topology::Topology,
    upsert::sign::{SIGN_REQUESTED_V1, SignAnswered, SignRequested},
};

async fn check(app: &crate::helpers::TestApp, token: &str) -> (u16, Value) {
    let r = app.session_key(token).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn a_reset_key_is_found_replaced_and_decrypt_then_answers_409_87009(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    let token = login(&app, "alice").await;
    assert_eq!(check(&app, &token).await, (200, json!({"valid": true})));
    let before = app.wait_for_logins(1).await.remove(0);
    // The operator resets the key: a worker calls WeChat and records the new key.
    session_key::run(
        &app.settings,
        SessionKeyCommand::Reset {
            appid: APPID.into(),
            openid: before.openid.clone(),
        },
    )
    .await
    .expect("the reset");
    let after = app
        .wait_for_users("the reset key on the row", |users| {
            users
                .iter()
                .any(|u| u.session_key_sealed != before.session_key_sealed)
        })
        .await
        .remove(0);
    assert_eq!(after.login_count, 1, "a reset is no login");
    let keyring = app.settings.keyring().unwrap().unwrap();
    let aad = format!("{APPID}:{}", after.openid);
    let new_key = keyring
        .open_string(&after.session_key_sealed, aad.as_bytes())
        .unwrap();
    let current = app
        .control
        .session(APPID, "alice")
        .await
        .unwrap()
        .session_key;
    assert_eq!(new_key, current, "the row holds WeChat's new key");
    // The session still holds the old key: WeChat says so (87009), and decrypts are refused.
    assert_eq!(check(&app, &token).await, (200, json!({"valid": false})));
    let info = app.control.user_info(APPID, "alice").await.unwrap();
    let r = app
        .post_decrypt(
            &token,
            &json!({"encryptedData": info.encrypted_data, "iv": info.iv}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errcode"], 87009, "{body}");
    // Logged in again, the new session's key is current.
    let fresh = login(&app, "alice").await;
    assert_eq!(check(&app, &fresh).await, (200, json!({"valid": true})));
    let stats = app.control.stats().await.unwrap().apis;
    assert_eq!(stats.session_keys_reset, 1);
    // One token for all of it.
    assert_eq!(stats.stable_token.normal + stats.stable_token.forced, 1);
    app.stop().await;
}

async fn a_service_gets_a_body_signed_with_the_users_newest_key_and_nothing_else(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    login(&app, "alice").await;
    login(&app, "alice").await;
    let row = app.wait_for_logins(2).await.remove(0);
    let nats = async_nats::connect(app.nats.url()).await.unwrap();
    let subject = Topology::from_settings(&app.settings).sign_subject(&APPID.into());
    let body = br#"{"offer_id":"123","buy_quantity":1,"env":0}"#;
    let ask = |openid: String, body: String| {
        let request = SignRequested {
            v: SIGN_REQUESTED_V1,
            appid: APPID.into(),
            openid,
            body,
        };
        let (nats, subject) = (nats.clone(), subject.clone());
        async move {
            let reply = nats
                .request(subject, serde_json::to_vec(&request).unwrap().into())
                .await
                .unwrap();
            serde_json::from_slice::<SignAnswered>(&reply.payload).unwrap()
        }
    };
    let answer = ask(row.openid.clone(), STANDARD.encode(body)).await;
    let key = app
        .control
        .session(APPID, "alice")
        .await
        .unwrap()
        .session_key;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    assert_eq!(
        answer.signature.as_deref(),
        Some(expected.as_str()),
        "{answer:?}"
    );
    assert!(!serde_json::to_string(&answer).unwrap().contains(&key));
    // Nobody's key for an unknown user, nor for a body that is not base64.
    let unknown = ask("o-nobody".into(), STANDARD.encode(body)).await;
    assert_eq!((unknown.signature, unknown.errcode), (None, 40003));
    let junk = ask(row.openid.clone(), "%%%".into()).await;
    assert_eq!((junk.signature, junk.errcode), (None, 40003));
    app.stop().await;
}

on_both_databases!(
    a_reset_key_is_found_replaced_and_decrypt_then_answers_409_87009,
    a_service_gets_a_body_signed_with_the_users_newest_key_and_nothing_else,
);
