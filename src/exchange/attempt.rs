//! A code's exchange: [`Exchanger::exchange`], the loop that runs one upstream attempt after
//! another until the answer is final, each in two steps:
//! - [`Exchanger::slot`]: a quota slot within the code's life, on a claim fresh enough to call on;
//! - [`Exchanger::attempt`]: one code2Session call, and what its answer leaves to do ([`Next`]).

use std::time::Duration;

use secrecy::SecretString;

use super::{
    AcquireError, AppLimiter, Exchanger, claim::Freshness, claim::Held, limiter::Granted,
    phone::PhoneAttempts, token,
};
use crate::{
    contract::events::{FailureReason, LoginOutcome, LoginRequested},
    wechat::ErrorClass,
};

/// Where a step stands after asking for a slot.
pub(super) enum Slot {
    /// A slot is ours and the claim is fresh: call now, once the slot is confirmed.
    Call(Granted),
    /// Not yet (the budget or the claim store was unreachable for a moment): ask again.
    Again,
    /// The code is too old to send.
    Expired,
    /// Another step took the claim over: it answers for the code now.
    Lost,
    /// The worker drains and nothing of this code may have reached WeChat: give it back.
    GiveBack,
    /// This worker's clock is too far off to take slots: give the code back to the fleet if
    /// nothing of it may have reached WeChat, else wait for the clock to be fixed.
    Skewed,
}

/// Why a step ends without an answer.
pub(super) enum Stopped {
    /// Another step took the claim over.
    Lost,
    /// The worker drains: the claim goes back, the message to another worker.
    GiveBack,
}

/// What one call's answer leaves the loop to do.
pub(super) enum Next {
    /// The answer is final: record it.
    Final(LoginOutcome),
    /// A retryable answer: try again after a backoff.
    Retry,
    /// WeChat answered 45011 and the fleet holds back for a window: take the next slot.
    Paused,
}

impl Exchanger {
    /// Waits for a quota slot before `deadline_ms` (the code's expiry) and makes sure the claim
    /// is fresh enough to call on.
    pub(super) async fn slot(&self, limiter: &AppLimiter, deadline_ms: i64, held: &Held) -> Slot {
        let wait = || async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if self.clock.now_ms() >= deadline_ms {
                Slot::Expired
            } else {
                Slot::Again
            }
        };
        if self.claim_lost(held) {
            return Slot::Lost;
        }
        let granted = match limiter.acquire(deadline_ms * 1000).await {
            Ok(granted) => granted,
            Err(AcquireError::Expired) => return Slot::Expired,
            Err(AcquireError::ClockSkewed) => return Slot::Skewed,
            Err(AcquireError::Unavailable(e)) => {
                tracing::warn!(error = %e, "quota budget unavailable; waiting");
                return wait().await;
            }
        };
        if self.clock.now_ms() >= deadline_ms {
            return Slot::Expired;
        }
        // The keeper renews in the background, so normally no round trip sits between the
        // slot and the call. If its last renewal is too old to call on (a short ack wait,
        // NATS trouble), renew now and keep the slot; calling on a claim we cannot renew
        // could race a takeover.
        if self.may_call(held) {
            return Slot::Call(granted);
        }
        match self.renew_now(held).await {
            Freshness::Fresh if self.may_call(held) => Slot::Call(granted),
            Freshness::Fresh => Slot::Again,
            Freshness::Lost => Slot::Lost,
            Freshness::Unavailable(e) => {
                tracing::warn!(error = %e, "cannot renew the claim; waiting");
                wait().await
            }
        }
    }

    /// One code2Session call and its answer judged. `ambiguous` is set once an attempt may
    /// have reached WeChat without an answer we could read: a later 40163 is then our own
    /// earlier use, not the client's reuse.
    pub(super) async fn attempt(
        &self,
        req: &LoginRequested,
        secret: &SecretString,
        code: &str,
        limiter: &AppLimiter,
        ambiguous: &mut bool,
    ) -> Next {
        let failure = |errcode, reason| Next::Final(LoginOutcome::Failure { errcode, reason });
        let sent = std::time::Instant::now();
        let answer = self.wechat.code2session(&req.appid, secret, code).await;
        limiter.answered_after(sent.elapsed());
        let err = match answer {
            Ok(session) => {
                crate::meter::upstream_call(0);
                let aad = format!("{}:{}", req.appid, session.openid);
                let sealed = self
                    .keyring
                    .seal_str(session.session_key.expose(), aad.as_bytes());
                return Next::Final(LoginOutcome::Success {
                    openid: session.openid,
                    unionid: session.unionid,
                    session_key_sealed: sealed,
                });
            }
            Err(e) => e,
        };
        crate::meter::upstream_call(err.errcode());
        match err.class() {
            ErrorClass::Retryable => {
                crate::meter::upstream_retry();
                *ambiguous |= err.may_have_consumed_code();
                tracing::debug!(error = %err, "retryable answer");
                Next::Retry
            }
            ErrorClass::RateLimited => {
                tracing::warn!("WeChat answered 45011: holding the fleet back for a window");
                if let Err(e) = limiter.pause_for_window().await {
                    tracing::warn!(error = %e, "pause not shared with the fleet");
                }
                Next::Paused
            }
            // An earlier attempt consumed the code but its answer was lost: the client did
            // nothing wrong and must simply call wx.login again.
            ErrorClass::Rejected if err.errcode() == 40163 && *ambiguous => {
                failure(-1, FailureReason::Expired)
            }
            ErrorClass::Rejected => failure(err.errcode(), FailureReason::Rejected),
            ErrorClass::Misconfigured => {
                tracing::error!(
                    errcode = err.errcode(),
                    "WeChat says our app configuration is wrong"
                );
                failure(err.errcode(), FailureReason::Misconfigured)
            }
            ErrorClass::Unexpected => {
                tracing::error!(errcode = err.errcode(), "unexpected errcode from WeChat");
                failure(err.errcode(), FailureReason::Unexpected)
            }
        }
    }
}

