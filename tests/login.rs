//! The HTTP API end to end: real nats-server, real database (SQLite and PostgreSQL), the
//! simulator over real HTTP, and the three roles running against them.

mod common;

use std::time::Duration;

use common::{APPID, Db, Options, spawn_app};
use serde_json::json;
use wxlogin::sim::Faults;

async fn a_login_answers_a_token_that_me_accepts_and_the_user_is_recorded(db: Db) {
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
    assert!(u.session_key_sealed.starts_with("v1."));
    app.stop().await;
}

async fn a_second_login_of_the_same_user_counts_twice_and_keeps_one_row(db: Db) {
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

async fn a_slow_exchange_answers_202_and_the_ticket_then_gives_the_token(db: Db) {
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
    let r = app
        .http
        .get(format!("{}/v1/login/{ticket}", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut token = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = app
            .http
            .get(format!("{}/v1/login/{ticket}", app.api))
            .send()
            .await
            .unwrap();
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
    let again: serde_json::Value = app
        .http
        .get(format!("{}/v1/login/{ticket}", app.api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["token"], token);
    let r = app
        .http
        .post(format!("{}/v1/logout", app.api))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app
        .http
        .get(format!("{}/v1/login/{ticket}", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.me(&token).await.status(), 401);
    app.stop().await;
}

async fn every_error_answer_has_its_status_and_errcode(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    let cases = [
        (json!({"appid": APPID}), 400, 41008),
        (json!({"appid": APPID, "code": null}), 400, 41008),
        (
            json!({"appid": "wx00000000000000ff", "code": "0123456789abcdef"}),
            400,
            40013,
        ),
        (json!({"appid": 12, "code": "0123456789abcdef"}), 400, 40013),
        (json!({"appid": APPID, "code": ""}), 400, 40029),
        (
            json!({"appid": APPID, "code": "has spaces and &="}),
            400,
            40029,
        ),
        (json!({"appid": APPID, "code": "x".repeat(129)}), 400, 40029),
        (json!({"appid": APPID, "code": 12345678}), 400, 40029),
        (
            json!({"appid": APPID, "code": "非ASCII的代码非ASCII的代码"}),
            400,
            40029,
        ),
    ];
    for (body, status, errcode) in cases {
        let r = app.post_login(body.clone()).await;
        assert_eq!(r.status(), status, "{body}");
        let answer: serde_json::Value = r.json().await.unwrap();
        assert_eq!(answer["errcode"], errcode, "{body}");
        assert!(answer["errmsg"].is_string());
    }
    // Refused at the door: nothing reached WeChat.
    assert_eq!(app.control.stats().await.unwrap().calls, 0);

    let post = |ct: &'static str, body: String| {
        app.http
            .post(format!("{}/v1/login", app.api))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let r = post("application/json", "{not json".into()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["errcode"],
        47001
    );
    let r = post("text/plain", "code=abc".into()).await.unwrap();
    assert_eq!(r.status(), 415);
    let r = post(
        "application/json",
        format!("{{\"code\":\"{}\"}}", "a".repeat(100_000)),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["errcode"],
        45002
    );

    // A well-formed code WeChat never issued, a used one, and a blocked user.
    let (status, body) = app
        .login_following_tickets("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await;
    assert_eq!((status, body["errcode"].as_i64()), (400, Some(40029)));
    let code = app.mint("dave").await;
    assert_eq!(app.login_following_tickets(&code).await.0, 200);
    let (status, body) = app.login_following_tickets(&code).await;
    assert_eq!((status, body["errcode"].as_i64()), (409, Some(40163)));
    app.control.set_high_risk(APPID, "eve", true).await.unwrap();
    let code = app.mint("eve").await;
    let (status, body) = app.login_following_tickets(&code).await;
    assert_eq!((status, body["errcode"].as_i64()), (403, Some(40226)));

    // Form bodies work too, and appid may be left out with one app configured.
    let code = app.mint("frank").await;
    let r = post("application/x-www-form-urlencoded", format!("code={code}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

async fn duplicate_submissions_reach_wechat_once(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    app.faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    })
    .await;
    let code = app.mint("grace").await;
    let (a, b, c) = tokio::join!(
        app.login_following_tickets(&code),
        app.login_following_tickets(&code),
        app.login_following_tickets(&code),
    );
    // Concurrent duplicates all share the first exchange's outcome, each with its own token.
    for (status, body) in [&a, &b, &c] {
        assert_eq!(*status, 200, "{body}");
    }
    assert_ne!(a.1["token"], b.1["token"]);
    // A later reuse is 409 at once.
    let (status, body) = app.login_following_tickets(&code).await;
    assert_eq!((status, body["errcode"].as_i64()), (409, Some(40163)));
    let stats = app.control.stats().await.unwrap();
    assert_eq!(stats.calls, 1, "{stats:?}");
    app.wait_for_logins(1).await;
    app.stop().await;
}

async fn a_burst_over_the_quota_never_exceeds_it_uses_it_and_still_completes(db: Db) {
    let mut opts = Options::new(db);
    opts.quota = "20/1s".parse().unwrap();
    opts.sim.stats_window = Duration::from_secs(1);
    let app = spawn_app(opts).await;
    let mut codes = Vec::new();
    for i in 0..70 {
        codes.push(app.mint(&format!("burst-{i}")).await);
    }
    let logins = codes.iter().map(|c| app.login_following_tickets(c));
    let results = futures::future::join_all(logins).await;
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
    }
    let stats = app.control.stats().await.unwrap();
    let app_stats = &stats.apps[APPID];
    assert_eq!(stats.calls, 70);
    // Never over the quota in any 1 s window (governor's default burst would allow 39)...
    assert!(
        app_stats.max_in_window <= 20,
        "window max {} > quota 20",
        app_stats.max_in_window
    );
    // ...and under this saturating load the quota is used, not wasted.
    assert!(
        app_stats.max_in_window >= 18,
        "window max {} < 90% of the quota",
        app_stats.max_in_window
    );
    assert_eq!(stats.by_errcode.get(&45011).copied().unwrap_or(0), 0);
    app.stop().await;
}

async fn busy_bad_gateway_and_hanging_wechat_still_end_in_success(db: Db) {
    let mut opts = Options::new(db);
    opts.wechat_timeout = Duration::from_millis(300);
    let app = spawn_app(opts).await;
    app.faults(Faults {
        busy_ratio: 0.3,
        http_502_ratio: 0.2,
        hang_ratio: 0.1,
        ..Faults::default()
    })
    .await;
    let mut codes = Vec::new();
    for i in 0..12 {
        codes.push(app.mint(&format!("faulty-{i}")).await);
    }
    let results =
        futures::future::join_all(codes.iter().map(|c| app.login_following_tickets(c))).await;
    // The simulator's -1, 502 and hang never consume a code, so every login must succeed.
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
    }
    let stats = app.control.stats().await.unwrap();
    assert!(
        stats.calls > 12,
        "faults should have caused retries: {stats:?}"
    );
    app.stop().await;
}

async fn a_code_that_cannot_be_exchanged_before_it_expires_fails_with_503(db: Db) {
    let mut opts = Options::new(db);
    opts.code_ttl = Duration::from_secs(2);
    let app = spawn_app(opts).await;
    app.faults(Faults {
        busy_ratio: 1.0,
        ..Faults::default()
    })
    .await;
    let code = app.mint("henry").await;
    let (status, body) = app.login_following_tickets(&code).await;
    assert_eq!(
        (status, body["errcode"].as_i64()),
        (503, Some(-1)),
        "{body}"
    );
    app.stop().await;
}

async fn logout_ends_the_token_and_bad_tokens_are_401(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    let code = app.mint("ivy").await;
    let (_, body) = app.login_following_tickets(&code).await;
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(app.me(&token).await.status(), 200);
    let logout = |t: String| {
        app.http
            .post(format!("{}/v1/logout", app.api))
            .bearer_auth(t)
            .send()
    };
    assert_eq!(logout(token.clone()).await.unwrap().status(), 204);
    assert_eq!(app.me(&token).await.status(), 401);
    assert_eq!(logout(token.clone()).await.unwrap().status(), 401);
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
    let r = app
        .http
        .get(format!("{}/v1/me", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}

async fn health_and_readiness_answer(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    assert_eq!(
        app.http
            .get(format!("{}/healthz", app.api))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = app
        .http
        .get(format!("{}/readyz", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"nats":"ok","database":"ok"})
    );
    app.stop().await;
}

async fn a_wrong_app_secret_fails_logins_as_a_server_error(db: Db) {
    let mut opts = Options::new(db);
    opts.worker_secret = "wrong-secret-wrong-secret-wrong-".into();
    let app = spawn_app(opts).await;
    let code = app.mint("jack").await;
    let (status, body) = app.login_following_tickets(&code).await;
    assert_eq!((status, body["errcode"].as_i64()), (500, Some(-1)));
    assert!(!body.to_string().contains("wrong-secret"));
    let stats = app.control.stats().await.unwrap();
    assert_eq!(stats.calls, 1, "misconfiguration is not retried");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_nats_is_down_logins_are_refused_with_503_at_once() {
    let mut app = spawn_app(Options::new(Db::Sqlite)).await;
    app.nats.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let r = app
        .post_login(json!({"appid": APPID, "code": "0123456789abcdefABCDEF"}))
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["errcode"], -1);
    // "At once" means no publish timeout was waited out (that would take seconds).
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let r = app
        .http
        .get(format!("{}/readyz", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    app.stop().await;
}

macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Db::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Db::Postgres).await })*
        }
    };
}

on_both_databases!(
    a_login_answers_a_token_that_me_accepts_and_the_user_is_recorded,
    a_second_login_of_the_same_user_counts_twice_and_keeps_one_row,
    a_slow_exchange_answers_202_and_the_ticket_then_gives_the_token,
    every_error_answer_has_its_status_and_errcode,
    duplicate_submissions_reach_wechat_once,
    a_burst_over_the_quota_never_exceeds_it_uses_it_and_still_completes,
    busy_bad_gateway_and_hanging_wechat_still_end_in_success,
    a_code_that_cannot_be_exchanged_before_it_expires_fails_with_503,
    logout_ends_the_token_and_bad_tokens_are_401,
    health_and_readiness_answer,
    a_wrong_app_secret_fails_logins_as_a_server_error,
);
