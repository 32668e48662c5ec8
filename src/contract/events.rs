//! The versioned event types that travel through NATS (see `nats/README.md`).
//!
//! Every payload is JSON with a `v` field. Readers accept the versions they know and refuse the
//! rest with a clear error, so a newer writer never corrupts an older reader's state. Secrets
//! never travel in plaintext: the login code and the session_key are sealed under the master key
//! (see [`crate::crypto::sealing`]).

use serde::{Deserialize, Serialize};

use super::ids::{AppId, CodeKey, LoginId};

pub const LOGIN_REQUESTED_V1: u32 = 1;
pub const LOGIN_RESULT_V1: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("event version {0} is not supported by this build")]
    UnsupportedVersion(u32),
}

/// Published by the ingress on `{prefix}.codes.{appid}`: one login code to exchange.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginRequested {
    pub v: u32,
    pub login_id: LoginId,
    pub appid: AppId,
    /// The `wx.login()` code, sealed (AAD: the appid).
    pub code_sealed: String,
    /// Hash of (appid, code): the key of the code ledger and the de-duplication id.
    pub code_key: CodeKey,
    /// When the ingress received the code; it may not be sent upstream after
    /// `received_at_ms + code_ttl`.
    pub received_at_ms: i64,
}

/// Why a login failed. The errcode tells the client; the reason tells operators.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// WeChat rejected the code or the user (40029, 40163, 40226, 41008).
    Rejected,
    /// Our appid/secret/IP is wrong (40013, 40125, 41002, 41004, 40164, 40243).
    Misconfigured,
    /// WeChat kept failing (or limiting) until the code was too old to send.
    Expired,
    /// An errcode we do not know.
    Unexpected,
    /// The code was exchanged before (a later reuse): 40163 without asking WeChat.
    AlreadyUsed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum LoginOutcome {
    Success {
        openid: String,
        unionid: Option<String>,
        /// Sealed under the master key (AAD: `appid:openid`).
        session_key_sealed: String,
    },
    Failure {
        errcode: i64,
        reason: FailureReason,
    },
}

/// Published by a worker on `{prefix}.results.{appid}.{code hash}`, once per code (retained: the
/// code's final record, and what replays read) and sent to the ingress's reply subject.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginResult {
    pub v: u32,
    pub login_id: LoginId,
    pub appid: AppId,
    pub code_key: CodeKey,
    pub received_at_ms: i64,
    pub finished_at_ms: i64,
    /// Upstream calls this worker made for the code.
    pub upstream_calls: u32,
    #[serde(flatten)]
    pub outcome: LoginOutcome,
}

impl LoginResult {
    /// Whether this result, a code's one result, may answer `login`: only the login that
    /// exchanged the code, or a duplicate submission that `joined` that exchange before it
    /// ended. Any other login presenting the code is a reuse (40163). The one rule behind "one
    /// code, one user": the worker applies it to redeliveries, the ingress to tickets and
    /// duplicates.
    pub fn answers(&self, login: &LoginId, joined: bool) -> bool {
        self.login_id == *login || joined
    }

    pub fn is_success(&self) -> bool {
        matches!(self.outcome, LoginOutcome::Success { .. })
    }
}

#[derive(Deserialize)]
struct Versioned {
    v: u32,
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], known: u32) -> Result<T, EventError> {
    let versioned: Versioned =
        serde_json::from_slice(bytes).map_err(|e| EventError::Malformed(e.to_string()))?;
    if versioned.v != known {
        return Err(EventError::UnsupportedVersion(versioned.v));
    }
    serde_json::from_slice(bytes).map_err(|e| EventError::Malformed(e.to_string()))
}

impl LoginRequested {
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        decode(bytes, LOGIN_REQUESTED_V1)
    }
}

impl LoginResult {
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        decode(bytes, LOGIN_RESULT_V1)
    }
}

pub fn encode<T: Serialize>(event: &T) -> bytes::Bytes {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(event)
        .expect("events serialize to JSON")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> LoginResult {
        LoginResult {
            v: LOGIN_RESULT_V1,
            login_id: "l1".into(),
            appid: "wx0123456789abcdef".into(),
            code_key: "k".into(),
            received_at_ms: 1,
            finished_at_ms: 2,
            upstream_calls: 1,
            outcome: LoginOutcome::Failure {
                errcode: 40029,
                reason: FailureReason::Rejected,
            },
        }
    }

    #[test]
    fn a_result_round_trips_through_json() {
        let r = result();
        assert_eq!(LoginResult::decode(&encode(&r)).unwrap(), r);
    }

    #[test]
    fn an_unknown_version_is_refused_by_name() {
        let mut r = result();
        r.v = 99;
        let err = LoginResult::decode(&encode(&r)).unwrap_err();
        assert!(matches!(err, EventError::UnsupportedVersion(99)));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            LoginResult::decode(b"{\"v\":1"),
            Err(EventError::Malformed(_))
        ));
        assert!(matches!(
            LoginRequested::decode(b"[]"),
            Err(EventError::Malformed(_))
        ));
    }
}
