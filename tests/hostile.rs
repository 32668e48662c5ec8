//! Hostile input at the ingress: 10,000 malformed requests that must each get a clear 4xx while
//! nothing is published and WeChat hears nothing; the per-client login quota (429 with
//! Retry-After) and whom `X-Forwarded-For` is believed from; the in-flight bound (503 at once).
//! Everything stays on 127.0.0.1.

mod common;

use std::time::Duration;

use common::{APPID, Db, Options, SettingsTweak, TestApp, spawn_app};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wxlogin::sim::Faults;

/// How many codes were ever published to the codes stream (a work queue forgets acked ones,
/// its last sequence does not).
async fn codes_published(app: &TestApp) -> u64 {
    let client = async_nats::connect(app.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let name = wxlogin::roles::topology(&app.settings).codes_stream();
    let mut stream = js.get_stream(name).await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}

struct Hostile {
    what: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    bearer: Option<&'static str>,
    status: u16,
    errcode: i64,
}

fn h(
    what: &'static str,
    method: Method,
    path: &str,
    ct: Option<&'static str>,
    body: impl Into<Vec<u8>>,
    status: u16,
    errcode: i64,
) -> Hostile {
    Hostile {
        what,
        method,
        path: path.to_string(),
        content_type: ct,
        body: body.into(),
        bearer: None,
        status,
        errcode,
    }
}

const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

/// One of each kind of junk; none of them holds a plausible code for the configured app.
fn hostile_requests() -> Vec<Hostile> {
    let login = "/v1/login";
    let j = |v: Value| v.to_string().into_bytes();
    let deep = format!("{{\"code\":{}1{}}}", "[".repeat(2000), "]".repeat(2000));
    let mut all = vec![
        h(
            "truncated JSON",
            Method::POST,
            login,
            JSON,
            "{\"code\":",
            400,
            47001,
        ),
        h(
            "JSON with a BOM",
            Method::POST,
            login,
            JSON,
            b"\xEF\xBB\xBF{\"code\":\"x\"}".to_vec(),
            400,
            47001,
        ),
        h(
            "invalid UTF-8",
            Method::POST,
            login,
            JSON,
            b"{\"code\":\"\xff\xfe\xfd\"}".to_vec(),
            400,
            47001,
        ),
        h(
            "top-level array",
            Method::POST,
            login,
            JSON,
            "[1,2]",
            400,
            47001,
        ),
        h(
            "top-level string",
            Method::POST,
            login,
            JSON,
            "\"051nI5Pa1XJkDs0773Pa1OWYOa1nI5PF\"",
            400,
            47001,
        ),
        h(
            "nesting 2000 deep",
            Method::POST,
            login,
            JSON,
            deep,
            400,
            47001,
        ),
        h("empty body", Method::POST, login, JSON, "", 400, 47001),
        h(
            "code as a number",
            Method::POST,
            login,
            JSON,
            j(json!({"code": 12345678901_i64})),
            400,
            40029,
        ),
        h(
            "code as an array",
            Method::POST,
            login,
            JSON,
            j(json!({"code": ["051nI5Pa1XJkDs0773Pa1OWYOa1nI5PF"]})),
            400,
            40029,
        ),
        h(
            "code as an object",
            Method::POST,
            login,
            JSON,
            j(json!({"code": {"code": "x"}})),
            400,
            40029,
        ),
        h(
            "code as a bool",
            Method::POST,
            login,
            JSON,
            j(json!({"code": true})),
            400,
            40029,
        ),
        h(
            "appid as a number",
            Method::POST,
            login,
            JSON,
            j(json!({"appid": 7, "code": "051nI5Pa1XJkDs0773Pa1OWYOa1nI5PF"})),
            400,
            40013,
        ),
        h(
            "code of 200 chars",
            Method::POST,
            login,
            JSON,
            j(json!({"code": "a".repeat(200)})),
            400,
            40029,
        ),
        h(
            "code of 5000 chars",
            Method::POST,
            login,
            JSON,
            j(json!({"code": "a".repeat(5000)})),
            413,
            45002,
        ),
        h(
            "code of 7 chars",
            Method::POST,
            login,
            JSON,
            j(json!({"code": "abcdefg"})),
            400,
            40029,
        ),
        h(
            "non-ASCII code",
            Method::POST,
            login,
            JSON,
            j(json!({"code": "日本語のコードです日本語のコード"})),
            400,
            40029,
        ),
        h(
            "accented code",
            Method::POST,
            login,
            JSON,
            j(json!({"code": "cöde1234cöde1234"})),
            400,
            40029,
        ),
        h(
            "emoji code",
            Method::POST,
            login,
            JSON,
            j(json!({"code": "😀😀😀😀😀😀😀😀"})),
            400,
            40029,
        ),
        h(
            "code with a NUL",
            Method::POST,
            login,
            JSON,
            j(json!({"code": "abcd\u{0}efgh"})),
            400,
            40029,
        ),
        h(
            "code with spaces",
            Method::POST,
            login,
            JSON,
            j(json!({"code": "051nI5Pa1XJk Ds0773Pa1OWYOa1nI5PF"})),
            400,
            40029,
        ),
        h(
            "code with a query",
            Method::POST,
            login,
            JSON,
            j(json!({"code": "abc&secret=x&js_code=y"})),
            400,
            40029,
        ),
        h(
            "unknown appid",
            Method::POST,
            login,
            JSON,
            j(json!({"appid": "wx0000000000000bad", "code": "051nI5Pa1XJkDs0773Pa1OWYOa1nI5PF"})),
            400,
            40013,
        ),
        h(
            "appid of the wrong shape",
            Method::POST,
            login,
            JSON,
            j(json!({"appid": "../../etc/passwd", "code": "051nI5Pa1XJkDs0773Pa1OWYOa1nI5PF"})),
            400,
            40013,
        ),
        h(
            "missing code",
            Method::POST,
            login,
            JSON,
            j(json!({"appid": APPID})),
            400,
            41008,
        ),
        h("empty object", Method::POST, login, JSON, "{}", 400, 41008),
        h(
            "null code",
            Method::POST,
            login,
            JSON,
            j(json!({"code": null})),
            400,
            41008,
        ),
        h(
            "form: bad percent-encoding",
            Method::POST,
            login,
            FORM,
            "code=%ZZ%ZZ%ZZ%ZZ",
            400,
            40029,
        ),
        h(
            "form: duplicate code",
            Method::POST,
            login,
            FORM,
            "code=abcdefgh1&code=abcdefgh2",
            400,
            47001,
        ),
        h(
            "form: non-ASCII code",
            Method::POST,
            login,
            FORM,
            "code=%E6%97%A5%E6%9C%AC%E8%AA%9E%E3%81%A7%E3%81%99",
            400,
            40029,
        ),
        h(
            "form: unknown appid",
            Method::POST,
            login,
            FORM,
            "appid=wx0000000000000bad&code=051nI5Pa1XJkDs0773Pa1OWYOa1nI5PF",
            400,
            40013,
        ),
        h(
            "text/plain body",
            Method::POST,
            login,
            Some("text/plain"),
            "code=051nI5Pa1XJkDs0773Pa1OWYOa1nI5PF",
            415,
            47001,
        ),
        h(
            "no content type",
            Method::POST,
            login,
            None,
            j(json!({"code": "051nI5Pa1XJkDs0773Pa1OWYOa1nI5PF"})),
            415,
            47001,
        ),
        h(
            "multipart",
            Method::POST,
            login,
            Some("multipart/form-data; boundary=x"),
            "--x--",
            415,
            47001,
        ),
        h("GET on login", Method::GET, login, None, "", 405, 43002),
        h("PUT on login", Method::PUT, login, JSON, "{}", 405, 43002),
        h(
            "DELETE on login",
            Method::DELETE,
            login,
            None,
            "",
            405,
            43002,
        ),
        h(
            "PATCH on logout",
            Method::PATCH,
            "/v1/logout",
            None,
            "",
            405,
            43002,
        ),
        h("POST on me", Method::POST, "/v1/me", JSON, "{}", 405, 43001),
        h(
            "GET on decrypt",
            Method::GET,
            "/v1/decrypt",
            None,
            "",
            405,
            43002,
        ),
        h(
            "unknown path",
            Method::POST,
            "/v1/nothing",
            JSON,
            "{}",
            404,
            40066,
        ),
        h(
            "path traversal",
            Method::GET,
            "/v1/../../etc/passwd",
            None,
            "",
            404,
            40066,
        ),
        h(
            "junk ticket",
            Method::GET,
            "/v1/login/not-a-ticket",
            None,
            "",
            404,
            40029,
        ),
        h(
            "huge ticket",
            Method::GET,
            &format!("/v1/login/{}", "A".repeat(4000)),
            None,
            "",
            404,
            40029,
        ),
        h(
            "decrypt without a token",
            Method::POST,
            "/v1/decrypt",
            JSON,
            j(json!({"encryptedData": "x", "iv": "y"})),
            401,
            40001,
        ),
        h(
            "me without a token",
            Method::GET,
            "/v1/me",
            None,
            "",
            401,
            40001,
        ),
    ];
    let mut forged = h(
        "decrypt with a forged token",
        Method::POST,
        "/v1/decrypt",
        JSON,
        j(json!({"encryptedData": "x", "iv": "y"})),
        401,
        40001,
    );
    forged.bearer = Some("wxl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    all.push(forged);
    let mut junk_bearer = h(
        "me with a junk token",
        Method::GET,
        "/v1/me",
        None,
        "",
        401,
        40001,
    );
    junk_bearer.bearer = Some("' OR 1=1 --");
    all.push(junk_bearer);
    all
}

/// Sends raw bytes, keeps the connection open, and returns the status line's code.
async fn raw_status(api: &str, request: &[u8]) -> u16 {
    let addr = api.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed without an answer");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("an answer within 20 s");
    let text = String::from_utf8_lossy(&buf);
    text[9..12].parse().unwrap()
}

/// Bodies that trickle in, bodies that never come, and lies about their length.
async fn slow_and_lying_bodies(api: &str) -> usize {
    let head = |extra: &str| {
        format!(
            "POST /v1/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}\r\n"
        )
    };
    let slow = format!("{}{{\"code\":\"05", head("content-length: 100\r\n"));
    let chunked_stall = format!("{}5\r\n{{\"cod\r\n", head("transfer-encoding: chunked\r\n"));
    let lie = head("content-length: 1000000000\r\n");
    let mut cases: Vec<(String, u16)> = Vec::new();
    for _ in 0..8 {
        cases.push((slow.clone(), 408));
        cases.push((chunked_stall.clone(), 408));
        cases.push((lie.clone(), 413));
    }
    let n = cases.len();
    let answers =
        futures::future::join_all(cases.iter().map(|(req, _)| raw_status(api, req.as_bytes())))
            .await;
    for ((req, want), got) in cases.iter().zip(answers) {
        assert_eq!(got, *want, "{req:?}");
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_requests_get_clear_4xx_publish_nothing_and_reach_nobody() {
    let mut opts = Options::new(Db::Sqlite);
    opts.tweak = SettingsTweak::new(|s| s.body_timeout_ms = 500);
    let app = spawn_app(opts).await;
    let kinds = hostile_requests();
    let slow = slow_and_lying_bodies(&app.api).await;
    let total = 10_000 - slow;
    // A fresh connection per request: the server closes a connection whose body it refused
    // unread, and a pooled client could pick such a connection up again as it closes.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let answers: Vec<(usize, u16, Option<Value>)> = futures::stream::iter(0..total)
        .map(|i| {
            let idx = i % kinds.len();
            let k = &kinds[idx];
            let mut req = http
                .request(k.method.clone(), format!("{}{}", app.api, k.path))
                .body(k.body.clone());
            if let Some(ct) = k.content_type {
                req = req.header("content-type", ct);
            }
            if let Some(b) = k.bearer {
                req = req.header("authorization", format!("Bearer {b}"));
            }
            async move {
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                (idx, status, r.json::<Value>().await.ok())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(answers.len() + slow, 10_000);
    for (k, status, body) in answers {
        let kind = &kinds[k];
        let body = body.unwrap_or_else(|| panic!("{}: the answer is not JSON", kind.what));
        assert_eq!(
            (status, body["errcode"].as_i64()),
            (kind.status, Some(kind.errcode)),
            "{}: {body}",
            kind.what
        );
        assert!(
            body["errmsg"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            kind.what
        );
    }

    assert_eq!(codes_published(&app).await, 0, "nothing may be published");
    assert_eq!(
        app.control.stats().await.unwrap().calls,
        0,
        "WeChat must hear nothing"
    );
    // Still healthy, and still logging people in.
    for probe in ["/healthz", "/readyz"] {
        let r = app
            .http
            .get(format!("{}{probe}", app.api))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{probe}");
    }
    let code = app.mint("survivor").await;
    assert_eq!(app.login_following_tickets(&code).await.0, 200);
    assert_eq!(codes_published(&app).await, 1);
    app.stop().await;
}

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
