//! Replaying the retained result events rebuilds the same users, and replaying twice changes
//! nothing.

use crate::helpers::{Db, Options, spawn_app};
use sea_orm::Database;
use wxlogin::upsert::{self, db, users};

/// Every column but the surrogate id and the timestamps of when a row was written.
type Row = (String, String, Option<String>, String, i64, i64, String);

fn comparable(users: Vec<users::Model>) -> Vec<Row> {
    users
        .into_iter()
        .map(|u| {
            (
                u.appid,
                u.openid,
                u.unionid,
                u.session_key_sealed,
                u.login_count,
                u.last_event_seq,
                u.last_login_id,
            )
        })
        .collect()
}

async fn replay_into(app: &crate::helpers::TestApp, db_url: &str) -> upsert::ReplayStats {
    let db = db::connect(db_url).await.unwrap();
    let client = async_nats::connect(app.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    upsert::replay(
        &js,
        &app.topology(),
        &db,
        upsert::ReplayFrom::Start,
        3,
        |_, _| {},
    )
    .await
    .unwrap()
}

async fn replaying_results_into_an_empty_database_gives_the_same_users(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    // Some users log in twice, one fails: failures are events too but make no rows.
    for user in ["u1", "u2", "u3", "u1", "u2", "u1"] {
        let code = app.mint(user).await;
        assert_eq!(app.login_following_tickets(&code).await.0, 200);
    }
    assert_eq!(
        app.login_following_tickets("ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ")
            .await
            .0,
        400
    );
    let live = comparable(app.wait_for_logins(6).await);
    assert_eq!(live.len(), 3);

    let fresh_url = match db {
        Db::Sqlite => format!(
            "sqlite://{}/replayed.db?mode=rwc",
            tempfile::tempdir().unwrap().keep().display()
        ),
        Db::Postgres => crate::helpers::fresh_postgres().await.0,
    };
    let stats = replay_into(&app, &fresh_url).await;
    assert_eq!(stats.events, 7);
    assert_eq!(stats.logins, 6);
    assert_eq!(stats.failures, 1);
    let rebuilt = || async {
        let conn = Database::connect(fresh_url.as_str()).await.unwrap();
        use sea_orm::{EntityTrait, QueryOrder};
        comparable(
            users::Entity::find()
                .order_by_asc(users::Column::Appid)
                .order_by_asc(users::Column::Openid)
                .all(&conn)
                .await
                .unwrap(),
        )
    };
    assert_eq!(rebuilt().await, live);
    // Replaying again (into the rebuilt one, and into the live one) changes nothing.
    replay_into(&app, &fresh_url).await;
    assert_eq!(rebuilt().await, live);
    replay_into(&app, &app.db_url).await;
    assert_eq!(comparable(app.users().await), live);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replaying_results_into_an_empty_database_gives_the_same_users() {
    replaying_results_into_an_empty_database_gives_the_same_users(Db::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replaying_results_into_an_empty_database_gives_the_same_users() {
    replaying_results_into_an_empty_database_gives_the_same_users(Db::Postgres).await
}
