//! The user-upsert consumer: reads result events from the retained results stream in batches
//! and applies the successful logins to `wx_users` in one transaction per batch; acks only after
//! the commit, so a database outage leaves the events in JetStream until it recovers.
//! [`replay`] feeds the same upsert from the stream's history, for rebuilding a database.

use std::time::Duration;

use async_nats::jetstream::{
    self, AckKind,
    consumer::{DeliverPolicy, PullConsumer, pull},
};
use chrono::{TimeZone, Utc};
use futures::StreamExt;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::{
    events::{HEADER_LOGIN_ID, LoginOutcome, LoginResult},
    persistence::{self, UserLogin},
    topology::Topology,
};

#[derive(Debug, thiserror::Error)]
pub enum UpsertError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Db(#[from] persistence::PersistenceError),
}

/// What a batch of result messages turns into.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub logins: Vec<UserLogin>,
    pub failures: usize,
    pub malformed: usize,
}

/// Decodes one result event at stream sequence `seq` into `into`.
pub fn decode_into(into: &mut Decoded, seq: u64, payload: &[u8]) {
    match LoginResult::decode(payload) {
        Ok(LoginResult {
            login_id,
            appid,
            finished_at_ms,
            outcome:
                LoginOutcome::Success {
                    openid,
                    unionid,
                    session_key_sealed,
                },
            ..
        }) => into.logins.push(UserLogin {
            seq,
            login_id,
            appid,
            openid,
            unionid,
            session_key_sealed,
            at: Utc
                .timestamp_millis_opt(finished_at_ms)
                .single()
                .unwrap_or_else(Utc::now),
        }),
        Ok(_) => into.failures += 1,
        Err(e) => {
            tracing::error!(seq, error = %e, "result event cannot be applied; it stays in the stream for inspection");
            into.malformed += 1;
        }
    }
}

/// Runs until `shutdown`, finishing the batch in hand.
pub async fn run(
    db: DatabaseConnection,
    consumer: PullConsumer,
    batch_size: usize,
    shutdown: CancellationToken,
) -> Result<(), UpsertError> {
    while !shutdown.is_cancelled() {
        let mut batch = match consumer
            .batch()
            .max_messages(batch_size)
            .expires(Duration::from_millis(250))
            .messages()
            .await
        {
            Ok(b) => b,
            Err(e) => {
                crate::meter::nats_error("pull_results");
                tracing::warn!(error = %e, "cannot pull results; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        let mut messages = Vec::with_capacity(batch_size);
        while let Some(Ok(msg)) = batch.next().await {
            messages.push(msg);
        }
        if messages.is_empty() {
            continue;
        }
        apply_batch(&db, &messages).await;
    }
    tracing::info!("upserter drained");
    Ok(())
}

#[tracing::instrument(skip_all, fields(messages = messages.len()))]
async fn apply_batch(db: &DatabaseConnection, messages: &[jetstream::Message]) {
    crate::meter::upsert_batch(messages.len());
    let mut decoded = Decoded::default();
    for msg in messages {
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        decode_into(&mut decoded, seq, &msg.payload);
    }
    let ack = match persistence::upsert_logins(db, &decoded.logins).await {
        Ok(_) => AckKind::Ack,
        Err(e) => {
            crate::meter::database_error("upsert");
            tracing::error!(error = %e, "upsert failed; the batch stays in JetStream and is retried");
            AckKind::Nak(Some(Duration::from_secs(1)))
        }
    };
    if tracing::enabled!(tracing::Level::DEBUG) {
        for msg in messages {
            let login_id = msg.headers.as_ref().and_then(|h| h.get(HEADER_LOGIN_ID));
            let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
            tracing::debug!(
                login_id = login_id.map(|v| v.as_str()),
                seq,
                ?ack,
                "result event applied"
            );
        }
    }
    // Malformed events are acked too: they can never apply, and the stream keeps them.
    let acks = messages.iter().map(|m| m.ack_with(ack));
    for r in futures::future::join_all(acks).await {
        if let Err(e) = r {
            tracing::warn!(error = %e, "ack failed; the event will be redelivered (harmless)");
        }
    }
    if matches!(ack, AckKind::Nak(_)) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

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
    pub logins: u64,
    pub failures: u64,
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
    let mut decoded = Decoded::default();
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
        decode_into(&mut decoded, seq, &msg.payload);
        if decoded.logins.len() >= batch_size || seq >= last {
            flush(db, &mut decoded, &mut stats).await?;
            progress(&stats, last);
        }
        if seq >= last {
            break;
        }
    }
    flush(db, &mut decoded, &mut stats).await?;
    progress(&stats, last);
    Ok(stats)
}

async fn flush(
    db: &DatabaseConnection,
    decoded: &mut Decoded,
    stats: &mut ReplayStats,
) -> Result<(), UpsertError> {
    persistence::upsert_logins(db, &decoded.logins)
        .await
        .map_err(persistence::PersistenceError::from)?;
    stats.logins += decoded.logins.len() as u64;
    stats.failures += decoded.failures as u64;
    stats.malformed += decoded.malformed as u64;
    *decoded = Decoded::default();
    Ok(())
}
