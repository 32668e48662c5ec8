//! Stage 3, the user upsert: result events from `{P}_RESULTS` into `wx_users`.
//! - [`consumer`]: the durable consumer, batched, one transaction per batch, ack after commit;
//! - [`replay`]: the same upsert from the stream's history (`wxlogin replay`);
//! - [`db`]: the connection (SQLite in WAL mode, or PostgreSQL) and migrations;
//! - [`users`]: the `wx_users` entity and the batched upsert both share.

pub mod consumer;
pub mod db;
pub mod replay;
pub mod users;

pub use consumer::{Decoded, UpsertError, decode_into, run};
pub use replay::{ReplayFrom, ReplayStats, replay};
