//! wxlogin against a secured nats-server, as production runs it: each role connects as its own
//! NATS user (the seeds and authorization block `wxlogin nats auth` writes) over TLS from a
//! private CA. The whole pipeline works under those permissions without a single refusal in
//! the server's log, and each role is refused what another role does (`permissions`).

mod cluster;
mod loopback;
mod permissions;

use std::time::Duration;

use serde_json::{Value, json};
use wxlogin_sim::{Faults, SimApp};

use crate::helpers::{APPID, Db, Options, TestApp, spawn_app};
use wxlogin::contract::access::Identity;

pub async fn spawn_secured(db: Db, tweak: impl FnOnce(&mut Options)) -> TestApp {
    let mut opts = Options::new(db);
    opts.secured = true;
    tweak(&mut opts);
    spawn_app(opts).await
}

/// Logins (answered at once, through a ticket, and a reuse), `/v1/me`, a decrypt that teaches
/// a unionid, a logout, and the users table: every role's every NATS operation of a login,
/// each as its own user over TLS. The server's log holds no refusal afterwards.
async fn every_stage_of_a_login_works_with_each_role_as_its_own_nats_user_over_tls(db: Db) {
    let app = spawn_secured(db, |o| {
        o.login_wait = Duration::from_millis(300);
        o.sim.apps = vec![SimApp {
            appid: APPID.into(),
            secret: crate::helpers::SECRET.into(),
            unionid: false,
        }];
    })
    .await;
    let secured = app.secured.as_ref().unwrap();
    assert!(
        app.settings.nats_nkey_file.is_some() && app.settings.nats_tls_ca_file.is_some(),
        "the roles are given a seed and the CA"
    );

    let code = app.mint("alice").await;
    let r = app.post_login(json!({"appid": APPID, "code": code})).await;
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let me: Value = app.me(&token).await.json().await.unwrap();
    assert!(me["openid"].as_str().unwrap().starts_with('o'), "{me}");
    // A reuse reads the ledger and the result: 409.
    let again = app.post_login(json!({"appid": APPID, "code": code})).await;
    assert_eq!(again.status(), 409);

    // A decrypt learns the unionid: the ingress publishes it on the results stream.
    let session = app.control.session(APPID, "alice").await.unwrap();
    let (data, iv) = crate::decrypt::encrypt(
        &session.session_key,
        &json!({"openId": session.openid, "unionId": "uAliceOpenPlatform",
                "watermark": {"timestamp": 1, "appid": APPID}}),
    );
    let r = app
        .post_decrypt(&token, &json!({"encryptedData": data, "iv": iv}))
        .await;
    assert_eq!(r.status(), 200);
    let users = app
        .wait_for_users("alice with her unionid", |u| {
            u.len() == 1 && u[0].unionid.is_some()
        })
        .await;
    assert_eq!(users[0].login_count, 1);

    // A slow exchange: 202, then the ticket.
    app.faults(Faults {
        latency_ms: 1000,
        ..Faults::default()
    })
    .await;
    let code = app.mint("bob").await;
    let (status, body) = app.login_following_tickets(&code).await;
    assert_eq!(status, 200, "{body}");
    app.faults(Faults::default()).await;

    // A phone number: the phone code goes through the pipeline like a login code, the worker
    // fetching the fleet's access_token into its bucket.
    let minted = app.control.mint_phone_code(APPID, "alice").await.unwrap();
    let (status, body) = app.phone_following_tickets(&token, &minted.code).await;
    assert_eq!(status, 200, "{body}");
    // A session-key check: the ingress asks the workers over NATS, the answer on its reply.
    let r = app.session_key(&token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"valid": true}));
    // A service of the company has a body signed, as its own NATS user, by the upserter.
    let (service, _) = secured.client(&app.settings, Identity::Service).await;
    let openid = app.me(&token).await.json::<Value>().await.unwrap()["openid"].clone();
    let request = json!({"v": 1, "appid": APPID, "openid": openid, "body": "e30="});
    let subject = app.topology().sign_subject(&APPID.into());
    let answer = service
        .request(subject, request.to_string().into())
        .await
        .expect("a signature");
    let answer: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(answer["errcode"], 0, "{answer}");
    assert_eq!(
        answer["signature"].as_str().map(str::len),
        Some(64),
        "{answer}"
    );

    assert_eq!(app.post_logout(&token).await.status(), 204);
    assert_eq!(app.me(&token).await.status(), 401);
    app.wait_for_users("alice and bob, alice with her phone", |u| {
        u.len() == 2 && u.iter().any(|u| u.phone_hash.is_some())
    })
    .await;
    let refused = secured.violations();
    assert!(
        refused.is_empty(),
        "the server refused:\n{}",
        refused.join("\n")
    );
    app.stop().await;
}

on_both_databases!(every_stage_of_a_login_works_with_each_role_as_its_own_nats_user_over_tls);
