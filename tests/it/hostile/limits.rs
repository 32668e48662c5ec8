//! The per-client login quota (429 with Retry-After), whom `X-Forwarded-For` is believed from,
//! and the in-flight bound (503 at once).

use std::time::Duration;

use serde_json::{Value, json};
use wxlogin_sim::Faults;

use super::codes_published;
use crate::helpers::{APPID, Db, Options, SettingsTweak, TestApp, spawn_app};

async fn login_attempt(app: &TestApp, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut req = app
        .http
        .post(format!("{}/v1/login", app.api))
        .json(&json!({"appid": APPID, "code": "junk"}));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap()
}

async fn assert_limited(r: reqwest::Response) {
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errcode"], 45011);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_over_the_client_quota_get_429_with_retry_after_and_forwarded_for_from_a_stranger_changes_nothing()
 {
    let mut opts = Options::new(Db::Sqlite);
    opts.tweak = SettingsTweak::new(|s| s.client_quota = Some("5/60s".parse().unwrap()));
    let app = spawn_app(opts).await;
    for _ in 0..5 {
        assert_eq!(login_attempt(&app, None).await.status(), 400);
    }
    assert_limited(login_attempt(&app, None).await).await;
    // 127.0.0.1 is not a trusted proxy: whatever it claims to forward, it is the client.
    assert_limited(login_attempt(&app, Some("203.0.113.77")).await).await;
    // A real code is refused too, before it is published.
    let code = app.mint("frank").await;
    let r = app.post_login(json!({"appid": APPID, "code": code})).await;
    assert_limited(r).await;
    assert_eq!(codes_published(&app).await, 0);
    assert_eq!(app.control.stats().await.unwrap().calls, 0);
    // Only logins are limited.
    assert_eq!(app.me("wxl_nope").await.status(), 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_quota() {
    let mut opts = Options::new(Db::Sqlite);
    opts.tweak = SettingsTweak::new(|s| {
        s.client_quota = Some("3/60s".parse().unwrap());
        s.trusted_proxies = "127.0.0.1".parse().unwrap();
    });
    let app = spawn_app(opts).await;
    for _ in 0..3 {
        assert_eq!(login_attempt(&app, Some("203.0.113.1")).await.status(), 400);
    }
    assert_limited(login_attempt(&app, Some("203.0.113.1")).await).await;
    assert_eq!(login_attempt(&app, Some("203.0.113.2")).await.status(), 400);
    // A client cannot escape by prepending addresses: our proxy appended the real one last.
    assert_limited(login_attempt(&app, Some("198.51.100.9, 203.0.113.1")).await).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_bound_a_login_is_refused_with_503_at_once_and_the_others_complete() {
    let mut opts = Options::new(Db::Sqlite);
    opts.tweak = SettingsTweak::new(|s| s.max_inflight_logins = 2);
    let app = spawn_app(opts).await;
    app.faults(Faults {
        // Under the harness's 2 s WeChat timeout: one call each, no retries.
        latency_ms: 1200,
        ..Faults::default()
    })
    .await;
    let (a, b) = (app.mint("gina").await, app.mint("hank").await);
    let first = tokio::spawn({
        let (http, api) = (app.http.clone(), app.api.clone());
        async move {
            http.post(format!("{api}/v1/login"))
                .json(&json!({"code": a}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let second = tokio::spawn({
        let (http, api) = (app.http.clone(), app.api.clone());
        async move {
            http.post(format!("{api}/v1/login"))
                .json(&json!({"code": b}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    // Both are in flight once WeChat has heard of both.
    for _ in 0..100 {
        if app.control.stats().await.unwrap().calls >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.control.stats().await.unwrap().calls, 2);
    let third = app
        .post_login(json!({"code": app.mint("ivan").await}))
        .await;
    assert_eq!(third.status(), 503);
    assert_eq!(third.headers()["retry-after"], "1");
    assert_eq!(third.json::<Value>().await.unwrap()["errcode"], -1);
    assert_eq!(
        codes_published(&app).await,
        2,
        "the refused code was not published"
    );

    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 200);
    let later = app.mint("ivan").await;
    assert_eq!(
        app.login_following_tickets(&later).await.0,
        200,
        "the slots are free again"
    );
    app.stop().await;
}
