//! One login, one id: the ingress names it (`Wxlogin-Login-Id` on the answer), the NATS
//! headers and events carry it, and the ingress's, the worker's and the upserter's logs all
//! show it, so one grep follows a login through real, separate processes.

use std::time::Duration;

use crate::helpers::{
    APPID,
    fleet::{Fleet, FleetOptions},
};
use serde_json::json;

#[tokio::test]
async fn one_grep_of_the_login_id_shows_its_path_through_ingress_worker_and_upserter() {
    let fleet = Fleet::start(FleetOptions {
        workers: 1,
        log_filter: "warn,wxlogin=debug".into(),
        ..FleetOptions::default()
    })
    .await;
    let code = fleet.mint("tracy").await;
    let answer = fleet
        .http
        .post(format!("{}/v1/login", fleet.api))
        .json(&json!({"appid": APPID, "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let login_id = answer.headers()["wxlogin-login-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(login_id.len(), 32, "{login_id}");
    let token = answer.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let grep = |role: &str| -> Vec<String> {
        let log = std::fs::read_to_string(fleet.log_dir().join(format!("{role}-0.log")))
            .unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(&login_id))
            .map(str::to_owned)
            .collect()
    };
    // The upserter applies the result a moment after the answer.
    let mut upserter = Vec::new();
    for _ in 0..200 {
        upserter = grep("upserter");
        if !upserter.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ingress, worker) = (grep("ingress"), grep("worker"));
    let has = |lines: &[String], what: &str| lines.iter().any(|l| l.contains(what));
    assert!(has(&ingress, "code published"), "{ingress:#?}");
    assert!(has(&ingress, "login answered"), "{ingress:#?}");
    assert!(has(&worker, "result recorded"), "{worker:#?}");
    assert!(has(&worker, "code message settled"), "{worker:#?}");
    assert!(has(&upserter, "result event applied"), "{upserter:#?}");
    // Debug logs of the whole path, and still no code or token in them.
    for line in ingress.iter().chain(&worker).chain(&upserter) {
        assert!(!line.contains(&code) && !line.contains(&token), "{line}");
    }
}
