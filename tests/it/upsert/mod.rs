//! The user tables: the batched, order-free upsert on real SQLite and PostgreSQL databases
//! (here), the consumer facing hostile and refused events (`consumer`), and an upgrade from the
//! first table format (`migration`).

mod consumer;
mod migration;
mod phone;

use crate::helpers::{APPID, Db};
use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, QueryOrder};
use wxlogin::upsert::{
    apply::{self, Applied},
    db,
    users::{self, Change, UnionidUpdate, UserLogin},
};

/// A migrated database of its own: a SQLite file, or a fresh PostgreSQL database.
pub async fn fresh_db(db: Db) -> (DatabaseConnection, String, Option<tempfile::TempDir>) {
    match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("u.db").display());
            (db::connect(&url).await.unwrap(), url, Some(dir))
        }
        Db::Postgres => {
            let (url, _, _) = crate::helpers::fresh_postgres().await;
            (db::connect(&url).await.unwrap(), url, None)
        }
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

/// Login `n` of `openid`, whose exchange ended at `ms`; its key is `k{n}`.
fn login(n: u64, openid: &str, ms: i64, unionid: Option<&str>) -> Change {
    Change::Login(UserLogin {
        seq: n,
        login_id: format!("login-{n}"),
        appid: APPID.into(),
        openid: openid.into(),
        unionid: unionid.map(str::to_string),
        session_key_sealed: format!("k{n}"),
        at: at(ms),
    })
}

fn learned(n: u64, openid: &str, unionid: &str, ms: i64) -> Change {
    Change::Unionid(UnionidUpdate {
        seq: 1000 + n,
        login_id: format!("login-{n}"),
        appid: APPID.into(),
        openid: openid.into(),
        unionid: unionid.into(),
        session_key_sealed: format!("k{n}"),
        at: at(ms),
    })
}

async fn all_users(db: &DatabaseConnection) -> Vec<users::Model> {
    users::Entity::find()
        .order_by_asc(users::Column::Openid)
        .all(db)
        .await
        .unwrap()
}

/// What a row says, but for its surrogate id and the informational stream sequence.
type Said = (String, Option<String>, String, i64, String, i64, i64, i64);

fn said(users: &[users::Model]) -> Vec<Said> {
    users
        .iter()
        .map(|u| {
            (
                u.openid.clone(),
                u.unionid.clone(),
                u.session_key_sealed.clone(),
                u.login_count,
                u.last_login_id.clone(),
                u.key_at_ms,
                u.created_at.timestamp_millis(),
                u.updated_at.timestamp_millis(),
            )
        })
        .collect()
}

async fn apply(db: &DatabaseConnection, changes: &[Change]) -> Applied {
    apply::apply(db, changes).await.unwrap()
}

async fn redelivered_and_older_events_never_count_twice_or_overwrite_newer_keys(db: Db) {
    let (conn, _, _dir) = fresh_db(db).await;
    apply(&conn, &[login(10, "o1", 10_000, Some("u1"))]).await;
    // The same event again (a redelivery): nothing changes.
    let again = apply(&conn, &[login(10, "o1", 10_000, Some("u1"))]).await;
    assert_eq!((again.new_logins, again.repeated_logins), (0, 1));
    let u = &all_users(&conn).await[0];
    assert_eq!((u.login_count, u.session_key_sealed.as_str()), (1, "k10"));
    // A newer exchange counts and replaces the key; an older one arriving late counts but
    // leaves the newer key.
    apply(&conn, &[login(12, "o1", 12_000, None)]).await;
    apply(&conn, &[login(11, "o1", 11_000, Some("u1"))]).await;
    let u = &all_users(&conn).await[0];
    assert_eq!(
        (u.login_count, u.session_key_sealed.as_str(), u.key_at_ms),
        (3, "k12", 12_000)
    );
    // An answer without a unionid does not erase the one we know.
    assert_eq!(u.unionid.as_deref(), Some("u1"));
    assert_eq!(u.created_at.timestamp_millis(), 10_000);
    assert_eq!(u.updated_at.timestamp_millis(), 12_000);
}

/// Two upserters holding halves of the stream, committing in either order, and redeliveries
/// in reverse: every login counts once, and the rows are what one in-order pass makes.
async fn login_count_is_exact_with_two_upserters_and_any_delivery_order(db: Db) {
    let events: Vec<Change> = (1..=40)
        .map(|n| login(n, &format!("o{}", n % 3), 1_000 * n as i64, None))
        .collect();
    let (ordered, _, _d1) = fresh_db(db).await;
    apply(&ordered, &events).await;
    let expected = said(&all_users(&ordered).await);
    assert_eq!(
        expected.iter().map(|s| s.3).sum::<i64>(),
        40,
        "{expected:?}"
    );

    let (conn, _, _d2) = fresh_db(db).await;
    let (first, second) = events.split_at(20);
    let mut second_reversed = second.to_vec();
    second_reversed.reverse();
    // U2 (the later half) commits alongside U1, each batch also holding a redelivery of the
    // other's events.
    let u1: Vec<Change> = first.iter().chain(&second[..5]).cloned().collect();
    let u2: Vec<Change> = second_reversed.iter().chain(&first[..5]).cloned().collect();
    let (a, b) = tokio::join!(apply::apply(&conn, &u2), apply::apply(&conn, &u1));
    // A conflict between the two is the database's to report; the batch is then redelivered.
    for (r, batch) in [(a, &u2), (b, &u1)] {
        if r.is_err() {
            apply(&conn, batch).await;
        }
    }
    apply(&conn, &events.iter().rev().cloned().collect::<Vec<_>>()).await;
    assert_eq!(said(&all_users(&conn).await), expected);
}

