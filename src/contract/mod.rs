//! The contract between the stages: what travels through NATS and where it is kept. Every stage
//! reads and writes NATS through these modules only, so a newcomer finds each stream, subject,
//! header and record format in one place (and `nats/README.md` documents the same names).
//! - [`access`]: the identities processes connect as, and what each may publish and subscribe to;
//! - [`ids`]: the ids a login carries ([`AppId`], [`LoginId`], [`CodeKey`]), as types;
//! - [`events`]: the versioned event types; [`headers`]: every header name and header map;
//! - [`topology`]: stream, consumer, bucket and subject names under one prefix, created at start;
//! - [`ledger`]: where a code stands (its claim and its one result), the at-most-once record;
//! - [`leader`]: reads that decide a guarantee, answered by a stream's leader only;
//! - [`parked`]: events a stage cannot apply, set aside with the reason (never dropped).

pub mod access;
pub mod events;
pub mod headers;
pub mod ids;
pub mod leader;
pub mod ledger;
pub mod parked;
pub mod topology;

pub use ids::{AppId, CodeKey, LoginId};
