//! The batched upsert the consumer and replays share: one transaction per batch, two or three
//! statements whatever its size. First the batch's logins go into `wx_logins` (`ON CONFLICT DO
//! NOTHING RETURNING`): only the ones that were not there yet count. Then one `INSERT … ON
//! CONFLICT DO UPDATE` per user of those: `login_count` grows by their number and every other
//! column takes the merge [`super::users`] defines, so two upserters, redeliveries, replays and
//! re-imported streams all end with the same rows. Then the decrypts' unionids, then the phone
//! numbers.
//!
//! Concurrent upserters on PostgreSQL: a login both insert is counted by the first to commit
//! (the second waits on the primary key, then skips it). Rows are written in one order (login
//! id, then user), which keeps deadlocks rare; one is a retryable error like any other.

use std::collections::{BTreeMap, HashSet};

use sea_orm::{
    ActiveValue::{NotSet, Set},
    ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, TransactionTrait,
    sea_query::{Expr, OnConflict, Query},
};

use super::users::{self, Change, KeyReset, PhoneUpdate, UnionidUpdate, UserLogin, logins};

/// What a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Logins counted for the first time.
    pub new_logins: usize,
    /// Logins already counted (redeliveries, replays).
    pub repeated_logins: usize,
    pub unionids: usize,
    pub phones: usize,
}

/// Whether `(at, login_id)` of the row being inserted is newer than the row's: the one meaning
/// of "newest" (see [`super::users`]).
const NEWER: &str = "(excluded.key_at_ms > wx_users.key_at_ms OR (excluded.key_at_ms = wx_users.key_at_ms AND excluded.last_login_id > wx_users.last_login_id))";

fn if_newer(column: &str) -> Expr {
    Expr::cust(format!(
        "CASE WHEN {NEWER} THEN excluded.{column} ELSE wx_users.{column} END"
    ))
}

fn earliest(column: &str) -> Expr {
    Expr::cust(format!(
        "CASE WHEN excluded.{column} < wx_users.{column} THEN excluded.{column} ELSE wx_users.{column} END"
    ))
}

fn latest(column: &str) -> Expr {
    Expr::cust(format!(
        "CASE WHEN excluded.{column} > wx_users.{column} THEN excluded.{column} ELSE wx_users.{column} END"
    ))
}

/// Applies `changes` in one transaction.
#[tracing::instrument(skip_all, fields(changes = changes.len()))]
pub async fn apply(db: &DatabaseConnection, changes: &[Change]) -> Result<Applied, DbErr> {
    let mut logins: Vec<&UserLogin> = Vec::new();
    let mut unionids: Vec<&UnionidUpdate> = Vec::new();
    let mut phones: Vec<&PhoneUpdate> = Vec::new();
    let mut resets: Vec<&KeyReset> = Vec::new();
    for change in changes {
        match change {
            Change::Login(l) => logins.push(l),
            Change::Unionid(u) => unionids.push(u),
            Change::Phone(p) => phones.push(p),
            Change::KeyReset(r) => resets.push(r),
        }
    }
    logins.sort_by(|a, b| a.login_id.cmp(&b.login_id));
    logins.dedup_by(|a, b| a.login_id == b.login_id);
    if logins.is_empty() && unionids.is_empty() && phones.is_empty() && resets.is_empty() {
        return Ok(Applied::default());
    }
    let txn = db.begin().await?;
    let new = record_logins(&txn, &logins).await?;
    let counted: Vec<&UserLogin> = logins
        .iter()
        .copied()
        .filter(|l| new.contains(&l.login_id))
        .collect();
    upsert_users(&txn, &counted).await?;
    learn_unionids(&txn, &unionids).await?;
    set_phones(&txn, &phones).await?;
    reset_keys(&txn, &resets).await?;
    txn.commit().await?;
    Ok(Applied {
        new_logins: counted.len(),
        repeated_logins: logins.len() - counted.len(),
        unionids: unionids.len(),
        phones: phones.len(),
    })
}

/// Inserts the logins not recorded yet; returns their ids.
async fn record_logins(
    txn: &impl ConnectionTrait,
    logins: &[&UserLogin],
) -> Result<HashSet<String>, DbErr> {
    if logins.is_empty() {
        return Ok(HashSet::new());
    }
    let mut insert = Query::insert();
    insert.into_table(logins::Entity).columns([
        logins::Column::LoginId,
        logins::Column::Appid,
        logins::Column::Openid,
        logins::Column::FinishedAt,
        logins::Column::StreamSeq,
    ]);
    for l in logins {
        insert.values_panic([
            l.login_id.clone().into(),
            l.appid.clone().into(),
            l.openid.clone().into(),
            l.at.into(),
            (l.seq as i64).into(),
        ]);
    }
    insert
        .on_conflict(
            OnConflict::column(logins::Column::LoginId)
                .do_nothing()
                .to_owned(),
        )
        .returning_col(logins::Column::LoginId);
    txn.query_all(&insert)
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "login_id"))
        .collect()
}

