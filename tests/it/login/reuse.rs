//! One code, one user, ever: a code that was exchanged never logs anyone else in — not after
//! its ledger entry aged out, not after a NATS restart erased JetStream's duplicate window, not
//! through a ticket — and WeChat never sees it again. Duplicates that joined the exchange in
//! time share its one user.

use std::time::Duration;

use serde_json::json;
use wxlogin_sim::Faults;

use crate::helpers::{APPID, Db, Options, SettingsTweak, TestApp, spawn_app};

/// An app whose WeChat answers in 1.5 s: slow, but under the workers' 2 s timeout.
async fn spawn_with_slow_wechat(opts: Options) -> TestApp {
    let app = spawn_app(opts).await;
    app.faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    })
    .await;
    app
}

/// Logs in and returns (token, openid).
async fn first_login(app: &TestApp, code: &str) -> (String, String) {
    let (status, body) = app.login_following_tickets(code).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    let me: serde_json::Value = app.me(&token).await.json().await.unwrap();
    (token, me["openid"].as_str().unwrap().to_string())
}

/// The openid `/v1/me` gives for the token of a `200` login answer.
async fn openid(app: &TestApp, answer: &serde_json::Value) -> serde_json::Value {
    let token = answer["token"].as_str().expect("a token");
    let me: serde_json::Value = app.me(token).await.json().await.unwrap();
    me["openid"].clone()
}

/// Submits `code` again, following tickets: `409 40163`, no token, and WeChat still asked once.
async fn assert_refused_as_reuse(app: &TestApp, code: &str, context: &str) {
    let (status, body) = app.login_following_tickets(code).await;
    let answer = (status, body["errcode"].as_i64());
    assert_eq!(answer, (409, Some(40163)), "{context}: {body}");
    assert!(body.get("token").is_none(), "{context}: {body}");
    assert_eq!(app.control.stats().await.unwrap().calls, 1, "{context}");
}

