//! Keep-alive through hostile bodies: an answer given without reading the request body (413 by
//! declared length, 415, 401 before the body, 404, 405) ends the connection, and must say so,
//! or a pooled client sends its next request into the closing connection and sees a reset.

use std::time::Duration;

use reqwest::{Client, Method};
use serde_json::json;

use super::raw_head;
use crate::helpers::{APPID, Db, Options, SettingsTweak, TestApp, spawn_app};

/// One request of the mixed sequence and the answer it must get.
struct Case {
    what: &'static str,
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
}

fn hostile_cases() -> Vec<Case> {
    let json = Some("application/json");
    let case = |what, method, path, content_type, body: Vec<u8>, status| Case {
        what,
        method,
        path,
        content_type,
        body,
        status,
    };
    let decrypt = json!({"encryptedData": "x".repeat(2000), "iv": "y"}).to_string();
    vec![
        // Refused by its Content-Length before a byte is read.
        case(
            "64 KiB login body",
            Method::POST,
            "/v1/login",
            json,
            vec![b'x'; 64 * 1024],
            413,
        ),
        case(
            "5000-byte login body",
            Method::POST,
            "/v1/login",
            json,
            vec![b' '; 5000],
            413,
        ),
        case(
            "text/plain login body",
            Method::POST,
            "/v1/login",
            Some("text/plain"),
            vec![b'c'; 3000],
            415,
        ),
        case(
            "decrypt without a token",
            Method::POST,
            "/v1/decrypt",
            json,
            decrypt.into_bytes(),
            401,
        ),
        case(
            "unknown path with a body",
            Method::POST,
            "/v1/nothing",
            json,
            vec![b'{'; 3000],
            404,
        ),
        case(
            "PUT on login with a body",
            Method::PUT,
            "/v1/login",
            json,
            vec![b'{'; 3000],
            405,
        ),
    ]
}

async fn send(http: &Client, app: &TestApp, case: &Case) -> reqwest::Result<reqwest::Response> {
    let mut req = http
        .request(case.method.clone(), format!("{}{}", app.api, case.path))
        .body(case.body.clone());
    if let Some(ct) = case.content_type {
        req = req.header("content-type", ct);
    }
    req.send().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_keep_alive_client_mixing_hostile_bodies_with_logins_gets_an_answer_to_every_request()
 {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    // reqwest's defaults: connections pooled and kept alive between requests.
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let hostile = hostile_cases();
    let (mut sent, mut logins, mut failures) = (0, 0, Vec::new());
    for round in 0..20 {
        for case in &hostile {
            sent += 1;
            match send(&http, &app, case).await {
                Ok(r) if r.status() == case.status => {}
                Ok(r) => failures.push(format!("{}: got {}", case.what, r.status())),
                Err(e) => failures.push(format!("{}: {e:?}", case.what)),
            }
        }
        // A good request after every burst: it would go out on a connection a refusal ended.
        sent += 1;
        let r = if round % 2 == 0 {
            let code = app.mint(&format!("keep-alive-{round}")).await;
            logins += 1;
            http.post(format!("{}/v1/login", app.api))
                .json(&json!({"appid": APPID, "code": code}))
                .send()
                .await
        } else {
            http.get(format!("{}/healthz", app.api)).send().await
        };
        match r {
            Ok(r) if r.status() == 200 => {}
            Ok(r) => failures.push(format!("good request: got {}", r.status())),
            Err(e) => failures.push(format!("good request: {e:?}")),
        }
    }
    assert!(sent >= 100);
    assert!(
        failures.is_empty(),
        "{} of {sent} requests got no right answer: {failures:#?}",
        failures.len()
    );
    assert_eq!(app.wait_for_logins(logins).await.len(), logins as usize);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_leaves_the_body_unread_says_connection_close_and_one_that_read_it_does_not()
{
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    let connection = |r: &reqwest::Response| {
        r.headers()
            .get("connection")
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
    };
    for case in hostile_cases() {
        let r = send(&app.http, &app, &case).await.unwrap();
        assert_eq!(r.status(), case.status, "{}", case.what);
        assert_eq!(connection(&r).as_deref(), Some("close"), "{}", case.what);
    }
    // A body read to its end keeps the connection, whatever the answer.
    let r = app
        .post_login(json!({"appid": APPID, "code": "junk"}))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(connection(&r), None);
    let code = app.mint("kept-alive").await;
    let r = app.post_login(json!({"appid": APPID, "code": code})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(connection(&r), None);
    // And so does a request without a body.
    assert_eq!(connection(&app.get("/healthz").await), None);
    app.stop().await;
}

/// A login whose body never arrives: 10 of the 100 bytes it declares.
const STALLED_BODY: &str = "POST /v1/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                            content-length: 100\r\n\r\n{\"code\":\"0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_by_either_deadline_before_its_body_arrived_says_connection_close() {
    // The body deadline first (408), then the request deadline first (503 -1).
    for (body_ms, request_ms, status) in [(300, 5_000, 408), (5_000, 300, 503)] {
        let mut opts = Options::new(Db::Sqlite);
        opts.tweak = SettingsTweak::new(move |s| {
            s.body_timeout_ms = body_ms;
            s.request_timeout_ms = request_ms;
        });
        let app = spawn_app(opts).await;
        let head = raw_head(&app.api, STALLED_BODY.as_bytes())
            .await
            .to_ascii_lowercase();
        assert!(head.starts_with(&format!("http/1.1 {status} ")), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        app.stop().await;
    }
}
