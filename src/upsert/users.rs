//! The `wx_users` entity and its batched, idempotent upsert.
//!
//! Each login is applied only if its result-stream sequence is newer than the row's
//! `last_event_seq`. So a redelivered or replayed event never counts a login twice, and an older
//! event never overwrites a newer session_key. A batch is written in "rounds" so that no single
//! statement touches one row twice (PostgreSQL forbids that in `ON CONFLICT DO UPDATE`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    TransactionTrait,
    entity::prelude::*,
    sea_query::{Expr, OnConflict},
};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wx_users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub appid: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key_sealed: String,
    pub login_count: i64,
    pub last_event_seq: i64,
    pub last_login_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// One successful login, as the upserter takes it from the result stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserLogin {
    pub seq: u64,
    pub login_id: String,
    pub appid: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key_sealed: String,
    pub at: DateTime<Utc>,
}

/// Applies a batch of logins in one transaction; returns how many statements ran.
#[tracing::instrument(skip_all, fields(logins = logins.len()))]
pub async fn upsert_logins(db: &DatabaseConnection, logins: &[UserLogin]) -> Result<usize, DbErr> {
    if logins.is_empty() {
        return Ok(0);
    }
    let mut ordered: Vec<&UserLogin> = logins.iter().collect();
    ordered.sort_by_key(|l| l.seq);
    // Round k holds the k-th login of every user in this batch, in sequence order.
    let mut rounds: Vec<Vec<&UserLogin>> = Vec::new();
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for login in ordered {
        let n = seen.entry((&login.appid, &login.openid)).or_insert(0);
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push(login);
        *n += 1;
    }
    let txn = db.begin().await?;
    for round in &rounds {
        let models = round.iter().map(|l| ActiveModel {
            id: NotSet,
            appid: Set(l.appid.clone()),
            openid: Set(l.openid.clone()),
            unionid: Set(l.unionid.clone()),
            session_key_sealed: Set(l.session_key_sealed.clone()),
            login_count: Set(1),
            last_event_seq: Set(l.seq as i64),
            last_login_id: Set(l.login_id.clone()),
            created_at: Set(l.at),
            updated_at: Set(l.at),
        });
        let on_conflict = OnConflict::columns([Column::Appid, Column::Openid])
            .update_columns([
                Column::SessionKeySealed,
                Column::LastEventSeq,
                Column::LastLoginId,
                Column::UpdatedAt,
            ])
            .value(Column::LoginCount, Expr::cust("wx_users.login_count + 1"))
            // A unionid, once known, is never erased by an answer without one.
            .value(
                Column::Unionid,
                Expr::cust("COALESCE(excluded.unionid, wx_users.unionid)"),
            )
            .action_and_where(Expr::cust(
                "excluded.last_event_seq > wx_users.last_event_seq",
            ))
            .to_owned();
        Entity::insert_many(models)
            .on_conflict(on_conflict)
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(rounds.len())
}
