//! The database off the login path: an ingress and a worker never need it, `/readyz` reports
//! it without gating on it, and the upserter waits for it, then catches up.

use std::time::Duration;

use super::wait_for_table;
use crate::helpers::{APPID, Db, Options, SettingsTweak, spawn_app, up::Up};

/// A SQLite file in a directory that does not exist yet: unreachable until the test makes it.
fn later_database(dir: &tempfile::TempDir) -> (std::path::PathBuf, String) {
    let later = dir.path().join("not-yet");
    let url = format!("sqlite://{}?mode=rwc", later.join("w.db").display());
    (later, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_and_a_worker_started_without_a_database_log_users_in() {
    let dir = tempfile::tempdir().unwrap();
    let (later, url) = later_database(&dir);
    let mut opts = Options::new(Db::Sqlite);
    let roles_url = url.clone();
    opts.tweak = SettingsTweak::new(move |s| s.database_url = roles_url.clone());
    let app = spawn_app(opts).await;
    // Ready because NATS answers; the database, looked at in the background, is reported.
    let mut body = serde_json::Value::Null;
    for _ in 0..50 {
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status(), 200, "NATS answers: ready");
        body = ready.json().await.unwrap();
        if body["database"] != "unknown" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(body["database"], "unavailable", "{body}");
    for user in ["pia", "quinn"] {
        let code = app.mint(user).await;
        let (status, body) = app.login_following_tickets(&code).await;
        assert_eq!(status, 200, "{body}");
        let me = app.me(body["token"].as_str().unwrap()).await;
        assert_eq!(me.status(), 200);
    }
    // The database comes: the upserter, waiting for it, migrates it and catches up.
    std::fs::create_dir_all(&later).unwrap();
    assert_eq!(wait_for_table(&url, 2).await, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wxlogin_up_serves_logins_while_its_database_is_away_and_catches_up_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (later, url) = later_database(&dir);
    let up = Up::start_with_database("1000/1s", Some(url.clone())).await;
    let mini = up.miniprogram();
    for user in ["rae", "sol", "tam"] {
        let code = up.control.mint_code(APPID, user).await.unwrap();
        let answer = mini.login(&code).await.unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::create_dir_all(&later).unwrap();
    assert_eq!(wait_for_table(&url, 3).await, 3);
}
