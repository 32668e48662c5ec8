//! Parked events: what a stage cannot apply — an event of a newer writer (an unknown version or
//! kind), one that does not parse, one the database refuses — is copied to `{prefix}_PARKED`
//! with the reason, then acknowledged, so it never stalls the events behind it and is never
//! lost. `wxlogin parked list` shows them, `wxlogin parked retry` applies them again (after an
//! upgrade, or a fix of the database) and removes those that went through.
//!
//! A parked copy holds the original payload (secrets in it stay sealed), its headers, and three
//! of ours: the reason, the subject and the stream sequence it came from.

use async_nats::{
    HeaderMap,
    jetstream::{self, consumer::pull, stream},
};
use futures::StreamExt;

use super::{headers, topology::Topology};

/// The stage that parked an event; the last token of its parked subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The upserter, reading `{P}_RESULTS`.
    Upsert,
    /// An exchange worker, reading `{P}_CODES`.
    Exchange,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Upsert => "upsert",
            Stage::Exchange => "exchange",
        }
    }

    fn from_subject(subject: &str) -> Option<Stage> {
        match subject.rsplit('.').next()? {
            "upsert" => Some(Stage::Upsert),
            "exchange" => Some(Stage::Exchange),
            _ => None,
        }
    }
}

/// One parked event, as `wxlogin parked list` shows it.
#[derive(Debug, Clone)]
pub struct Parked {
    /// Its sequence in `{P}_PARKED` (what `retry` takes).
    pub seq: u64,
    pub stage: Option<Stage>,
    pub parked_at: time::OffsetDateTime,
    pub reason: String,
    pub from_subject: String,
    pub from_seq: u64,
    pub login_id: Option<String>,
    pub headers: HeaderMap,
    pub payload: bytes::Bytes,
}

fn nats(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Copies a message to the parked stream (acknowledged by JetStream) with why it was parked.
/// The caller acks the original only after this returned `Ok`.
pub async fn park(
    js: &jetstream::Context,
    topology: &Topology,
    stage: Stage,
    msg: &jetstream::Message,
    reason: &str,
) -> Result<(), String> {
    let from_seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
    let headers = headers::for_parked(msg.headers.as_ref(), msg.subject.as_str(), from_seq, reason);
    crate::meter::parked(stage.as_str());
    tracing::error!(stage = stage.as_str(), from = %msg.subject, from_seq, reason, "event parked: see `wxlogin parked list`");
    js.publish_with_headers(topology.parked_subject(stage), headers, msg.payload.clone())
        .await
        .map_err(nats)?
        .await
        .map_err(nats)?;
    Ok(())
}

/// Every parked event, oldest first.
pub async fn list(js: &jetstream::Context, topology: &Topology) -> Result<Vec<Parked>, String> {
    let mut stream = js
        .get_stream(topology.parked_stream())
        .await
        .map_err(nats)?;
    let state = stream.info().await.map_err(nats)?.state.clone();
    if state.messages == 0 {
        return Ok(Vec::new());
    }
    let consumer = stream
        .create_consumer(pull::OrderedConfig::default())
        .await
        .map_err(nats)?;
    let mut messages = consumer.messages().await.map_err(nats)?;
    let mut parked = Vec::new();
    // Until as many as the stream held (its last sequence may be a removed one); a removal
    // meanwhile leaves fewer to read than counted, which the wait for the next one ends.
    while (parked.len() as u64) < state.messages {
        let next = tokio::time::timeout(std::time::Duration::from_secs(2), messages.next());
        let Ok(Some(msg)) = next.await else { break };
        let msg = msg.map_err(nats)?;
        let info = msg.info().map_err(nats)?;
        let (seq, parked_at) = (info.stream_sequence, info.published);
        let h = msg.headers.clone().unwrap_or_default();
        let read = |name| h.get(name).map(|v| v.as_str().to_owned());
        parked.push(Parked {
            seq,
            stage: Stage::from_subject(msg.subject.as_str()),
            parked_at,
            reason: read(headers::PARKED_REASON).unwrap_or_default(),
            from_subject: read(headers::PARKED_FROM).unwrap_or_default(),
            from_seq: read(headers::PARKED_FROM_SEQ)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            login_id: read(headers::LOGIN_ID),
            headers: h.clone(),
            payload: msg.payload.clone(),
        });
    }
    Ok(parked)
}

/// Removes a parked event that was applied.
pub async fn remove(js: &jetstream::Context, topology: &Topology, seq: u64) -> Result<(), String> {
    let stream: stream::Stream = js
        .get_stream(topology.parked_stream())
        .await
        .map_err(nats)?;
    stream.delete_message(seq).await.map_err(nats)?;
    Ok(())
}
