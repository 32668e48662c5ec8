//! The whole test suite as one binary (one link of the library instead of twenty), one module per
//! area. Every test owns its infrastructure: [`helpers::spawn_app`] starts a nats-server (random
//! port, temporary store), a WeChat simulator and a database (a SQLite file, or a fresh
//! PostgreSQL database) for it alone, so tests run in parallel.
//!
//! - `helpers`: `spawn_app` and `TestApp` (one method per endpoint), fleets of role processes,
//!   the TLS front, the mini-program login client;
//! - one module per area, in the order a login travels: `login`, `hostile`, `exchange`,
//!   `wechat_client`, `quota`, `upsert`, `replay`, `fixtures`, `decrypt`, then what crosses them (`faults`,
//!   `cluster`, `leaks`, `tls`, `metrics`, `trace`), the tools (`sim`, `bench`, `demo`) and the
//!   documents checked against the code (`openapi`, `status_page`).
//!
//! One deliberate exception: `tests/settings.rs` is a binary of its own, because figment's
//! `Jail` sets environment variables and the working directory of the whole process, which
//! would leak into the tests running beside it here.

// Items are `pub` for the modules of this one binary; nothing outside it can see them.
#![allow(unreachable_pub)]

/// Runs each named flow `async fn flow(db: Db)` once on SQLite and once on PostgreSQL, as two
/// tests `sqlite::flow` and `postgres::flow`: the one way the suite writes its database matrix.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Db::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Db::Postgres).await })*
        }
    };
}

mod helpers;

mod crypto;
mod decrypt;
mod exchange;
mod fixtures;
mod hostile;
mod login;
mod phone;
mod quota;
mod replay;
mod secured;
mod topology;
mod upsert;
mod wechat_client;

mod chaos;
mod cluster;
mod faults;
mod leaks;
mod metrics;
mod tls;
mod trace;

mod bench;
mod demo;
mod sim;

mod openapi;
mod status_page;
