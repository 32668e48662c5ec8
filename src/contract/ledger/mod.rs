//! The code ledger: where a code stands, keyed by its hash (never the code). Two places:
//! - a claim in the `{prefix}_ledger` KV bucket, *created* (an atomic compare-and-set) by the
//!   worker step that is about to call WeChat, renewed by it while it works, and kept until well
//!   after the code has expired;
//! - the code's result on the results stream, on its own subject `{prefix}.results.{appid}.{hash}`
//!   and published only if that subject is empty (`Nats-Expected-Last-Subject-Sequence: 0`):
//!   the first result of a code is the only one, for as long as the stream keeps it.
//!
//! A step calls WeChat only while it holds the claim *and* the code has no result: a claim won
//! after an old claim aged out proves nothing, so the result is read too. A claim held by a step
//! that stopped renewing is taken over in two moves, never by comparing clocks of two machines:
//! the taker first writes its intent (compare-and-set), then gives the holder one full ack wait,
//! measured on its own monotonic clock, to renew (which cancels the intent) or record; only then
//! does a second compare-and-set make the claim its own. Every read that decides one of these
//! guarantees goes to the stream leader ([`crate::contract::leader`]).

use async_nats::jetstream::{
    self,
    kv::{self, CreateErrorKind, Operation},
    stream,
};
use serde::{Deserialize, Serialize};

use super::{
    events::LoginResult,
    headers,
    ids::{AppId, CodeKey, LoginId},
    leader,
    topology::Topology,
};
use crate::clock::Clock;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("code ledger unavailable: {0}")]
    Unavailable(String),
    #[error("code ledger entry is corrupt: {0}")]
    Corrupt(String),
}

/// A claim as stored in the bucket: `{"state":"claimed", …}`. The first format had only
/// `login_id` and `at_ms`; workers of that format read this one (they ignore the new fields and
/// judge staleness by `at_ms`, which an intent leaves unchanged), and this one reads theirs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClaimRecord {
    pub login_id: LoginId,
    /// The holder's wall clock at its last write. Only workers of the first format use it.
    pub at_ms: i64,
    /// The worker step holding the claim (random per step); absent in the first format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// A step that will take the claim over unless the holder renews within an ack wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover_by: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Stored {
    Claimed(ClaimRecord),
}

/// The outcome of trying to claim a code.
#[derive(Debug)]
pub enum Claim {
    /// We hold the code and it has no result; the revision lets us renew and hand it over.
    Won { revision: u64 },
    /// The code's exchange has ended with this result.
    Done(Box<LoginResult>),
    /// Another step holds the code (it may be dead: see [`Ledger::intend_takeover`]).
    Held { record: ClaimRecord, revision: u64 },
}

/// What renewing our claim found.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Still ours, at this revision (an intent to take it over, if any, is cancelled).
    Renewed(u64),
    /// Another step took it over, or the entry is gone: we must not call WeChat for it.
    Lost,
}

#[derive(Clone)]
pub struct Ledger {
    kv: kv::Store,
    results: stream::Stream,
    js: jetstream::Context,
    topology: Topology,
    /// Only for a claim's `at_ms`, which only workers of the first format read.
    clock: Clock,
}

