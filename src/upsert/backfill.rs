//! The upgrade to exact login counts (migration `m20261202_000001_login_history`) on a table the
//! first upserter wrote. That upserter went by stream sequence: a login was applied when its
//! sequence was at or below its user's `last_event_seq`. The migration can record only each
//! user's last login in `wx_logins`; this records all the others, from the retained results
//! stream, without counting them again — so a redelivery or a replay of those events after the
//! upgrade changes nothing. It runs once, where the migration is applied ([`prepare`]), before
//! the upserter applies anything.

use std::collections::HashMap;

use async_nats::jetstream;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};

use super::{
    ReplayFrom,
    consumer::{Read, UpsertError, read},
    db,
    replay::History,
    users::{self, Change, UserLogin, logins},
};
use crate::contract::topology::Topology;

const BATCH: usize = 500;

/// Migrates the database and, if that introduced the login history on a table that already
/// had users, backfills it from the results stream; then opens the upserter's pool. The one
/// way the upserter, `wxlogin migrate`, replays and retries open the database.
pub async fn prepare(
    url: &str,
    js: &jetstream::Context,
    topology: &Topology,
) -> Result<DatabaseConnection, UpsertError> {
    let migrated = db::migrate_with(url, true).await?;
    let pool = db::open(url).await?;
    if migrated.login_history_added {
        let recorded = login_history(js, topology, &pool).await?;
        tracing::info!(recorded, "login history backfilled from the results stream");
    }
    Ok(pool)
}

/// Records the logins the first upserter applied; returns how many were recorded.
pub async fn login_history(
    js: &jetstream::Context,
    topology: &Topology,
    pool: &DatabaseConnection,
) -> Result<u64, UpsertError> {
    let mut history = History::open(js, topology, ReplayFrom::Start).await?;
    let (mut batch, mut recorded) = (Vec::new(), 0);
    while let Some(event) = history.next().await? {
        if let Read::Apply(Change::Login(login)) = read(event.seq, &event.payload) {
            batch.push(login);
        }
        if batch.len() >= BATCH {
            recorded += record_applied(pool, &batch).await?;
            batch.clear();
        }
    }
    recorded += record_applied(pool, &batch).await?;
    Ok(recorded)
}

async fn record_applied(
    pool: &DatabaseConnection,
    batch: &[UserLogin],
) -> Result<u64, UpsertError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let openids: Vec<&str> = batch.iter().map(|l| l.openid.as_str()).collect();
    let applied_up_to: HashMap<(String, String), i64> = users::Entity::find()
        .select_only()
        .columns([
            users::Column::Appid,
            users::Column::Openid,
            users::Column::LastEventSeq,
        ])
        .filter(users::Column::Openid.is_in(openids))
        .into_tuple::<(String, String, i64)>()
        .all(pool)
        .await
        .map_err(db::PersistenceError::from)?
        .into_iter()
        .map(|(appid, openid, seq)| ((appid, openid), seq))
        .collect();
    let rows: Vec<logins::ActiveModel> = batch
        .iter()
        .filter(|l| {
            let key = (l.appid.clone(), l.openid.clone());
            applied_up_to
                .get(&key)
                .is_some_and(|&up_to| l.seq as i64 <= up_to)
        })
        .map(|l| logins::ActiveModel {
            login_id: sea_orm::Set(l.login_id.clone()),
            appid: sea_orm::Set(l.appid.clone()),
            openid: sea_orm::Set(l.openid.clone()),
            finished_at: sea_orm::Set(l.at),
            stream_seq: sea_orm::Set(l.seq as i64),
        })
        .collect();
    let n = rows.len() as u64;
    if n > 0 {
        logins::Entity::insert_many(rows)
            .on_conflict_do_nothing_on([logins::Column::LoginId])
            .exec_without_returning(pool)
            .await
            .map_err(db::PersistenceError::from)?;
    }
    Ok(n)
}
