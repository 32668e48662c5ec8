//! The per-appid limiter in front of code2Session, shared by the whole fleet through
//! [`Budget`](super::budget::Budget).
//!
//! `WXLOGIN_APP_QUOTA` means "at most N calls in ANY window of T". A plain token bucket
//! (governor's `Quota::per_minute(N)`) has a burst of N and admits up to 2N−1 calls in some
//! windows, and lives in one process. Here every call takes a slot of the fleet's schedule;
//! slots are `(T + margin) / N` apart, so N calls always span more than T. A call is made at its
//! slot time or within `tolerance` after it, else the slot is given up (a late call could bunch
//! with the next slot). The margin absorbs that tolerance, network jitter and clock skew (held
//! to a quarter of it, see [`super::skew`]), and costs at most 2% of the quota on windows of
//! 5 s and more.
//!
//! Lateness is judged twice: when a slot is handed out ([`AppLimiter::acquire`]), and again right
//! before the HTTP send ([`AppLimiter::confirm`]), after whatever round trip came between (a
//! claim renewal over a slow NATS): a call is made inside its slot or not at all.

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicI64, AtomicUsize, Ordering},
    time::Duration,
};

use super::budget::{Budget, BudgetError, Slack};
use crate::{clock::Clock, quota::Quota};

/// Slack between N slots and the window: what the schedule gives up for safety.
pub fn margin(quota: Quota) -> Duration {
    (quota.window / 50).max(Duration::from_millis(100))
}

/// The spacing between calls that keeps every window of `quota.window` at or under the quota.
pub fn spacing(quota: Quota) -> Duration {
    (quota.window + margin(quota)) / quota.calls
}

#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// The next free slot is after the code's deadline.
    #[error("no call slot before the code expires")]
    Expired,
    /// This worker's clock is too far off the server's to take slots (see `skew.rs`).
    #[error("this worker's clock is too far off the NATS server's to take quota slots")]
    ClockSkewed,
    #[error(transparent)]
    Unavailable(#[from] BudgetError),
}

/// A slot handed out by [`AppLimiter::acquire`]: to be [confirmed](AppLimiter::confirm) right
/// before the call, never called on later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a slot is confirmed right before the call"]
pub struct Granted {
    at_us: i64,
}

/// The slot's time passed by more than the tolerance before the call could be sent: the slot
/// is given back (unused), and the step takes another.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the call slot passed {late_us} µs before the call could be sent")]
pub struct Late {
    pub late_us: i64,
}

/// The rule a slot's call keeps: at its time or within the tolerance after it, on this clock.
#[derive(Debug, Clone, Copy)]
struct Punctuality {
    clock: Clock,
    tolerance_us: i64,
}

impl Punctuality {
    fn check(&self, slot: Granted) -> Result<(), Late> {
        let late_us = self.clock.now_us() - slot.at_us;
        if late_us > self.tolerance_us {
            Err(Late { late_us })
        } else {
            Ok(())
        }
    }
}

pub struct AppLimiter {
    appid: String,
    budget: Budget,
    spacing_us: i64,
    window_us: i64,
    tolerance_us: i64,
    punctuality: Punctuality,
    max_lease: u32,
    calls: u32,
    /// Slots this process holds, in time order. The mutex also queues waiters in FIFO order.
    slots: tokio::sync::Mutex<VecDeque<i64>>,
    waiting: AtomicUsize,
    paused_until_us: AtomicI64,
    /// The longest round trip of our calls lately (µs), and until when it counts (two
    /// windows after it was seen): what our leases add to the fleet's slack.
    round_trip_us: AtomicI64,
    round_trip_until_us: AtomicI64,
    used: crate::meter::QuotaUse,
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AppLimiter {
    pub fn new(appid: &str, quota: Quota, budget: Budget) -> Self {
        let spacing = spacing(quota);
        // Lease at most ~200 ms of slots at once: what a crashed worker can waste.
        let max_lease = (Duration::from_millis(200).as_micros() / spacing.as_micros().max(1))
            .clamp(1, 64) as u32;
        let tolerance_us = (margin(quota) / 2).as_micros() as i64;
        budget.guard().hold_to(quota);
        let punctuality = Punctuality {
            clock: budget.clock(),
            tolerance_us,
        };
        AppLimiter {
            appid: appid.to_string(),
            budget,
            spacing_us: spacing.as_micros().max(1) as i64,
            window_us: quota.window.as_micros() as i64,
            tolerance_us,
            punctuality,
            max_lease,
            calls: quota.calls,
            slots: tokio::sync::Mutex::new(VecDeque::new()),
            waiting: AtomicUsize::new(0),
            paused_until_us: AtomicI64::new(0),
            round_trip_us: AtomicI64::new(0),
            round_trip_until_us: AtomicI64::new(0),
            used: crate::meter::QuotaUse::new(appid, quota),
        }
    }

    /// Waits for this process's next slot of the fleet schedule; the call is made right after,
    /// once [`confirm`](Self::confirm) says the slot is still good.
    pub async fn acquire(&self, deadline_us: i64) -> Result<Granted, AcquireError> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        let mut slots = self.slots.lock().await;
        loop {
            if self.budget.guard().refuses() {
                return Err(AcquireError::ClockSkewed);
            }
            let now = self.budget.clock().now_us();
            let paused = self.paused_until_us.load(Ordering::Relaxed);
            while let Some(&s) = slots.front() {
                if s < paused {
                    crate::meter::quota_slot_given_back("paused");
                } else if s < now - self.tolerance_us {
                    crate::meter::quota_slot_given_back("late_lease");
                } else {
                    break;
                }
                slots.pop_front();
            }
            let Some(&slot) = slots.front() else {
                let k = (self.waiting.load(Ordering::Relaxed) as u32).clamp(1, self.lease_cap());
                let (appid, spacing) = (&self.appid, self.spacing_us);
                let own = Slack {
                    round_trip_us: self.recent_round_trip_us(now),
                    calls: self.calls,
                };
                let fresh = self
                    .budget
                    .reserve(appid, k, spacing, self.window_us, own)
                    .await?;
                slots.extend(fresh);
                continue;
            };
            if slot > deadline_us {
                return Err(AcquireError::Expired);
            }
            if slot > now {
                tokio::time::sleep(Duration::from_micros((slot - now) as u64)).await;
                // Look again: a pause may have arrived, or we may have woken too late.
                continue;
            }
            slots.pop_front();
            return Ok(Granted { at_us: slot });
        }
    }

