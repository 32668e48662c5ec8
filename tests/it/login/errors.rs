//! Logins that fail: every error answer with its status and errcode, a code that expires
//! before WeChat will take it, and a wrong AppSecret.

use std::time::Duration;

use serde_json::json;
use wxlogin_sim::Faults;

use crate::helpers::{APPID, Db, Options, spawn_app};

pub async fn every_error_answer_has_its_status_and_errcode(db: Db) {
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

pub async fn a_code_that_cannot_be_exchanged_before_it_expires_fails_with_503(db: Db) {
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

pub async fn a_wrong_app_secret_fails_logins_as_a_server_error(db: Db) {
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
