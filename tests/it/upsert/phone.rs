//! Phone numbers and reset session keys on the user rows: order-free, idempotent, and only
//! ever sealed (with a keyed hash beside), on both databases.

use super::{all_users, apply, at, fresh_db, login};
use crate::helpers::{APPID, Db};
use wxlogin::upsert::users::{Change, KeyReset, PhoneUpdate};

fn phone(n: u64, openid: &str, ms: i64) -> Change {
    Change::Phone(PhoneUpdate {
        seq: 2000 + n,
        request_id: format!("phone-{n}"),
        appid: APPID.into(),
        openid: openid.into(),
        phone_sealed: format!("sealed-number-{n}"),
        phone_hash: format!("{n:064}"),
        at: at(ms),
    })
}

fn reset(n: u64, openid: &str, ms: i64) -> Change {
    Change::KeyReset(KeyReset {
        seq: 3000 + n,
        call_id: format!("reset-{n}"),
        appid: APPID.into(),
        openid: openid.into(),
        session_key_sealed: format!("r{n}"),
        at: at(ms),
    })
}

type Phone = (String, Option<String>, Option<String>, i64, i64, String);

async fn phones(conn: &sea_orm::DatabaseConnection) -> Vec<Phone> {
    all_users(conn)
        .await
        .into_iter()
        .map(|u| {
            (
                u.openid,
                u.phone_sealed,
                u.phone_hash,
                u.phone_at_ms,
                u.login_count,
                u.session_key_sealed,
            )
        })
        .collect()
}

/// A phone result applied before or after its user's login, once or again: the row keeps the
/// newest number, the login's count and key, whatever the order.
async fn the_newest_phone_number_reaches_the_row_in_any_order_and_a_repeat_changes_nothing(db: Db) {
    let events = [
        login(1, "o1", 1_000, None),
        phone(1, "o1", 2_000),
        phone(2, "o1", 3_000),
        login(2, "o1", 4_000, None),
    ];
    let mut seen = Vec::new();
    for order in [[0, 1, 2, 3], [2, 1, 3, 0], [3, 2, 0, 1], [1, 0, 3, 2]] {
        let (conn, _, _dir) = fresh_db(db).await;
        for i in order {
            apply(&conn, &[events[i].clone()]).await;
        }
        // Everything again, as a replay would.
        apply(&conn, &events).await;
        seen.push(phones(&conn).await);
    }
    let expected = vec![(
        "o1".to_string(),
        Some("sealed-number-2".to_string()),
        Some(format!("{:064}", 2)),
        3_000,
        2,
        "k2".to_string(),
    )];
    for s in seen {
        assert_eq!(s, expected);
    }
}

/// A reset key is the user's newest from the reset on: a login exchanged before it does not
/// bring the old key back, one after it replaces it; the count is only the logins'.
async fn a_reset_session_key_is_kept_until_a_later_login_replaces_it(db: Db) {
    let (conn, _, _dir) = fresh_db(db).await;
    apply(&conn, &[login(1, "o1", 1_000, None), reset(1, "o1", 5_000)]).await;
    apply(&conn, &[login(2, "o1", 4_000, None)]).await;
    let u = &all_users(&conn).await[0];
    assert_eq!(
        (
            u.session_key_sealed.as_str(),
            u.login_count,
            u.last_login_id.as_str()
        ),
        ("r1", 2, "reset-1")
    );
    apply(&conn, &[reset(1, "o1", 5_000)]).await;
    apply(&conn, &[login(3, "o1", 6_000, None)]).await;
    let u = &all_users(&conn).await[0];
    assert_eq!((u.session_key_sealed.as_str(), u.login_count), ("k3", 3));
}

on_both_databases!(
    the_newest_phone_number_reaches_the_row_in_any_order_and_a_repeat_changes_nothing,
    a_reset_session_key_is_kept_until_a_later_login_replaces_it,
);

/// The upgrade to phone numbers: the previous version's rows and its upserter's statements
/// (which name no phone column) keep working after the migration, which a second run finds
/// done; the rows then take phone numbers.
async fn the_phone_migration_keeps_the_previous_versions_rows_and_writes(db: Db) {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{
        ConnectionTrait, Database,
        sea_query::{Alias, Query},
    };
    let dir = tempfile::tempdir().unwrap();
    let url = match db {
        Db::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display()),
        Db::Postgres => crate::helpers::fresh_postgres().await.0,
    };
    let conn = Database::connect(&url).await.unwrap();
    // The schema before phone numbers, and a row its upserter wrote.
    Migrator::up(&conn, Some(2)).await.unwrap();
    let old_write = |openid: &str| {
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new("wx_users"))
            .columns(
                [
                    "appid",
                    "openid",
                    "session_key_sealed",
                    "login_count",
                    "last_event_seq",
                    "last_login_id",
                    "created_at",
                    "updated_at",
                    "key_at_ms",
                ]
                .map(Alias::new),
            )
            .values_panic([
                APPID.into(),
                openid.into(),
                "k-old".into(),
                1i64.into(),
                1i64.into(),
                "login-old".into(),
                at(1_000).into(),
                at(1_000).into(),
                1_000i64.into(),
            ]);
        insert
    };
    conn.execute(&old_write("o-before")).await.unwrap();
    // The migration, twice (SQLite runs it outside a transaction: a failed run is repeated).
    Migrator::up(&conn, None).await.unwrap();
    Migrator::up(&conn, None).await.unwrap();
    // A previous-version upserter still running writes as it did.
    conn.execute(&old_write("o-during")).await.unwrap();
    apply(
        &conn,
        &[phone(1, "o-before", 2_000), phone(2, "o-during", 2_000)],
    )
    .await;
    let rows = phones(&conn).await;
    assert_eq!(rows.len(), 2);
    for (openid, sealed, hash, at_ms, count, key) in rows {
        assert!(sealed.is_some() && hash.is_some(), "{openid}");
        assert_eq!(
            (at_ms, count, key.as_str()),
            (2_000, 1, "k-old"),
            "{openid}"
        );
    }
}

mod upgrade {
    use crate::helpers::Db;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_phone_migration_keeps_the_previous_versions_rows_and_writes_on_sqlite() {
        super::the_phone_migration_keeps_the_previous_versions_rows_and_writes(Db::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_phone_migration_keeps_the_previous_versions_rows_and_writes_on_postgres() {
        super::the_phone_migration_keeps_the_previous_versions_rows_and_writes(Db::Postgres).await
    }
}