/// Crashes nats-server and starts it again on its store, then waits until the roles are back.
async fn restart_nats(app: &mut TestApp) {
    app.nats.restart(Duration::from_millis(300)).await.unwrap();
    for _ in 0..200 {
        if app.get("/readyz").await.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the roles never reconnected to the restarted nats-server");
}

/// Ages the code's ledger entry out by hand (it would after code TTL + ack wait + 60 s).
async fn age_out_ledger_entry(app: &TestApp, code: &str) {
    let client = async_nats::connect(app.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let bucket = app.topology().ledger_bucket();
    let kv = js.get_key_value(bucket).await.unwrap();
    kv.purge(wxlogin::contract::CodeKey::of(&APPID.into(), code))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_reused_after_a_nats_restart_is_refused_and_never_reaches_wechat_again() {
    let mut app = spawn_app(Options::new(Db::Sqlite)).await;
    let code = app.mint("victim").await;
    first_login(&app, &code).await;
    restart_nats(&mut app).await;
    // The restarted server rebuilt its duplicate window from stored messages only (the code's
    // message was acked and is gone): the reuse reaches a worker as a login of its own.
    assert_refused_as_reuse(&app, &code, "after a restart").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reuse_answered_202_after_a_nats_restart_gets_409_through_its_ticket() {
    let mut opts = Options::new(Db::Sqlite);
    opts.login_wait = Duration::from_millis(1);
    let mut app = spawn_app(opts).await;
    let code = app.mint("victim").await;
    first_login(&app, &code).await;
    restart_nats(&mut app).await;
    let r = app.post_login(json!({"appid": APPID, "code": code})).await;
    assert_eq!(r.status(), 202);
    let ticket = r.json::<serde_json::Value>().await.unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    // Whenever the ticket is polled — before or after the worker has seen the reuse — it never
    // hands over the victim's session.
    let mut last = (0, serde_json::Value::Null);
    for _ in 0..100 {
        let r = app.get_ticket(&ticket).await;
        last = (r.status().as_u16(), r.json().await.unwrap());
        assert_ne!(last.0, 200, "the reuse got a token: {}", last.1);
        if last.0 != 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((last.0, last.1["errcode"].as_i64()), (409, Some(40163)));
    assert_eq!(app.control.stats().await.unwrap().calls, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_replayed_after_its_ledger_entry_aged_out_gets_409_on_both_answer_paths() {
    for wait in [Duration::from_secs(5), Duration::from_millis(1)] {
        let mut opts = Options::new(Db::Sqlite);
        opts.login_wait = wait;
        let mut app = spawn_app(opts).await;
        let code = app.mint("victim").await;
        first_login(&app, &code).await;
        // The claim is gone and so is the duplicate window; only the result remains.
        age_out_ledger_entry(&app, &code).await;
        restart_nats(&mut app).await;
        assert_refused_as_reuse(&app, &code, &format!("login wait {wait:?}")).await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_that_arrived_during_the_exchange_shares_its_user_through_its_ticket() {
    let mut opts = Options::new(Db::Sqlite);
    opts.login_wait = Duration::from_millis(200);
    let app = spawn_with_slow_wechat(opts).await;
    let code = app.mint("dora").await;
    let first = app.post_login(json!({"appid": APPID, "code": code})).await;
    assert_eq!(first.status(), 202);
    // The second submission is folded into the first by JetStream while WeChat still thinks.
    let (a, b) = tokio::join!(
        app.login_following_tickets_of(first),
        app.login_following_tickets(&code)
    );
    assert_eq!((a.0, b.0), (200, 200), "{} {}", a.1, b.1);
    assert_ne!(a.1["token"], b.1["token"]);
    assert_eq!(openid(&app, &a.1).await, openid(&app, &b.1).await);
    assert_eq!(app.control.stats().await.unwrap().calls, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_polls_count_against_the_client_quota() {
    let mut opts = Options::new(Db::Sqlite);
    opts.login_wait = Duration::from_millis(1);
    opts.tweak = SettingsTweak::new(|s| s.client_quota = Some("2/60s".parse().unwrap()));
    let app = spawn_with_slow_wechat(opts).await;
    let code = app.mint("eve").await;
    let r = app.post_login(json!({"appid": APPID, "code": code})).await;
    assert_eq!(r.status(), 202);
    let ticket = r.json::<serde_json::Value>().await.unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.get_ticket(&ticket).await.status(), 202);
    let r = app.get_ticket(&ticket).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_duplicate_is_answered_only_from_the_stored_result() {
    let mut opts = Options::new(Db::Sqlite);
    opts.login_wait = Duration::from_secs(3);
    let app = spawn_app(opts).await;
    let warm = app.mint("warm").await;
    first_login(&app, &warm).await;
    // The results stream refuses writes: the worker's attempts to record are still published
    // on the result's subject (core NATS delivers them to subscribers), but none is stored.
    let client = async_nats::connect(app.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let results = app.topology().results_stream();
    let normal = crate::helpers::refuse_writes(&js, &results).await;
    let code = app.mint("fay").await;
    let (first, second) = tokio::join!(
        app.post_login(json!({"appid": APPID, "code": code})),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            app.post_login(json!({"appid": APPID, "code": code})).await
        }
    );
    // Neither is answered from a result the stream did not keep.
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (202, 202)
    );
    js.update_stream(normal).await.unwrap();
    let (a, b) = tokio::join!(
        app.login_following_tickets_of(first),
        app.login_following_tickets_of(second)
    );
    assert_eq!((a.0, b.0), (200, 200), "{} {}", a.1, b.1);
    assert_eq!(openid(&app, &a.1).await, openid(&app, &b.1).await);
    assert_eq!(
        app.control.stats().await.unwrap().calls,
        2,
        "one call per code"
    );
    app.stop().await;
}
