//! The code ledger: where a code stands, keyed by its hash (never the code). Two places:
//! - a claim in the `{prefix}_ledger` KV bucket, *created* (an atomic compare-and-set) by the
//!   worker that is about to call WeChat, and kept until well after the code has expired;
//! - the code's result on the results stream, on its own subject `{prefix}.results.{appid}.{hash}`
//!   and published only if that subject is empty (`Nats-Expected-Last-Subject-Sequence: 0`):
//!   the first result of a code is the only one, for as long as the stream keeps it.
//!
//! Together they make the exchange at-most-once: a worker calls WeChat only after creating the
//! claim, and a code with a result is answered from it, never sent upstream again. Keeping the
//! final record on the results stream (instead of writing it to the bucket as well) saves a
//! JetStream write per login and leaves no window in which the two could disagree.

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        kv::{self, CreateErrorKind, Operation},
        stream::{self, DirectGetErrorKind},
    },
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    events::{HEADER_LOGIN_ID, LoginResult},
    topology::Topology,
};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("code ledger unavailable: {0}")]
    Unavailable(String),
    #[error("code ledger entry is corrupt: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LedgerEntry {
    /// A worker is calling WeChat for this code.
    Claimed { login_id: String, at_ms: i64 },
    /// The code's exchange ended with this result.
    Done { result: LoginResult },
}

/// The outcome of trying to claim a code.
#[derive(Debug)]
pub enum Claim {
    /// We own the code now; the revision lets us finish it.
    Won { revision: u64 },
    /// Someone claimed or finished it before us.
    Taken { entry: LedgerEntry, revision: u64 },
}

/// The ledger key of a code: hex SHA-256 of the appid and the code. Codes are 32 random
/// characters, so the hash cannot be reversed by guessing, and the ledger never holds a code
/// that could be exchanged.
pub fn code_key(appid: &str, code: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"wxlogin-code\0");
    h.update(appid.as_bytes());
    h.update(b"\0");
    h.update(code.as_bytes());
    hex::encode(&h.finalize()[..20])
}

#[derive(Clone)]
pub struct Ledger {
    kv: kv::Store,
    results: stream::Stream,
    js: jetstream::Context,
    topology: Topology,
}

fn unavailable(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

/// What publishing a result found.
#[derive(Debug)]
pub enum Recorded {
    /// Ours is the code's result (stream sequence).
    Ours(u64),
    /// The code already had this result; it stays authoritative.
    Earlier(Box<LoginResult>),
}

impl Ledger {
    pub fn new(
        kv: kv::Store,
        results: stream::Stream,
        js: jetstream::Context,
        topology: &Topology,
    ) -> Self {
        Ledger {
            kv,
            results,
            js,
            topology: topology.clone(),
        }
    }

    /// Atomically claims the code for `login_id`, or returns who has it (a result first).
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn claim(
        &self,
        appid: &str,
        code_key: &str,
        login_id: &str,
    ) -> Result<Claim, LedgerError> {
        let entry = LedgerEntry::Claimed {
            login_id: login_id.to_string(),
            at_ms: crate::events::now_ms(),
        };
        match self.kv.create(code_key, encode(&entry)).await {
            Ok(revision) => Ok(Claim::Won { revision }),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                if let Some(result) = self.result(appid, code_key).await? {
                    return Ok(Claim::Taken {
                        entry: LedgerEntry::Done { result },
                        revision: 0,
                    });
                }
                match self.claim_with_revision(code_key).await? {
                    Some((entry, revision)) => Ok(Claim::Taken { entry, revision }),
                    // Expired between the two calls: try once more.
                    None => match self.kv.create(code_key, encode(&entry)).await {
                        Ok(revision) => Ok(Claim::Won { revision }),
                        Err(e) => Err(unavailable(e)),
                    },
                }
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Claims the code again at `revision`: takes over a stale claim (its worker died), or
    /// renews our own before a call. Succeeds only if nobody changed the entry since.
    pub async fn take_over(
        &self,
        code_key: &str,
        login_id: &str,
        revision: u64,
    ) -> Result<Option<u64>, LedgerError> {
        let entry = LedgerEntry::Claimed {
            login_id: login_id.to_string(),
            at_ms: crate::events::now_ms(),
        };
        match self.kv.update(code_key, encode(&entry), revision).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Publishes the code's result unless it already has one. A retry after a lost ack finds
    /// its own result (same login) and is told `Earlier` with it, which is as good.
    pub async fn record(&self, result: &LoginResult) -> Result<Recorded, LedgerError> {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_LOGIN_ID, result.login_id.as_str());
        headers.insert(HEADER_EXPECTED_LAST_SUBJECT_SEQ, "0");
        let subject = self
            .topology
            .result_subject(&result.appid, &result.code_key);
        let ack = self
            .js
            .publish_with_headers(subject, headers, crate::events::encode(result))
            .await
            .map_err(unavailable)?
            .await;
        match ack {
            Ok(ack) => Ok(Recorded::Ours(ack.sequence)),
            Err(e) if is_wrong_last_sequence(&e) => {
                match self.result(&result.appid, &result.code_key).await? {
                    Some(first) => Ok(Recorded::Earlier(Box::new(first))),
                    None => Err(LedgerError::Unavailable(
                        "the stream refused a second result but has none".into(),
                    )),
                }
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Where the code stands: its result, else its claim, else nothing.
    pub async fn get(
        &self,
        appid: &str,
        code_key: &str,
    ) -> Result<Option<LedgerEntry>, LedgerError> {
        if let Some(result) = self.result(appid, code_key).await? {
            return Ok(Some(LedgerEntry::Done { result }));
        }
        Ok(self.claim_with_revision(code_key).await?.map(|(e, _)| e))
    }

    /// The code's result, if it has one.
    async fn result(
        &self,
        appid: &str,
        code_key: &str,
    ) -> Result<Option<LoginResult>, LedgerError> {
        match self
            .results
            .direct_get_last_for_subject(self.topology.result_subject(appid, code_key))
            .await
        {
            Ok(msg) => LoginResult::decode(&msg.payload)
                .map(Some)
                .map_err(|e| LedgerError::Corrupt(e.to_string())),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn claim_with_revision(
        &self,
        code_key: &str,
    ) -> Result<Option<(LedgerEntry, u64)>, LedgerError> {
        match self.kv.entry(code_key).await.map_err(unavailable)? {
            Some(e) if e.operation == Operation::Put => {
                let entry = serde_json::from_slice(&e.value)
                    .map_err(|err| LedgerError::Corrupt(err.to_string()))?;
                Ok(Some((entry, e.revision)))
            }
            _ => Ok(None),
        }
    }
}

const HEADER_EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";

/// JetStream's "wrong last sequence": the subject already has a message.
fn is_wrong_last_sequence(e: &jetstream::context::PublishError) -> bool {
    e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence
}

fn encode(entry: &LedgerEntry) -> bytes::Bytes {
    serde_json::to_vec(entry)
        .expect("ledger entries serialize")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_keys_differ_by_app_and_code_and_hide_the_code() {
        let a = code_key("wx0123456789abcdef", "061abcDEF");
        assert_eq!(a, code_key("wx0123456789abcdef", "061abcDEF"));
        assert_ne!(a, code_key("wx0123456789abcdee", "061abcDEF"));
        assert_ne!(a, code_key("wx0123456789abcdef", "061abcDEG"));
        assert!(!a.contains("061abcDEF"));
        assert_eq!(a.len(), 40);
    }
}
