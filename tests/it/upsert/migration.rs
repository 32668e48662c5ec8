//! An upgrade from the first table format, as a deployment would do it: rows written by the
//! first upserter (which went by stream sequence), then `migrate`, then the new upserter
//! redelivered the last applied event and given new ones. Nothing counts twice, no key goes
//! back, and the first upserter's column stays for the old upserters still deployed.

use super::{at, login};
use crate::helpers::{APPID, Db, fresh_postgres};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, Database, EntityTrait,
    sea_query::{Alias, Query},
};
use wxlogin::upsert::{apply, db, users};

async fn an_upgrade_from_the_first_table_format_loses_and_repeats_nothing(db: Db) {
    let (url, _dir) = match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
            (url, Some(dir))
        }
        Db::Postgres => (fresh_postgres().await.0, None),
    };
    let conn = Database::connect(url.as_str()).await.unwrap();
    Migrator::up(&conn, Some(1)).await.unwrap();
    // What the first upserter wrote: o1 logged in twice (last at seq 7, 7 000 ms), o2 once.
    for (openid, count, seq, login_id, ms) in [
        ("o1", 2, 7, "login-7", 7_000),
        ("o2", 1, 3, "login-3", 3_000),
    ] {
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
                login_id.into(),
                at(1_000).into(),
                at(ms).into(),
            ]);
        conn.execute(&insert).await.unwrap();
    }
    conn.close().await.unwrap();

    db::migrate(&url).await.unwrap();
    let conn = db::connect(&url).await.unwrap();
    let row = |users: &[users::Model], openid: &str| {
        let u = users.iter().find(|u| u.openid == openid).unwrap().clone();
        (u.login_count, u.session_key_sealed, u.key_at_ms)
    };
    let users = users::Entity::find().all(&conn).await.unwrap();
    assert_eq!(
        row(&users, "o1"),
        (2, "k7".to_string(), 7_000),
        "backfilled"
    );
    // The last applied event, redelivered to the new upserter: already counted.
    let redelivered = apply::apply(&conn, &[login(7, "o1", 7_000, None)])
        .await
        .unwrap();
    assert_eq!(redelivered.new_logins, 0);
    // An older login that was never applied counts, without taking the newer key; a new
    // login counts and takes it.
    apply::apply(
        &conn,
        &[login(5, "o1", 5_000, None), login(8, "o2", 8_000, None)],
    )
    .await
    .unwrap();
    let users = users::Entity::find().all(&conn).await.unwrap();
    assert_eq!(row(&users, "o1"), (3, "k7".to_string(), 7_000));
    assert_eq!(row(&users, "o2"), (2, "k8".to_string(), 8_000));
    // The first format's column still moves forward, for first-format upserters.
    let o2 = users.iter().find(|u| u.openid == "o2").unwrap();
    assert_eq!(o2.last_event_seq, 8);
}

on_both_databases!(an_upgrade_from_the_first_table_format_loses_and_repeats_nothing);
