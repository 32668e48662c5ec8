//! The names of the synchronous calls around the pipeline: session-key checks and resets the
//! workers answer, signatures the upserters give services, and where a reset is recorded.

use super::Topology;
use crate::contract::{AppId, LoginId};

impl Topology {
    /// A reset session_key's event (see [`crate::contract::events::SessionKeyReset`]).
    pub fn key_reset_subject(&self, appid: &AppId, call_id: &LoginId) -> String {
        format!("{}.results.{appid}.reset.{call_id}", self.prefix)
    }
    /// Where the company's services ask for a body signed with a user's session_key
    /// (`{prefix}.sign.{appid}`; see [`crate::upsert::sign`]).
    pub fn sign_subject(&self, appid: &AppId) -> String {
        format!("{}.sign.{appid}", self.prefix)
    }
    pub fn sign_subjects(&self) -> String {
        format!("{}.sign.*", self.prefix)
    }
    pub fn sign_queue(&self) -> String {
        format!("{}_signers", self.prefix)
    }
    /// Synchronous WeChat calls the workers answer (core NATS, one queue group).
    /// A session-key check goes to `{prefix}.calls.{appid}` (the ingress may publish there); a
    /// reset to `{prefix}.calls.{appid}.reset`, which only the admin may: an operator's act.
    pub fn call_subject(&self, appid: &AppId, kind: crate::contract::events::CallKind) -> String {
        match kind {
            crate::contract::events::CallKind::CheckSession => {
                format!("{}.calls.{appid}", self.prefix)
            }
            crate::contract::events::CallKind::ResetSessionKey => {
                format!("{}.calls.{appid}.reset", self.prefix)
            }
        }
    }
    /// The queue group every worker answers calls in (one answer per call).
    pub fn call_queue(&self) -> String {
        format!("{}_workers", self.prefix)
    }
}