/// One row per user of the newly counted logins, merged into what the table has.
async fn upsert_users(txn: &impl ConnectionTrait, counted: &[&UserLogin]) -> Result<(), DbErr> {
    if counted.is_empty() {
        return Ok(());
    }
    let mut per_user: BTreeMap<(&str, &str), Vec<&UserLogin>> = BTreeMap::new();
    for l in counted {
        per_user.entry((&l.appid, &l.openid)).or_default().push(l);
    }
    let rows = per_user.into_values().map(|logins| {
        let newest = logins
            .iter()
            .max_by(|a, b| (a.at, &a.login_id).cmp(&(b.at, &b.login_id)))
            .expect("a user here has a login");
        let earliest = logins.iter().map(|l| l.at).min().unwrap_or(newest.at);
        let unionid = newest
            .unionid
            .clone()
            .or_else(|| logins.iter().find_map(|l| l.unionid.clone()));
        users::ActiveModel {
            id: NotSet,
            appid: Set(newest.appid.clone()),
            openid: Set(newest.openid.clone()),
            unionid: Set(unionid),
            session_key_sealed: Set(newest.session_key_sealed.clone()),
            login_count: Set(logins.len() as i64),
            last_event_seq: Set(logins.iter().map(|l| l.seq as i64).max().unwrap_or(0)),
            last_login_id: Set(newest.login_id.clone()),
            created_at: Set(earliest),
            updated_at: Set(newest.at),
            key_at_ms: Set(newest.at.timestamp_millis()),
            phone_sealed: NotSet,
            phone_hash: NotSet,
            phone_at_ms: NotSet,
        }
    });
    let on_conflict = OnConflict::columns([users::Column::Appid, users::Column::Openid])
        .value(
            users::Column::LoginCount,
            Expr::cust("wx_users.login_count + excluded.login_count"),
        )
        .value(
            users::Column::SessionKeySealed,
            if_newer("session_key_sealed"),
        )
        .value(users::Column::LastLoginId, if_newer("last_login_id"))
        .value(users::Column::KeyAtMs, if_newer("key_at_ms"))
        // A unionid, once known, is never erased by an answer without one.
        .value(
            users::Column::Unionid,
            Expr::cust("COALESCE(excluded.unionid, wx_users.unionid)"),
        )
        .to_owned();
    merge_rows(txn, rows, on_conflict).await
}

/// Sets each learnt unionid where the row has none; makes the row (with no login counted and
/// a key any login replaces) if the login's own result has not been applied yet.
async fn learn_unionids(
    txn: &impl ConnectionTrait,
    unionids: &[&UnionidUpdate],
) -> Result<(), DbErr> {
    let mut per_user: BTreeMap<(&str, &str), &UnionidUpdate> = BTreeMap::new();
    for u in unionids {
        per_user.entry((&u.appid, &u.openid)).or_insert(u);
    }
    if per_user.is_empty() {
        return Ok(());
    }
    let rows = per_user.into_values().map(|u| users::ActiveModel {
        id: NotSet,
        appid: Set(u.appid.clone()),
        openid: Set(u.openid.clone()),
        unionid: Set(Some(u.unionid.clone())),
        session_key_sealed: Set(u.session_key_sealed.clone()),
        login_count: Set(0),
        last_event_seq: Set(u.seq as i64),
        last_login_id: Set(u.login_id.clone()),
        created_at: Set(u.at),
        updated_at: Set(u.at),
        key_at_ms: Set(0),
        phone_sealed: NotSet,
        phone_hash: NotSet,
        phone_at_ms: NotSet,
    });
    let on_conflict = OnConflict::columns([users::Column::Appid, users::Column::Openid])
        .value(
            users::Column::Unionid,
            Expr::cust("COALESCE(wx_users.unionid, excluded.unionid)"),
        )
        .to_owned();
    merge_rows(txn, rows, on_conflict).await
}

/// Whether the phone being inserted is newer than the row's: exchanged later, ties by the hash.
const NEWER_PHONE: &str = "(excluded.phone_at_ms > wx_users.phone_at_ms OR (excluded.phone_at_ms = wx_users.phone_at_ms AND excluded.phone_hash > COALESCE(wx_users.phone_hash, '')))";

fn if_newer_phone(column: &str) -> Expr {
    Expr::cust(format!(
        "CASE WHEN {NEWER_PHONE} THEN excluded.{column} ELSE wx_users.{column} END"
    ))
}

