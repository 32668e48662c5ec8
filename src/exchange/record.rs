//! Recording a result: publishing it on the code's own subject of the results stream, where
//! the first result of a code is the only one (see [`crate::contract::ledger`]); what a login is told when
//! its code already has a result; and answering the ingress.

use crate::contract::headers;
use std::time::Duration;

use super::{Exchanger, Incoming};
use crate::{
    contract::events::{
        self, FailureReason, LOGIN_RESULT_V1, LOGIN_RESULT_V2, LoginOutcome, LoginRequested,
        LoginResult,
    },
    contract::ledger::{LedgerError, Recorded},
};

impl Exchanger {
    /// Publishes the result we hold and returns what our login is answered with. It never gives
    /// up while the process runs: the WeChat answer exists only here, and the code cannot be
    /// exchanged again (the step's claim is renewed meanwhile, so nobody takes it over). If the
    /// code already has a result, that one stays authoritative: ours again after a lost ack, or
    /// another login's, which makes ours a reuse.
    pub(super) async fn record(&self, req: &LoginRequested, result: LoginResult) -> LoginResult {
        let mut attempt = 0;
        loop {
            match self.ledger.record(&result).await {
                Ok(Recorded::Ours(seq)) => {
                    tracing::debug!(seq, "result published");
                    return result;
                }
                Ok(Recorded::Earlier(first)) => {
                    if first.login_id != result.login_id {
                        tracing::warn!(
                            "another login's result was recorded for this code first; ours is refused"
                        );
                    }
                    return self.answer_for_repeat(req, *first);
                }
                Err(LedgerError::Corrupt(e)) => {
                    // A result we cannot read (a newer worker's format?) stands for the code.
                    tracing::error!(error = %e, "the code has a result this worker cannot read");
                    return self.failure_for(
                        req,
                        -1,
                        FailureReason::Unexpected,
                        result.upstream_calls,
                    );
                }
                Err(e) => {
                    crate::meter::nats_error("record_result");
                    tracing::warn!(error = %e, attempt, "cannot record the result yet; retrying");
                    tokio::time::sleep(self.backoff.delay(attempt).max(Duration::from_millis(100)))
                        .await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }

    /// A code whose exchange already ended. A retry of the same login (a redelivery) gets its
    /// result again; any other login gets 40163, like WeChat. Concurrent duplicates never reach
    /// a worker as a login of their own (JetStream folds them into the first message); the ones
    /// that do (their first is older than the duplicate window, or the server lost its duplicate
    /// state in a restart) cannot be ordered against the exchange without comparing clocks, so
    /// they are refused: never another login's session.
    pub(super) fn answer_for_repeat(
        &self,
        req: &LoginRequested,
        first: LoginResult,
    ) -> LoginResult {
        if first.answers(&req.login_id, false) {
            return first;
        }
        self.refuse_as_reuse(req)
    }

    /// `-1` for `req`'s login: its code's ledger entry cannot be read here.
    pub(super) fn unreadable(&self, req: &LoginRequested) -> LoginResult {
        self.failure_for(req, -1, FailureReason::Unexpected, 0)
    }

    /// 40163 for `req`'s login: its code belongs to another login.
    pub(super) fn refuse_as_reuse(&self, req: &LoginRequested) -> LoginResult {
        self.failure_for(req, 40163, FailureReason::AlreadyUsed, 0)
    }

    /// Best effort: if the ingress has gone, the client polls its ticket from the ledger.
    pub(super) async fn reply(&self, incoming: &Incoming, result: &LoginResult) {
        let Some(subject) = &incoming.reply else {
            return;
        };
        let headers = headers::for_reply(&incoming.request.login_id);
        if let Err(e) = self
            .nats
            .publish_with_headers(subject.clone(), headers, events::encode(result))
            .await
        {
            tracing::debug!(error = %e, "reply not sent");
        }
    }
}

impl Exchanger {
    /// A failure for `req`'s own login (named by it, never by the code's first login).
    fn failure_for(
        &self,
        req: &LoginRequested,
        errcode: i64,
        reason: FailureReason,
        upstream_calls: u32,
    ) -> LoginResult {
        self.result_for(
            req,
            LoginOutcome::Failure { errcode, reason },
            upstream_calls,
        )
    }

    /// The result of `req`'s login, as it ends now, tagged: every result a worker makes comes
    /// from here.
    pub(super) fn result_for(
        &self,
        req: &LoginRequested,
        outcome: LoginOutcome,
        upstream_calls: u32,
    ) -> LoginResult {
        // A phone number is a version 2 result: readers of the first format park it.
        let v = match outcome {
            LoginOutcome::Phone { .. } => LOGIN_RESULT_V2,
            _ => LOGIN_RESULT_V1,
        };
        LoginResult {
            v,
            login_id: req.login_id.clone(),
            appid: req.appid.clone(),
            code_key: req.code_key.clone(),
            received_at_ms: req.received_at_ms,
            finished_at_ms: self.clock.now_ms(),
            upstream_calls,
            outcome,
            tag: None,
        }
        .tagged(&self.keyring)
    }
}