    /// The most slots one lease takes: ~200 ms of them (what a crashed worker can waste), or,
    /// when NATS is slow, what the quota offers during a lease's two round trips (a read and
    /// a compare-and-set): otherwise the quota would sit idle while we wait for the next lease.
    /// Never more than a window's worth.
    fn lease_cap(&self) -> u32 {
        let round_trips = 2 * self.budget.lead_us();
        let slow = (round_trips / self.spacing_us).min(i64::from(self.calls)) as u32;
        self.max_lease.max(slow)
    }

    /// Right before the send (after any round trip since [`acquire`](Self::acquire)): whether
    /// the slot is still good to call on. A late slot is given back and counted; the step
    /// takes another.
    pub fn confirm(&self, slot: Granted) -> Result<(), Late> {
        match self.punctuality.check(slot) {
            Ok(()) => {
                self.used.call(self.budget.clock().now_us() / 1_000_000);
                Ok(())
            }
            Err(late) => {
                crate::meter::quota_slot_given_back("late_send");
                Err(late)
            }
        }
    }

    /// A call on one of our slots took `round_trip` from its send to its answer (or to its
    /// timeout): WeChat may have counted it anywhere in between.
    pub fn answered_after(&self, round_trip: Duration) {
        let now = self.budget.clock().now_us();
        let us = round_trip.as_micros().min(self.window_us as u128) as i64;
        if us >= self.recent_round_trip_us(now) {
            self.round_trip_us.store(us, Ordering::Relaxed);
            self.round_trip_until_us
                .store(now + 2 * self.window_us, Ordering::Relaxed);
        }
    }

    fn recent_round_trip_us(&self, now_us: i64) -> i64 {
        if self.round_trip_until_us.load(Ordering::Relaxed) > now_us {
            self.round_trip_us.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// WeChat answered 45011: hold the whole fleet back for a window.
    pub async fn pause_for_window(&self) -> Result<(), BudgetError> {
        self.note_pause(self.budget.clock().now_us() + self.window_us);
        let until = self.budget.pause(&self.appid, self.window_us).await?;
        self.note_pause(until);
        Ok(())
    }

    /// Brings `wxlogin_quota_used_calls` up to date when no call has been made lately.
    pub fn refresh_usage(&self) {
        self.used.refresh(self.budget.clock().now_us() / 1_000_000);
    }

    /// Another worker (or we) paused this app until `until_us`: for a window at most from now,
    /// whatever the pausing worker's clock said (a clock ahead must not stall us for longer).
    pub fn note_pause(&self, until_us: i64) {
        let most = self.budget.clock().now_us() + self.window_us;
        self.paused_until_us
            .fetch_max(until_us.min(most), Ordering::Relaxed);
    }

    pub fn paused_until_us(&self) -> i64 {
        self.paused_until_us.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_keeps_n_calls_inside_a_window_with_margin() {
        for q in ["100/60s", "5000/60s", "20/5s", "8/1s"] {
            let q: Quota = q.parse().unwrap();
            let s = spacing(q);
            // N calls spaced this way span more than the window plus the lateness tolerance,
            // so no window holds N + 1.
            assert!(s * q.calls > q.window + margin(q) / 2, "{q}");
        }
        // On windows of a minute, at most 2% of the quota is given up.
        let q: Quota = "100/60s".parse().unwrap();
        assert!(spacing(q) * 98 <= q.window, "{:?}", spacing(q));
    }

    #[test]
    fn a_slot_is_confirmed_within_its_tolerance_and_refused_after_it() {
        let q: Quota = "40/2s".parse().unwrap();
        let tolerance_us = (margin(q) / 2).as_micros() as i64;
        let slot = Granted {
            at_us: Clock::system().now_us(),
        };
        let at = |clock| Punctuality {
            clock,
            tolerance_us,
        };
        assert_eq!(at(Clock::system()).check(slot), Ok(()));
        // A round trip of 2 s between the slot and the send (a renewal while NATS elects a
        // leader): the clock reads 2 s later, and the call must not go out.
        let late = at(Clock::off_by_ms(2_000)).check(slot).unwrap_err();
        assert!((2_000_000..2_100_000).contains(&late.late_us), "{late:?}");
        // Just past the tolerance is late already; the slot's own time is not.
        let just_past = Clock::off_by_ms(tolerance_us / 1000 + 5);
        assert!(at(just_past).check(slot).is_err());
        let early = Granted {
            at_us: slot.at_us + 1_000_000,
        };
        assert_eq!(at(Clock::system()).check(early), Ok(()));
    }
}
