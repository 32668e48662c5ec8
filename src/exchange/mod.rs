//! The exchange worker: takes login codes from the codes stream, exchanges each with WeChat at
//! most once and within the app's quota, and publishes exactly one result per code.
//!
//! [`Exchanger::handle`] is one worker step — a plain function tests call directly;
//! [`run`] is the loop that feeds it from a durable pull consumer, many exchanges at once.

pub mod budget;
mod claim;
pub mod limiter;
mod record;
mod run;

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_nats::jetstream;
use rand::Rng;
use secrecy::SecretString;

use crate::{
    crypto::Keyring,
    events::{self, FailureReason, LoginOutcome, LoginRequested, LoginResult},
    ledger::{Ledger, LedgerError},
    quota::Quota,
    settings::App,
    topology::Topology,
    wechat::{ErrorClass, WechatClient},
};
pub use budget::Budget;
use claim::{Freshness, Held, Start};
pub use limiter::{AcquireError, AppLimiter};
pub use run::run;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// NATS or the ledger is unavailable: leave the message for redelivery.
    #[error("cannot record the result yet: {0}")]
    Unavailable(String),
    /// The code's claim or result is in a form this worker cannot read (a newer worker's?):
    /// retrying would loop for as long as the codes stream keeps the message.
    #[error("the code's ledger entry cannot be read: {0}")]
    Unreadable(String),
}

impl From<LedgerError> for WorkerError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Unavailable(_) => WorkerError::Unavailable(e.to_string()),
            LedgerError::Corrupt(_) => WorkerError::Unreadable(e.to_string()),
        }
    }
}

/// What one worker step did with a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// We called WeChat (or decided without it) and recorded this result.
    Exchanged(LoginResult),
    /// The code's exchange had already ended: answered from the ledger, WeChat not called.
    AnsweredFromLedger(LoginResult),
    /// Another worker is exchanging this code right now: look again later.
    InFlightElsewhere,
}

/// A login request as it came off the stream.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub request: LoginRequested,
    /// The ingress's reply subject, if it is waiting.
    pub reply: Option<String>,
}

/// Retry policy for retryable upstream answers: full jitter, exponential, capped.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1 << attempt.min(16)).min(self.cap);
        ceiling.mul_f64(rand::rng().random_range(0.0..=1.0))
    }
}

/// Everything a worker step needs; shared by all exchanges in a process.
pub struct Exchanger {
    pub wechat: WechatClient,
    pub apps: HashMap<String, SecretString>,
    pub limiters: HashMap<String, Arc<AppLimiter>>,
    /// The fleet's shared call schedule (the quota of all workers together).
    pub budget: Budget,
    pub keyring: Arc<Keyring>,
    pub ledger: Ledger,
    pub js: jetstream::Context,
    pub nats: async_nats::Client,
    pub topology: Topology,
    pub backoff: Backoff,
    /// How long a takeover gives a claim's holder to renew it (the consumer's ack wait); a
    /// holder renews well within it (see `claim.rs`).
    pub stale_claim: Duration,
}