/// Sets each user's newest phone number; makes the row (no login counted, no key: any login's
/// replaces it) if the login's own result has not been applied yet.
async fn set_phones(txn: &impl ConnectionTrait, phones: &[&PhoneUpdate]) -> Result<(), DbErr> {
    let mut per_user: BTreeMap<(&str, &str), &PhoneUpdate> = BTreeMap::new();
    for p in phones {
        let entry = per_user.entry((&p.appid, &p.openid)).or_insert(p);
        if (p.at, &p.phone_hash) > (entry.at, &entry.phone_hash) {
            *entry = p;
        }
    }
    if per_user.is_empty() {
        return Ok(());
    }
    let rows = per_user.into_values().map(|p| users::ActiveModel {
        id: NotSet,
        appid: Set(p.appid.clone()),
        openid: Set(p.openid.clone()),
        unionid: Set(None),
        session_key_sealed: Set(String::new()),
        login_count: Set(0),
        last_event_seq: Set(p.seq as i64),
        last_login_id: Set(String::new()),
        created_at: Set(p.at),
        updated_at: Set(p.at),
        key_at_ms: Set(0),
        phone_sealed: Set(Some(p.phone_sealed.clone())),
        phone_hash: Set(Some(p.phone_hash.clone())),
        phone_at_ms: Set(p.at.timestamp_millis()),
    });
    // (The order matters: the columns are set left to right, and `phone_at_ms` decides the
    // others, so it goes last.)
    let on_conflict = OnConflict::columns([users::Column::Appid, users::Column::Openid])
        .value(users::Column::PhoneSealed, if_newer_phone("phone_sealed"))
        .value(users::Column::PhoneHash, if_newer_phone("phone_hash"))
        .value(users::Column::PhoneAtMs, if_newer_phone("phone_at_ms"))
        .to_owned();
    merge_rows(txn, rows, on_conflict).await
}

/// Makes each reset key the user's newest if it is (by the reset's time, as a login's key goes
/// by its exchange's): a login after the reset replaces it, one before does not.
async fn reset_keys(txn: &impl ConnectionTrait, resets: &[&KeyReset]) -> Result<(), DbErr> {
    let mut per_user: BTreeMap<(&str, &str), &KeyReset> = BTreeMap::new();
    for r in resets {
        let entry = per_user.entry((&r.appid, &r.openid)).or_insert(r);
        if (r.at, &r.call_id) > (entry.at, &entry.call_id) {
            *entry = r;
        }
    }
    if per_user.is_empty() {
        return Ok(());
    }
    let rows = per_user.into_values().map(|r| users::ActiveModel {
        id: NotSet,
        appid: Set(r.appid.clone()),
        openid: Set(r.openid.clone()),
        unionid: Set(None),
        session_key_sealed: Set(r.session_key_sealed.clone()),
        login_count: Set(0),
        last_event_seq: Set(r.seq as i64),
        last_login_id: Set(r.call_id.clone()),
        created_at: Set(r.at),
        updated_at: Set(r.at),
        key_at_ms: Set(r.at.timestamp_millis()),
        phone_sealed: NotSet,
        phone_hash: NotSet,
        phone_at_ms: NotSet,
    });
    let on_conflict = OnConflict::columns([users::Column::Appid, users::Column::Openid])
        .value(
            users::Column::SessionKeySealed,
            if_newer("session_key_sealed"),
        )
        .value(users::Column::LastLoginId, if_newer("last_login_id"))
        .value(users::Column::KeyAtMs, if_newer("key_at_ms"))
        .to_owned();
    merge_rows(txn, rows, on_conflict).await
}

/// Inserts `rows`, merging each into the row of its user with `on_conflict` plus what every
/// merge shares: the earliest creation, the latest update, the highest stream sequence.
async fn merge_rows(
    txn: &impl ConnectionTrait,
    rows: impl IntoIterator<Item = users::ActiveModel>,
    mut on_conflict: OnConflict,
) -> Result<(), DbErr> {
    on_conflict
        .value(users::Column::CreatedAt, earliest("created_at"))
        .value(users::Column::UpdatedAt, latest("updated_at"))
        .value(users::Column::LastEventSeq, latest("last_event_seq"));
    users::Entity::insert_many(rows)
        .on_conflict(on_conflict)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

impl std::ops::AddAssign for Applied {
    fn add_assign(&mut self, other: Applied) {
        self.new_logins += other.new_logins;
        self.repeated_logins += other.repeated_logins;
        self.unionids += other.unionids;
        self.phones += other.phones;
    }
}

/// Applies `changes`, isolating what the database refuses: a refused batch is halved until each
/// refused change stands alone, and the rest commits. Returns the indices (into `changes`) of
/// the refused ones with the database's reason. A database that cannot run the statements at
/// all (down, locked, a deadlock) is an `Err`: the caller retries the whole batch, which is
/// safe, as applying a change twice changes nothing.
pub async fn apply_isolating(
    db: &DatabaseConnection,
    changes: &[Change],
) -> Result<(Applied, Vec<(usize, String)>), DbErr> {
    let mut applied = Applied::default();
    let mut refused = Vec::new();
    let mut todo = Vec::new();
    todo.push(0..changes.len());
    while let Some(range) = todo.pop() {
        if range.is_empty() {
            continue;
        }
        match apply(db, &changes[range.clone()]).await {
            Ok(a) => applied += a,
            Err(e) => match super::db::refusal(&e) {
                None => return Err(e),
                Some(reason) if range.len() == 1 => refused.push((range.start, reason)),
                Some(_) => {
                    let mid = range.start + range.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
            },
        }
    }
    Ok((applied, refused))
}
