//! The HTTP API end to end: real nats-server, real database (SQLite and PostgreSQL), the
//! simulator over real HTTP, and the three roles running against them.

mod errors;
mod forgery;
mod pressure;
mod reuse;
mod tokens;
mod upgrade;

use std::time::Duration;

use crate::helpers::{APPID, Db, Options, spawn_app};
use serde_json::json;

// The flows of the modules above, each run on both databases by `on_both_databases!` below.
use errors::*;
use pressure::*;
use tokens::*;

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
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 503);
    app.stop().await;
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