/// A stream recreated or re-imported numbers its events from 1 again: the same logins change
/// nothing, and a later login with a lower sequence still counts and takes the key.
async fn a_recreated_stream_changes_nothing_and_later_logins_still_apply(db: Db) {
    let (conn, _, _dir) = fresh_db(db).await;
    apply(&conn, &[login(500, "o1", 5_000, None)]).await;
    let before = said(&all_users(&conn).await);
    let renumbered = match login(500, "o1", 5_000, None) {
        Change::Login(l) => Change::Login(UserLogin { seq: 1, ..l }),
        _ => unreachable!(),
    };
    apply(&conn, &[renumbered]).await;
    assert_eq!(said(&all_users(&conn).await), before);
    let later = match login(501, "o1", 6_000, None) {
        Change::Login(l) => Change::Login(UserLogin { seq: 2, ..l }),
        _ => unreachable!(),
    };
    apply(&conn, &[later]).await;
    let u = &all_users(&conn).await[0];
    assert_eq!((u.login_count, u.session_key_sealed.as_str()), (2, "k501"));
}

/// "Newest" is the exchange that ended last, ties broken by the login id: published order,
/// batch order and stream sequence do not matter.
async fn the_newest_session_key_is_the_exchange_that_ended_last(db: Db) {
    let (conn, _, _dir) = fresh_db(db).await;
    // Login 7 was exchanged later but published (and numbered) first.
    apply(
        &conn,
        &[login(7, "o1", 9_000, None), login(8, "o1", 8_000, None)],
    )
    .await;
    apply(&conn, &[login(6, "o1", 9_000, None)]).await;
    let u = &all_users(&conn).await[0];
    assert_eq!(
        (u.session_key_sealed.as_str(), u.last_login_id.as_str()),
        ("k7", "login-7"),
        "a tie at 9000 goes to the greater login id"
    );
}

/// A decrypt may be applied before its login's result (another upserter, a redelivery): the
/// row gets the unionid either way, and the login's own key and count.
async fn a_unionid_reaches_the_row_whichever_of_it_and_the_login_comes_first(db: Db) {
    let events = [
        login(1, "o1", 1_000, None),
        learned(1, "o1", "uOne", 1_500),
        login(2, "o1", 2_000, None),
    ];
    let mut results = Vec::new();
    for order in [[0, 1, 2], [1, 0, 2], [1, 2, 0], [2, 1, 0]] {
        let (conn, _, _dir) = fresh_db(db).await;
        for i in order {
            apply(&conn, &[events[i].clone()]).await;
        }
        results.push(said(&all_users(&conn).await));
    }
    let (conn, _, _dir) = fresh_db(db).await;
    apply(&conn, &events).await;
    let together = said(&all_users(&conn).await);
    assert_eq!(together.len(), 1);
    let (_, unionid, key, count, ..) = &together[0];
    assert_eq!(
        (unionid.as_deref(), key.as_str(), *count),
        (Some("uOne"), "k2", 2)
    );
    for r in results {
        assert_eq!(r, together);
    }
    // A later decrypt claiming another unionid does not replace the known one.
    apply(&conn, &[learned(2, "o1", "uOther", 3_000)]).await;
    assert_eq!(all_users(&conn).await[0].unionid.as_deref(), Some("uOne"));
}

/// A database refusing one event (here a rule the test adds) fails its batch; the batch is
/// split until that event stands alone, and every other event of it is applied.
async fn an_event_the_database_refuses_is_isolated_and_the_rest_applies(db: Db) {
    let (conn, _, _dir) = fresh_db(db).await;
    let refuse = match db {
        Db::Sqlite => {
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON wx_users WHEN NEW.openid = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        }
        Db::Postgres => "ALTER TABLE wx_users ADD CONSTRAINT no_poison CHECK (openid <> 'poison')",
    };
    conn.execute_unprepared(refuse).await.unwrap();
    let mut batch: Vec<Change> = (1..=9)
        .map(|n| login(n, &format!("o{n}"), 1_000, None))
        .collect();
    batch.insert(4, login(99, "poison", 1_000, None));
    let (applied, refused) = apply::apply_isolating(&conn, &batch).await.unwrap();
    assert_eq!(applied.new_logins, 9);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, 4);
    assert_eq!(all_users(&conn).await.len(), 9);
}

/// A database that is not there is not a refusal: the batch fails whole, to be retried.
async fn a_database_that_is_away_is_retried_never_taken_for_a_refusal(db: Db) {
    let (conn, _, _dir) = fresh_db(db).await;
    conn.clone().close().await.ok();
    let err = apply::apply_isolating(&conn, &[login(1, "o1", 1, None)])
        .await
        .unwrap_err();
    assert_eq!(db::refusal(&err), None, "{err}");
}

on_both_databases!(
    redelivered_and_older_events_never_count_twice_or_overwrite_newer_keys,
    login_count_is_exact_with_two_upserters_and_any_delivery_order,
    a_recreated_stream_changes_nothing_and_later_logins_still_apply,
    the_newest_session_key_is_the_exchange_that_ended_last,
    a_unionid_reaches_the_row_whichever_of_it_and_the_login_comes_first,
    an_event_the_database_refuses_is_isolated_and_the_rest_applies,
    a_database_that_is_away_is_retried_never_taken_for_a_refusal,
);
