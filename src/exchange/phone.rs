//! One upstream attempt of a phone code's exchange (`getuserphonenumber`), the phone
//! counterpart of [`Exchanger::attempt`](super::Exchanger): the same claim, quota slot, retry
//! and record around it, with what differs here:
//! - the call needs the fleet's access_token ([`super::token`]); a token error (40001, 42001,
//!   40014) invalidates it if it is still the one that failed and re-sends once with the next;
//! - WeChat answers a reused phone code with 40029, not 40163: after an attempt that may have
//!   reached WeChat (a timeout, a 5xx), a 40029 may be our own earlier use, so the login is told
//!   "tap the button again" (`-1`, expired) rather than "bad code";
//! - the number's `watermark.appid` must be ours;
//! - the number leaves this step only sealed, with its lookup hash.

use super::{Exchanger, attempt::Next, limiter::AppLimiter, token::Lent};
use crate::{
    contract::events::{self, FailureReason, LoginOutcome, LoginRequested, PhoneNumber},
    wechat::{ApiError, ErrorClass},
};

/// What a phone exchange remembers between its attempts.
#[derive(Debug, Default)]
pub(super) struct PhoneAttempts {
    /// A token error was answered by a re-send with the next token: a second one ends it.
    pub(super) token_resent: bool,
    /// The token WeChat refused: the re-send never takes it again.
    pub(super) rejected: Option<crate::wechat::AccessToken>,
}

impl Exchanger {
    /// One call with `lent`, the token the step fetched before its slot.
    pub(super) async fn attempt_phone(
        &self,
        req: &LoginRequested,
        code: &str,
        lent: &Lent,
        limiter: &AppLimiter,
        ambiguous: &mut bool,
        state: &mut PhoneAttempts,
    ) -> Next {
        let failure = |errcode, reason| Next::Final(LoginOutcome::Failure { errcode, reason });
        let Some(phone) = &req.phone else {
            return failure(-1, FailureReason::Unexpected);
        };
        let sent = std::time::Instant::now();
        let answer = (self.wechat)
            .phone_number(&lent.token, code, &phone.openid)
            .await;
        limiter.answered_after(sent.elapsed());
        let err = match answer {
            Ok(info) => {
                crate::meter::upstream_call(0);
                if info.watermark_appid != *req.appid {
                    tracing::error!(
                        "WeChat's phone answer carries another app's watermark: refused"
                    );
                    return failure(-1, FailureReason::Unexpected);
                }
                let number = PhoneNumber {
                    phone_number: info.phone_number.clone(),
                    pure_phone_number: info.pure_phone_number.clone(),
                    country_code: info.country_code.clone(),
                };
                let json = serde_json::to_string(&number).expect("a phone number serializes");
                let sealed = self
                    .keyring
                    .seal_str(&json, &events::phone_aad(&req.appid, &phone.openid));
                return Next::Final(LoginOutcome::Phone {
                    openid: phone.openid.clone(),
                    phone_sealed: sealed,
                    phone_hash: events::phone_hash(&self.lookup, &req.appid, &number),
                });
            }
            Err(e) => e,
        };
        crate::meter::upstream_call(err.errcode());
        match (&err, err.class()) {
            (ApiError::TokenRejected { .. }, _) => {
                self.tokens.rejected(&req.appid, lent).await;
                state.rejected = Some(lent.token.clone());
                if std::mem::replace(&mut state.token_resent, true) {
                    tracing::error!(
                        errcode = err.errcode(),
                        "WeChat rejected two access_tokens in a row for one phone code"
                    );
                    return failure(err.errcode(), FailureReason::Misconfigured);
                }
                Next::Retry
            }
            (_, ErrorClass::Retryable) => {
                crate::meter::upstream_retry();
                *ambiguous |= err.may_have_reached();
                tracing::debug!(error = %err, "retryable phone answer");
                Next::Retry
            }
            (_, ErrorClass::RateLimited) => {
                tracing::warn!("WeChat answered 45011 to a phone exchange: holding the fleet back");
                if let Err(e) = limiter.pause_for_window().await {
                    tracing::warn!(error = %e, "pause not shared with the fleet");
                }
                Next::Paused
            }
            // The code may have been spent by our own earlier attempt: tap the button again.
            (ApiError::Rejected { errcode: 40029 }, _) if *ambiguous => {
                failure(-1, FailureReason::Expired)
            }
            (_, ErrorClass::Rejected) => failure(err.errcode(), FailureReason::Rejected),
            (_, ErrorClass::Misconfigured) => {
                tracing::error!(
                    errcode = err.errcode(),
                    "WeChat refuses our phone exchange: an operator must act"
                );
                failure(err.errcode(), FailureReason::Misconfigured)
            }
            (_, ErrorClass::Unexpected) => {
                tracing::error!(
                    errcode = err.errcode(),
                    "unexpected errcode from the phone API"
                );
                failure(err.errcode(), FailureReason::Unexpected)
            }
        }
    }
}
