//! # wxlogin
//!
//! WeChat Mini Program login at high volume. A mini program sends the one-time `code` from
//! `wx.login()`; wxlogin exchanges it with WeChat's code2Session API exactly once, within the
//! app's frequency quota, records the user, and answers with a session token of its own.
//!
//! ```text
//!  client ──POST /v1/login──▶ ingress ──publish──▶ JetStream {P}_CODES (work queue)
//!                               ▲                          │ pull consumer
//!                               │ core NATS reply          ▼
//!                               └──────────────── exchange worker ──code2Session──▶ WeChat
//!                                                          │ result event
//!                                                          ▼
//!                                      JetStream {P}_RESULTS (retained) ──▶ upserter ──▶ wx_users
//! ```
//!
//! Module map, one concept each:
//! - [`settings`]: typed settings from a TOML file and `WXLOGIN_*` variables.
//! - [`telemetry`]: tracing to stderr (text or JSON lines).
//! - [`quota`]: the `N/<seconds>s` quota notation shared by settings and the simulator.
//! - [`wechat`]: the code2Session client and the classification of every answer.
//! - [`crypto`]: WXBizDataCrypt, sealing of secrets under the master key, digests.
//! - [`sim`]: a faithful WeChat simulator (`wxlogin sim`) with a control API.
//! - [`events`]: the versioned event types that travel through NATS.
//! - [`topology`]: stream, consumer, bucket and subject names under one prefix.
//! - [`ledger`]: the record of codes in flight and exchanged (at-most-once exchange).
//! - [`leader`]: reads that decide a guarantee, served by a stream's leader only.
//! - [`ingress`]: the HTTP API, and its OpenAPI document (`GET /openapi.json`).
//! - [`exchange`]: the exchange worker (`handle(request) -> Outcome`), its limiter, and the
//!   fleet-wide quota budget shared through NATS KV.
//! - [`persistence`]: database connection, migrations, the `wx_users` upsert.
//! - [`upserter`]: the user-upsert consumer of result events, and replay.
//! - [`sessions`]: our own session tokens and their store.
//! - [`meter`]: Prometheus metrics (`GET /metrics`), recorded by one-line functions.
//! - [`natsd`]: finding and supervising a local `nats-server` child process.
//! - [`roles`]: wiring of the roles (`ingress`, `worker`, `upserter`, `up`) with shutdown.
//! - [`bench`]: `wxlogin bench`, the load generator that plays the mini programs.
//! - [`cli`]: the `wxlogin` command line; `main.rs` only calls it.
//! - `fuzzing`: raw-bytes entry points to the parsers of outside input, for `fuzz/`.

pub mod bench;
pub mod cli;
pub mod crypto;
pub mod events;
pub mod exchange;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingress;
pub mod leader;
pub mod ledger;
pub mod meter;
pub mod natsd;
pub mod persistence;
pub mod quota;
pub mod roles;
pub mod sessions;
pub mod settings;
pub mod sim;
pub mod telemetry;
pub mod topology;
pub mod upserter;
pub mod wechat;
