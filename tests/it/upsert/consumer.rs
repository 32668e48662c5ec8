//! The upserter consumer against real NATS and a real database: hostile events, events of a
//! newer writer, and events the database refuses are parked with their reason — never acked
//! away, never stalling the logins behind them — and `wxlogin parked retry` applies them once
//! the cause is gone.

use std::time::Duration;

use crate::helpers::{APPID, Db, Options, TestApp, spawn_app};
use sea_orm::ConnectionTrait;
use wxlogin::{
    app::parked::{self as parked_cli, ParkedCommand},
    contract::{
        events::{self, LOGIN_RESULT_V1, LOGIN_RESULT_V2, LoginOutcome, LoginResult},
        parked::{self, Stage},
    },
};

/// A well-formed successful result for `openid`, as a worker would publish it.
fn result_for(openid: &str, v: u32) -> LoginResult {
    LoginResult {
        v,
        login_id: uuid::Uuid::new_v4().simple().to_string().as_str().into(),
        appid: APPID.into(),
        code_key: uuid::Uuid::new_v4().simple().to_string().as_str().into(),
        received_at_ms: 1,
        finished_at_ms: 2,
        upstream_calls: 1,
        outcome: LoginOutcome::Success {
            openid: openid.into(),
            unionid: None,
            session_key_sealed: "sealed".into(),
        },
        tag: None,
    }
}

async fn publish_result(app: &TestApp, result: &LoginResult) {
    let subject = app
        .topology()
        .result_subject(&result.appid, &result.code_key);
    let js = app.js().await;
    js.publish(subject, events::encode(result))
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn log_in(app: &TestApp, user: &str) {
    let code = app.mint(user).await;
    assert_eq!(app.login_following_tickets(&code).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_on_the_streams_are_parked_and_logins_go_on() {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    let js = app.js().await;
    let prefix = &app.settings.nats_prefix;
    let junk: [&[u8]; 5] = [
        b"not json",
        b"{\"v\":1}",
        b"{\"v\":99,\"outcome\":\"success\"}",
        &[0xff, 0xfe, 0x00],
        b"{\"v\":1,\"login_id\":\"x\",\"appid\":\"wx00000000000000a1\",\"code_key\":\"k\",\"received_at_ms\":0,\"finished_at_ms\":0,\"upstream_calls\":0,\"outcome\":\"success\",\"openid\":\"o\",\"unionid\":null,\"session_key_sealed\":\"",
    ];
    for payload in junk {
        for subject in [
            format!("{prefix}.results.{APPID}"),
            format!("{prefix}.codes.{APPID}"),
        ] {
            js.publish(subject, payload.to_vec().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
    // A large payload too (but under the server's max payload).
    js.publish(
        format!("{prefix}.codes.{APPID}"),
        vec![b'{'; 500_000].into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    log_in(&app, "kate").await;
    assert_eq!(app.wait_for_logins(1).await.len(), 1);
    // Every piece of junk was set aside with its reason, none dropped: 5 results, 6 codes.
    let all = app.wait_for_parked(11).await;
    let count = |stage| all.iter().filter(|p| p.stage == Some(stage)).count();
    assert_eq!((count(Stage::Upsert), count(Stage::Exchange)), (5, 6));
    assert!(all.iter().all(|p| !p.reason.is_empty() && p.from_seq > 0));
    let newer = all
        .iter()
        .find(|p| p.payload.starts_with(b"{\"v\":99"))
        .unwrap();
    assert!(newer.reason.contains("newer wxlogin"), "{}", newer.reason);
    // …and out of the work queue, not left to loop: the codes stream drains.
    let mut codes = js.get_stream(format!("{prefix}_CODES")).await.unwrap();
    let mut left = u64::MAX;
    for _ in 0..100 {
        left = codes.info().await.unwrap().state.messages;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "junk code messages were not cleared");
    app.stop().await;
}

/// A rolling upgrade deploys a newer worker before this upserter: its events are parked, the
/// logins this upserter can read go on, and nothing is acked away unparked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_writers_event_is_parked_by_an_older_upserter_not_lost() {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    // (Version 2 is this build's phone results: a writer newer still writes 3.)
    publish_result(&app, &result_for("from-v3", LOGIN_RESULT_V2 + 1)).await;
    log_in(&app, "lena").await;
    app.wait_for_logins(1).await;
    let all = app.wait_for_parked(1).await;
    assert_eq!(all.len(), 1);
    let p = &all[0];
    assert_eq!(p.stage, Some(Stage::Upsert));
    assert!(p.reason.contains("version 3"), "{}", p.reason);
    assert_eq!(
        p.login_id.as_deref(),
        None,
        "published by hand, without headers"
    );
    // The copy is the event itself, readable by the build that wrote it.
    let back: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(back["openid"], "from-v3");
    // A retry with this build leaves it parked, saying why.
    parked_cli::run(&app.settings, ParkedCommand::Retry { seqs: vec![] })
        .await
        .unwrap();
    let js = app.js().await;
    assert_eq!(parked::list(&js, &app.topology()).await.unwrap().len(), 1);
    app.stop().await;
}

/// One event the database refuses (a rule added here stands for an over-long value, a bad
/// byte, a constraint): it is parked, the logins published after it are applied, and once the
/// database takes it, `wxlogin parked retry` applies it and removes it.
async fn an_event_the_database_refuses_is_parked_and_retried_once_it_can_apply(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    let refuse = match db {
        Db::Sqlite => {
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON wx_users WHEN NEW.openid = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        }
        Db::Postgres => "ALTER TABLE wx_users ADD CONSTRAINT no_poison CHECK (openid <> 'poison')",
    };
    let conn = app.db().await;
    conn.execute_unprepared(refuse).await.unwrap();
    publish_result(&app, &result_for("poison", LOGIN_RESULT_V1)).await;
    // Over-long for the column on either database: refused before it reaches one.
    publish_result(&app, &result_for(&"o".repeat(65), LOGIN_RESULT_V1)).await;
    for user in ["mia", "noa", "oli"] {
        log_in(&app, user).await;
    }
    assert_eq!(
        app.wait_for_logins(3).await.len(),
        3,
        "the logins behind went on"
    );
    let all = app.wait_for_parked(2).await;
    let reason = |needle: &str| all.iter().any(|p| p.reason.contains(needle));
    assert!(reason("the database refused it"), "{all:?}");
    assert!(reason("openid is longer than 64"), "{all:?}");

    let allow = match db {
        Db::Sqlite => "DROP TRIGGER refuse_poison",
        Db::Postgres => "ALTER TABLE wx_users DROP CONSTRAINT no_poison",
    };
    conn.execute_unprepared(allow).await.unwrap();
    parked_cli::run(&app.settings, ParkedCommand::Retry { seqs: vec![] })
        .await
        .unwrap();
    let users = app.users().await;
    assert!(
        users
            .iter()
            .any(|u| u.openid == "poison" && u.login_count == 1)
    );
    let left = parked::list(&app.js().await, &app.topology())
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "the over-long openid still cannot be stored");
    assert!(left[0].reason.contains("longer than 64"));
    app.stop().await;
}

on_both_databases!(an_event_the_database_refuses_is_parked_and_retried_once_it_can_apply);
