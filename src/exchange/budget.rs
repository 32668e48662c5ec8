//! The fleet-wide WeChat quota: one shared call schedule per appid in the `{prefix}_quota` KV
//! bucket.
//!
//! `WXLOGIN_APP_QUOTA` = N calls per window T is the budget of the whole fleet. The bucket holds,
//! per appid, the next free call time of the fleet (`tat_us`, as in GCRA) and a pause deadline.
//! A worker reserves k consecutive call slots, `spacing` apart, by compare-and-set; slots handed
//! out this way never overlap, however many workers there are, so every window of T holds at
//! most N calls. A worker that dies wastes at most the slots of its last lease (≤ ~200 ms of
//! quota) and never overspends; a worker that joins simply starts reserving. A 45011 seen by any
//! worker moves the schedule past a whole window and every worker learns it within
//! [`PAUSE_POLL`] (each polls its apps' schedules; a KV watch would need a consumer of its own).
//!
//! The schedule is wall-clock time, so a wrong clock could move it for everyone: whatever is
//! read from the bucket is clamped ([`Schedule::clamped`]: a pause to a window ahead of our
//! clock, the next free slot to [`horizon`]), so a worker whose clock ran ahead, or one of an
//! older version, cannot stall the fleet for longer; records of a fleet gone quiet expire
//! ([`SCHEDULE_MAX_AGE`]); and each worker measures its own clock against the server's
//! ([`Budget::server_offset`], judged by [`super::skew`]) before it takes slots.

use crate::clock::Clock;
use async_nats::jetstream::kv::{self, Operation};
use serde::{Deserialize, Serialize};
use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

/// How often a worker reads the fleet's pauses: how late it may learn of another's 45011.
pub const PAUSE_POLL: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
#[error("quota budget unavailable: {0}")]
pub struct BudgetError(pub String);

/// How long a schedule record (or a worker's clock probe) outlives its last write. A busy fleet
/// rewrites its record on every lease, so only a quiet bucket ages out; a record expiring while
/// its times are still ahead would let the next lease overlap slots already handed out, so this
/// is far longer than any clamped time can be ahead (one window plus a lease; the quota
/// notation refuses windows longer than a day).
pub const SCHEDULE_MAX_AGE: Duration = Duration::from_secs(2 * 86_400);

/// Where a worker writes its clock probes: beside the appids' schedules (the workers may write
/// the bucket anyway), under a prefix no appid has.
const PROBE_PREFIX: &str = "_clock.";

/// Our clock against the server's, from one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offset {
    /// Our clock minus the server's (positive: ours is ahead).
    pub offset_us: i64,
    /// How far off `offset_us` can be: half the probe's round trip.
    pub uncertainty_us: i64,
}

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Schedule {
    /// The earliest time the fleet may make its next call.
    pub tat_us: i64,
    /// No call before this (set by a 45011).
    pub paused_until_us: i64,
    /// How late after its send WeChat may count a call: the longest round trip a worker saw
    /// lately. WeChat counts a call when it decides it, anywhere in the round trip, so calls
    /// sent on evenly spaced slots while answers are slow, then fast, are counted closer
    /// together than they were sent; slots are this much further apart per window (a chaos
    /// run's finding: 32 calls in a 30/1s window when latency dropped from 800 ms to none).
    /// Absent from records of older workers, which read and drop it (serde's default).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub slack_us: i64,
    /// Until when `slack_us` holds (two windows after the round trip it came from).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub slack_until_us: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A worker's own longest round trip of late (µs), and the quota's calls per window: what its
/// next lease adds to the fleet's [`Schedule::slack_us`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slack {
    pub round_trip_us: i64,
    pub calls: u32,
}

impl Slack {
    /// No round trip seen (tests of the schedule alone).
    pub const NONE: Slack = Slack {
        round_trip_us: 0,
        calls: 1,
    };
}

/// How far ahead of now the fleet's next free slot can honestly be: a 45011 pause (a window),
/// then the leases workers took after it: at most one per worker at a time, ~200 ms each (a
/// window's worth each at most when NATS is slow). Two windows and 5 s cover a pause and 25
/// workers' leases; a time further out is taken for a wrong clock's. (Clamping an honest time
/// would let a lease overlap slots already handed out, so this errs on the far side.)
pub fn horizon(window_us: i64) -> i64 {
    2 * window_us + 5_000_000
}

impl Schedule {
    /// The schedule as far as our clock can trust it: a pause at most a window ahead (that is
    /// how long one lasts), the next free slot at most [`horizon`] ahead. Beyond that the
    /// time was written by a clock running ahead, and honouring it would stall the fleet.
    pub fn clamped(self, now_us: i64, window_us: i64) -> Schedule {
        Schedule {
            tat_us: self.tat_us.min(now_us + horizon(window_us)),
            paused_until_us: self.paused_until_us.min(now_us + window_us),
            slack_us: self.slack_us.clamp(0, window_us),
            slack_until_us: self.slack_until_us.min(now_us + 2 * window_us),
        }
    }

