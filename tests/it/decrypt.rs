//! `POST /v1/decrypt` end to end: payloads made by the simulator's `wx.getUserInfo()` under the
//! user's current session_key, hand-made negatives (wrong key, wrong iv, `+` turned into a space,
//! truncated data, another app's watermark, a forged signature), the old-key pitfall after a new
//! login, and the unionid a decryption teaches us.

use crate::helpers::{APPID, Db, Options, TestApp, spawn_app};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};
use wxlogin::crypto::wxbiz;
use wxlogin_sim::SimApp;

/// Logs `user` in; returns the token.
async fn login(app: &TestApp, user: &str) -> String {
    let code = app.mint(user).await;
    let (status, body) = app.login_following_tickets(&code).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_string()
}

async fn decrypt(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    let r = app.post_decrypt(token, body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn assert_errcode(answer: (u16, Value), status: u16, errcode: i64, what: &str) {
    assert_eq!(answer.0, status, "{what}: {}", answer.1);
    assert_eq!(answer.1["errcode"], errcode, "{what}: {}", answer.1);
}

/// `plaintext` encrypted as WeChat would, under `session_key`, with a random iv.
pub(crate) fn encrypt(session_key: &str, plaintext: &Value) -> (String, String) {
    let iv: [u8; 16] = rand::random();
    let data = wxbiz::encrypt(session_key, &iv, plaintext.to_string().as_bytes()).unwrap();
    (data, STANDARD.encode(iv))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_info_from_the_simulator_decrypts_to_the_users_profile_with_its_signature_checked() {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    let token = login(&app, "alice").await;
    let me: Value = app.me(&token).await.json().await.unwrap();
    let info = app.control.user_info(APPID, "alice").await.unwrap();
    let (status, data) = decrypt(
        &app,
        &token,
        &json!({"encryptedData": info.encrypted_data, "iv": info.iv,
                "rawData": info.raw_data, "signature": info.signature}),
    )
    .await;
    assert_eq!(status, 200, "{data}");
    assert_eq!(data["openId"], me["openid"]);
    assert_eq!(data["unionId"], me["unionid"]);
    assert_eq!(data["nickName"], "alice");
    assert_eq!(data["watermark"]["appid"], APPID);
    // Without rawData and signature, the data alone decrypts too.
    let (status, _) = decrypt(
        &app,
        &token,
        &json!({"encryptedData": info.encrypted_data, "iv": info.iv}),
    )
    .await;
    assert_eq!(status, 200);
    let key = app
        .control
        .session(APPID, "alice")
        .await
        .unwrap()
        .session_key;
    assert!(
        !data.to_string().contains(&key),
        "the answer must not carry the key"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_encrypted_under_the_previous_session_key_fails_with_41003_after_a_new_login() {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    let first = login(&app, "bob").await;
    let old = app.control.user_info(APPID, "bob").await.unwrap();
    let old_body = json!({"encryptedData": old.encrypted_data, "iv": old.iv});
    assert_eq!(decrypt(&app, &first, &old_body).await.0, 200);

    // A new wx.login + login: WeChat hands out a new session_key.
    let second = login(&app, "bob").await;
    assert_errcode(
        decrypt(&app, &second, &old_body).await,
        400,
        -41003,
        "old data, new session",
    );
    let new = app.control.user_info(APPID, "bob").await.unwrap();
    let new_body = json!({"encryptedData": new.encrypted_data, "iv": new.iv,
                          "rawData": new.raw_data, "signature": new.signature});
    assert_eq!(decrypt(&app, &second, &new_body).await.0, 200);
    // The first token still holds the old key: it cannot open the new data, nor check its
    // signature.
    assert_errcode(
        decrypt(&app, &first, &new_body).await,
        400,
        -41005,
        "new data, old session",
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_made_negatives_get_the_official_errcodes() {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    let token = login(&app, "carol").await;
    let session = app.control.session(APPID, "carol").await.unwrap();
    let key = session.session_key.as_str();
    let profile = json!({"openId": session.openid, "nickName": "carol",
                         "watermark": {"timestamp": 1, "appid": APPID}});
    let (good_data, good_iv) = encrypt(key, &profile);
    assert_eq!(
        decrypt(
            &app,
            &token,
            &json!({"encryptedData": good_data, "iv": good_iv})
        )
        .await
        .0,
        200,
        "the hand-made payload itself is good"
    );

    let other_key = STANDARD.encode(rand::random::<[u8; 16]>());
    let (wrong_key_data, wrong_key_iv) = encrypt(&other_key, &profile);
    let other_iv = STANDARD.encode(rand::random::<[u8; 16]>());
    let (foreign_data, foreign_iv) = encrypt(
        key,
        &json!({"openId": session.openid, "watermark": {"timestamp": 1, "appid": "wx00000000000000b2"}}),
    );
    let (someone_else, someone_else_iv) = encrypt(
        key,
        &json!({"openId": "oSomeoneElse", "watermark": {"timestamp": 1, "appid": APPID}}),
    );
    // A payload whose base64 holds a '+', as form decoding would mangle it.
    let (plus_data, plus_iv) = std::iter::repeat_with(|| encrypt(key, &profile))
        .find(|(d, _)| d.contains('+'))
        .unwrap();
    let cases: Vec<(&str, Value, i64)> = vec![
        (
            "wrong key",
            json!({"encryptedData": wrong_key_data, "iv": wrong_key_iv}),
            -41003,
        ),
        (
            "wrong iv",
            json!({"encryptedData": good_data, "iv": other_iv}),
            -41003,
        ),
        (
            "iv of 15 bytes",
            json!({"encryptedData": good_data, "iv": STANDARD.encode([1u8; 15])}),
            -41002,
        ),
        (
            "iv not base64",
            json!({"encryptedData": good_data, "iv": "not base64!"}),
            -41002,
        ),
        (
            "'+' turned into a space",
            json!({"encryptedData": plus_data.replace('+', " "), "iv": plus_iv}),
            -41004,
        ),
        (
            "truncated by a block of base64",
            json!({"encryptedData": &good_data[..good_data.len() - 4], "iv": good_iv}),
            -41003,
        ),
        (
            "truncated mid-character",
            json!({"encryptedData": &good_data[..good_data.len() - 1], "iv": good_iv}),
            -41004,
        ),
        (
            "empty data",
            json!({"encryptedData": "", "iv": good_iv}),
            -41003,
        ),
        (
            "another app's watermark",
            json!({"encryptedData": foreign_data, "iv": foreign_iv}),
            -41003,
        ),
        (
            "another user's openId",
            json!({"encryptedData": someone_else, "iv": someone_else_iv}),
            -41003,
        ),
        (
            "forged signature",
            json!({"encryptedData": good_data, "iv": good_iv,
            "rawData": "{\"nickName\":\"mallory\"}", "signature": wxbiz::sign_raw_data("{\"nickName\":\"carol\"}", key)}),
            -41005,
        ),
        (
            "signature under another key",
            json!({"encryptedData": good_data, "iv": good_iv,
            "rawData": "{}", "signature": wxbiz::sign_raw_data("{}", &other_key)}),
            -41005,
        ),
        (
            "signature without rawData",
            json!({"encryptedData": good_data, "iv": good_iv, "signature": "00"}),
            47001,
        ),
        (
            "iv as a number",
            json!({"encryptedData": good_data, "iv": 16}),
            47001,
        ),
        ("no encryptedData", json!({"iv": good_iv}), 47001),
    ];
    for (what, body, errcode) in cases {
        assert_errcode(decrypt(&app, &token, &body).await, 400, errcode, what);
    }

    let raw = |ct: &'static str, body: Vec<u8>| {
        app.http
            .post(format!("{}/v1/decrypt", app.api))
            .bearer_auth(&token)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let r = raw("application/json", b"{not json".to_vec())
        .await
        .unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap()["errcode"].clone()
        ),
        (400, json!(47001))
    );
    let r = raw("application/x-www-form-urlencoded", b"iv=x".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let huge = format!(
        "{{\"encryptedData\":\"{}\",\"iv\":\"x\"}}",
        "A".repeat(20_000)
    );
    let r = raw("application/json", huge.into_bytes()).await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap()["errcode"].clone()
        ),
        (413, json!(45002))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_unknown_or_revoked_token_is_401_whatever_the_body() {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    let token = login(&app, "dave").await;
    let info = app.control.user_info(APPID, "dave").await.unwrap();
    let body = json!({"encryptedData": info.encrypted_data, "iv": info.iv});
    let r = app
        .http
        .post(format!("{}/v1/decrypt", app.api))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let unknown = wxlogin::sessions::new_token();
    assert_errcode(
        decrypt(&app, &unknown, &body).await,
        401,
        40001,
        "unknown token",
    );
    assert_errcode(
        decrypt(&app, "garbage", &body).await,
        401,
        40001,
        "garbage token",
    );
    let r = app.post_logout(&token).await;
    assert_eq!(r.status(), 204);
    assert_errcode(
        decrypt(&app, &token, &body).await,
        401,
        40001,
        "revoked token",
    );
    app.stop().await;
}

/// An app whose code2Session answers carry no unionid learns it from decrypted user data —
/// decrypted at once after the login, as a mini program does, before the upserter has written
/// the login's row: the unionid reaches the row all the same (it travels as an event).
async fn a_decrypted_unionid_is_stored_on_a_user_who_had_none(db: Db) {
    let mut opts = Options::new(db);
    opts.sim.apps = vec![SimApp {
        appid: APPID.into(),
        secret: crate::helpers::SECRET.into(),
        unionid: false,
    }];
    let app = spawn_app(opts).await;
    let token = login(&app, "erin").await;
    let session = app.control.session(APPID, "erin").await.unwrap();
    let with_unionid = |unionid: &str| {
        let (data, iv) = encrypt(
            &session.session_key,
            &json!({"openId": session.openid, "unionId": unionid,
                    "watermark": {"timestamp": 1, "appid": APPID}}),
        );
        json!({"encryptedData": data, "iv": iv})
    };
    let (status, data) = decrypt(&app, &token, &with_unionid("uErinOpenPlatform")).await;
    assert_eq!(status, 200, "{data}");
    let users = app
        .wait_for_users("erin's row with her unionid", |u| {
            u.len() == 1 && u[0].unionid.is_some()
        })
        .await;
    assert_eq!(users[0].unionid.as_deref(), Some("uErinOpenPlatform"));
    assert_eq!(users[0].login_count, 1, "the decrypt is not a login");
    let me: Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(me["unionid"], "uErinOpenPlatform");

    // A unionid, once known, is not replaced by whatever a later payload claims.
    assert_eq!(
        decrypt(&app, &token, &with_unionid("uSomethingElse"))
            .await
            .0,
        200
    );
    // Erin logs in again: that login's row update comes after the decrypt's.
    login(&app, "erin").await;
    let users = app.wait_for_logins(2).await;
    assert_eq!(users[0].unionid.as_deref(), Some("uErinOpenPlatform"));
    app.stop().await;
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_decrypted_unionid_is_stored_on_a_user_who_had_none() {
        super::a_decrypted_unionid_is_stored_on_a_user_who_had_none(super::Db::Sqlite).await
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_decrypted_unionid_is_stored_on_a_user_who_had_none() {
        super::a_decrypted_unionid_is_stored_on_a_user_who_had_none(super::Db::Postgres).await
    }
}