impl Exchanger {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        wechat: WechatClient,
        apps: &[App],
        quota: Quota,
        keyring: Arc<Keyring>,
        ledger: Ledger,
        budget: Budget,
        js: jetstream::Context,
        nats: async_nats::Client,
        topology: Topology,
    ) -> Self {
        let stale_claim = topology.exchange_ack_wait;
        Exchanger {
            wechat,
            apps: apps
                .iter()
                .map(|a| (a.appid.clone(), a.secret.clone()))
                .collect(),
            limiters: apps
                .iter()
                .map(|a| {
                    let limiter = AppLimiter::new(&a.appid, quota, budget.clone());
                    (a.appid.clone(), Arc::new(limiter))
                })
                .collect(),
            keyring,
            ledger,
            budget,
            js,
            nats,
            topology,
            backoff: Backoff::default(),
            stale_claim,
        }
    }

    /// Keeps every limiter informed of 45011 pauses seen by any worker of the fleet, and its
    /// quota-use gauge current.
    pub async fn follow_fleet_pauses(self: Arc<Self>) {
        let limiters = self.limiters.clone();
        let refresher = {
            let limiters = limiters.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    limiters.values().for_each(|l| l.refresh_usage());
                }
            })
        };
        let _refresher = tokio_util::task::AbortOnDropHandle::new(refresher);
        if let Err(e) = self
            .budget
            .watch_pauses(|appid, until| {
                if let Some(l) = limiters.get(appid) {
                    l.note_pause(until);
                }
            })
            .await
        {
            tracing::warn!(error = %e, "cannot follow fleet quota pauses");
        }
    }

    /// One worker step: claim the code, exchange it (unless its exchange already ended),
    /// publish the result, record it, and answer the waiting ingress. The claim is renewed in
    /// the background for as long as the step runs.
    #[tracing::instrument(skip_all, fields(login_id = %incoming.request.login_id, appid = %incoming.request.appid))]
    pub async fn handle(&self, incoming: &Incoming) -> Result<Outcome, WorkerError> {
        let req = &incoming.request;
        let (held, took_over) = match self.start(req).await {
            Err(WorkerError::Unreadable(e)) => {
                tracing::error!(error = %e, "the code's ledger entry cannot be read; the login fails");
                let answer = self.unreadable(req);
                self.reply(incoming, &answer).await;
                return Ok(Outcome::AnsweredFromLedger(answer));
            }
            started => match started? {
                Start::Held { held, took_over } => (held, took_over),
                Start::Done(first) => {
                    let answer = self.answer_for_repeat(req, *first);
                    self.reply(incoming, &answer).await;
                    return Ok(Outcome::AnsweredFromLedger(answer));
                }
                Start::OtherLogin => {
                    let answer = self.refuse_as_reuse(req);
                    self.reply(incoming, &answer).await;
                    return Ok(Outcome::AnsweredFromLedger(answer));
                }
                Start::Elsewhere => return Ok(Outcome::InFlightElsewhere),
            },
        };
        let step = async {
            let started = std::time::Instant::now();
            let Some((outcome, calls)) = self.exchange(req, took_over, &held).await else {
                // Another step took the code over while we waited: it answers for it now.
                return Outcome::InFlightElsewhere;
            };
            crate::meter::exchange_done(started);
            let result = self
                .record(req, record::result_for(req, outcome, calls))
                .await;
            tracing::debug!(calls, "result recorded");
            self.reply(incoming, &result).await;
            Outcome::Exchanged(result)
        };
        tokio::select! {
            biased;
            outcome = step => Ok(outcome),
            never = self.keep(&held) => match never {},
        }
    }

    /// Calls WeChat until the answer is final or the code is too old to send. `took_over`: a
    /// step that stopped may already have sent this code upstream. Returns `None` if another
    /// step took the claim over, in which case we must not call WeChat.
    async fn exchange(
        &self,
        req: &LoginRequested,
        took_over: bool,
        held: &Held,
    ) -> Option<(LoginOutcome, u32)> {
        let failure = |errcode, reason| LoginOutcome::Failure { errcode, reason };
        let (Some(secret), Some(limiter)) =
            (self.apps.get(&req.appid), self.limiters.get(&req.appid))
        else {
            tracing::error!("this worker has no secret for the app");
            return Some((failure(40013, FailureReason::Misconfigured), 0));
        };
        let code = match self
            .keyring
            .open_string(&req.code_sealed, req.appid.as_bytes())
        {
            Ok(code) => code,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the sealed code: master keys differ between ingress and worker?");
                return Some((failure(-1, FailureReason::Misconfigured), 0));
            }
        };
        let deadline = req.received_at_ms + self.topology.code_ttl.as_millis() as i64;
        let expired = |calls| {
            tracing::warn!(calls, "code expired before WeChat gave a final answer");
            Some((failure(-1, FailureReason::Expired), calls))
        };
        let mut calls = 0u32;
        let mut retries = 0u32;
        // Set once an attempt may have reached WeChat without an answer we could read.
        let mut ambiguous = took_over;
        loop {
            if self.claim_lost(held) {
                return None;
            }
            match limiter.acquire(deadline * 1000).await {
                Ok(()) => {}
                Err(AcquireError::Expired) => return expired(calls),
                Err(AcquireError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "quota budget unavailable; waiting");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    if events::now_ms() >= deadline {
                        return expired(calls);
                    }
                    continue;
                }
            }
            if events::now_ms() >= deadline {
                return expired(calls);
            }
            // The keeper renews in the background, so normally no round trip sits between the
            // slot and the call. If its last renewal is too old to call on (a short ack wait,
            // NATS trouble), renew now and keep the slot; calling on a claim we cannot renew
            // could race a takeover.
            if !self.may_call(held) {
                match self.renew_now(held).await {
                    Freshness::Fresh if self.may_call(held) => {}
                    Freshness::Fresh => continue,
                    Freshness::Lost => return None,
                    Freshness::Unavailable(e) => {
                        tracing::warn!(error = %e, "cannot renew the claim; waiting");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        if events::now_ms() >= deadline {
                            return expired(calls);
                        }
                        continue;
                    }
                }
            }
            calls += 1;
            let err = match self.wechat.code2session(&req.appid, secret, &code).await {
                Ok(session) => {
                    crate::meter::upstream_call(0);
                    let aad = format!("{}:{}", req.appid, session.openid);
                    let sealed = self
                        .keyring
                        .seal_str(session.session_key.expose(), aad.as_bytes());
                    return Some((
                        LoginOutcome::Success {
                            openid: session.openid,
                            unionid: session.unionid,
                            session_key_sealed: sealed,
                        },
                        calls,
                    ));
                }
                Err(e) => e,
            };
            crate::meter::upstream_call(err.errcode());
            match err.class() {
                ErrorClass::Retryable => {
                    crate::meter::upstream_retry();
                    ambiguous |= err.may_have_consumed_code();
                    let wait = self.backoff.delay(retries);
                    retries += 1;
                    tracing::debug!(error = %err, ?wait, "retryable answer");
                    let left = deadline.saturating_sub(events::now_ms()).max(0) as u64;
                    tokio::time::sleep(wait.min(Duration::from_millis(left))).await;
                }
                ErrorClass::RateLimited => {
                    tracing::warn!("WeChat answered 45011: holding the fleet back for a window");
                    if let Err(e) = limiter.pause_for_window().await {
                        tracing::warn!(error = %e, "pause not shared with the fleet");
                    }
                }
                ErrorClass::Rejected if err.errcode() == 40163 && ambiguous => {
                    // An earlier attempt consumed the code but its answer was lost: the client
                    // did nothing wrong and must simply call wx.login again.
                    return Some((failure(-1, FailureReason::Expired), calls));
                }
                ErrorClass::Rejected => {
                    return Some((failure(err.errcode(), FailureReason::Rejected), calls));
                }
                ErrorClass::Misconfigured => {
                    tracing::error!(
                        errcode = err.errcode(),
                        "WeChat says our app configuration is wrong"
                    );
                    return Some((failure(err.errcode(), FailureReason::Misconfigured), calls));
                }
                ErrorClass::Unexpected => {
                    tracing::error!(errcode = err.errcode(), "unexpected errcode from WeChat");
                    return Some((failure(err.errcode(), FailureReason::Unexpected), calls));
                }
            }
        }
    }
}
