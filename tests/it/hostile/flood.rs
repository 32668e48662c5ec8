//! The flood: 10,000 hostile requests, slow and lying bodies among them, each answered with a
//! clear 4xx while nothing is published and WeChat hears nothing.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::{catalogue::hostile_requests, codes_published, raw_head};
use crate::helpers::{Db, Options, SettingsTweak, spawn_app};

/// Sends raw bytes and returns the answer's status code.
async fn raw_status(api: &str, request: &[u8]) -> u16 {
    raw_head(api, request).await[9..12].parse().unwrap()
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
    // Pooled and kept alive, as clients are: an answer that leaves a body unread says
    // `Connection: close`, so no request goes out on a connection the server is closing.
    let http = reqwest::Client::builder()
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
