//! The code ledger: one entry per (appid, code) — keyed by its hash, never the code — from the
//! moment a worker is about to call WeChat until well after the code has expired. It is what
//! makes the exchange at-most-once: a worker only calls WeChat after *creating* the entry
//! (an atomic compare-and-set in NATS KV), and a code whose entry says `Done` is answered from
//! the recorded result, never sent upstream again.

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::events::LoginResult;

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
}

fn unavailable(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

impl Ledger {
    pub fn new(kv: kv::Store) -> Self {
        Ledger { kv }
    }

    /// Atomically claims the code for `login_id`, or returns who has it.
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn claim(&self, code_key: &str, login_id: &str) -> Result<Claim, LedgerError> {
        let entry = LedgerEntry::Claimed {
            login_id: login_id.to_string(),
            at_ms: crate::events::now_ms(),
        };
        match self.kv.create(code_key, encode(&entry)).await {
            Ok(revision) => Ok(Claim::Won { revision }),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                match self.get_with_revision(code_key).await? {
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

    /// Records the final result. Last writer wins: a result is authoritative whoever wrote it.
    pub async fn finish(&self, code_key: &str, result: &LoginResult) -> Result<(), LedgerError> {
        let entry = LedgerEntry::Done {
            result: result.clone(),
        };
        self.kv
            .put(code_key, encode(&entry))
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    pub async fn get(&self, code_key: &str) -> Result<Option<LedgerEntry>, LedgerError> {
        Ok(self.get_with_revision(code_key).await?.map(|(e, _)| e))
    }

    async fn get_with_revision(
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
