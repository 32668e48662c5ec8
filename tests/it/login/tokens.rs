//! A login's token and what it opens: `/v1/me`, the recorded user, the ticket a slow exchange
//! answers with, logout, and the health and readiness probes.

use std::time::Duration;

use serde_json::json;
use wxlogin_sim::Faults;

use crate::helpers::{APPID, Db, Options, spawn_app};

pub async fn a_login_answers_a_token_that_me_accepts_and_the_user_is_recorded(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    let code = app.mint("alice").await;
    let r = app.post_login(json!({"appid": APPID, "code": code})).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("wxl_") && token.len() == 47, "{token}");
    assert!(body["expires_in"].as_i64().unwrap() > 3600);
    assert!(body.get("session_key").is_none() && body.get("openid").is_none());

    let me: serde_json::Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(me["appid"], APPID);
    assert!(me["openid"].as_str().unwrap().starts_with('o'));
    assert!(me["unionid"].is_string());

    let users = app.wait_for_logins(1).await;
    assert_eq!(users.len(), 1);
    let u = &users[0];
    assert_eq!(u.openid, me["openid"].as_str().unwrap());
    assert_eq!(u.unionid.as_deref(), me["unionid"].as_str());
    assert_eq!(u.login_count, 1);
    // Only sealed: the simulator's 24-char base64 session_key is nowhere in the row.
    assert!(u.session_key_sealed.starts_with("v2."));
    app.stop().await;
}

pub async fn a_second_login_of_the_same_user_counts_twice_and_keeps_one_row(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    for _ in 0..2 {
        let code = app.mint("bob").await;
        let (status, _) = app.login_following_tickets(&code).await;
        assert_eq!(status, 200);
    }
    let users = app.wait_for_logins(2).await;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].login_count, 2);
    app.stop().await;
}

pub async fn a_slow_exchange_answers_202_and_the_ticket_then_gives_the_token(db: Db) {
    let mut opts = Options::new(db);
    opts.login_wait = Duration::from_millis(200);
    let app = spawn_app(opts).await;
    app.faults(Faults {
        latency_ms: 1200,
        ..Faults::default()
    })
    .await;
    let code = app.mint("carol").await;
    let r = app.post_login(json!({"appid": APPID, "code": code})).await;
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    let ticket = body["ticket"].as_str().unwrap().to_string();
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0);
    assert!(
        !ticket.contains(&code),
        "the ticket must not reveal the code"
    );

    // Polled at once: still running.
    let r = app.get_ticket(&ticket).await;
    assert_eq!(r.status(), 202);
    let mut token = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = app.get_ticket(&ticket).await;
        if r.status() == 200 {
            token = Some(
                r.json::<serde_json::Value>().await.unwrap()["token"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
            break;
        }
        assert_eq!(r.status(), 202);
    }
    let token = token.expect("the ticket ends in a token");
    assert_eq!(app.me(&token).await.status(), 200);
    // Polling again gives the same token; after logout the ticket cannot bring it back.
    let again: serde_json::Value = app.get_ticket(&ticket).await.json().await.unwrap();
    assert_eq!(again["token"], token);
    let r = app.post_logout(&token).await;
    assert_eq!(r.status(), 204);
    let r = app.get_ticket(&ticket).await;
    assert_eq!(r.status(), 401);
    assert_eq!(app.me(&token).await.status(), 401);
    app.stop().await;
}

pub async fn logout_ends_the_token_and_bad_tokens_are_401(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    let code = app.mint("ivy").await;
    let (_, body) = app.login_following_tickets(&code).await;
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(app.me(&token).await.status(), 200);
    assert_eq!(app.post_logout(&token).await.status(), 204);
    assert_eq!(app.me(&token).await.status(), 401);
    assert_eq!(app.post_logout(&token).await.status(), 401);
    for bad in [
        "",
        "wxl_nope",
        "x".repeat(5000).as_str(),
        &token.replace('A', "B"),
    ] {
        let r = app.me(bad).await;
        assert_eq!(r.status(), 401, "{bad:?}");
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap()["errcode"],
            40001
        );
    }
    let r = app.get("/v1/me").await;
    assert_eq!(r.status(), 401);
    app.stop().await;
}

pub async fn health_and_readiness_answer(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    // The database is looked at in the background: `unknown` until the first look ends.
    let mut body = serde_json::Value::Null;
    for _ in 0..50 {
        let r = app.get("/readyz").await;
        assert_eq!(r.status(), 200);
        body = r.json().await.unwrap();
        if body["database"] != "unknown" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(body, json!({"nats":"ok","database":"ok"}));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_whose_session_cannot_be_written_answers_a_ticket_that_gives_the_token_once_the_store_takes_writes()
 {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    // One session stored first: the bucket's stream is then capped at what it holds.
    let code = app.mint("judy").await;
    assert_eq!(app.login_following_tickets(&code).await.0, 200);
    let js = async_nats::jetstream::new(async_nats::connect(app.nats.url()).await.unwrap());
    let sessions = format!("KV_{}", app.topology().sessions_bucket());
    let normal = crate::helpers::refuse_writes(&js, &sessions).await;

    let code = app.mint("kim").await;
    let r = app.post_login(json!({"appid": APPID, "code": code})).await;
    // The exchange succeeded and its result is recorded: the login is not lost, it is late.
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    let ticket = body["ticket"].as_str().unwrap().to_string();
    // Polled while the store still refuses: unavailable, and the ticket stays good.
    let r = app.get_ticket(&ticket).await;
    assert_eq!(r.status(), 503);

    js.update_stream(normal).await.unwrap();
    let r = app.get_ticket(&ticket).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    let me: serde_json::Value = app.me(token).await.json().await.unwrap();
    assert!(me["openid"].as_str().unwrap().starts_with('o'));
    // One exchange per code: the ticket made the session from the recorded result.
    assert_eq!(app.control.stats().await.unwrap().calls, 2);
    app.stop().await;
}
