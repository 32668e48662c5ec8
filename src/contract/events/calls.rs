//! Synchronous WeChat calls: an ingress (or an operator's command) asks the workers, who alone
//! call WeChat, over core NATS on `{prefix}.calls.{appid}` (one worker of the queue group
//! answers), and waits for the answer on its own reply subject. Nothing here is retained: a
//! call nobody answers in time is answered `503` and may be made again.
//!
//! The session_key travels sealed as in results (AAD `appid:openid`); an answer carries a tag
//! under the master key, so only a worker's answer to this very call is acted on.

use serde::{Deserialize, Serialize};

use super::{EventError, decode, tag_aad};
use crate::{
    contract::ids::{AppId, LoginId},
    crypto::{Keyring, SealFormat},
};

pub const CALL_REQUESTED_V1: u32 = 1;
pub const CALL_ANSWERED_V1: u32 = 1;

/// What the caller wants of WeChat.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// `wxa/checksession`: is the session_key we hold the user's current one?
    CheckSession,
    /// `wxa/resetusersessionkey`: give the user a new session_key (an operator's command).
    ResetSessionKey,
}

/// Published on `{prefix}.calls.{appid}`, with the caller's reply subject and the call id in the
/// headers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallRequested {
    pub v: u32,
    pub call_id: LoginId,
    pub kind: CallKind,
    pub appid: AppId,
    pub openid: String,
    /// The key the call is about, sealed as in a login's result.
    pub session_key_sealed: String,
    pub requested_at_ms: i64,
}

/// What WeChat said.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CallOutcome {
    /// checksession: 0 (current) or 87009 (replaced).
    Checked {
        current: bool,
    },
    /// resetusersessionkey: the new key, sealed (AAD `appid:openid`).
    /// (`recorded`: whether the worker recorded it on the results stream; if not, the caller
    /// must, as the old key is dead.)
    Reset {
        session_key_sealed: String,
        recorded: bool,
    },
    Failed {
        errcode: i64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallAnswered {
    pub v: u32,
    pub call_id: LoginId,
    pub appid: AppId,
    #[serde(flatten)]
    pub outcome: CallOutcome,
    /// A [`Keyring::tag`] over the rest: who lacks the master key cannot answer a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl CallRequested {
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        decode(bytes, CALL_REQUESTED_V1)
    }
}

impl CallAnswered {
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        decode(bytes, CALL_ANSWERED_V1)
    }

    fn tag_aad(&self) -> Vec<u8> {
        let untagged = CallAnswered {
            tag: None,
            ..self.clone()
        };
        tag_aad(b"wxlogin-call-answer-v1\n", &untagged)
    }

    pub fn tagged(mut self, keyring: &Keyring) -> Self {
        self.tag = None;
        self.tag = Some(keyring.tag(&self.tag_aad()));
        self
    }

    /// Whether a worker with the master key wrote this answer (always required: no build
    /// before this one answered calls).
    pub fn is_authentic(&self, keyring: &Keyring) -> bool {
        self.tag.as_ref().is_some_and(|t| {
            SealFormat::of(t).is_some() && keyring.verify_tag(t, &self.tag_aad()).is_ok()
        })
    }
}

pub const SESSION_KEY_RESET_V1: u32 = 1;
/// The `event` of a [`SessionKeyReset`].
pub const SESSION_KEY_RESET: &str = "session_key_reset";

/// Published by the worker that reset a user's session_key, on
/// `{prefix}.results.{appid}.reset.{call id}`, before it answers: the upserter keeps the new key
/// as the user's newest (a later login replaces it), and a replay rebuilds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct SessionKeyReset {
    pub v: u32,
    /// Always [`SESSION_KEY_RESET`].
    pub event: String,
    /// The reset call's id: the row's `last_login_id` while this key is its newest.
    pub call_id: LoginId,
    pub appid: AppId,
    pub openid: String,
    /// The new key, sealed as in a login's result (AAD: `appid:openid`).
    pub session_key_sealed: String,
    pub reset_at_ms: i64,
}

impl SessionKeyReset {
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        decode(bytes, SESSION_KEY_RESET_V1)
    }
}