    /// The fleet's slack with ours taken in: the larger holds, ours for two windows from now;
    /// a larger one of the fleet's keeps its own end, so a long round trip ages out two
    /// windows after the last worker saw it.
    fn with_slack(self, own: Slack, now_us: i64, window_us: i64) -> Schedule {
        let fleet = if self.slack_until_us > now_us {
            self.slack_us
        } else {
            0
        };
        let own_us = own.round_trip_us.clamp(0, window_us);
        if own_us > 0 && own_us >= fleet {
            Schedule {
                slack_us: own_us,
                slack_until_us: now_us + 2 * window_us,
                ..self
            }
        } else {
            Schedule {
                slack_us: fleet,
                slack_until_us: if fleet > 0 { self.slack_until_us } else { 0 },
                ..self
            }
        }
    }
}

/// Slot times are wall-clock microseconds ([`Clock::now_us`]) so machines can share them.
#[derive(Clone)]
pub struct Budget {
    kv: kv::Store,
    clock: Clock,
    /// How long our last schedule write took to be acknowledged: leases start that far ahead,
    /// so that their first slot is not already late when the lease comes back (slow NATS).
    lead_us: Arc<AtomicI64>,
    /// Whether this worker's clock may take slots (see [`super::skew`]).
    guard: Arc<super::skew::ClockGuard>,
}

fn unavailable(e: impl std::fmt::Display) -> BudgetError {
    BudgetError(e.to_string())
}

impl Budget {
    /// The schedule in `kv`, read against `clock`.
    pub fn new(kv: kv::Store, clock: Clock) -> Self {
        Budget {
            kv,
            clock,
            lead_us: Arc::new(AtomicI64::new(0)),
            guard: Arc::new(super::skew::ClockGuard::default()),
        }
    }

    /// How long our last schedule write took to be acknowledged (µs).
    pub fn lead_us(&self) -> i64 {
        self.lead_us.load(Ordering::Relaxed)
    }

    /// Whether this worker's clock is honest enough to take slots.
    pub fn guard(&self) -> &super::skew::ClockGuard {
        &self.guard
    }

