//! Stage 3, the user upsert: result events from `{P}_RESULTS` into `wx_users` / `wx_logins`.
//! - [`consumer`]: the durable consumer, batched, ack after commit, parking what it cannot apply;
//! - [`replay`]: the same upsert from the stream's history or a file (`wxlogin replay`);
//! - [`apply`]: the batched, order-free upsert both share, isolating what the database refuses;
//! - [`users`]: the tables, the changes events ask of them, and what "newest" means;
//! - [`db`]: the connection (SQLite in WAL mode, or PostgreSQL) and migrations;
//! - [`backfill`]: what the upgrade to exact counts records from the results stream;
//! - [`sign`]: bodies signed with a user's newest session_key for the company's services.

pub mod apply;
pub mod backfill;
pub mod consumer;
pub mod db;
pub mod replay;
pub mod sign;
pub mod users;

pub use backfill::prepare;
pub use consumer::{Read, UpsertError, Upserter, read, run};
pub use replay::{EventSource, History, ReplayFrom, ReplayStats, Retained, replay, replay_from};
