//! What the upserter writes: the `wx_users` rows (one per appid and openid) and `wx_logins`
//! (every applied login, by its id), and the changes result events ask of them.
//!
//! Every column of a row is a merge of the events applied to it that does not depend on their
//! order, their number of deliveries, or the stream (and sequence) they came from:
//! - `login_count`: the number of distinct logins (`wx_logins` holds their ids);
//! - the session_key: the one of the **newest** login, meaning the one whose exchange with
//!   WeChat ended last (`finished_at_ms`, the worker's clock when WeChat answered; ties broken by
//!   the login id); `key_at_ms` and `last_login_id` say which it is;
//! - `unionid`: never erased once known; WeChat's, in a login's answer, wins over the one a
//!   decrypt learnt ([`UnionidUpdate`]), which fills it only where none is known;
//! - the phone number (`phone_sealed`, `phone_hash`): the one of the newest phone exchange
//!   (`phone_at_ms`, ties broken by the hash), never erased by a login;
//! - `created_at` / `updated_at`: the earliest and latest event time.
//!
//! `last_event_seq` is kept for upserters of the first format only (the highest stream
//! sequence applied); nothing here decides by it.

use chrono::{DateTime, Utc};

pub use self::logins::Entity as Logins;
use sea_orm::entity::prelude::*;

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
    /// When the exchange of the kept session_key's login ended (0: a row only a decrypt made).
    pub key_at_ms: i64,
    /// The newest phone number, sealed (AAD: `crate::contract::events::phone_aad`).
    pub phone_sealed: Option<String>,
    /// Its lookup hash (`crate::contract::events::phone_hash`): never the number.
    pub phone_hash: Option<String>,
    /// When its exchange ended (0: none).
    pub phone_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// `wx_logins`: each applied login once, by its id.
pub mod logins {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "wx_logins")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub login_id: String,
        pub appid: String,
        pub openid: String,
        pub finished_at: DateTimeUtc,
        /// Where it was read from (informational: a re-imported stream numbers anew).
        pub stream_seq: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One successful login, as the upserter takes it from the result stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserLogin {
    /// Where the event was read (informational).
    pub seq: u64,
    pub login_id: String,
    pub appid: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key_sealed: String,
    /// When its exchange ended: what "newest" goes by.
    pub at: DateTime<Utc>,
}

/// A unionid a decrypt learned for the user of `login_id`'s session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnionidUpdate {
    pub seq: u64,
    pub login_id: String,
    pub appid: String,
    pub openid: String,
    pub unionid: String,
    pub session_key_sealed: String,
    pub at: DateTime<Utc>,
}

/// A phone number exchanged for a user (`POST /v1/phone`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneUpdate {
    pub seq: u64,
    /// The phone request's id.
    pub request_id: String,
    pub appid: String,
    pub openid: String,
    pub phone_sealed: String,
    pub phone_hash: String,
    pub at: DateTime<Utc>,
}

/// A session_key an operator had WeChat reset: the user's newest key from `at` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReset {
    pub seq: u64,
    /// The reset call's id (the row's `last_login_id` while this key is its newest).
    pub call_id: String,
    pub appid: String,
    pub openid: String,
    pub session_key_sealed: String,
    pub at: DateTime<Utc>,
}

/// What one result event asks of the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Login(UserLogin),
    Unionid(UnionidUpdate),
    Phone(PhoneUpdate),
    KeyReset(KeyReset),
}

/// Column widths (PostgreSQL enforces them; SQLite would not, so they are checked here, for
/// both databases alike).
const MAX_APPID: usize = 32;
const MAX_ID: usize = 64;

impl Change {
    /// Why the tables cannot take this change as it is, if they cannot: such an event is parked
    /// (a database refusing it would fail its whole batch).
    pub fn invalid(&self) -> Option<String> {
        let (login_id, appid, openid, unionid) = match self {
            Change::Login(l) => (&l.login_id, &l.appid, &l.openid, l.unionid.as_deref()),
            Change::Unionid(u) => (&u.login_id, &u.appid, &u.openid, Some(u.unionid.as_str())),
            Change::Phone(p) => (&p.request_id, &p.appid, &p.openid, None),
            Change::KeyReset(r) => (&r.call_id, &r.appid, &r.openid, None),
        };
        let fields = [
            ("login_id", login_id.as_str(), MAX_ID),
            ("appid", appid.as_str(), MAX_APPID),
            ("openid", openid.as_str(), MAX_ID),
            ("unionid", unionid.unwrap_or("-"), MAX_ID),
        ];
        fields.into_iter().find_map(|(name, value, max)| {
            if value.is_empty() {
                Some(format!("{name} is empty"))
            } else if value.chars().count() > max {
                Some(format!("{name} is longer than {max} characters"))
            } else if value.chars().any(char::is_control) {
                Some(format!("{name} holds a control character"))
            } else {
                None
            }
        })
    }

    /// Where it was read.
    pub fn seq(&self) -> u64 {
        match self {
            Change::Login(l) => l.seq,
            Change::Unionid(u) => u.seq,
            Change::Phone(p) => p.seq,
            Change::KeyReset(r) => r.seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(openid: &str) -> Change {
        Change::Login(UserLogin {
            seq: 1,
            login_id: "l".into(),
            appid: "wx0123456789abcdef".into(),
            openid: openid.into(),
            unionid: None,
            session_key_sealed: "k".into(),
            at: Utc::now(),
        })
    }

    #[test]
    fn what_a_column_cannot_hold_is_named() {
        assert_eq!(login("o-1").invalid(), None);
        assert_eq!(login(&"o".repeat(64)).invalid(), None);
        let long = login(&"o".repeat(65)).invalid().unwrap();
        assert!(long.contains("openid is longer than 64"), "{long}");
        let nul = login("o\u{0}1").invalid().unwrap();
        assert!(nul.contains("control character"), "{nul}");
    }
}
