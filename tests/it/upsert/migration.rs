//! An upgrade from the first table format, as a deployment does it: rows written by the first
//! upserter (which went by stream sequence), the results stream those rows came from, then
//! `migrate` (here `upsert::prepare`, what `wxlogin migrate` and the upserter run), then a
//! replay of the whole stream and redeliveries. Nothing counts twice, what was never applied
//! counts once, no key goes back, and the first format's column keeps moving for old upserters.

use super::{at, login};
use crate::helpers::{APPID, Db, fresh_postgres};
use migration::{Migrator, MigratorTrait};
use natsd::NatsServer;
use sea_orm::{
    ConnectionTrait, Database, EntityTrait,
    sea_query::{Alias, Query},
};
use wxlogin::{
    contract::{
        events::{self, LOGIN_RESULT_V1, LoginOutcome, LoginResult},
        topology::Topology,
    },
    settings::Settings,
    upsert::{self, ReplayFrom, apply, users},
};

/// The results stream: o1 logs in at seq 1 and 2, o2 at 3, o1 again at 4.
const EVENTS: [(&str, u64); 4] = [("o1", 1), ("o1", 2), ("o2", 3), ("o1", 4)];

async fn first_format_rows(url: &str) {
    let conn = Database::connect(url).await.unwrap();
    Migrator::up(&conn, Some(1)).await.unwrap();
    // What the first upserter wrote having applied seq 1..=3 (seq 4 not yet).
    for (openid, count, seq) in [("o1", 2, 2), ("o2", 1, 3)] {
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new("wx_users"))
            .columns(
                [
                    "appid",
                    "openid",
                    "unionid",
                    "session_key_sealed",
                    "login_count",
                    "last_event_seq",
                    "last_login_id",
                    "created_at",
                    "updated_at",
                ]
                .map(Alias::new),
            )
            .values_panic([
                APPID.into(),
                openid.into(),
                Option::<String>::None.into(),
                format!("k{seq}").into(),
                (count as i64).into(),
                (seq as i64).into(),
                format!("login-{seq}").into(),
                at(1_000).into(),
                at(1_000 * seq as i64).into(),
            ]);
        conn.execute(&insert).await.unwrap();
    }
    conn.close().await.unwrap();
}

async fn an_upgrade_from_the_first_table_format_loses_and_repeats_nothing(db: Db) {
    let (url, _dir) = match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
            (url, Some(dir))
        }
        Db::Postgres => (fresh_postgres().await.0, None),
    };
    let nats = NatsServer::start_temporary().await.unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let topology = Topology::from_settings(&Settings::default());
    topology.ensure(&js).await.unwrap();
    for (openid, n) in EVENTS {
        let result = LoginResult {
            v: LOGIN_RESULT_V1,
            login_id: format!("login-{n}").as_str().into(),
            appid: APPID.into(),
            code_key: format!("code-{n}").as_str().into(),
            received_at_ms: 1_000 * n as i64,
            finished_at_ms: 1_000 * n as i64,
            upstream_calls: 1,
            outcome: LoginOutcome::Success {
                openid: openid.into(),
                unionid: None,
                session_key_sealed: format!("k{n}"),
            },
            tag: None,
        };
        let subject = topology.result_subject(&result.appid, &result.code_key);
        js.publish(subject, events::encode(&result))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    first_format_rows(&url).await;
    // `wxlogin upsert::db::connect` alone refuses the upgrade: it cannot backfill.
    let refused = upsert::db::connect(&url).await.unwrap_err().to_string();
    assert!(refused.contains("wxlogin migrate"), "{refused}");

    let conn = upsert::prepare(&url, &js, &topology).await.unwrap();
    let row = |users: &[users::Model], openid: &str| {
        let u = users.iter().find(|u| u.openid == openid).unwrap().clone();
        (u.login_count, u.session_key_sealed, u.key_at_ms)
    };
    let users = users::Entity::find().all(&conn).await.unwrap();
    assert_eq!(
        row(&users, "o1"),
        (2, "k2".to_string(), 2_000),
        "backfilled"
    );
    // The whole stream again (a replay, or every event redelivered), twice: only seq 4, which
    // the first upserter had not applied, counts; it is o1's newest key.
    for _ in 0..2 {
        upsert::replay(&js, &topology, &conn, ReplayFrom::Start, 2, |_, _| {})
            .await
            .unwrap();
        let users = users::Entity::find().all(&conn).await.unwrap();
        assert_eq!(row(&users, "o1"), (3, "k4".to_string(), 4_000));
        assert_eq!(row(&users, "o2"), (1, "k3".to_string(), 3_000));
    }
    // A login from before the upgrade arriving late counts, without taking the newer key.
    apply::apply(&conn, &[login(9, "o2", 500, None)])
        .await
        .unwrap();
    let users = users::Entity::find().all(&conn).await.unwrap();
    assert_eq!(row(&users, "o2"), (2, "k3".to_string(), 3_000));
    // The first format's column still moves forward, for first-format upserters.
    let o1 = users.iter().find(|u| u.openid == "o1").unwrap();
    assert_eq!(o1.last_event_seq, 4);
}

on_both_databases!(an_upgrade_from_the_first_table_format_loses_and_repeats_nothing);
