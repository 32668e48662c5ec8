//! Reads that decide a guarantee: "this code has a result", "this session was logged out".
//!
//! async-nats serves `direct_get…` and `kv::Store::entry` from any replica when the stream
//! allows direct gets, and on an R3 cluster a follower may answer from a copy that lags its
//! leader: a result just recorded, or a logout just written, could be missed. These helpers use
//! the `STREAM.MSG.GET` API instead, which only the stream's leader answers, so a read that
//! starts after a write was acknowledged sees it.
//!
//! On a **lone nats-server** (JetStream not clustered) a stream has one replica and nowhere to
//! move: that server is its leader, it alone answers a direct get, from the store the write was
//! acknowledged from. There the read is a direct get (issue 18: the API request, its JSON and
//! base64, cost nats-server ~12 % of its CPU at two reads per login). In a cluster even a
//! one-replica stream can be scaled up or moved while we run, and a catching-up peer could then
//! answer, so every clustered stream keeps the API read. What decides is the stream's info as the
//! process saw it when it bound the stream (a clustered server's names its cluster): after
//! turning a lone server into a cluster, restart the processes. A mirror of these streams with
//! `mirror_direct` (async-nats and the `nats` CLI set it for KV mirrors) would answer direct gets
//! from its own lagging copy: `nats/README.md` says not to make one.

use async_nats::jetstream::{
    kv,
    message::StreamMessage,
    stream::{self, DirectGetErrorKind, LastRawMessageErrorKind},
};

/// A read that could not be made (NATS away, a timeout, an error answer).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(String);

/// Whether a direct get on this stream can only be answered by its leader: a stream of one
/// replica that allows direct gets, on a lone server (its info names no cluster: a clustered
/// server names its cluster even for a one-replica stream, and a replicated one its RAFT group).
pub fn direct_is_leader(info: &stream::Info) -> bool {
    let clustered =
        (info.cluster.as_ref()).is_some_and(|c| c.name.is_some() || c.raft_group.is_some());
    let c = &info.config;
    !clustered && c.num_replicas <= 1 && c.allow_direct && c.mirror.is_none()
}

/// The last message on `subject`, read from the stream's leader; `None` if it has none.
pub async fn last_on_subject(
    stream: &stream::Stream,
    subject: &str,
) -> Result<Option<StreamMessage>, ReadError> {
    if direct_is_leader(stream.cached_info()) {
        return match stream.direct_get_last_for_subject(subject).await {
            Ok(msg) => Ok(Some(msg)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(ReadError(e.to_string())),
        };
    }
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(msg) => Ok(Some(msg)),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(ReadError(e.to_string())),
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

pub async fn kv_entry(store: &kv::Store, key: &str) -> Result<Option<KvEntry>, ReadError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn info(config: stream::Config, cluster: Option<&str>) -> stream::Info {
        let cluster = stream::ClusterInfo {
            name: cluster.map(str::to_owned),
            leader: Some("n0".into()),
            ..Default::default()
        };
        let mut info: stream::Info = serde_json::from_value(serde_json::json!({
            "config": serde_json::to_value(&config).expect("a config serializes"),
            "created": "2026-12-04T00:00:00Z",
            "state": {"messages": 0, "bytes": 0, "first_seq": 0, "first_ts": "2026-12-04T00:00:00Z",
                      "last_seq": 0, "last_ts": "2026-12-04T00:00:00Z", "consumer_count": 0},
        }))
        .expect("a stream info");
        info.cluster = Some(cluster);
        info
    }

    #[test]
    fn a_direct_get_stands_for_a_leader_read_only_on_a_lone_server_with_one_replica() {
        let one = stream::Config {
            num_replicas: 1,
            allow_direct: true,
            ..Default::default()
        };
        assert!(direct_is_leader(&info(one.clone(), None)));
        // In a cluster even one replica can be scaled up or moved while we run.
        assert!(!direct_is_leader(&info(
            one.clone(),
            Some("wxlogin-cluster")
        )));
        let replicated = stream::ClusterInfo {
            raft_group: Some("S-R3F-abc".into()),
            ..Default::default()
        };
        let mut in_raft_group = info(one.clone(), None);
        in_raft_group.cluster = Some(replicated);
        assert!(!direct_is_leader(&in_raft_group));
        let three = stream::Config {
            num_replicas: 3,
            ..one.clone()
        };
        assert!(!direct_is_leader(&info(three, None)));
        let no_direct = stream::Config {
            allow_direct: false,
            ..one.clone()
        };
        assert!(!direct_is_leader(&info(no_direct, None)));
        let mirror = stream::Config {
            mirror: Some(stream::Source {
                name: "ORIGIN".into(),
                ..Default::default()
            }),
            ..one
        };
        assert!(!direct_is_leader(&info(mirror, None)));
    }
}
