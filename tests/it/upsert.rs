//! The `wx_users` upsert on real SQLite and PostgreSQL databases, and the upserter consumer
//! facing hostile events.

use crate::helpers::{APPID, Db, Options, spawn_app};
use chrono::Utc;
use sea_orm::{DatabaseConnection, EntityTrait};
use wxlogin::upsert::{
    db,
    users::{self, UserLogin},
};

async fn fresh_db(db: Db) -> (DatabaseConnection, Option<tempfile::TempDir>) {
    match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("u.db").display());
            (db::connect(&url).await.unwrap(), Some(dir))
        }
        Db::Postgres => {
            let (url, _, _) = crate::helpers::fresh_postgres().await;
            (db::connect(&url).await.unwrap(), None)
        }
    }
}

fn login(seq: u64, openid: &str, key: &str, unionid: Option<&str>) -> UserLogin {
    UserLogin {
        seq,
        login_id: format!("login-{seq}"),
        appid: APPID.into(),
        openid: openid.into(),
        unionid: unionid.map(str::to_string),
        session_key_sealed: key.into(),
        at: Utc::now(),
    }
}

async fn only_user(db: &DatabaseConnection) -> users::Model {
    let all = users::Entity::find().all(db).await.unwrap();
    assert_eq!(all.len(), 1);
    all.into_iter().next().unwrap()
}

async fn redelivered_and_older_events_never_count_twice_or_overwrite_newer_keys(db: Db) {
    let (conn, _dir) = fresh_db(db).await;
    users::upsert_logins(&conn, &[login(10, "o1", "k10", Some("u1"))])
        .await
        .unwrap();
    // The same event again (a redelivery): nothing changes.
    users::upsert_logins(&conn, &[login(10, "o1", "k10", Some("u1"))])
        .await
        .unwrap();
    let u = only_user(&conn).await;
    assert_eq!(
        (
            u.login_count,
            u.last_event_seq,
            u.session_key_sealed.as_str()
        ),
        (1, 10, "k10")
    );
    // A newer one counts and replaces the key; an older one arriving late does neither.
    users::upsert_logins(&conn, &[login(12, "o1", "k12", None)])
        .await
        .unwrap();
    users::upsert_logins(&conn, &[login(11, "o1", "k11", Some("u1"))])
        .await
        .unwrap();
    let u = only_user(&conn).await;
    assert_eq!(
        (
            u.login_count,
            u.last_event_seq,
            u.session_key_sealed.as_str()
        ),
        (2, 12, "k12")
    );
    // An answer without a unionid does not erase the one we know.
    assert_eq!(u.unionid.as_deref(), Some("u1"));
}

async fn one_batch_with_several_logins_of_one_user_counts_each_once(db: Db) {
    let (conn, _dir) = fresh_db(db).await;
    let batch = vec![
        login(3, "o2", "k3", None),
        login(1, "o2", "k1", None),
        login(2, "o2", "k2", None),
        login(2, "o2", "k2", None), // duplicated inside the batch
        login(4, "o3", "k4", None),
    ];
    users::upsert_logins(&conn, &batch).await.unwrap();
    let all = users::Entity::find().all(&conn).await.unwrap();
    let o2 = all.iter().find(|u| u.openid == "o2").unwrap();
    assert_eq!((o2.login_count, o2.session_key_sealed.as_str()), (3, "k3"));
    assert_eq!(all.len(), 2);
    // The whole batch again: idempotent.
    users::upsert_logins(&conn, &batch).await.unwrap();
    let again = users::Entity::find().all(&conn).await.unwrap();
    assert_eq!(again, all);
}

#[tokio::test]
async fn sqlite_redelivered_and_older_events_never_count_twice_or_overwrite_newer_keys() {
    redelivered_and_older_events_never_count_twice_or_overwrite_newer_keys(Db::Sqlite).await
}
#[tokio::test]
async fn postgres_redelivered_and_older_events_never_count_twice_or_overwrite_newer_keys() {
    redelivered_and_older_events_never_count_twice_or_overwrite_newer_keys(Db::Postgres).await
}
#[tokio::test]
async fn sqlite_one_batch_with_several_logins_of_one_user_counts_each_once() {
    one_batch_with_several_logins_of_one_user_counts_each_once(Db::Sqlite).await
}
#[tokio::test]
async fn postgres_one_batch_with_several_logins_of_one_user_counts_each_once() {
    one_batch_with_several_logins_of_one_user_counts_each_once(Db::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_on_the_streams_are_set_aside_and_logins_go_on() {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    let client = async_nats::connect(app.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
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
    let code = app.mint("kate").await;
    assert_eq!(app.login_following_tickets(&code).await.0, 200);
    let users = app.wait_for_logins(1).await;
    assert_eq!(users.len(), 1);
    // The junk on the work queue was terminated, not left to loop: the codes stream drains.
    let mut codes = js.get_stream(format!("{prefix}_CODES")).await.unwrap();
    let mut left = u64::MAX;
    for _ in 0..100 {
        left = codes.info().await.unwrap().state.messages;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "junk code messages were not cleared");
    app.stop().await;
}
