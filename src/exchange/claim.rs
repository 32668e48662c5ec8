//! Holding a code's claim for the length of one worker step: winning it, or taking it over from
//! a step that stopped renewing (intent, one full ack wait, compare-and-set, the result read
//! again); renewing it in the background while the step waits for quota, calls WeChat or
//! records; and telling the step, without a round trip, whether it may call WeChat right now.
//!
//! Why the timings are safe without comparing clocks: a taker writes its intent after our last
//! successful renewal and then waits a full ack wait on its own monotonic clock before the claim
//! can become its own. We start a call only within the call window of *sending* our last
//! successful renewal — at most half an ack wait, and short enough that the request has left
//! (connect timeout included) a good margin before that ack wait is over — so every call of ours
//! is out before any takeover can complete.
//!
//! Only a redelivery of the claim's own login takes a claim over. A different login holding the
//! code means ours was not folded into it as a duplicate: it can never share that outcome, so it
//! is refused at once (see `record.rs`), and it never waits on nor disturbs the holder.

use crate::contract::{CodeKey, LoginId};
use std::{
    convert::Infallible,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use super::{Exchanger, WorkerError};
use crate::{
    contract::events::{LoginRequested, LoginResult},
    contract::ledger::{Claim, LedgerError, Renewal},
};

/// Our hold on a code's claim.
pub(super) struct Held {
    code_key: CodeKey,
    login_id: LoginId,
    /// This step, as the ledger knows it.
    holder: String,
    revision: Mutex<u64>,
    /// When the last write that made the claim ours (create, takeover, renewal) was *sent*.
    renewed_at: Mutex<Instant>,
    lost: AtomicBool,
    /// One renewal at a time (the background keeper and a step's own renewal may meet).
    renewing: tokio::sync::Mutex<()>,
}

/// How a step starts.
pub(super) enum Start {
    /// We hold the claim; `took_over`: a step before us may already have sent the code upstream.
    Held { held: Held, took_over: bool },
    /// The code's exchange ended with this result.
    Done(Box<LoginResult>),
    /// Another login holds the code: ours is a reuse.
    OtherLogin,
    /// A live step holds it: look again later.
    Elsewhere,
}

/// Whether the claim lets us call now.
pub(super) enum Freshness {
    Fresh,
    Lost,
    Unavailable(LedgerError),
}

impl Held {
    fn new(req: &LoginRequested, holder: String, revision: u64, sent: Instant) -> Self {
        Held {
            code_key: req.code_key.clone(),
            login_id: req.login_id.clone(),
            holder,
            revision: Mutex::new(revision),
            renewed_at: Mutex::new(sent),
            lost: AtomicBool::new(false),
            renewing: tokio::sync::Mutex::new(()),
        }
    }

    fn renewed_within(&self, age: Duration) -> bool {
        !self.lost.load(Ordering::Relaxed)
            && self.renewed_at.lock().expect("not poisoned").elapsed() < age
    }
}

impl Exchanger {
    /// Claims the code for a new step, or takes it over from a step that stopped renewing.
    pub(super) async fn start(&self, req: &LoginRequested) -> Result<Start, WorkerError> {
        let holder = uuid::Uuid::new_v4().simple().to_string();
        let sent = Instant::now();
        let claim = self
            .ledger
            .claim(&req.appid, &req.code_key, &req.login_id, &holder)
            .await?;
        let (record, revision) = match claim {
            Claim::Won { revision } => {
                let held = Held::new(req, holder, revision, sent);
                return Ok(Start::Held {
                    held,
                    took_over: false,
                });
            }
            Claim::Done(result) => return Ok(Start::Done(result)),
            Claim::Held { record, .. } if record.login_id != req.login_id => {
                return Ok(Start::OtherLogin);
            }
            Claim::Held { record, revision } => (record, revision),
        };
        // Another taker's intent already stands: watch it rather than write over it (two takers
        // overwriting each other's intents would never get anywhere). Whoever's compare-and-set
        // lands first after the wait takes the claim.
        let intent = if record.takeover_by.is_some() {
            revision
        } else {
            let written = self
                .ledger
                .intend_takeover(&req.code_key, &record, revision, &holder)
                .await?;
            let Some(intent) = written else {
                return Ok(Start::Elsewhere);
            };
            intent
        };
        tracing::info!(
            wait = ?self.stale_claim,
            "another step holds this code; taking it over unless it renews within an ack wait"
        );
        // The message stays ours meanwhile: the worker loop sends progress acks. A worker that
        // drains meanwhile leaves: the next one watches our intent for one ack wait.
        tokio::select! {
            _ = tokio::time::sleep(self.stale_claim) => {}
            _ = self.draining.cancelled() => return Ok(Start::Elsewhere),
        }
        let sent = Instant::now();
        let Some(revision) = self
            .ledger
            .take_over(&req.code_key, &req.login_id, &holder, intent)
            .await?
        else {
            tracing::debug!("the holder renewed: it is alive and answers for the code");
            return Ok(Start::Elsewhere);
        };
        // The holder may have recorded a result instead of renewing.
        if let Some(result) = self.ledger.result(&req.appid, &req.code_key).await? {
            return Ok(Start::Done(Box::new(result)));
        }
        tracing::warn!("took over the claim of a step that stopped renewing it");
        Ok(Start::Held {
            held: Held::new(req, holder, revision, sent),
            took_over: true,
        })
    }

    /// Renews the claim every `renew_every` for as long as the step runs (the caller drops this
    /// future when the step ends). Stops once the claim is lost.
    pub(super) async fn keep(&self, held: &Held) -> Infallible {
        loop {
            let period = if held.renewed_within(self.renew_every()) {
                self.renew_every()
            } else {
                // The last attempt failed (NATS away): try again soon.
                Duration::from_millis(250)
            };
            tokio::time::sleep(period).await;
            if held.lost.load(Ordering::Relaxed) {
                return std::future::pending().await;
            }
            if let Err(e) = self.renew(held).await {
                crate::meter::nats_error("renew_claim");
                tracing::warn!(error = %e, "cannot renew the claim yet");
            }
        }
    }

    /// Whether another step has taken the claim over (known without a round trip).
    pub(super) fn claim_lost(&self, held: &Held) -> bool {
        held.lost.load(Ordering::Relaxed)
    }

    /// Renews the claim now and says where it stands.
    pub(super) async fn renew_now(&self, held: &Held) -> Freshness {
        if let Err(e) = self.renew(held).await {
            return Freshness::Unavailable(e);
        }
        if held.lost.load(Ordering::Relaxed) {
            Freshness::Lost
        } else {
            Freshness::Fresh
        }
    }

    /// Whether a call may be sent now: no I/O, so nothing sits between a quota slot and its call.
    pub(super) fn may_call(&self, held: &Held) -> bool {
        held.renewed_within(self.call_window())
    }

    /// How long after sending our last successful renewal a call may start: at most half an ack
    /// wait, and at least the connect timeout plus half a second before a takeover could end.
    /// (Settings keep the ack wait at 3 s or more, so with the 2 s connect timeout it is > 0.)
    fn call_window(&self) -> Duration {
        let to_leave = self.wechat.connect_timeout() + Duration::from_millis(500);
        (self.stale_claim / 2).min(self.stale_claim.saturating_sub(to_leave))
    }

    /// How often the keeper renews: a third of an ack wait (so a live holder renews well within
    /// any taker's wait), and no longer than the call window, so that with the default ack wait
    /// a step that waited for quota finds its claim fresh. With a short ack wait a step may have
    /// to renew between its slot and its call (`exchange`), which costs a round trip, not a slot.
    fn renew_every(&self) -> Duration {
        (self.stale_claim / 3)
            .min(self.call_window())
            .max(Duration::from_millis(100))
    }

    /// Gives the claim back (a step that never sent its code, stopping early): after this the
    /// step must not call WeChat, as the keeper no longer renews for it.
    pub(super) async fn release(&self, held: &Held) {
        let _one = held.renewing.lock().await;
        if held.lost.swap(true, Ordering::Relaxed) {
            return;
        }
        let revision = *held.revision.lock().expect("not poisoned");
        if let Err(e) = self
            .ledger
            .release(&held.code_key, &held.holder, revision)
            .await
        {
            // The claim then goes stale after an ack wait, as if this worker had died.
            tracing::warn!(error = %e, "cannot give the claim back");
        }
    }

    async fn renew(&self, held: &Held) -> Result<(), LedgerError> {
        let _one = held.renewing.lock().await;
        if held.lost.load(Ordering::Relaxed) {
            return Ok(());
        }
        let revision = *held.revision.lock().expect("not poisoned");
        let sent = Instant::now();
        match self
            .ledger
            .renew(&held.code_key, &held.login_id, &held.holder, revision)
            .await?
        {
            Renewal::Renewed(rev) => {
                *held.revision.lock().expect("not poisoned") = rev;
                *held.renewed_at.lock().expect("not poisoned") = sent;
            }
            Renewal::Lost => {
                tracing::warn!("our claim was taken over; this step will not call WeChat");
                held.lost.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}
