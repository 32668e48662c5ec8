//! The exchange worker: takes login codes (and phone codes) from the codes stream, exchanges
//! each with WeChat at most once and within the app's quota for that API, and publishes exactly
//! one result per code. Phone codes need the fleet's access_token ([`token`]).
//!
//! [`Exchanger::handle`] is one worker step — a plain function tests call directly;
//! [`run`] is the loop that feeds it from a durable pull consumer, many exchanges at once.

mod attempt;
pub mod budget;
mod calls;
mod claim;
pub mod limiter;
mod phone;
mod record;
mod run;
pub mod skew;
pub mod token;

use crate::clock::Clock;
use crate::contract::AppId;
use std::{collections::HashMap, sync::Arc, time::Duration};

use async_nats::jetstream;
use rand::Rng;
use secrecy::SecretString;

use crate::{
    contract::events::{LoginRequested, LoginResult},
    contract::ledger::{Ledger, LedgerError},
    contract::topology::Topology,
    crypto::{Keyring, LookupKey},
    quota::Quota,
    settings::App,
    wechat::WechatClient,
};
use attempt::Stopped;
pub use budget::Budget;
pub use calls::{answer_calls, publish_reset, reset_event};
use claim::Start;
pub use limiter::{AcquireError, AppLimiter};
pub use run::run;
pub use token::AccessTokens;

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
    /// This worker is shutting down and never sent the code: its claim is given back, and the
    /// message goes back for another worker at once.
    GivenBack,
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

/// The wait before watching the fleet's quota pauses again: the first, doubling while the watch
/// keeps failing up to the most; a watch that ran for the healthy time starts over.
const REWATCH_FIRST: Duration = Duration::from_millis(250);
const REWATCH_MAX: Duration = Duration::from_secs(8);
const REWATCH_HEALTHY: Duration = Duration::from_secs(30);

/// Everything a worker step needs; shared by all exchanges in a process.
pub struct Exchanger {
    pub wechat: WechatClient,
    pub apps: HashMap<AppId, SecretString>,
    pub limiters: HashMap<AppId, Arc<AppLimiter>>,
    /// The same for the phone API (`phone_quota`, a schedule of its own per appid).
    pub phone_limiters: HashMap<AppId, Arc<AppLimiter>>,
    /// The fleet's one access_token per appid.
    pub tokens: Arc<AccessTokens>,
    /// The key of the phone numbers' lookup hashes.
    pub lookup: LookupKey,
    /// The fleet's shared call schedule (the quota of all workers together).
    pub budget: Budget,
    pub keyring: Arc<Keyring>,
    pub ledger: Ledger,
    pub js: jetstream::Context,
    pub nats: async_nats::Client,
    pub topology: Topology,
    pub backoff: Backoff,
    /// The time this worker goes by (the budget's, so slots and deadlines agree).
    pub clock: Clock,
    /// How long a takeover gives a claim's holder to renew it (the consumer's ack wait); a
    /// holder renews well within it (see `claim.rs`).
    pub stale_claim: Duration,
    /// Cancelled when the worker drains: steps that have sent nothing give their codes back.
    pub draining: tokio_util::sync::CancellationToken,
}

/// What an exchange worker is made of; [`crate::app::Pipeline::exchanger`] fills it from the
/// settings, tests fill it by hand (a short-timeout WeChat client, say).
pub struct ExchangerParts<'a> {
    pub wechat: WechatClient,
    /// The apps this worker exchanges codes of, with their AppSecrets.
    pub apps: &'a [App],
    /// Each app's quota, for the whole fleet.
    pub quota: Quota,
    /// Each app's quota of phone exchanges, for the whole fleet.
    pub phone_quota: Quota,
    pub tokens: Arc<AccessTokens>,
    pub lookup: LookupKey,
    pub keyring: Arc<Keyring>,
    pub ledger: Ledger,
    pub budget: Budget,
    pub js: jetstream::Context,
    pub nats: async_nats::Client,
    pub topology: Topology,
}

/// The name of an appid's phone-API schedule in the quota bucket (no appid has a dot).
fn phone_schedule(appid: &AppId) -> String {
    format!("{appid}.phone")
}

impl Exchanger {
    pub fn new(parts: ExchangerParts<'_>) -> Self {
        let ExchangerParts {
            wechat,
            apps,
            quota,
            phone_quota,
            tokens,
            lookup,
            keyring,
            ledger,
            budget,
            js,
            nats,
            topology,
        } = parts;
        let stale_claim = topology.exchange_ack_wait;
        let clock = budget.clock();
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
            phone_limiters: apps
                .iter()
                .map(|a| {
                    let schedule = phone_schedule(&a.appid);
                    let limiter = AppLimiter::new(&schedule, phone_quota, budget.clone());
                    (a.appid.clone(), Arc::new(limiter))
                })
                .collect(),
            tokens,
            lookup,
            keyring,
            ledger,
            budget,
            js,
            nats,
            topology,
            backoff: Backoff::default(),
            clock,
            stale_claim,
            draining: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Keeps every limiter informed of 45011 pauses seen by any worker of the fleet, and its
    /// quota-use gauge current, until the worker aborts it at shutdown. A watch that ends or
    /// cannot start (NATS away, JetStream not answering yet) is started again after a wait
    /// that grows while it keeps failing: without it, this worker would go on calling WeChat
    /// through the others' pauses until its next restart.
    pub async fn follow_fleet_pauses(self: Arc<Self>) {
        // Every schedule this worker takes slots of, by its name in the quota bucket.
        let limiters: HashMap<String, Arc<AppLimiter>> = self
            .limiters
            .iter()
            .map(|(appid, l)| (appid.to_string(), l.clone()))
            .chain(
                self.phone_limiters
                    .iter()
                    .map(|(appid, l)| (phone_schedule(appid), l.clone())),
            )
            .collect();
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
        let on_pause = |appid: &str, until| {
            if let Some(l) = limiters.get(appid) {
                l.note_pause(until);
            }
        };
        let appids: Vec<String> = limiters.keys().cloned().collect();
        let mut wait = REWATCH_FIRST;
        loop {
            let started = tokio::time::Instant::now();
            let ended = self.budget.watch_pauses(&appids, &on_pause).await;
            // A watch that ran a good while was healthy: its end is a new trouble.
            if started.elapsed() > REWATCH_HEALTHY {
                wait = REWATCH_FIRST;
            }
            match ended {
                Ok(()) => {
                    tracing::warn!(retry_in = ?wait, "the fleet quota pause watch ended; watching again")
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "cannot follow fleet quota pauses; trying again")
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(REWATCH_MAX);
        }
    }

    /// One worker step: claim the code, exchange it (unless its exchange already ended), record
    /// its result (publishing it on the code's subject is the record), and answer the waiting
    /// ingress. The claim is renewed in the background for as long as the step runs.
    #[tracing::instrument(skip_all, fields(login_id = %incoming.request.login_id, appid = %incoming.request.appid))]
    pub async fn handle(&self, incoming: &Incoming) -> Result<Outcome, WorkerError> {
        let req = &incoming.request;
        if self.draining.is_cancelled() {
            return Ok(Outcome::GivenBack);
        }
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
            let (outcome, calls) = match self.exchange(req, took_over, &held).await {
                Ok(answer) => answer,
                // Another step took the code over while we waited: it answers for it now.
                Err(Stopped::Lost) => return Outcome::InFlightElsewhere,
                Err(Stopped::GiveBack) => {
                    self.release(&held).await;
                    return Outcome::GivenBack;
                }
            };
            crate::meter::exchange_done(started);
            let result = self.record(req, self.result_for(req, outcome, calls)).await;
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
}
