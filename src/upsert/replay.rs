//! Replay: the same upsert as the consumer's, fed from the retained results stream's history
//! (`wxlogin replay`), for rebuilding a database. Idempotent: replaying twice leaves the table as
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
    pub failures: u64,
    /// Events this build cannot apply (the live upserter parks them: `wxlogin parked list`).
    pub malformed: u64,
    pub last_seq: u64,
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
    mut progress: impl FnMut(&ReplayStats, u64),
) -> Result<ReplayStats, UpsertError> {
    let nats = |e: &dyn std::fmt::Display| UpsertError::Nats(e.to_string());
    let mut stream = js
        .get_stream(topology.results_stream())
        .await
        .map_err(|e| nats(&e))?;
    let last = stream
        .info()
        .await
        .map_err(|e| nats(&e))?
        .state
        .last_sequence;
    let mut stats = ReplayStats::default();
    if last == 0 {
        return Ok(stats);
    }
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
        .map_err(|e| nats(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| nats(&e))?;
    let mut changes = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(2), messages.next()).await;
        let msg = match next {
            Ok(Some(Ok(msg))) => msg,
            Ok(Some(Err(e))) => return Err(nats(&e)),
            // Nothing more within the replay's range (it may start past the last event).
            Ok(None) | Err(_) => break,
        };
        let seq = msg.info().map_err(|e| nats(&e))?.stream_sequence;
        stats.events += 1;
        stats.last_seq = seq;
        match read(seq, &msg.payload) {
            Read::Apply(change) => changes.push(change),
            Read::Nothing => stats.failures += 1,
            Read::Park(reason) => {
                tracing::warn!(seq, reason, "event not applied");
                stats.malformed += 1;
            }
        }
        if changes.len() >= batch_size || seq >= last {
            flush(db, &mut changes, &mut stats).await?;
            progress(&stats, last);
        }
        if seq >= last {
            break;
        }
    }
    flush(db, &mut changes, &mut stats).await?;
    progress(&stats, last);
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
        }
    }
    Ok(())
}
