//! Reads that decide a guarantee: "this code has a result", "this session was logged out".
//!
//! async-nats serves `direct_get…` and `kv::Store::entry` from any replica when the stream
//! allows direct gets, and on an R3 cluster a follower may answer from a copy that lags its
//! leader: a result just recorded, or a logout just written, could be missed. These helpers use
//! the `STREAM.MSG.GET` API instead, which only the stream's leader answers, so a read that
//! starts after a write was acknowledged sees it.

use async_nats::jetstream::{
    kv,
    message::StreamMessage,
    stream::{self, LastRawMessageErrorKind},
};

/// The last message on `subject`, read from the stream's leader; `None` if it has none.
pub async fn last_on_subject(
    stream: &stream::Stream,
    subject: &str,
) -> Result<Option<StreamMessage>, stream::LastRawMessageError> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(msg) => Ok(Some(msg)),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A key's latest entry in a KV bucket, read from the bucket's leader.
#[derive(Debug)]
pub struct KvEntry {
    pub value: bytes::Bytes,
    pub revision: u64,
    /// `Put`, or the `Delete`/`Purge` tombstone that ended the key.
    pub operation: kv::Operation,
}

pub async fn kv_entry(
    store: &kv::Store,
    key: &str,
) -> Result<Option<KvEntry>, stream::LastRawMessageError> {
    let subject = format!("{}{key}", store.prefix);
    let Some(msg) = last_on_subject(&store.stream, &subject).await? else {
        return Ok(None);
    };
    // The same headers async-nats reads: `KV-Operation`, or a server marker for an aged-out key.
    let operation = match msg
        .headers
        .get(super::headers::KV_OPERATION)
        .map(|v| v.as_str())
    {
        Some("DEL") => kv::Operation::Delete,
        Some("PURGE") => kv::Operation::Purge,
        Some(_) => kv::Operation::Put,
        None if msg.headers.get(super::headers::MARKER_REASON).is_some() => kv::Operation::Purge,
        None => kv::Operation::Put,
    };
    Ok(Some(KvEntry {
        value: msg.payload,
        revision: msg.sequence,
        operation,
    }))
}
