//! Our own session tokens ("3rd session"): 256 random bits from the OS generator, handed to the
//! client once and stored only as a SHA-256 hash in a NATS KV bucket that every ingress process
//! reads — so a logout is seen everywhere at once, and expiry is both checked on read and
//! enforced by the bucket's max age. Records are sealed under the master key and bound to the
//! token's hash ([`stored`]): a writer to the bucket without the key cannot make a session.

use crate::clock::Clock;
use crate::contract::{AppId, LoginId};
use async_nats::jetstream::kv::{self, Operation};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::contract::leader;
use crate::crypto::Keyring;
use std::sync::Arc;

mod stored;
use stored::Stored;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("session record is corrupt")]
    Corrupt,
    /// Sealed but does not open here, or in the first format after the cutover: written by
    /// someone without the master key (or under a key this process no longer holds).
    #[error("session record failed authentication")]
    Forged,
}

/// Tokens start with this so secret scanners can recognise a leaked one.
pub const TOKEN_PREFIX: &str = "wxl_";

/// A new token: `wxl_` + 43 characters of base64url (32 bytes from the OS RNG).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random generator is available");
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// What the store keeps: the key is this hash, never the token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A token can only be ours if it has our shape; anything else is refused without a lookup.
pub fn is_well_formed(token: &str) -> bool {
    token.len() == TOKEN_PREFIX.len() + 43
        && token.starts_with(TOKEN_PREFIX)
        && token[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionRecord {
    pub v: u32,
    pub appid: AppId,
    pub openid: String,
    pub unionid: Option<String>,
    /// Sealed under the master key; `/v1/decrypt` opens it.
    pub session_key_sealed: String,
    pub login_id: LoginId,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// WeChat said (87009) that the session_key held here is no longer the user's: decrypts
    /// are answered `409 87009` (log in again) instead of failing on the ciphertext.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub key_stale: bool,
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Active(SessionRecord),
    /// Logged out (a tombstone is kept as long as the bucket keeps history).
    Revoked,
    Missing,
}

#[derive(Clone)]
pub struct SessionStore {
    kv: kv::Store,
    /// What "expired" is read against.
    clock: Clock,
    /// Seals records, and says which format to write.
    keyring: Arc<Keyring>,
    /// First-format records at or below this bucket revision are believed (`0`: none, unless
    /// the fleet still writes them): `session_legacy_max_revision`.
    legacy_max_revision: u64,
}

fn unavailable(e: impl std::fmt::Display) -> SessionError {
    SessionError::Unavailable(e.to_string())
}

impl SessionStore {
    pub fn new(
        kv: kv::Store,
        clock: Clock,
        keyring: Arc<Keyring>,
        legacy_max_revision: u64,
    ) -> Self {
        SessionStore {
            kv,
            clock,
            keyring,
            legacy_max_revision,
        }
    }

    /// The record stored under `key` at `revision`, if it is believed, and its revision now: a
    /// believed record of the first format is sealed again (compare-and-set: a logout that got
    /// there first stands).
    async fn believe(
        &self,
        key: &str,
        value: &[u8],
        revision: u64,
    ) -> Result<(SessionRecord, u64), SessionError> {
        match stored::decode(&self.keyring, key, value)? {
            Stored::Sealed(record) => Ok((record, revision)),
            Stored::Legacy(record)
                if stored::legacy_believed(&self.keyring, self.legacy_max_revision, revision) =>
            {
                if self.keyring.writes() == crate::crypto::SealFormat::V1 {
                    return Ok((record, revision));
                }
                let value = stored::encode(&self.keyring, key, &record);
                match self.kv.update(key, value, revision).await {
                    Ok(sealed_at) => Ok((record, sealed_at)),
                    // Sealed next time; this read still believes what it found.
                    Err(e) => {
                        tracing::debug!(error = %e, "a first-format session not sealed yet");
                        Ok((record, revision))
                    }
                }
            }
            Stored::Legacy(_) => Err(SessionError::Forged),
        }
    }

    /// Stores the session unless this token was already used or revoked: a ticket polled again
    /// after a logout must not bring the session back.
    pub async fn create(
        &self,
        token: &str,
        record: &SessionRecord,
    ) -> Result<Lookup, SessionError> {
        let key = token_hash(token);
        let value = stored::encode(&self.keyring, &key, record);
        // `update` at revision 0 succeeds only if the key never had a message — unlike
        // `create`, which overwrites a logout's tombstone.
        match self.kv.update(&key, value, 0).await {
            Ok(_) => Ok(Lookup::Active(record.clone())),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                self.lookup_hash(&key).await
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    pub async fn lookup(&self, token: &str) -> Result<Lookup, SessionError> {
        if !is_well_formed(token) {
            return Ok(Lookup::Missing);
        }
        self.lookup_hash(&token_hash(token)).await
    }

    /// Read from the bucket's leader: a logout acknowledged anywhere is seen by the next
    /// lookup on every ingress, never a follower's older copy.
    async fn lookup_hash(&self, key: &str) -> Result<Lookup, SessionError> {
        match leader::kv_entry(&self.kv, key).await.map_err(unavailable)? {
            None => Ok(Lookup::Missing),
            Some(e) if e.operation != Operation::Put => Ok(Lookup::Revoked),
            Some(e) => {
                let record = match self.believe(key, &e.value, e.revision).await {
                    Ok((record, _)) => record,
                    // Refused like an unknown token (401): never a session, never a 503 that
                    // a forger could cause at will.
                    Err(SessionError::Forged) => {
                        crate::meter::untrusted("session");
                        tracing::warn!(
                            "a session record that fails authentication: written without the master key?"
                        );
                        return Ok(Lookup::Missing);
                    }
                    Err(e) => return Err(e),
                };
                if record.expires_at_ms <= self.clock.now_ms() {
                    Ok(Lookup::Missing)
                } else {
                    Ok(Lookup::Active(record))
                }
            }
        }
    }

    /// Records a unionid learnt after login (from decrypted user data) on a live session that
    /// has none. Compare-and-set on the entry's revision: a logout or a concurrent update that
    /// got there first stands, and a revoked session is never brought back.
    pub async fn set_unionid(&self, token: &str, unionid: &str) -> Result<(), SessionError> {
        self.amend(token, |record| {
            let learnt = record.unionid.is_none();
            if learnt {
                record.unionid = Some(unionid.to_owned());
            }
            learnt
        })
        .await
    }

    /// Records that WeChat no longer takes this session's session_key (87009).
    pub async fn mark_key_stale(&self, token: &str) -> Result<(), SessionError> {
        self.amend(token, |record| {
            !std::mem::replace(&mut record.key_stale, true)
        })
        .await
    }

    /// Changes a live session's record by compare-and-set; `change` says whether it changed
    /// anything. A session logged out meanwhile is left as it is; a concurrent change is read
    /// and `change` applied to it again (a few times).
    async fn amend(
        &self,
        token: &str,
        change: impl Fn(&mut SessionRecord) -> bool,
    ) -> Result<(), SessionError> {
        if !is_well_formed(token) {
            return Ok(());
        }
        for _ in 0..3 {
            if self.amend_once(token, &change).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// One compare-and-set of [`SessionStore::amend`]: `Ok(false)` when another write came first.
    async fn amend_once(
        &self,
        token: &str,
        change: &impl Fn(&mut SessionRecord) -> bool,
    ) -> Result<bool, SessionError> {
        let key = token_hash(token);
        let Some(entry) = leader::kv_entry(&self.kv, &key)
            .await
            .map_err(unavailable)?
        else {
            return Ok(true);
        };
        if entry.operation != Operation::Put {
            return Ok(true);
        }
        let (mut record, revision) = match self.believe(&key, &entry.value, entry.revision).await {
            Ok(found) => found,
            Err(SessionError::Forged) => return Ok(true),
            Err(e) => return Err(e),
        };
        if !change(&mut record) {
            return Ok(true);
        }
        let value = stored::encode(&self.keyring, &key, &record);
        match self.kv.update(&key, value, revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Revokes the token everywhere. Deleting leaves a tombstone, so the key cannot be created
    /// again from a stale ticket.
    pub async fn revoke(&self, token: &str) -> Result<(), SessionError> {
        self.kv.delete(token_hash(token)).await.map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_well_formed() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(is_well_formed(&a), "{a}");
        assert_eq!(a.len(), 47);
        assert!(!is_well_formed("wxl_short"));
        assert!(!is_well_formed(&a.replace("wxl_", "abc_")));
    }

    #[test]
    fn the_store_key_is_a_hash_not_the_token() {
        let t = new_token();
        let h = token_hash(&t);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&t[4..]));
    }
}