impl Exchanger {
    /// Calls WeChat until the answer is final or the code is too old to send. `took_over`: a
    /// step that stopped may already have sent this code upstream. Stops if another step took
    /// the claim over (we must not call WeChat then), or when the worker drains before anything
    /// of the code may have reached WeChat (another worker can then exchange it at once).
    pub(super) async fn exchange(
        &self,
        req: &LoginRequested,
        took_over: bool,
        held: &Held,
    ) -> Result<(LoginOutcome, u32), Stopped> {
        let failure = |errcode, reason| LoginOutcome::Failure { errcode, reason };
        let limiters = match req.phone {
            Some(_) => &self.phone_limiters,
            None => &self.limiters,
        };
        let (Some(secret), Some(limiter)) = (self.apps.get(&req.appid), limiters.get(&req.appid))
        else {
            tracing::error!("this worker has no secret for the app");
            return Ok((failure(40013, FailureReason::Misconfigured), 0));
        };
        let code = match req.open_code(&self.keyring) {
            Ok(code) => code,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the sealed code: master keys differ between ingress and worker?");
                return Ok((failure(-1, FailureReason::Misconfigured), 0));
            }
        };
        let deadline = req.received_at_ms + self.topology.code_ttl.as_millis() as i64;
        let expired = |calls| {
            tracing::warn!(calls, "code expired before WeChat gave a final answer");
            Ok((failure(-1, FailureReason::Expired), calls))
        };
        let mut calls = 0u32;
        let mut retries = 0u32;
        let mut phone_attempts = PhoneAttempts::default();
        // Set once an attempt may have reached WeChat without an answer we could read.
        let mut ambiguous = took_over;
        loop {
            // A phone exchange needs the fleet's token: fetched before the slot, so that
            // nothing but the send sits between a confirmed slot and a fresh claim.
            let lent = match req.phone {
                None => None,
                Some(_) if self.draining.is_cancelled() && !ambiguous => {
                    return Err(Stopped::GiveBack);
                }
                Some(_) => match (self.tokens)
                    .token_except(&req.appid, phone_attempts.rejected.as_ref())
                    .await
                {
                    Ok(lent) => Some(lent),
                    Err(token::TokenError::Refused { errcode }) => {
                        return Ok((failure(errcode, FailureReason::Misconfigured), calls));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "no access_token for the phone exchange yet");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        if self.clock.now_ms() >= deadline {
                            return expired(calls);
                        }
                        continue;
                    }
                },
            };
            let slot = tokio::select! {
                biased;
                // Only while nothing of ours may have reached WeChat: otherwise we finish.
                _ = self.draining.cancelled(), if !ambiguous => Slot::GiveBack,
                slot = self.slot(limiter, deadline, held) => slot,
            };
            match slot {
                // The last look before the send: a round trip since the slot (a renewal over a
                // slow NATS) may have made it late, and a late call could bunch with the next
                // slot's. Then the slot is given back and the step takes another.
                Slot::Call(granted) => {
                    if let Err(late) = limiter.confirm(granted) {
                        tracing::debug!(late_us = late.late_us, "slot passed before the send");
                        continue;
                    }
                }
                Slot::Again => continue,
                Slot::Expired => return expired(calls),
                Slot::Lost => return Err(Stopped::Lost),
                Slot::GiveBack => return Err(Stopped::GiveBack),
                Slot::Skewed if !ambiguous => return Err(Stopped::GiveBack),
                Slot::Skewed => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    if self.clock.now_ms() >= deadline {
                        return expired(calls);
                    }
                    continue;
                }
            }
            calls += 1;
            let next = match &lent {
                Some(lent) => {
                    let attempts = &mut phone_attempts;
                    self.attempt_phone(req, &code, lent, limiter, &mut ambiguous, attempts)
                        .await
                }
                None => {
                    self.attempt(req, secret, &code, limiter, &mut ambiguous)
                        .await
                }
            };
            match next {
                Next::Final(outcome) => return Ok((outcome, calls)),
                Next::Paused => {}
                Next::Retry => {
                    let wait = self.backoff.delay(retries);
                    retries += 1;
                    let left = deadline.saturating_sub(self.clock.now_ms()).max(0) as u64;
                    tokio::time::sleep(wait.min(Duration::from_millis(left))).await;
                }
            }
        }
    }
}
