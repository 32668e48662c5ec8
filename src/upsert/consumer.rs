//! The user-upsert consumer: reads events from the retained results stream in batches and
//! applies them to the user tables ([`super::apply`]), acking only after the commit, so a
//! database outage leaves the events in JetStream until it recovers. What it cannot apply is
//! parked ([`crate::contract::parked`]) — an event of a newer writer, one that does not parse,
//! one the database refuses — and the events behind it go on.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use chrono::{TimeZone, Utc};
use futures::StreamExt;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::{
    contract::{
        events::{LoginOutcome, LoginResult, ResultEvent},
        headers,
        parked::{self, Stage},
        topology::Topology,
    },
    upsert::{
        apply, db,
        users::{Change, KeyReset, PhoneUpdate, UnionidUpdate, UserLogin},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum UpsertError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Db(#[from] db::PersistenceError),
}

/// What one event on the results stream asks of the upserter.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    Apply(Change),
    /// A failed login: an event, but no row.
    Nothing,
    /// This build cannot apply it: why.
    Park(String),
}

fn at(ms: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(chrono::DateTime::UNIX_EPOCH)
}

/// Reads the event at stream sequence `seq`.
pub fn read(seq: u64, payload: &[u8]) -> Read {
    let change = match ResultEvent::decode(payload) {
        Ok(ResultEvent::Login(LoginResult {
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
        })) => Change::Login(UserLogin {
            seq,
            login_id: login_id.into(),
            appid: appid.into(),
            openid,
            unionid,
            session_key_sealed,
            at: at(finished_at_ms),
        }),
        Ok(ResultEvent::Login(LoginResult {
            login_id,
            appid,
            finished_at_ms,
            outcome:
                LoginOutcome::Phone {
                    openid,
                    phone_sealed,
                    phone_hash,
                },
            ..
        })) => Change::Phone(PhoneUpdate {
            seq,
            request_id: login_id.into(),
            appid: appid.into(),
            openid,
            phone_sealed,
            phone_hash,
            at: at(finished_at_ms),
        }),
        Ok(ResultEvent::Login(_)) => return Read::Nothing,
        Ok(ResultEvent::Unionid(u)) => Change::Unionid(UnionidUpdate {
            seq,
            login_id: u.login_id.into(),
            appid: u.appid.into(),
            openid: u.openid,
            unionid: u.unionid,
            session_key_sealed: u.session_key_sealed,
            at: at(u.learned_at_ms),
        }),
        Ok(ResultEvent::KeyReset(r)) => Change::KeyReset(KeyReset {
            seq,
            call_id: r.call_id.into(),
            appid: r.appid.into(),
            openid: r.openid,
            session_key_sealed: r.session_key_sealed,
            at: at(r.reset_at_ms),
        }),
        Err(e) => return Read::Park(e.parking_reason()),
    };
    match change.invalid() {
        Some(why) => Read::Park(format!("cannot be stored: {why}")),
        None => Read::Apply(change),
    }
}

/// What the upserter works with.
pub struct Upserter {
    pub db: DatabaseConnection,
    pub js: jetstream::Context,
    pub topology: Topology,
    pub batch_size: usize,
}

/// Runs until `shutdown`, finishing the batch in hand.
pub async fn run(
    upserter: Upserter,
    consumer: PullConsumer,
    shutdown: CancellationToken,
) -> Result<(), UpsertError> {
    while !shutdown.is_cancelled() {
        let mut batch = match consumer
            .batch()
            .max_messages(upserter.batch_size)
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
        let mut messages = Vec::with_capacity(upserter.batch_size);
        while let Some(Ok(msg)) = batch.next().await {
            messages.push(msg);
        }
        if messages.is_empty() {
            continue;
        }
        if !upserter.apply_batch(&messages).await {
            // The database is away: give it a moment rather than spin on redeliveries.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
    tracing::info!("upserter drained");
    Ok(())
}

impl Upserter {
    /// Applies one batch and settles each message: acked once applied (or parked), naked when
    /// the database could not be reached. `false` if it could not.
    #[tracing::instrument(skip_all, fields(messages = messages.len()))]
    pub async fn apply_batch(&self, messages: &[jetstream::Message]) -> bool {
        crate::meter::upsert_batch(messages.len());
        let mut acks = vec![AckKind::Ack; messages.len()];
        let (mut changes, mut owners, mut to_park) = (Vec::new(), Vec::new(), Vec::new());
        for (i, msg) in messages.iter().enumerate() {
            let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
            match read(seq, &msg.payload) {
                Read::Apply(change) => {
                    changes.push(change);
                    owners.push(i);
                }
                Read::Nothing => {}
                Read::Park(reason) => to_park.push((i, reason)),
            }
        }
        let reached = match apply::apply_isolating(&self.db, &changes).await {
            Ok((_, refused)) => {
                let refused = refused
                    .into_iter()
                    .map(|(c, reason)| (owners[c], format!("the database refused it: {reason}")));
                to_park.extend(refused);
                true
            }
            Err(e) => {
                crate::meter::database_error("upsert");
                tracing::error!(error = %e, "upsert failed; the batch stays in JetStream and is retried");
                for &i in &owners {
                    acks[i] = AckKind::Nak(Some(Duration::from_secs(1)));
                }
                false
            }
        };
        for (i, reason) in to_park {
            let msg = &messages[i];
            if let Err(e) =
                parked::park(&self.js, &self.topology, Stage::Upsert, msg, &reason).await
            {
                crate::meter::nats_error("park");
                tracing::warn!(error = %e, "cannot park the event yet; it will be redelivered");
                acks[i] = AckKind::Nak(Some(Duration::from_secs(1)));
            }
        }
        let settle = messages.iter().zip(&acks).map(|(msg, &ack)| async move {
            tracing::debug!(
                login_id = headers::login_id(msg.headers.as_ref()),
                ?ack,
                "result event applied"
            );
            msg.ack_with(ack).await
        });
        for r in futures::future::join_all(settle).await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "ack failed; the event will be redelivered (harmless)");
            }
        }
        reached
    }
}
