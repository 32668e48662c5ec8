//! Replay: the same upsert as the consumer's, fed from the retained results stream's history
//! (`wxlogin replay`) or from a file of exported events (`wxlogin replay --file`), for
//! rebuilding a database. Idempotent: replaying twice leaves the table as
//! it was.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull},
};
use chrono::Utc;
use futures::StreamExt;
use sea_orm::DatabaseConnection;

use crate::{
    contract::topology::Topology,
    upsert::{apply, db, users::Change},
};

use super::consumer::{Read, UpsertError, read};

/// Where a replay starts.
#[derive(Debug, Clone, Copy)]
pub enum ReplayFrom {
    Start,
    Sequence(u64),
    Time(chrono::DateTime<Utc>),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    pub events: u64,
    /// Successful logins read (counted in the table once each, whether new or not).
    pub logins: u64,
    /// Unionids learnt by decrypts.
    pub unionids: u64,
    /// Phone numbers exchanged.
    pub phones: u64,
    /// Session keys an operator had reset.
    pub key_resets: u64,
    pub failures: u64,
    /// Events this build cannot apply (the live upserter parks them: `wxlogin parked list`).
    pub malformed: u64,
    pub last_seq: u64,
}

/// One retained event as the stream holds it: where, when, and its bytes.
#[derive(Debug, Clone)]
pub struct Retained {
    pub seq: u64,
    /// When the stream stored it.
    pub time: chrono::DateTime<Utc>,
    pub subject: String,
    /// Its `Wxlogin-Login-Id` header, if any.
    pub login_id: Option<String>,
    pub payload: bytes::Bytes,
}

/// Where a replay reads its events from: the retained stream ([`History`]) or a file of them
/// ([`crate::fixtures::FileEvents`]). Both give the same `(seq, payload)` to the same upsert.
pub trait EventSource {
    /// The next event; `None` past the last one.
    fn next_event(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<(u64, bytes::Bytes)>, UpsertError>> + Send;
    /// How far it is, and how far it goes (for a progress bar).
    fn progress(&self) -> (u64, u64);
}

impl<S: EventSource + Send> EventSource for &mut S {
    fn next_event(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<(u64, bytes::Bytes)>, UpsertError>> + Send
    {
        (**self).next_event()
    }

    fn progress(&self) -> (u64, u64) {
        (**self).progress()
    }
}

/// The retained results stream read in order, up to the last event present when reading
/// starts: what replays, exports and the login-history backfill go through.
pub struct History {
    messages: pull::Ordered,
    /// The stream's last sequence when reading started (0: empty).
    pub last: u64,
    at: u64,
    done: bool,
}

fn nats(e: impl std::fmt::Display) -> UpsertError {
    UpsertError::Nats(e.to_string())
}

impl History {
    pub async fn open(
        js: &jetstream::Context,
        topology: &Topology,
        from: ReplayFrom,
    ) -> Result<History, UpsertError> {
        let mut stream = js
            .get_stream(topology.results_stream())
            .await
            .map_err(nats)?;
        let last = stream.info().await.map_err(nats)?.state.last_sequence;
        let deliver_policy = match from {
            ReplayFrom::Start => DeliverPolicy::All,
            ReplayFrom::Sequence(s) => DeliverPolicy::ByStartSequence { start_sequence: s },
            ReplayFrom::Time(t) => DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                    t.timestamp_nanos_opt().unwrap_or(0) as i128,
                )
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            },
        };
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        let messages = consumer.messages().await.map_err(nats)?;
        Ok(History {
            messages,
            last,
            at: 0,
            done: last == 0,
        })
    }

    /// The next event with where and when it was stored; `None` past the last one.
    pub async fn next(&mut self) -> Result<Option<Retained>, UpsertError> {
        if self.done {
            return Ok(None);
        }
        let next = tokio::time::timeout(Duration::from_secs(2), self.messages.next()).await;
        let msg = match next {
            Ok(Some(Ok(msg))) => msg,
            Ok(Some(Err(e))) => return Err(nats(e)),
            // Nothing more within the range (it may start past the last event).
            Ok(None) | Err(_) => return Ok(None),
        };
        let info = msg.info().map_err(nats)?;
        let (seq, published) = (info.stream_sequence, info.published);
        self.done = seq >= self.last;
        self.at = seq;
        let time = chrono::DateTime::from_timestamp_nanos(published.unix_timestamp_nanos() as i64);
        Ok(Some(Retained {
            seq,
            time,
            subject: msg.subject.to_string(),
            login_id: crate::contract::headers::login_id(msg.headers.as_ref()).map(str::to_owned),
            payload: msg.payload.clone(),
        }))
    }
}

impl EventSource for History {
    async fn next_event(&mut self) -> Result<Option<(u64, bytes::Bytes)>, UpsertError> {
        Ok(self.next().await?.map(|r| (r.seq, r.payload)))
    }

    fn progress(&self) -> (u64, u64) {
        (self.at, self.last)
    }
}

/// Re-feeds the retained results (up to the last one present when the replay starts) into the
/// database. Idempotent: replaying twice leaves the table as it was.
#[tracing::instrument(skip(js, topology, db, progress))]
pub async fn replay(
    js: &jetstream::Context,
    topology: &Topology,
    db: &DatabaseConnection,
    from: ReplayFrom,
    batch_size: usize,
    progress: impl FnMut(&ReplayStats, (u64, u64)),
) -> Result<ReplayStats, UpsertError> {
    let history = History::open(js, topology, from).await?;
    replay_from(history, db, batch_size, progress).await
}

/// Feeds every event of `source` into the database, batched: the one replay loop, whatever
/// the events come from. Idempotent by login id.
pub async fn replay_from(
    mut source: impl EventSource,
    db: &DatabaseConnection,
    batch_size: usize,
    mut progress: impl FnMut(&ReplayStats, (u64, u64)),
) -> Result<ReplayStats, UpsertError> {
    let mut stats = ReplayStats::default();
    let mut changes = Vec::new();
    while let Some((seq, payload)) = source.next_event().await? {
        stats.events += 1;
        stats.last_seq = seq;
        match read(seq, &payload) {
            Read::Apply(change) => changes.push(change),
            Read::Nothing => stats.failures += 1,
            Read::Park(reason) => {
                tracing::warn!(seq, reason, "event not applied");
                stats.malformed += 1;
            }
        }
        if changes.len() >= batch_size {
            flush(db, &mut changes, &mut stats).await?;
            progress(&stats, source.progress());
        }
    }
    flush(db, &mut changes, &mut stats).await?;
    progress(&stats, source.progress());
    Ok(stats)
}

async fn flush(
    db: &DatabaseConnection,
    changes: &mut Vec<Change>,
    stats: &mut ReplayStats,
) -> Result<(), UpsertError> {
    let (_, refused) = apply::apply_isolating(db, changes)
        .await
        .map_err(db::PersistenceError::from)?;
    for (i, reason) in &refused {
        tracing::warn!(
            seq = changes[*i].seq(),
            reason,
            "the database refused an event"
        );
    }
    stats.malformed += refused.len() as u64;
    for (i, change) in changes.drain(..).enumerate() {
        match change {
            _ if refused.iter().any(|(r, _)| *r == i) => {}
            Change::Login(_) => stats.logins += 1,
            Change::Unionid(_) => stats.unionids += 1,
            Change::Phone(_) => stats.phones += 1,
            Change::KeyReset(_) => stats.key_resets += 1,
        }
    }
    Ok(())
}