    /// The clock the schedule is read against.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    async fn read(&self, appid: &str) -> Result<(Schedule, u64), BudgetError> {
        match self.kv.entry(appid).await.map_err(unavailable)? {
            Some(e) if e.operation == Operation::Put => {
                // Never read as an empty schedule: that would start a second one beside the
                // fleet's and overspend. Anyone the account lets make a JetStream request can
                // have the server's answer stored here (docs/security.md); no slot until an
                // operator deletes the key.
                let s = serde_json::from_slice(&e.value).map_err(|_| {
                    BudgetError(format!(
                        "the quota schedule of {appid} is unreadable: no calls for it until `nats kv del` removes the key"
                    ))
                })?;
                Ok((s, e.revision))
            }
            Some(e) => Ok((Schedule::default(), e.revision)),
            None => Ok((Schedule::default(), 0)),
        }
    }

    /// Applies `change` to the app's schedule atomically (retrying on a concurrent change).
    async fn modify<T>(
        &self,
        appid: &str,
        change: impl Fn(Schedule, i64) -> (Schedule, T),
    ) -> Result<T, BudgetError> {
        loop {
            let (current, revision) = self.read(appid).await?;
            let (next, out) = change(current, self.clock.now_us());
            let bytes: bytes::Bytes = serde_json::to_vec(&next).expect("serializes").into();
            let sent = Instant::now();
            match self.kv.update(appid, bytes, revision).await {
                Ok(_) => {
                    let took = sent.elapsed().as_micros() as i64;
                    self.lead_us.store(took, Ordering::Relaxed);
                    return Ok(out);
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    /// Reserves `k` call slots `spacing_us` apart, plus the fleet's [slack](Schedule::slack_us)
    /// over the quota's calls (our own round trip taken in); returns their times (µs). Times read
    /// from the bucket are [clamped](Schedule::clamped) against our clock and `window_us`.
    pub async fn reserve(
        &self,
        appid: &str,
        k: u32,
        spacing_us: i64,
        window_us: i64,
        own: Slack,
    ) -> Result<Vec<i64>, BudgetError> {
        let lead = self.lead_us.load(Ordering::Relaxed).clamp(0, window_us);
        self.modify(appid, |s, now| {
            let s = s.clamped(now, window_us).with_slack(own, now, window_us);
            // N slots then span T + margin + slack: N + 1 calls, each counted up to the slack
            // after its send, still span more than T.
            let calls = i64::from(own.calls.max(1));
            let step = spacing_us + (s.slack_us + calls - 1) / calls;
            let start = s.tat_us.max(now + lead).max(s.paused_until_us);
            let slots: Vec<i64> = (0..k as i64).map(|i| start + i * step).collect();
            let next = Schedule {
                tat_us: start + k as i64 * step,
                ..s
            };
            (next, slots)
        })
        .await
    }

    /// WeChat answered 45011: nobody in the fleet calls for this app until `window_us` passed.
    pub async fn pause(&self, appid: &str, window_us: i64) -> Result<i64, BudgetError> {
        self.modify(appid, |s, now| {
            let s = s.clamped(now, window_us);
            let until = s.paused_until_us.max(now + window_us);
            let next = Schedule {
                tat_us: s.tat_us.max(until),
                paused_until_us: until,
                ..s
            };
            (next, until)
        })
        .await
    }

    /// Measures our clock against the server's: writes this worker's probe key and reads back
    /// the time the server stamped on that very revision (by revision, so a lagging replica
    /// cannot answer with an older probe). The server stamped it between our send and the
    /// acknowledgement, so the midpoint is the estimate and half the round trip its bound.
    pub async fn server_offset(&self, worker: &str) -> Result<Offset, BudgetError> {
        let key = format!("{PROBE_PREFIX}{worker}");
        let (sent_us, sent) = (self.clock.now_us(), Instant::now());
        let revision = self
            .kv
            .put(&key, bytes::Bytes::new())
            .await
            .map_err(unavailable)?;
        let round_trip_us = sent.elapsed().as_micros() as i64;
        let entry = self
            .kv
            .entry_for_revision(&key, revision)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| BudgetError("the clock probe is not readable yet".into()))?;
        let server_us = (entry.created.unix_timestamp_nanos() / 1000) as i64;
        Ok(Offset {
            offset_us: sent_us + round_trip_us / 2 - server_us,
            uncertainty_us: round_trip_us / 2 + 1,
        })
    }

    /// Calls `on_pause(appid, paused_until_us)` with each of `appids`' current schedule, read
    /// again every [`PAUSE_POLL`], until a read fails. Polled, not watched: a KV watch is a push
    /// consumer, and creating one lets its creator deliver the bucket's messages to any subject
    /// (nats-io/nats-server#8274), so no role but the admin may create consumers. A poll started
    /// again after a gap learns the pauses recorded during it.
    pub async fn watch_pauses(
        &self,
        appids: &[String],
        on_pause: impl Fn(&str, i64),
    ) -> Result<(), BudgetError> {
        loop {
            for appid in appids {
                let (schedule, _) = self.read(appid).await?;
                on_pause(appid, schedule.paused_until_us);
            }
            tokio::time::sleep(PAUSE_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 1_000_000;

    fn own(round_trip_us: i64) -> Slack {
        Slack {
            round_trip_us,
            calls: 30,
        }
    }

    #[test]
    fn the_fleets_slack_is_the_longest_recent_round_trip_and_ages_out_two_windows_after_it() {
        let s = Schedule::default().with_slack(own(800_000), 0, W);
        assert_eq!((s.slack_us, s.slack_until_us), (800_000, 2 * W));
        // A shorter round trip elsewhere keeps the longer one, with its own end.
        let later = s.with_slack(own(5_000), W, W);
        assert_eq!((later.slack_us, later.slack_until_us), (800_000, 2 * W));
        // Once that end passed, the fleet's slack is what workers see now.
        let aged = later.with_slack(own(5_000), 2 * W + 1, W);
        assert_eq!(aged.slack_us, 5_000);
        // A worker that saw no call has nothing to add, and nothing stale is kept.
        let quiet = aged.with_slack(Slack::NONE, 5 * W, W);
        assert_eq!((quiet.slack_us, quiet.slack_until_us), (0, 0));
    }

    #[test]
    fn a_slack_from_a_clock_ahead_or_a_hung_call_is_held_to_a_window() {
        let wild = Schedule {
            slack_us: 50 * W,
            slack_until_us: 100 * W,
            ..Schedule::default()
        };
        let held = wild.clamped(0, W);
        assert_eq!((held.slack_us, held.slack_until_us), (W, 2 * W));
        assert_eq!(Schedule::default().with_slack(own(9 * W), 0, W).slack_us, W);
    }

    #[test]
    fn records_of_older_workers_read_as_no_slack_and_older_workers_read_ours() {
        let old: Schedule = serde_json::from_str(r#"{"tat_us":5,"paused_until_us":7}"#).unwrap();
        assert_eq!((old.tat_us, old.slack_us, old.slack_until_us), (5, 0, 0));
        // An older worker's type: the fields it knows, and no refusal of the others.
        #[derive(Deserialize)]
        struct Older {
            tat_us: i64,
            paused_until_us: i64,
        }
        let ours = Schedule::default().with_slack(own(800_000), 0, W);
        let read: Older = serde_json::from_slice(&serde_json::to_vec(&ours).unwrap()).unwrap();
        assert_eq!((read.tat_us, read.paused_until_us), (0, 0));
        // Without a slack, a record is byte for byte what older workers wrote.
        let plain = serde_json::to_string(&Schedule::default()).unwrap();
        assert_eq!(plain, r#"{"tat_us":0,"paused_until_us":0}"#);
    }
}
