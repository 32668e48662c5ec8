//! The worker loop: pulls code messages only as fast as it has free exchange slots, runs each
//! [`Exchanger::handle`] in its own task with progress acks while it waits on the limiter or
//! on WeChat, and acks, naks or terminates the message by the step's outcome.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Exchanger, Incoming, Outcome};
use crate::contract::{
    events::LoginRequested,
    headers,
    parked::{self, Stage},
};

/// Runs until `shutdown`, then drains: every code not sent upstream yet goes back at once
/// (claim released, message naked, so another worker takes it without waiting for an ack wait),
/// and the calls in flight get up to `drain` to finish and record. Past that it returns anyway:
/// what is left goes stale and is taken over, as if this worker had died.
pub async fn run(
    exchanger: Arc<Exchanger>,
    consumer: PullConsumer,
    concurrency: usize,
    drain: Duration,
    shutdown: CancellationToken,
) -> Result<(), async_nats::Error> {
    let slots = Arc::new(Semaphore::new(concurrency));
    // Our clock against the server's, before the first code and then all along: a worker whose
    // clock is too far off takes no codes (they go to the others) until it is fixed.
    let worker = uuid::Uuid::new_v4().simple().to_string();
    let budget = exchanger.budget.clone();
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = super::skew::check(&budget, &worker) => {}
    }
    let _clock = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(super::skew::watch(
        budget.clone(),
        worker,
    )));
    while !shutdown.is_cancelled() {
        if budget.guard().refuses() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = budget.guard().admits() => {}
            }
            continue;
        }
        let free = slots.available_permits();
        if free == 0 {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => drop(permit),
            }
            continue;
        }
        let batch = consumer
            .batch()
            .max_messages(free.min(256))
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                crate::meter::nats_error("pull_codes");
                tracing::warn!(error = %e, "cannot pull codes; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        while let Some(msg) = batch.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "pull batch ended with an error");
                    break;
                }
            };
            let permit = slots.clone().acquire_owned().await?;
            let exchanger = exchanger.clone();
            tokio::spawn(async move {
                process(&exchanger, msg).await;
                drop(permit);
            });
        }
    }
    exchanger.draining.cancel();
    let held = concurrency - slots.available_permits();
    tracing::info!(held, ?drain, "exchange worker draining");
    match tokio::time::timeout(drain, slots.acquire_many(concurrency as u32)).await {
        Ok(all) => {
            drop(all?);
            tracing::info!("exchange worker drained");
        }
        Err(_) => {
            let left = concurrency - slots.available_permits();
            tracing::warn!(
                left,
                ?drain,
                "drain cut short: these codes go stale and another worker takes them over after an ack wait"
            );
        }
    }
    // Acks and naks are published without waiting for the server: written only once the client
    // flushes. A process that exits right after its drain would lose the naks of the codes it
    // gave back, and each would wait out a whole ack wait before another worker saw it.
    match tokio::time::timeout(Duration::from_secs(5), exchanger.nats.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "the last acks may not have reached NATS"),
        Err(_) => tracing::warn!("the last acks may not have reached NATS (flush timed out)"),
    }
    Ok(())
}

#[tracing::instrument(skip_all)]
async fn process(exchanger: &Exchanger, msg: jetstream::Message) {
    let request = match LoginRequested::decode(&msg.payload) {
        Ok(r) => r,
        Err(e) => {
            // This build cannot exchange it (a newer ingress's format, or junk): set it aside
            // with the reason, out of the queue, for `wxlogin parked retry` after an upgrade.
            let login_id = headers::login_id(msg.headers.as_ref());
            let reason = format!("login request {}", e.parking_reason());
            tracing::warn!(?login_id, "login request parked");
            let t = &exchanger.topology;
            let ack = match parked::park(&exchanger.js, t, Stage::Exchange, &msg, &reason).await {
                Ok(()) => AckKind::Term,
                Err(e) => {
                    crate::meter::nats_error("park");
                    tracing::warn!(error = %e, "cannot park the login request yet");
                    AckKind::Nak(Some(Duration::from_secs(1)))
                }
            };
            let _ = msg.ack_with(ack).await;
            return;
        }
    };
    let reply = headers::reply_subject(msg.headers.as_ref()).map(str::to_owned);
    let incoming = Incoming { request, reply };
    let step = exchanger.handle(&incoming);
    tokio::pin!(step);
    let mut heartbeat = tokio::time::interval(exchanger.topology.exchange_ack_wait / 3);
    heartbeat.tick().await;
    let outcome = loop {
        tokio::select! {
            outcome = &mut step => break outcome,
            _ = heartbeat.tick() => {
                // Still waiting on the limiter or WeChat: keep the message ours.
                let _ = msg.ack_with(AckKind::Progress).await;
            }
        }
    };
    let ack = match outcome {
        Ok(Outcome::Exchanged(_) | Outcome::AnsweredFromLedger(_)) => AckKind::Ack,
        // (At once when draining: this worker is leaving, another one looks.)
        Ok(Outcome::InFlightElsewhere) if exchanger.draining.is_cancelled() => AckKind::Nak(None),
        Ok(Outcome::InFlightElsewhere) => AckKind::Nak(Some(Duration::from_millis(500))),
        // At once: this worker is leaving, another one takes it.
        Ok(Outcome::GivenBack) => AckKind::Nak(None),
        Err(e) => {
            tracing::warn!(error = %e, "login step will be retried");
            AckKind::Nak(Some(Duration::from_secs(1)))
        }
    };
    tracing::debug!(login_id = %incoming.request.login_id, ?ack, "code message settled");
    if let Err(e) = msg.ack_with(ack).await {
        tracing::warn!(error = %e, "ack failed; the message will be redelivered");
    }
}
