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
//! Module map, in the order a login travels:
//!
//! *The stages*
//! - [`ingress`]: stage 1, the HTTP API (`POST /v1/login` publishes the code; tickets, sessions,
//!   decryption) and its OpenAPI document (`GET /openapi.json`).
//! - [`contract`]: what the stages exchange through NATS: [`contract::ids`] (typed ids),
//!   [`contract::events`], [`contract::headers`], [`contract::topology`] (streams, consumers,
//!   buckets, subjects), [`contract::ledger`] (the at-most-once record of each code) and
//!   [`contract::leader`] (leader-only reads).
//! - [`exchange`]: stage 2, the exchange worker (`handle(request) -> Outcome`), its limiter, and
//!   the fleet-wide quota budget shared through NATS KV.
//! - [`upsert`]: stage 3, the user-upsert consumer of result events, replay, and the database.
//! - [`fixtures`]: the results stream's events as JSON Lines files: export, import, replay.
//!
//! *What the stages use*
//! - [`clock`]: the wall clock every stage reads the time from (one unit, one place).
//! - [`settings`]: typed settings from a TOML file and `WXLOGIN_*` variables.
//! - [`wechat`]: the code2Session client and the classification of every answer.
//! - [`crypto`]: WXBizDataCrypt, sealing of secrets under the master key, digests.
//! - [`sessions`]: our own session tokens and their store.
//! - [`quota`]: the `N/<seconds>s` quota notation of the settings.
//! - [`meter`]: Prometheus metrics (`GET /metrics`), recorded by one-line functions.
//! - [`telemetry`]: tracing to stderr (text or JSON lines).
//!
//! *Wiring*
//! - [`app`]: the `wxlogin` command line and the roles (`ingress`, `worker`, `upserter`, `up`)
//!   with shutdown; `main.rs` only calls it.
//! - `fuzzing`: raw-bytes entry points to the parsers of outside input, for `fuzz/`.
//!
//! The tools live in crates of their own under `tools/`: the WeChat simulator (`wxlogin-sim`,
//! which shares no code with this one), the load generator (`wxlogin-bench`) and the local
//! nats-server supervisor (`wxlogin-natsd`).

pub mod app;
pub mod clock;
pub mod contract;
pub mod crypto;
pub mod exchange;
pub mod fixtures;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingress;
pub mod meter;
pub mod quota;
pub mod sessions;
pub mod settings;
pub mod telemetry;
pub mod upsert;
pub mod wechat;