fn unavailable(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

/// What publishing a result found.
#[derive(Debug)]
pub enum Recorded {
    /// Ours is the code's result (stream sequence).
    Ours(u64),
    /// The code already had this result; it stays authoritative. It may be another login's:
    /// the caller decides what that means for its own login.
    Earlier(Box<LoginResult>),
}

impl Ledger {
    pub fn new(
        kv: kv::Store,
        results: stream::Stream,
        js: jetstream::Context,
        topology: &Topology,
        clock: Clock,
    ) -> Self {
        Ledger {
            kv,
            results,
            js,
            topology: topology.clone(),
            clock,
        }
    }

    /// Atomically claims the code for the step `holder` of `login_id`, or says who has it.
    /// The code's result is read at the same time: a claim created after an older one aged out
    /// (a code replayed long after its login) must not lead to a second exchange.
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn claim(
        &self,
        appid: &AppId,
        code_key: &CodeKey,
        login_id: &LoginId,
        holder: &str,
    ) -> Result<Claim, LedgerError> {
        let ours = Stored::Claimed(claim_record(login_id, holder, self.clock.now_ms()));
        for _ in 0..2 {
            let (created, result) = tokio::join!(
                self.kv.create(code_key, encode(&ours)),
                self.result(appid, code_key)
            );
            let result = match (&created, result) {
                // The claim is ours: a failed read must not strand it (a claim nobody renews
                // costs the code's redelivery a whole takeover wait), so read again.
                (Ok(_), Err(_)) => self.result_with_retries(appid, code_key).await?,
                (_, result) => result?,
            };
            if let Some(result) = result {
                return Ok(Claim::Done(Box::new(result)));
            }
            match created {
                Ok(revision) => return Ok(Claim::Won { revision }),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(unavailable(e)),
            }
            if let Some((record, revision)) = self.claim_with_revision(code_key).await? {
                return Ok(Claim::Held { record, revision });
            }
            // The claim aged out between the two calls: try once more.
        }
        Err(LedgerError::Unavailable(
            "the claim changed under us twice".into(),
        ))
    }

    /// Renews the claim `holder` took at `revision`, so it never looks abandoned while its step
    /// works; cancels an intent to take it over. Compare-and-set: if the entry moved because of
    /// an intent over our claim, renews on top of it; if someone else holds it now, `Lost`.
    pub async fn renew(
        &self,
        code_key: &CodeKey,
        login_id: &LoginId,
        holder: &str,
        revision: u64,
    ) -> Result<Renewal, LedgerError> {
        let ours = encode(&Stored::Claimed(claim_record(
            login_id,
            holder,
            self.clock.now_ms(),
        )));
        let mut revision = revision;
        for _ in 0..3 {
            match self.kv.update(code_key, ours.clone(), revision).await {
                Ok(rev) => return Ok(Renewal::Renewed(rev)),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => return Err(unavailable(e)),
            }
            match self.claim_with_revision(code_key).await? {
                Some((record, rev)) if record.holder.as_deref() == Some(holder) => revision = rev,
                _ => return Ok(Renewal::Lost),
            }
        }
        Err(LedgerError::Unavailable(
            "the claim kept changing under us".into(),
        ))
    }

    /// Gives the claim `holder` took back, for a step that never sent its code upstream (a
    /// worker shutting down): the code's redelivery claims it at once instead of waiting an ack
    /// wait for it to go stale. Compare-and-set on our revision; if the entry moved (an intent
    /// over our claim), released on top of it while still ours; someone else's stays.
    pub async fn release(
        &self,
        code_key: &CodeKey,
        holder: &str,
        revision: u64,
    ) -> Result<(), LedgerError> {
        let mut revision = revision;
        for _ in 0..3 {
            match self
                .kv
                .delete_expect_revision(code_key, Some(revision))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => return Err(unavailable(e)),
            }
            match self.claim_with_revision(code_key).await? {
                Some((record, rev)) if record.holder.as_deref() == Some(holder) => revision = rev,
                _ => return Ok(()),
            }
        }
        Err(LedgerError::Unavailable(
            "the claim kept changing under us".into(),
        ))
    }

    /// The first move of a takeover: marks the claim held at `revision` as wanted by `by`,
    /// leaving the rest as it was (first-format readers still see the holder's `at_ms`).
    /// `None` if the entry changed since. Follow with [`Ledger::take_over`] an ack wait later.
    pub async fn intend_takeover(
        &self,
        code_key: &CodeKey,
        held: &ClaimRecord,
        revision: u64,
        by: &str,
    ) -> Result<Option<u64>, LedgerError> {
        let intent = ClaimRecord {
            takeover_by: Some(by.to_owned()),
            ..held.clone()
        };
        self.cas(code_key, &intent, revision).await
    }

    /// The second move: the claim becomes `holder`'s if nobody wrote the entry since our intent
    /// (at `revision`), i.e. its holder did not renew in the meantime. `None` otherwise.
    pub async fn take_over(
        &self,
        code_key: &CodeKey,
        login_id: &LoginId,
        holder: &str,
        revision: u64,
    ) -> Result<Option<u64>, LedgerError> {
        self.cas(
            code_key,
            &claim_record(login_id, holder, self.clock.now_ms()),
            revision,
        )
        .await
    }

    async fn cas(
        &self,
        code_key: &CodeKey,
        record: &ClaimRecord,
        revision: u64,
    ) -> Result<Option<u64>, LedgerError> {
        let value = encode(&Stored::Claimed(record.clone()));
        match self.kv.update(code_key, value, revision).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Publishes the code's result unless it already has one. A retry after a lost ack finds
    /// its own result (same login) and is told `Earlier` with it, which is as good.
    pub async fn record(&self, result: &LoginResult) -> Result<Recorded, LedgerError> {
        let subject = self
            .topology
            .result_subject(&result.appid, &result.code_key);
        let ack = self
            .js
            .publish_with_headers(
                subject,
                headers::for_result(result),
                crate::contract::events::encode(result),
            )
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

    /// The code's result, if it has one, as the results stream's leader has it.
    pub async fn result(
        &self,
        appid: &AppId,
        code_key: &CodeKey,
    ) -> Result<Option<LoginResult>, LedgerError> {
        let subject = self.topology.result_subject(appid, code_key);
        match leader::last_on_subject(&self.results, &subject).await {
            Ok(Some(msg)) => LoginResult::decode(&msg.payload)
                .map(Some)
                .map_err(|e| LedgerError::Corrupt(e.to_string())),
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn result_with_retries(
        &self,
        appid: &AppId,
        code_key: &CodeKey,
    ) -> Result<Option<LoginResult>, LedgerError> {
        let mut attempt = 0;
        loop {
            match self.result(appid, code_key).await {
                Err(LedgerError::Unavailable(_)) if attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// The code's claim, if any, as the bucket's leader has it.
    pub async fn claim_with_revision(
        &self,
        code_key: &CodeKey,
    ) -> Result<Option<(ClaimRecord, u64)>, LedgerError> {
        match leader::kv_entry(&self.kv, code_key)
            .await
            .map_err(unavailable)?
        {
            Some(e) if e.operation == Operation::Put => {
                let Stored::Claimed(record) = serde_json::from_slice(&e.value)
                    .map_err(|err| LedgerError::Corrupt(err.to_string()))?;
                Ok(Some((record, e.revision)))
            }
            _ => Ok(None),
        }
    }
}

fn claim_record(login_id: &LoginId, holder: &str, at_ms: i64) -> ClaimRecord {
    ClaimRecord {
        login_id: login_id.clone(),
        at_ms,
        holder: Some(holder.to_owned()),
        takeover_by: None,
    }
}

/// JetStream's "wrong last sequence": the subject already has a message.
fn is_wrong_last_sequence(e: &jetstream::context::PublishError) -> bool {
    e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence
}

fn encode(entry: &Stored) -> bytes::Bytes {
    serde_json::to_vec(entry)
        .expect("ledger entries serialize")
        .into()
}

#[cfg(test)]
mod tests;
