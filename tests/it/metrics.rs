//! `GET /metrics`: after real logins through the real pipeline (nats-server, simulator over
//! HTTP, SQLite), the Prometheus text counts them by outcome and errcode, counts the upstream
//! calls, and holds no code or token. A worker or upserter run alone serves its metrics on
//! `WXLOGIN_METRICS_ADDR`.
//!
//! The recorder is global to a process, and every test of this binary shares its process: so
//! exact counts are read from a `wxlogin up` child process of the test's own ([`Up`]).

use std::{process::Command, time::Duration};

use crate::helpers::{APPID, up::Up};
use natsd::NatsServer;

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        let matches =
            (rest.is_empty() || rest.starts_with('{')) && labels.iter().all(|l| rest.contains(l));
        matches.then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test]
async fn after_a_login_and_a_reused_code_the_metrics_count_both_and_the_upstream_call() {
    // A minute's window, so the call is still inside it when the metrics are read.
    let app = Up::start("1000/60s").await;
    let code = app.control.mint_code(APPID, "alice").await.unwrap();
    let r = app.post_login(&code).await;
    assert_eq!(r.status(), 200);
    let token = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = app.post_login(&code).await;
    assert_eq!(again.status(), 409);

    let r = app.get("/metrics").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    let logins = "wxlogin_logins_total";
    let ok = sample(
        &text,
        logins,
        &["outcome=\"ok\"", "status=\"200\"", "errcode=\"0\""],
    );
    assert_eq!(ok, Some(1.0), "{text}");
    let reused = sample(
        &text,
        logins,
        &["outcome=\"failed\"", "status=\"409\"", "errcode=\"40163\""],
    );
    assert_eq!(reused, Some(1.0), "{text}");
    let calls = sample(&text, "wxlogin_upstream_calls_total", &["errcode=\"0\""]);
    assert_eq!(calls, Some(1.0), "one code, one code2Session call: {text}");
    let logins_timed = sample(&text, "wxlogin_login_duration_seconds_count", &[]);
    assert_eq!(logins_timed, Some(2.0), "{text}");
    let exchanges_timed = sample(&text, "wxlogin_exchange_duration_seconds_count", &[]);
    assert_eq!(exchanges_timed, Some(1.0), "{text}");
    // The worker counts the call against the app's quota window.
    let quota_used = sample(
        &text,
        "wxlogin_quota_used_calls",
        &[&format!("appid=\"{APPID}\"")],
    );
    assert_eq!(quota_used, Some(1.0), "{text}");
    assert!(!text.contains(&code) && !text.contains(&token));

    // The status page is plain HTML that reads these metrics.
    let page = app.get("/status").await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = page.text().await.unwrap();
    assert!(page.contains("fetch(\"/metrics\"") && page.contains("wxlogin_logins_total"));
}

#[tokio::test]
async fn an_upserter_run_alone_serves_its_consumer_backlog_on_the_metrics_addr() {
    let nats = NatsServer::start_temporary().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let role = |name: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wxlogin"));
        c.arg(name)
            .env("WXLOGIN_NATS_URL", nats.url())
            .env("WXLOGIN_NATS_PREFIX", "metricstest")
            .env(
                "WXLOGIN_DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.path().join("u.db").display()),
            )
            .env("WXLOGIN_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn");
        c
    };
    // The upserter binds the consumer `wxlogin migrate` makes (its NATS user may not).
    let migrated = tokio::process::Command::from(role("migrate"))
        .status()
        .await
        .unwrap();
    assert!(migrated.success(), "wxlogin migrate failed");
    let mut child = tokio::process::Command::from(role("upserter"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut last = String::new();
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(&url).await {
            last = r.text().await.unwrap_or_default();
            let pending = sample(
                &last,
                "wxlogin_consumer_pending_messages",
                &["consumer=\"metricstest_upserter\""],
            );
            if pending == Some(0.0) {
                child.kill().await.unwrap();
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no backlog gauge of the upsert consumer on {url}; last answer:\n{last}");
}
