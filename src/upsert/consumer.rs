//! The user-upsert consumer: reads result events from the retained results stream in batches
//! and applies the successful logins to `wx_users` in one transaction per batch; acks only after
//! the commit, so a database outage leaves the events in JetStream until it recovers.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use chrono::{TimeZone, Utc};
use futures::StreamExt;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::{
    contract::{
        events::{LoginOutcome, LoginResult},
        headers,
    },
    upsert::{
        db,
        users::{self, UserLogin},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum UpsertError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Db(#[from] db::PersistenceError),
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
            login_id: login_id.into(),
            appid: appid.into(),
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
    let ack = match users::upsert_logins(db, &decoded.logins).await {
        Ok(_) => AckKind::Ack,
        Err(e) => {
            crate::meter::database_error("upsert");
            tracing::error!(error = %e, "upsert failed; the batch stays in JetStream and is retried");
            AckKind::Nak(Some(Duration::from_secs(1)))
        }
    };
    if tracing::enabled!(tracing::Level::DEBUG) {
        for msg in messages {
            let login_id = headers::login_id(msg.headers.as_ref());
            let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
            tracing::debug!(login_id, seq, ?ack, "result event applied");
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
